#!/usr/bin/env bash
# test.sh: the one test command. Installs what is missing, builds tern
# (release and ASan+UBSan), builds the guest, runs the unit tests under the
# sanitizers and the integration tests against the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
jobs=$(nproc)
make -j"$jobs" all asan
make -j"$jobs" unit
bash scripts/fuzz.sh "${TERN_FUZZ_SECONDS:-60}"
make guest
make integration
echo "== all tests passed"
