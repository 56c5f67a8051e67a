#!/usr/bin/env bash
# build.sh: builds tern's default guest from Debian trixie riscv64 packages:
# the kernel Image (linux-image-riscv64) and an initramfs holding busybox
# (busybox-static), the virtio-mmio/blk/net and ext4 modules with their
# dependencies, guest/init and the static tools of guest/tools/.
#
#   GUEST_DIR=~/.cache/tern/guest bash guest/build.sh
#
# Outputs in $GUEST_DIR: Image, initrd.img, config (the kernel's .config),
# kernel-version. The .debs are cached in $GUEST_DIR/apt/debs and only
# fetched when missing (TERN_GUEST_REFRESH=1 fetches the newest again); the
# initramfs is rebuilt every run, which takes seconds. apt runs with a
# private configuration and state under $GUEST_DIR/apt: the host's apt
# setup is neither used for package lists nor changed.
set -euo pipefail
shopt -s inherit_errexit # a failure inside $(...) stops the build too

GUEST_DIR=${GUEST_DIR:-$HOME/.cache/tern/guest}
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SUITE=${TERN_GUEST_SUITE:-trixie}
MIRROR=${TERN_GUEST_MIRROR:-http://deb.debian.org/debian}
# Modules the guest needs; their dependencies are found below.
WANTED_MODULES=(virtio_mmio virtio_blk virtio_net ext4)
CROSS=riscv64-linux-gnu-
# RISC-V modules carry every local label (.L0 ...) in their symbol table:
# ext4.ko has 217k symbols, 5 MB of its 7 MB. The loader walks them all,
# which is slow on an emulated CPU. --strip-unneeded (an accepted kbuild
# INSTALL_MOD_STRIP) keeps what relocations need and drops the rest, but
# also the appended signature: the kernel then logs "module verification
# failed ... tainting kernel" once and loads them anyway (no MODULE_SIG_FORCE).
# TERN_GUEST_STRIP_MODULES=0 keeps Debian's signed modules as they are.
STRIP_MODULES=${TERN_GUEST_STRIP_MODULES:-1}

log() { echo "== $*" >&2; }
die() { echo "build.sh: error: $*" >&2; exit 1; }

# ---- host tools ------------------------------------------------------------------
# binutils-riscv64-linux-gnu (objcopy, to read module metadata) comes with
# gcc-riscv64-linux-gnu; the keyring verifies the private apt source.
host_packages=(gcc-riscv64-linux-gnu libc6-dev-riscv64-cross xz-utils cpio debian-archive-keyring)
missing=()
for p in "${host_packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
if ((${#missing[@]})); then
	log "installing host packages: ${missing[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
for t in ${CROSS}gcc ${CROSS}objcopy ${CROSS}strip dpkg-deb xz cpio gzip; do
	command -v "$t" >/dev/null || die "$t not found"
done

# ---- packages (private apt) ----------------------------------------------------------
APT=$GUEST_DIR/apt
DEBS=$APT/debs
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/empty.d" "$DEBS"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main" >"$APT/sources.list"
: >"$APT/status" # an empty dpkg status: the host's installed packages play no part
apt_opts=(
	-o APT::Architecture=riscv64 -o APT::Architectures=riscv64
	-o Dir::State::Lists="$APT/lists" -o Dir::State::status="$APT/status"
	-o Dir::Etc::SourceList="$APT/sources.list" -o Dir::Etc::SourceParts="$APT/empty.d"
	-o Dir::Etc::Preferences="$APT/empty.d/none" -o Dir::Etc::PreferencesParts="$APT/empty.d"
	-o Dir::Cache="$APT/cache"
	# As root apt would drop to _apt for downloads, which cannot write to a
	# cache under root's home.
	-o APT::Sandbox::User="$(id -un)"
	-qq
)

have_debs() {
	compgen -G "$DEBS/linux-image-*-riscv64_*_riscv64.deb" >/dev/null &&
		compgen -G "$DEBS/busybox-static_*_riscv64.deb" >/dev/null
}
if [ "${TERN_GUEST_REFRESH:-0}" = 1 ] || ! have_debs; then
	log "apt-get update ($SUITE riscv64, private lists in $APT)"
	apt-get "${apt_opts[@]}" update
	# linux-image-riscv64 is a metapackage; its first dependency is the
	# versioned image package, e.g. linux-image-6.12.41+deb13-riscv64.
	image_pkg=$(apt-cache "${apt_opts[@]}" depends linux-image-riscv64 |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-riscv64\)$/\1/p' | head -n1)
	[ -n "$image_pkg" ] || die "cannot resolve linux-image-riscv64 to a kernel package"
	log "downloading $image_pkg busybox-static"
	rm -f "$DEBS"/*.deb
	(cd "$DEBS" && apt-get "${apt_opts[@]}" download "$image_pkg" busybox-static)
fi
have_debs || die "packages missing in $DEBS"
# Sorted by version, newest last, in case several were left behind.
image_deb=$(ls "$DEBS"/linux-image-*-riscv64_*_riscv64.deb | sort -V | tail -n1)
busybox_deb=$(ls "$DEBS"/busybox-static_*_riscv64.deb | sort -V | tail -n1)

# ---- extract (cached per .deb) -------------------------------------------------------
WORK=$GUEST_DIR/work
mkdir -p "$WORK"
extract() { # DEB -> prints the directory it is extracted into
	local deb=$1 dir
	dir=$WORK/x/$(basename "$deb" .deb)
	if [ ! -e "$dir/.done" ]; then
		log "extracting $(basename "$deb")"
		rm -rf "$dir"
		mkdir -p "$dir"
		dpkg-deb -x "$deb" "$dir"
		touch "$dir/.done"
	fi
	echo "$dir"
}
kx=$(extract "$image_deb")
bx=$(extract "$busybox_deb")
# Drop extractions of .debs that are gone (older kernels).
for d in "$WORK"/x/*/; do
	d=${d%/}
	[ "$d" = "$kx" ] || [ "$d" = "$bx" ] || rm -rf "$d"
done

image=$(ls "$kx"/boot/vmlinux-* 2>/dev/null | head -n1)
[ -n "$image" ] || die "no boot/vmlinux-* in $(basename "$image_deb")"
kver=${image##*/vmlinux-}
moddir=$kx/usr/lib/modules/$kver
[ -d "$moddir" ] || moddir=$kx/lib/modules/$kver
[ -d "$moddir" ] || die "no modules directory for $kver"
# Debian's riscv64 "vmlinux" is really the flat Image (with an EFI PE
# header): the RISC-V boot magic "RSC\x05" sits at offset 0x38.
[ "$(od -An -c -j 56 -N 4 "$image" | tr -d ' ')" = 'RSC005' ] ||
	die "$image is not a RISC-V Image (no RSC\\x05 magic at 0x38)"
busybox=$bx/usr/bin/busybox
[ -x "$busybox" ] || busybox=$bx/bin/busybox
[ -x "$busybox" ] || die "no busybox in $(basename "$busybox_deb")"

# ---- modules: the wanted ones plus dependencies, in load order -----------------------
# The .deb ships no modules.dep (depmod makes it at install time), so the
# dependencies come from each module's own .modinfo section: "depends="
# (symbols it needs) and "softdep=pre:" (modules it loads by name, such as
# ext4 and jbd2 asking for crypto-crc32c, without which a metadata_csum
# file system does not mount).
declare -A modpath=() # normalised name -> path under $moddir
while read -r p; do
	n=${p##*/}
	n=${n%%.ko*}
	modpath[${n//-/_}]=$p
done < <(cd "$moddir" && find kernel -name '*.ko' -o -name '*.ko.xz')

KO=$WORK/ko/$kver # decompressed modules, reused across runs
mkdir -p "$KO"
ko_file() { # NAME -> decompressed .ko path in $KO
	local n=$1 src=$moddir/${modpath[$1]} out=$KO/${modpath[$1]%.xz}
	if [ ! -s "$out" ]; then
		mkdir -p "$(dirname "$out")"
		case "$src" in
		*.xz) xz -dc "$src" >"$out.tmp" ;;
		*) cp "$src" "$out.tmp" ;;
		esac
		mv "$out.tmp" "$out"
	fi
	echo "$out"
}
modinfo_field() { # NAME FIELD -> one value per line
	local f
	f=$(ko_file "$1")
	"${CROSS}objcopy" -O binary --only-section=.modinfo "$f" "$f.modinfo"
	tr '\0' '\n' <"$f.modinfo" | sed -n "s/^$2=//p"
	rm -f "$f.modinfo"
}
# A softdep names a module or an alias. Aliases are resolved for the crypto
# case only ("crypto-X" -> X or X_generic), which is all these modules use;
# anything else is reported, not guessed.
resolve_name() { # NAME -> normalised module name, or nothing
	local n=${1//-/_} c
	for c in "$n" "${n#crypto_}" "${n#crypto_}_generic"; do
		if [ -n "${modpath[$c]:-}" ]; then
			echo "$c"
			return
		fi
	done
}

declare -A seen=()
declare -A closure=() # name -> all modules it needs, in load order
order=()
add_module() { # NAME: appends NAME after its dependencies
	local n=$1 d c depends softdeps deps=() word state="" all=""
	[ -z "${seen[$n]:-}" ] || return 0
	seen[$n]=1
	[ -n "${modpath[$n]:-}" ] || die "module $n not in $(basename "$image_deb")"
	depends=$(modinfo_field "$n" depends)
	softdeps=$(modinfo_field "$n" softdep)
	IFS=, read -r -a deps <<<"$depends"
	for word in $softdeps; do
		case "$word" in
		pre:) state=pre ;;
		post:) state=post ;; # loaded after n on demand; not needed to boot
		*)
			[ "$state" = pre ] || continue
			d=$(resolve_name "$word")
			if [ -n "$d" ]; then deps+=("$d"); else log "warning: $n: softdep $word not resolved"; fi
			;;
		esac
	done
	for d in "${deps[@]}"; do
		[ -n "$d" ] || continue
		d=${d//-/_}
		add_module "$d"
		for c in ${closure[$d]} "$d"; do
			case " $all " in *" $c "*) ;; *) all+=" $c" ;; esac
		done
	done
	closure[$n]=$all
	order+=("$n")
}
for m in "${WANTED_MODULES[@]}"; do
	if grep -q "/${m}.ko" "$moddir/modules.builtin" 2>/dev/null; then
		continue # built into this kernel
	fi
	add_module "$m"
done

# ---- guest tools ---------------------------------------------------------------------
TOOLS=$WORK/tools
rm -rf "$TOOLS"
mkdir -p "$TOOLS"
for c in "$SRC"/tools/*.c; do
	t=$(basename "$c" .c)
	log "compiling $t"
	"${CROSS}gcc" -std=c17 -O2 -static -Wall -Wextra -Werror -o "$TOOLS/$t" "$c"
	"${CROSS}strip" "$TOOLS/$t"
done

# ---- initramfs ------------------------------------------------------------------------
ROOT=$WORK/root
rm -rf "$ROOT"
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,mnt,lib/modules}
install -m 0755 "$busybox" "$ROOT/bin/busybox"
ln -s busybox "$ROOT/bin/sh"
install -m 0755 "$SRC/init" "$ROOT/init"
install -m 0755 "$TOOLS"/* "$ROOT/usr/bin/"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\n' >"$ROOT/etc/group"
printf '127.0.0.1\tlocalhost\n127.0.1.1\ttern\n' >"$ROOT/etc/hosts"
chmod 1777 "$ROOT/tmp"

rmod=$ROOT/lib/modules/$kver
order_file=$ROOT/lib/modules/modules.order.tern
: >"$order_file"
for n in "${order[@]}"; do
	rel=${modpath[$n]%.xz}
	mkdir -p "$(dirname "$rmod/$rel")"
	ko=$(ko_file "$n")
	if [ "$STRIP_MODULES" = 1 ]; then
		"${CROSS}objcopy" --strip-unneeded "$ko" "$rmod/$rel"
		chmod 0644 "$rmod/$rel"
	else
		install -m 0644 "$ko" "$rmod/$rel"
	fi
	echo "/lib/modules/$kver/$rel" >>"$order_file"
done
# A modules.dep for the same subset, so that busybox modprobe works too. As
# depmod writes it: every module needed, the one to load first last. The
# pre-softdeps are listed as plain dependencies, which is what they amount
# to at boot.
for n in "${order[@]}"; do
	line="${modpath[$n]%.xz}:"
	# shellcheck disable=SC2086 # closure is a space-separated list
	for c in $(printf '%s\n' ${closure[$n]} | tac); do
		line+=" ${modpath[$c]%.xz}"
	done
	echo "$line"
done >"$rmod/modules.dep"
cp "$moddir/modules.builtin" "$rmod/" 2>/dev/null || true

# Fixed owners, times and order: the same inputs give the same initrd.img.
epoch=${SOURCE_DATE_EPOCH:-0}
find "$ROOT" -exec touch -h -d "@$epoch" {} +
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort |
	cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9 -n >"$GUEST_DIR/initrd.img.tmp"
mv "$GUEST_DIR/initrd.img.tmp" "$GUEST_DIR/initrd.img"

# ---- kernel ---------------------------------------------------------------------------
cp "$image" "$GUEST_DIR/Image.tmp" && mv "$GUEST_DIR/Image.tmp" "$GUEST_DIR/Image"
cp "$kx/boot/config-$kver" "$GUEST_DIR/config"
echo "$kver" >"$GUEST_DIR/kernel-version"

echo "modules (load order): ${order[*]}"
echo "kernel version: $kver ($(basename "$image_deb"))"
echo "kernel: $GUEST_DIR/Image"
echo "initrd: $GUEST_DIR/initrd.img ($(stat -c %s "$GUEST_DIR/initrd.img") bytes)"
