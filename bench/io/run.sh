#!/usr/bin/env bash
# bench/io: disk and TCP throughput, tern vs qemu-system-riscv64, side by
# side in one run (needs root for the namespace and TAP). Arguments go to
# io_bench.py (--disk-mib, --net-mib, --seconds, --cpus, ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec /usr/bin/python3 bench/io/io_bench.py "$@"
