#!/usr/bin/env bash
# demo.sh: installs what is missing, builds tern and the Debian guest, then
# shows a live migration: a guest serving a TCP client moves between two
# "hosts" (network namespaces on one bridge) and back (scripts/demo.py).
# Needs root (namespaces, TAP devices); everything it makes it removes.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
make -j"$(nproc)" all
make guest
exec /usr/bin/python3 scripts/demo.py
