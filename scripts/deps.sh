#!/usr/bin/env bash
# deps.sh: installs, with apt-get, the Debian packages tern needs to build,
# to make its guest and to run its tests. Only what is missing is installed.
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
)

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
