#!/usr/bin/env python3
"""snapshot_bench: snapshot and restore of the same Debian guest on tern and
on qemu-system-riscv64, side by side in one run.

For each memory size, each VMM boots the guest, which then touches half of
its RAM (the dirtier writes every page of a working set once, sequentially,
then freezes itself), and:
  snapshot  tern: `tern vm snapshot --to FILE` (the reply's pause time: the
                  guest resumes before tern syncs the file)
            qemu: HMP `stop`, `migrate exec:cat>FILE`, until `info migrate`
                  says completed (max-bandwidth raised so it is not capped)
  restore   tern: `tern vm run --restore FILE` until the API answers running
            qemu: `-incoming exec:cat<FILE` until `info status` leaves inmigrate
  size      the file's size
Prints each figure, the tern/QEMU ratio and the exact commands."""
import argparse
import os
import re
import shlex
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from ternvm import KERNEL, INITRD, TERN_BIN, Vm, run_tern  # noqa: E402

OPENSBI = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin"


def touch_half(vm, mib):
    """Has the guest populate mib MiB and keep it, frozen."""
    vm.sh(f"dirtier -s {mib} -r 0 -p seq -c </dev/null >/tmp/touch.log 2>&1 & echo $! > /tmp/touch.pid")
    # One sequential pass writes every page once: wait for the first
    # status line showing at least mib MiB dirtied, then freeze it.
    vm.sh("while ! grep -Eq 'dirtied=[0-9.]+ MiB' /tmp/touch.log; do sleep 0.5; done", timeout=1200)
    deadline = time.monotonic() + 1800
    while True:
        out = vm.sh("tail -1 /tmp/touch.log", timeout=60)
        m = re.search(r"dirtied=([\d.]+) MiB", out)
        if m and float(m.group(1)) >= mib:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(out)
        time.sleep(1)
    vm.sh("kill -USR1 $(cat /tmp/touch.pid); while ! grep -q frozen /tmp/touch.log; do sleep 0.5; done",
          timeout=600)


