#!/usr/bin/env bash
# deps.sh: installs, with apt-get, the Debian packages tern needs to build,
# to make its guest and to run its tests, and with npm the dashboard tests'
# one module (tests/web: playwright-core, as package-lock.json pins it).
# Only what is missing is installed.
set -euo pipefail

packages=(
	build-essential pkg-config
	libfdt-dev libjansson-dev libcmocka-dev
	python3 python3-pytest
	gcc-riscv64-linux-gnu libc6-dev-riscv64-cross
	qemu-system-misc opensbi
	libxxhash-dev libzstd-dev libssl-dev openssl libseccomp-dev
	libcurl4-openssl-dev libmicrohttpd-dev etcd-server etcd-client curl
	xz-utils cpio e2fsprogs debian-archive-keyring
	iproute2 iputils-ping tcpdump
	chromium
)
# Node.js and npm: Debian's, unless this machine has them already (some
# have NodeSource's nodejs, which brings its own npm and conflicts with
# Debian's npm package).
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
if ((${#missing[@]})); then
	echo "== installing: ${missing[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# The dashboard tests drive chromium with playwright-core.
here=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$here/tests/web/node_modules/playwright-core" ]; then
	echo "== npm ci in tests/web (playwright-core)"
	npm ci --prefix "$here/tests/web" --no-audit --no-fund --loglevel=error
fi
