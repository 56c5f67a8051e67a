#!/usr/bin/env python3
"""smoke_qemu.py: boots the built guest in qemu-system-riscv64 (the reference
machine, not tern) and checks /init and the tools, so that a guest problem can
be told apart from a tern problem. Needs qemu-system-misc, opensbi and
e2fsprogs (mkfs.ext4 -d, no root needed).

    GUEST_DIR=~/.cache/tern/guest python3 guest/smoke_qemu.py
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

GUEST_DIR = Path(os.environ.get("GUEST_DIR", Path.home() / ".cache" / "tern" / "guest"))
FIRMWARE = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin"


class Guest:
    """One QEMU process with ttyS0 on a unix socket, read by a thread."""

    def __init__(self, workdir, cmdline, extra=()):
        sock = Path(workdir) / "console.sock"
        self.log = open(Path(workdir) / "qemu.log", "wb")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            ["qemu-system-riscv64", "-M", "virt", "-m", "256", "-smp", "2",
             "-display", "none", "-monitor", "none", "-bios", FIRMWARE,
             "-kernel", str(GUEST_DIR / "Image"), "-initrd", str(GUEST_DIR / "initrd.img"),
             "-append", f"console=ttyS0 {cmdline}",
             "-serial", f"unix:{sock},server=on,wait=on", *extra],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(str(sock))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)
        self.buf = bytearray()
        self.cond = threading.Condition()
        self.n = 0
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        while data := self.sock.recv(65536):
            with self.cond:
                self.buf += data
                self.cond.notify_all()

    def wait_for(self, pattern, timeout=120, start=0):
        rx = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        with self.cond:
            while not (m := rx.search(self.buf, start)):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    tail = self.buf[-2000:].decode(errors="replace")
                    raise AssertionError(f"no {pattern!r} on the console; tail:\n{tail}")
                self.cond.wait(0.2)
            return m

    def sh(self, command, timeout=60):
        """Runs a command; returns its output. Framed by start and end markers
        printed by the command itself, so echoes of the typed line don't count."""
        self.n += 1
        start = self.mark()
        self.sock.sendall(f"echo __S{self.n}__; {command}; echo __E{self.n}__ $?\n".encode())
        s = self.wait_for(rf"__S{self.n}__\r?\n", timeout, start)
        e = self.wait_for(rf"__E{self.n}__ (\d+)\r?\n", timeout, s.end())
        out = self.buf[s.end():e.start()].decode(errors="replace").replace("\r", "")
        if e.group(1) != b"0":
            raise AssertionError(f"{command!r} exited {e.group(1).decode()}:\n{out}")
        return out

    def mark(self):
        with self.cond:
            return len(self.buf)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.sock.close()
        self.log.close()


def check(name, cond, detail=""):
    print(f"{'ok  ' if cond else 'FAIL'} {name}" + (f": {detail}" if detail and not cond else ""))
    if not cond:
        sys.exit(1)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        files = Path(tmp) / "files"
        files.mkdir()
        (files / "hello.txt").write_text("hello from the disk\n")
        disk = Path(tmp) / "disk.img"
        subprocess.run(["mkfs.ext4", "-q", "-d", str(files), str(disk), "32M"], check=True,
                       stdout=subprocess.DEVNULL)

        g = Guest(tmp, "tern.disk=/dev/vda tern.mount=/mnt/data tern.ip=10.0.2.15/24 "
                       "tern.gw=10.0.2.2 tern.heartbeat=50000 tern.heartbeat_dev=/tmp/hb "
                       "tern.heartbeat_lines=1 tern.dirtier=-s,8,-r,4,-c",
                  ["-drive", f"file={disk},format=raw,if=none,id=d0",
                   "-device", "virtio-blk-device,drive=d0",
                   "-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0"])
        try:
            g.wait_for("TERN-INIT-REACHED")
            check(f"TERN-INIT-REACHED after {time.monotonic() - g.t0:.1f}s", True)
            g.wait_for("TERN-READY")
            check(f"TERN-READY after {time.monotonic() - g.t0:.1f}s", True)
            console = g.buf.decode(errors="replace")
            check("no TERN-ERROR", "TERN-ERROR" not in console,
                  "\n".join(l for l in console.splitlines() if "TERN-ERROR" in l))
            mods = g.sh("cat /proc/modules")
            for m in ("virtio_mmio", "virtio_blk", "virtio_net", "ext4"):
                check(f"module {m} loaded", re.search(rf"^{m} ", mods, re.M) is not None, mods)
            check("disk mounted", g.sh("cat /mnt/data/hello.txt") == "hello from the disk\n")
            g.sh("echo new > /mnt/data/new.txt && sync")
            check("network up", "10.0.2.15/24" in g.sh("ip addr show eth0"))
            check("default route", "default via 10.0.2.2" in g.sh("ip route"))
            check("job control", "on" in g.sh("set -o | grep monitor"))
            check("tty is ttyS0", g.sh("tty").strip() == "/dev/ttyS0")
            time.sleep(1)
            hb = g.sh("cat /tmp/hb").splitlines()
            check("heartbeat lines", len(hb) >= 5 and hb[0].startswith("HB 0 "), hb[:3])
            out = g.sh("kill $(cat /tmp/dirtier.pid); sleep 1; cat /tmp/dirtier.log")
            check("dirtier stops with a checksum", re.search(r"checksum [0-9a-f]{16}", out) is not None, out)
            out = g.sh("dirtier -s 16 -p rand -t 1 -c")
            check("dirtier in the foreground", "checksum" in out, out)
            out = g.sh("heartbeat -i 20000 -n 5 -d /tmp/hb2 && cat /tmp/hb2")
            check("heartbeat bytes", out.strip() == ".....", out)
            start = g.mark()
            g.sock.sendall(b"sleep 60\n")
            time.sleep(1)
            g.sock.sendall(b"\x03")
            g.wait_for(r"\^C", 10, start)
            check("Ctrl-C interrupts a foreground job", "interrupted" in g.sh("echo interrupted"))
            g.sock.sendall(b"exit\n")
            g.wait_for("shell exited", 20)
            check("shell restarts after exit", "again" in g.sh("echo again"))
            g.sock.sendall(b"poweroff -f\n")
            check("poweroff", g.proc.wait(30) == 0)
        finally:
            g.close()

        g = Guest(tmp, "tern.modules=0 tern.run=echo,one-shot")
        try:
            g.wait_for("TERN-RUN-EXIT 0")
            check("tern.run powers off", g.proc.wait(30) == 0 and b"one-shot" in g.buf)
        finally:
            g.close()
    print("guest smoke test passed")


if __name__ == "__main__":
    main()