def tern_round(args, mem_mib, work):
    vm = Vm(work / "tern-src", cpus=args.cpus, memory=f"{mem_mib}M").boot(timeout=600)
    try:
        touch_half(vm, mem_mib // 2)
        snap = work / "tern.snap"
        # The guest-visible pause: tern resumes the guest, then syncs the
        # file (QEMU's exec:cat does not sync at all).
        reply = vm.snapshot(snap)
        vm.api("stop")
        vm.wait_exit(120)
    finally:
        vm.close()
    dst = Vm(work / "tern-dst", restore=snap)
    cmd = dst.command()
    t0 = time.monotonic()
    dst.start()
    try:
        while True:
            try:
                if dst.api("status")["result"]["state"] == "running":
                    break
            except OSError:
                pass
            time.sleep(0.01)
        restore_s = time.monotonic() - t0
        dst.sh("echo ok")
    finally:
        dst.close()
    size = snap.stat().st_size
    snap.unlink()
    return {"snapshot_s": reply["pause_ms"] / 1000, "restore_s": restore_s, "size_mib": size / 2**20,
            "cmd": shlex.join(map(str, ["tern", "vm", "snapshot", "--to", snap])),
            "restore_cmd": shlex.join(cmd)}


class Hmp:
    def __init__(self, path):
        deadline = time.monotonic() + 30
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(str(path))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.read_prompt()

    def read_prompt(self):
        data = b""
        while not data.endswith(b"(qemu) "):
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("QEMU monitor closed")
            data += chunk
        return data.decode(errors="replace")

    def cmd(self, line):
        self.s.sendall(line.encode() + b"\n")
        return self.read_prompt()


def qemu_base(args, mem_mib, work, name):
    mon = work / f"{name}.mon"
    return mon, ["qemu-system-riscv64", "-M", "virt", "-m", str(mem_mib), "-smp", str(args.cpus),
                 "-display", "none", "-bios", OPENSBI, "-kernel", str(KERNEL),
                 "-initrd", str(INITRD), "-append", "console=ttyS0",
                 "-monitor", f"unix:{mon},server=on,wait=off"]


class QemuVm(Vm):
    def __init__(self, workdir, base, **kw):
        super().__init__(workdir, **kw)
        self.base = base

    def command(self):
        return self.base + ["-chardev", f"socket,id=con,path={self.console_path},server=on,wait=off",
                            "-serial", "chardev:con"]


def qemu_round(args, mem_mib, work):
    mon, base = qemu_base(args, mem_mib, work, "qsrc")
    vm = QemuVm(work / "qemu-src", base).boot(timeout=600)
    snap = work / "qemu.snap"
    try:
        touch_half(vm, mem_mib // 2)
        hmp = Hmp(mon)
        hmp.cmd("migrate_set_parameter max-bandwidth 107374182400")
        t0 = time.monotonic()
        hmp.cmd("stop")
        hmp.cmd(f'migrate "exec:cat > {snap}"')
        while "Migration status: completed" not in hmp.cmd("info migrate"):
            time.sleep(0.01)
        snapshot_s = time.monotonic() - t0
        snap_cmd = f'stop; migrate "exec:cat > {snap}"'
    finally:
        vm.close()
    mon2, base2 = qemu_base(args, mem_mib, work, "qdst")
    dst = QemuVm(work / "qemu-dst", base2 + ["-incoming", f"exec:cat {snap}"])
    cmd = dst.command()
    t0 = time.monotonic()
    dst.start()
    try:
        hmp = Hmp(mon2)
        # Loaded when the incoming migration reports completed.
        while "Migration status: completed" not in hmp.cmd("info migrate"):
            time.sleep(0.01)
        restore_s = time.monotonic() - t0
        while "running" not in hmp.cmd("info status"):
            hmp.cmd("cont")
            time.sleep(0.05)
        dst.sh("echo ok")
    finally:
        dst.close()
    size = snap.stat().st_size
    snap.unlink()
    return {"snapshot_s": snapshot_s, "restore_s": restore_s, "size_mib": size / 2**20,
            "cmd": snap_cmd, "restore_cmd": shlex.join(cmd)}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1024,4096", help="guest RAM sizes in MiB")
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3,
                    help="rounds per VMM, alternating; medians are reported (the page "
                         "cache makes single runs vary twofold here)")
    ap.add_argument("--workdir", default="/tmp/tern-snapshot-bench")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    def median(results):
        out = dict(results[0])
        for key in ("snapshot_s", "restore_s", "size_mib"):
            out[key] = statistics.median(r[key] for r in results)
        return out

    for mem in map(int, args.sizes.split(",")):
        ts, qs = [], []
        for _ in range(args.runs):
            ts.append(tern_round(args, mem, work))
            qs.append(qemu_round(args, mem, work))
        t, q = median(ts), median(qs)
        print(f"# {mem} MiB runs: tern snapshot " +
              " ".join(f"{r['snapshot_s']:.2f}" for r in ts) + ", qemu snapshot " +
              " ".join(f"{r['snapshot_s']:.2f}" for r in qs))
        for name, r in (("tern", t), ("qemu", q)):
            print(f"# {mem} MiB {name} snapshot: {r['cmd']}")
            print(f"# {mem} MiB {name} restore:  {r['restore_cmd']}")
        rows.append((mem, t, q))
    print(f"# guest touched half its RAM (dirtier, sequential, one pass); --cpus {args.cpus}; "
          f"median of {args.runs} runs")
    print(f"{'guest':<9}{'metric':<18}{'tern':>10}{'qemu':>10}{'tern/qemu':>11}")
    for mem, t, q in rows:
        for key, label in (("snapshot_s", "snapshot (s)"), ("restore_s", "restore (s)"),
                           ("size_mib", "file (MiB)")):
            print(f"{str(mem) + ' MiB':<9}{label:<18}{t[key]:>10.2f}{q[key]:>10.2f}"
                  f"{t[key] / q[key]:>10.2f}x  (lower is better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
