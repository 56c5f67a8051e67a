#!/usr/bin/env bash
# bench/dr: continuous replication at several epoch lengths, asynchronous
# and synchronous: guest slowdown (paced and flat-out dirtier), replication
# MiB/s, pause per epoch, the measured RPO (lag) and RTO (kill to the
# standby's first heartbeat), and a client's echo round trip (what
# synchronous mode costs what the guest sends). Runs in a lab (network
# namespaces, root). Arguments go to dr_bench.py (--epochs, --modes,
# --rate, --flat-out-epochs, --settle, --quick; --help). About 7 min with
# the defaults on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/deps.sh
make -s all
make -s guest >/dev/null
exec /usr/bin/python3 bench/dr/dr_bench.py "$@"
