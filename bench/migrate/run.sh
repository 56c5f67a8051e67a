#!/usr/bin/env bash
# bench/migrate: live migration over loopback, tern vs qemu-system-riscv64,
# side by side in one run: total time, downtime (as each VMM reports it and
# as the guest's heartbeat shows it), bytes on the wire and passes, for an
# idle guest of 1 and 2 GiB and a 1 GiB guest dirtying a 256 MiB working set
# at 16, 64, 256 MiB/s and flat out. Arguments go to migrate_bench.py
# (--quick for a short smoke run, --rows, --runs, --cpus, ...; --help).
# --matrix strategies: each of tern's strategies and options (precopy,
# auto-converge, postcopy, 2 streams, delta, zstd, auto) beside QEMU's
# equivalent (dl=30, auto-converge, postcopy-ram, multifd 2 channels,
# xbzrle, multifd zstd) on the 64 MiB/s and flat-out rows, with the guest's
# slowdown during the migration; about 30-40 min on 2 cores.
# --matrix tls: what migration TLS costs, tern with and without it (every
# other tern figure runs --no-tls, as QEMU migrates in plaintext) beside
# QEMU dl=30 with and without tls-creds-x509, on the idle and 64 MiB/s 1 GiB
# rows, 3 runs per cell; about 7 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/deps.sh          # Debian packages only, and only what is missing
make -s all
make -s guest >/dev/null
exec /usr/bin/python3 bench/migrate/migrate_bench.py "$@"
