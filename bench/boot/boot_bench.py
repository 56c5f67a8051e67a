#!/usr/bin/env python3
"""boot_bench: tern against qemu-system-riscv64 (TCG, -M virt, Debian's
OpenSBI) on the same kernel, initrd, memory and harts, side by side.

Measures, per VMM, the median over --runs of:
  init    process start -> the guest's "TERN-INIT-REACHED" line
  ready   process start -> "TERN-READY" (modules loaded, shell starting)
and, from inside the guest, the cpubench tool:
  loop    guest instructions per second in a 4-instruction loop
  mix     seconds for a mixed integer load (generate, qsort, checksum)
Prints each figure, the tern/QEMU ratio, and the exact commands."""
import argparse
import os
import re
import select
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GUEST = Path(os.environ.get("GUEST_DIR", Path.home() / ".cache" / "tern" / "guest"))
OPENSBI = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin"


def tern_cmd(args, cmdline):
    return [str(args.tern), "vm", "run", "--kernel", str(GUEST / "Image"),
            "--initrd", str(GUEST / "initrd.img"), "--memory", args.memory,
            "--cpus", str(args.cpus), "--console", "stdio", "--cmdline", cmdline]


def qemu_cmd(args, cmdline):
    return ["qemu-system-riscv64", "-M", "virt", "-m", args.memory.rstrip("MmBb"),
            "-smp", str(args.cpus), "-display", "none", "-nographic", "-monitor", "none",
            "-bios", OPENSBI, "-kernel", str(GUEST / "Image"),
            "-initrd", str(GUEST / "initrd.img"), "-append", cmdline]


def run_until(cmd, markers, timeout):
    """Starts cmd; returns {marker: seconds since start} and the output."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    out, seen = b"", {}
    try:
        while len(seen) < len(markers):
            left = timeout - (time.monotonic() - t0)
            if left <= 0:
                raise TimeoutError(f"{cmd[0]}: no {markers} in {timeout}s:\n"
                                   + out[-2000:].decode(errors="replace"))
            r, _, _ = select.select([p.stdout], [], [], left)
            if not r:
                continue
            data = os.read(p.stdout.fileno(), 65536)
            if not data:
                break
            out += data
            now = time.monotonic() - t0
            for m in markers:
                if m not in seen and m.encode() in out:
                    seen[m] = now
    finally:
        p.kill()
        p.wait()
    return seen, out.decode(errors="replace")


def measure_boot(cmd, runs, timeout):
    init, ready = [], []
    for _ in range(runs):
        seen, _ = run_until(cmd, ["TERN-INIT-REACHED", "TERN-READY"], timeout)
        init.append(seen["TERN-INIT-REACHED"])
        ready.append(seen["TERN-READY"])
    return statistics.median(init), statistics.median(ready)


def measure_cpubench(cmd, pattern, runs, timeout):
    values = []
    for _ in range(runs):
        _, out = run_until(cmd, ["TERN-RUN-EXIT"], timeout)
        m = re.search(pattern, out)
        if not m:
            raise RuntimeError(f"no {pattern} in output:\n{out[-2000:]}")
        values.append(float(m.group(1)))
    return statistics.median(values)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tern", default=REPO / "build" / "tern")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--memory", default="256M")
    ap.add_argument("--loop-millions", type=int, default=400)
    ap.add_argument("--mix-mib", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()

    base = "console=ttyS0"
    rows = []
    print(f"# tern boot benchmark: {args.runs} runs each, median; --cpus {args.cpus} --memory {args.memory}")
    for name, make in (("tern", tern_cmd), ("qemu", qemu_cmd)):
        print(f"# {name} boot:    {shlex.join(make(args, base))}")
        loop_line = f"{base} tern.run=cpubench,loop,{args.loop_millions}"
        mix_line = f"{base} tern.run=cpubench,mix,{args.mix_mib}"
        print(f"# {name} loop:    {shlex.join(make(args, loop_line))}")
        print(f"# {name} mix:     {shlex.join(make(args, mix_line))}")

    results = {}
    for name, make in (("tern", tern_cmd), ("qemu", qemu_cmd)):
        init, ready = measure_boot(make(args, base), args.runs, args.timeout)
        mips = measure_cpubench(make(args, f"{base} tern.run=cpubench,loop,{args.loop_millions}"),
                                r"CPUBENCH loop .* mips=([\d.]+)", args.runs, args.timeout)
        mix = measure_cpubench(make(args, f"{base} tern.run=cpubench,mix,{args.mix_mib}"),
                               r"CPUBENCH mix .* seconds=([\d.]+)", args.runs, args.timeout)
        results[name] = {"init_s": init, "ready_s": ready, "loop_mips": mips, "mix_s": mix}

    t, q = results["tern"], results["qemu"]
    print(f"{'metric':<28}{'tern':>10}{'qemu':>10}{'tern/qemu':>11}")
    for key, label, better in (("init_s", "start -> /init (s)", "lower"),
                               ("ready_s", "start -> shell ready (s)", "lower"),
                               ("loop_mips", "guest loop (M insn/s)", "higher"),
                               ("mix_s", f"cpubench mix {args.mix_mib} MiB (s)", "lower")):
        print(f"{label:<28}{t[key]:>10.2f}{q[key]:>10.2f}{t[key] / q[key]:>10.2f}x  ({better} is better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
