#!/usr/bin/env bash
# bench/migrate/storage.sh: live migration of a VM with its local disk, tern
# (`tern vm migrate --copy-storage`) vs qemu-system-riscv64's block migration
# (`migrate -b`), side by side in one run over 127.0.0.1: a 512 MiB guest
# with a 2 GiB raw disk (512 MiB of data, the rest a hole), idle and while
# the guest writes 20 MiB/s (flushed 256 KiB writes); total time, downtime
# (VMM and heartbeat), bytes on the wire and disk bytes, as tern/QEMU
# ratios; the migrated disk's content is checked. Arguments go to
# storage_bench.py (--quick for a ~1 min smoke run, --rows, --vmms, --runs,
# --write-docs; --help).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/deps.sh          # Debian packages only, and only what is missing
make -s all
make -s guest >/dev/null
exec /usr/bin/python3 bench/migrate/storage_bench.py "$@"
