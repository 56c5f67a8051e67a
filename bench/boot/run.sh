#!/usr/bin/env bash
# bench/boot: boot time and guest CPU throughput, tern vs qemu-system-riscv64,
# side by side in one run. Arguments go to boot_bench.py (--runs, --cpus, ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec /usr/bin/python3 bench/boot/boot_bench.py "$@"
