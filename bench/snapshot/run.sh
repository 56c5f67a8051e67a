#!/usr/bin/env bash
# bench/snapshot: snapshot and restore times and file sizes, tern vs
# qemu-system-riscv64, side by side. Arguments go to snapshot_bench.py
# (--sizes 1024,4096 by default; --cpus).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec /usr/bin/python3 bench/snapshot/snapshot_bench.py "$@"
