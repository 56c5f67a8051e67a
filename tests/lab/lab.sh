#!/usr/bin/env bash
# lab.sh: tern's migration lab from the shell (needs root).
#   tests/lab/lab.sh up N [--name NAME]   N hosts + client on one bridge, left running
#   tests/lab/lab.sh down [--name NAME]   remove lab NAME, or every lab's namespaces (tl*)
#   tests/lab/lab.sh status [--json]      what labs exist, their interfaces and addresses
# The layout and the Python API are described in tests/lab/lab.py.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/lab.py" "$@"
