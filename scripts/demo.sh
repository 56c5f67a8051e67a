#!/usr/bin/env bash
# demo.sh: installs what is missing, builds tern and the Debian guest, then
# boots the guest with two harts on the terminal. Leave with Ctrl-A x, or
# type `poweroff -f` in the guest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
make -j"$(nproc)" all
make guest
GUEST_DIR=${GUEST_DIR:-$HOME/.cache/tern/guest}
echo "== booting Debian's riscv64 kernel on tern (Ctrl-A x quits)"
exec ./build/tern vm run --kernel "$GUEST_DIR/Image" --initrd "$GUEST_DIR/initrd.img" \
	--memory 256M --cpus 2 --cmdline "console=ttyS0 quiet"
