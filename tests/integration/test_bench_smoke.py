"""Short smoke runs of the benchmarks that compare or measure migration and
replication (bench/migrate --quick: tern and QEMU side by side on a 256 MiB
idle guest; bench/dr --quick: one 300 ms synchronous cell), so that CI
finds a benchmark that no longer runs. The figures are not asserted: the
benchmarks print them, and timing checks do not belong in tests."""
import os
import re
import subprocess

from ternvm import REPO, TERN_BIN


def run(args, timeout):
    env = {**os.environ, "TERN_BIN": TERN_BIN}
    p = subprocess.run(["/usr/bin/python3", *args], capture_output=True, text=True,
                       timeout=timeout, cwd=REPO, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def test_migrate_bench_quick(tmp_path):
    out = run([str(REPO / "bench/migrate/migrate_bench.py"), "--quick", "--no-docs",
               "--workdir", str(tmp_path)], 600)
    rows = [line for line in out.splitlines() if line.startswith("| 256M-idle | total time")]
    assert rows, out[-2000:]
    # tern's cell and both QEMU cells have numbers (none failed).
    assert len(re.findall(r"\d+\.\d+", rows[0])) >= 3, rows[0]


def test_dr_bench_quick(tmp_path):
    out = run([str(REPO / "bench/dr/dr_bench.py"), "--quick", "--workdir", str(tmp_path)], 300)
    assert re.search(r"^\| sync-300ms \| 1\.\d\d \|", out, re.M) or \
        re.search(r"^\| sync-300ms \| 0\.\d\d \|", out, re.M), out[-2000:]
