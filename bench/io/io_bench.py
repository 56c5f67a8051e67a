#!/usr/bin/env python3
"""io_bench: disk and network throughput of the same Debian guest on tern and
on qemu-system-riscv64 (TCG, -M virt, virtio-blk-device and virtio-net-device
on a TAP), side by side in one run.

Inside a network namespace made for the run, each VMM boots the guest with a
fresh sparse raw image and a TAP, then:
  disk: diskbench (O_DIRECT) seqwrite and seqread of 1 MiB requests,
        randwrite and randread of 4 KiB requests at random offsets
  net:  guest -> host and host -> guest TCP, zeros from the sender,
        timed by the host end (netpeer.py)
Prints every figure, the tern/QEMU ratio and the exact commands."""
import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from netlab import Namespace  # noqa: E402
from ternvm import KERNEL, INITRD, Vm  # noqa: E402

OPENSBI = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin"
HOST_IP, GUEST_IP, MAC = "10.78.0.1", "10.78.0.2", "52:54:00:78:00:02"


class QemuVm(Vm):
    """Drives qemu-system-riscv64 through the same console and shell helpers."""

    def command(self):
        mem = self.memory.rstrip("MmBb")
        cmd = ["qemu-system-riscv64", "-M", "virt", "-m", mem, "-smp", str(self.cpus),
               "-display", "none", "-monitor", "none", "-bios", OPENSBI,
               "-kernel", str(KERNEL), "-initrd", str(INITRD),
               "-chardev", f"socket,id=con,path={self.console_path},server=on,wait=off",
               "-serial", "chardev:con",
               "-append", f"console=ttyS0 {self.cmdline}"]
        for i, d in enumerate(self.disks):
            cmd += ["-drive", f"file={d},format=raw,if=none,id=d{i}",
                    "-device", f"virtio-blk-device,drive=d{i}"]
        for i, n in enumerate(self.nets):
            opts = dict(kv.split("=", 1) for kv in n.split(","))
            cmd += ["-netdev", f"tap,id=n{i},ifname={opts['tap']},script=no,downscript=no",
                    "-device", f"virtio-net-device,netdev=n{i},mac={opts.get('mac', MAC)}"]
        return (self.netns.prefix() if self.netns else []) + cmd


def disk_figures(vm, args):
    res = {}
    for mode, extra in (("seqwrite", ""), ("seqread", ""), ("randwrite", f" {args.seconds}"),
                        ("randread", f" {args.seconds}")):
        out = vm.sh(f"diskbench /dev/vda {mode} {args.disk_mib}{extra}", timeout=900)
        m = re.search(r"mbps=([\d.]+) iops=(\d+)", out)
        if not m:
            raise RuntimeError(f"diskbench {mode}: {out}")
        res[mode] = float(m.group(2)) if mode.startswith("rand") else float(m.group(1))
    return res


def peer(ns, *a):
    return ns.popen(sys.executable, REPO / "tests" / "integration" / "netpeer.py", *a,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def net_figures(vm, ns, args):
    total = args.net_mib << 20
    p = peer(ns, "recv", 5001)
    assert p.stdout.readline().strip() == "LISTENING"
    vm.sh(f"dd if=/dev/zero bs=1M count={args.net_mib} 2>/dev/null | netxfer send {HOST_IP} 5001",
          timeout=900)
    n, _, secs = p.communicate(timeout=120)[0].split()
    up = int(n) / float(secs) / 1e6
    vm.sh("netxfer recv 5002 < /dev/null > /dev/null 2>/tmp/rx.log &")
    time.sleep(0.5)
    n, _, secs = peer(ns, "send", GUEST_IP, 5002, total).communicate(timeout=900)[0].split()
    down = int(n) / float(secs) / 1e6
    return {"net_up": up, "net_down": down}


def measure(cls, name, ns, args, workdir):
    img = workdir / f"{name}.img"
    with open(img, "wb") as f:
        f.truncate(max(args.disk_mib, 64) << 21)
    vm = cls(workdir / name, cpus=args.cpus, memory=args.memory, netns=ns,
             disks=[img], nets=[f"tap=tap0,mac={MAC}"], cmdline=f"tern.ip={GUEST_IP}/24")
    print(f"# {name}: {shlex.join(vm.command())}", flush=True)
    try:
        vm.boot(timeout=300)
        res = disk_figures(vm, args)
        res.update(net_figures(vm, ns, args))
        return res
    finally:
        vm.close()
        img.unlink()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--memory", default="256M")
    ap.add_argument("--disk-mib", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--net-mib", type=int, default=128)
    ap.add_argument("--workdir", default="/tmp/tern-io-bench")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    print(f"# io benchmark: --cpus {args.cpus} --memory {args.memory}, disk {args.disk_mib} MiB "
          f"sequential / {args.seconds}s random, net {args.net_mib} MiB each way")
    print(f"# in the guest: diskbench /dev/vda seqwrite|seqread {args.disk_mib}; "
          f"diskbench /dev/vda randwrite|randread {args.disk_mib} {args.seconds}; "
          f"dd if=/dev/zero | netxfer send {HOST_IP} 5001; netxfer recv 5002")
    ns = Namespace()
    try:
        ns.add_tap("tap0", f"{HOST_IP}/24")
        results = {"tern": measure(Vm, "tern", ns, args, workdir),
                   "qemu": measure(QemuVm, "qemu", ns, args, workdir)}
    finally:
        ns.close()

    t, q = results["tern"], results["qemu"]
    print(f"{'metric':<30}{'tern':>10}{'qemu':>10}{'tern/qemu':>11}")
    for key, label in (("seqwrite", "disk seq write 1M (MB/s)"), ("seqread", "disk seq read 1M (MB/s)"),
                       ("randwrite", "disk rand write 4K (IOPS)"), ("randread", "disk rand read 4K (IOPS)"),
                       ("net_up", "TCP guest->host (MB/s)"), ("net_down", "TCP host->guest (MB/s)")):
        print(f"{label:<30}{t[key]:>10.1f}{q[key]:>10.1f}{t[key] / q[key]:>10.2f}x  (higher is better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
