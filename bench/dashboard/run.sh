#!/usr/bin/env bash
# bench/dashboard: the dashboard (web/) in Debian's chromium against a
# simulated cluster (tests/web/dashboard.mjs load: every request answered
# inside the browser, no ternd): time to the first picture, time per redraw
# (the page's own measurement of each event it draws), time for a click on
# the form while events keep coming, and the long tasks (>50 ms) seen.
# Sizes: 200 VMs on 20 hosts and 1000 VMs on 50 hosts, RUNS runs each
# (default 3), the median printed. There is no QEMU counterpart to compare
# with: QEMU has no cluster view; the figures stand alone.
# Usage: bash bench/dashboard/run.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/deps.sh
runs=${1:-3}
shots=$(mktemp -d /tmp/tern-dashboard-bench.XXXXXX)
trap 'rm -rf "$shots"' EXIT
echo "# bench/dashboard: $runs run(s) per size; chromium $(chromium --version 2>/dev/null | awk '{print $2}')"
echo "| VMs / hosts | first picture ms | redraw ms median / max | click ms median | long tasks > 50 ms |"
echo "|---|---|---|---|---|"
for size in "200 20" "1000 50"; do
	set -- $size
	cmd="node tests/web/dashboard.mjs load web $shots $1 $2"
	results=()
	for ((i = 0; i < runs; i++)); do
		results+=("$($cmd)")
	done
	printf '%s\n' "${results[@]}" | /usr/bin/python3 -c '
import json, statistics, sys
rs = [json.loads(l) for l in sys.stdin if l.strip()]
bad = [r["error"] for r in rs if "error" in r]
if bad:
    sys.exit("dashboard.mjs failed: " + bad[0])
med = lambda xs: statistics.median(xs)
first = med([r["first_picture_ms"] for r in rs])
redraw = [x for r in rs for x in r["render_ms"]]
click = med([x for r in rs for x in r["click_ms"]])
longs = [x for r in rs for x in r["long_tasks_ms"]]
print(f"| {sys.argv[1]} / {sys.argv[2]} | {first:.0f} | {med(redraw):.1f} / {max(redraw):.1f} | "
      f"{click:.0f} | {len(longs)} (max {max(longs, default=0):.0f} ms) |")
' "$1" "$2"
	echo "#   $cmd   (x$runs)"
done
