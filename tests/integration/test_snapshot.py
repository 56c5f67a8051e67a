"""Snapshot and restore with the Debian guest: a VM running the dirtier, a
counter, the heartbeat, a disk and a network card is snapshotted, its VMM
ends, and a new VMM continues it: the counter goes on from where it was,
the heartbeat resumes, the disk and network work, and the dirtier's working
set has the checksum it had. Ten cycles in a row; one and two harts; guest
time; and snapshots that must be refused."""
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from netlab import Namespace
from ternvm import REPO, Vm, run_tern

HOST_IP, GUEST_IP = "10.79.0.1", "10.79.0.2"
# Written aside and renamed: `echo > file` truncates first, and a reader
# in between read an empty counter (seen once in CI).
COUNTER = ("(i=0; while true; do i=$((i+1)); echo $i > /tmp/counter.new; "
           "mv /tmp/counter.new /tmp/counter; sleep 0.1; done) "
           "</dev/null >/dev/null 2>&1 &")


@pytest.fixture(scope="module")
def ns():
    n = Namespace()
    n.add_tap("tap0", f"{HOST_IP}/24")
    yield n
    n.close()


class Guest:
    """One guest across several VMM processes: each restore replaces the Vm."""

    def __init__(self, tmp, ns, cpus):
        self.tmp, self.ns, self.cpus = tmp, ns, cpus
        self.disk = tmp / "data.img"
        subprocess.run(["bash", str(REPO / "scripts" / "mkdisk.sh"), str(self.disk), "32M"],
                       check=True, stdout=subprocess.DEVNULL)
        self.generation = 0
        self.vm = self._vm(cmdline="tern.heartbeat=20000 tern.disk=/dev/vda tern.mount=/mnt "
                                   f"tern.ip={GUEST_IP}/24 tern.dirtier=-s,16,-r,8,-c").boot()

    def _vm(self, **kw):
        self.generation += 1
        return Vm(self.tmp / f"gen{self.generation}", cpus=self.cpus, memory="256M",
                  disks=[self.disk], nets=["tap=tap0"], netns=self.ns, **kw)

    def cycle(self):
        """Snapshot with --stop, then continue in a new VMM; returns the reply."""
        path = self.tmp / "vm.snap"
        reply = self.vm.snapshot(path, stop=True)
        assert self.vm.wait_exit(60) == 0
        self.vm.close()
        self.vm = self._vm(restore=path).resumed()
        return reply

    def counter(self):
        return int(self.vm.sh("cat /tmp/counter").strip())

    def heartbeat_grows(self, seconds=1.0):
        p = self.vm.serial1_path
        before = p.stat().st_size if p.exists() else 0
        time.sleep(seconds)
        return (p.stat().st_size if p.exists() else 0) > before

    def dirtier_checksum(self):
        """Freezes the dirtier (SIGUSR1) and returns the checksum it prints.
        A frozen dirtier gets SIGUSR1 before SIGCONT, so it checksums
        before it writes again."""
        self.vm.sh("kill -USR1 $(cat /tmp/dirtier.pid); kill -CONT $(cat /tmp/dirtier.pid)")
        out = self.vm.sh("while ! grep -q frozen /tmp/dirtier.log; do sleep 0.2; done; "
                         "grep frozen /tmp/dirtier.log; : > /tmp/dirtier.log", timeout=120)
        return re.search(r"checksum ([0-9a-f]{16}) \(frozen\)", out).group(1)

    def close(self):
        self.vm.close()


@pytest.fixture(scope="module", params=[1, 2], ids=["cpus1", "cpus2"])
def guest(request, tmp_path_factory, ns):
    g = Guest(tmp_path_factory.mktemp(f"snap{request.param}"), ns, request.param)
    yield g
    g.close()


def test_restored_guest_continues(guest, ns):
    g = guest
    g.vm.sh(COUNTER)
    g.vm.sh("echo before-snapshot > /mnt/before.txt && sync")
    time.sleep(1)
    frozen = g.dirtier_checksum()
    n1 = g.counter()
    assert g.heartbeat_grows()

    reply = g.cycle()
    assert reply["bytes"] > 0 and reply["pages_data"] > 0
    assert reply["pages_never_used"] > 0   # untouched memory is not sent

    n2 = g.counter()
    assert n1 <= n2 < n1 + 30, (n1, n2)    # continued, not restarted
    time.sleep(1)
    assert g.counter() > n2
    assert g.heartbeat_grows()
    assert g.vm.sh("cat /mnt/before.txt").strip() == "before-snapshot"
    g.vm.sh("echo after-restore > /mnt/after.txt && sync && cat /mnt/after.txt")
    out = ns.run("ping", "-c", "2", "-W", "5", GUEST_IP, timeout=60)
    assert re.search(r"2 packets transmitted, 2 (packets )?received", out), out
    # the dirtier's memory came back exactly, and it runs on
    assert g.dirtier_checksum() == frozen
    g.vm.sh("kill -CONT $(cat /tmp/dirtier.pid)")
    assert "TERN-ERROR" not in g.vm.console.text()


def test_ten_cycles_in_a_row(guest):
    g = guest
    last = g.counter()
    for i in range(10):
        g.cycle()
        now = g.counter()
        assert now >= last, f"cycle {i}: counter went back from {last} to {now}"
        last = now
        assert g.vm.sh(f"echo cycle-{i}").strip() == f"cycle-{i}"
    time.sleep(1)
    assert g.counter() > last
    assert g.heartbeat_grows()
    dmesg = g.vm.sh("dmesg")
    assert not re.search(r"soft lockup|rcu.*stall|Oops|BUG:", dmesg), dmesg[-2000:]


def test_guest_time_across_restore(guest):
    """CLOCK_MONOTONIC continues from where it stopped (never back, and not
    forward by the time the VM was gone); timers keep firing; the guest's
    wall clock falls behind by the gap, as docs/migration-format.md says."""
    g = guest
    up1 = float(g.vm.sh("cat /proc/uptime").split()[0])
    wall1 = int(g.vm.sh("date +%s"))
    path = g.tmp / "time.snap"
    g.vm.snapshot(path, stop=True)
    assert g.vm.wait_exit(60) == 0
    g.vm.close()
    gap = 4.0
    time.sleep(gap)
    g.vm = g._vm(restore=path).resumed()
    up2 = float(g.vm.sh("cat /proc/uptime").split()[0])
    wall2 = int(g.vm.sh("date +%s"))
    assert up2 >= up1
    assert up2 - up1 < gap - 1, (up1, up2)
    assert abs((wall2 - wall1) - (up2 - up1)) <= 2
    t0 = time.monotonic()
    g.vm.sh("sleep 1")
    assert 0.9 < time.monotonic() - t0 < 5


# ---- refused snapshots ------------------------------------------------------------

@pytest.fixture(scope="module")
def big_snapshot(vm_factory, tmp_path_factory):
    """A snapshot of a 1 GiB VM."""
    d = tmp_path_factory.mktemp("bigsnap")
    vm = vm_factory("big", cpus=1, memory="1G").boot()
    vm.snapshot(d / "big.snap", stop=True)
    assert vm.wait_exit(60) == 0
    return d / "big.snap"


def restore_fails(tmp_path, snap, *extra):
    api = tmp_path / "api.sock"
    out = tmp_path / "console.out"
    p = subprocess.run([os.environ.get("TERN_BIN", str(REPO / "build" / "tern")), "vm", "run",
                        "--restore", str(snap), "--console", f"file:{out}",
                        "--api-socket", str(api), *extra],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert p.returncode != 0
    assert not api.exists()                       # nothing started
    assert not out.exists() or out.read_bytes() == b""
    return p.stderr.decode(errors="replace")


def test_restore_with_other_memory_size_is_refused(tmp_path, big_snapshot):
    err = restore_fails(tmp_path, big_snapshot, "--memory", "2G")
    assert "1024 MiB" in err and "2048 MiB" in err


def test_restore_with_other_cpu_count_is_refused(tmp_path, big_snapshot):
    err = restore_fails(tmp_path, big_snapshot, "--cpus", "2")
    assert "1 harts" in err


def test_restore_with_other_devices_is_refused(tmp_path, big_snapshot):
    disk = tmp_path / "extra.img"
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    err = restore_fails(tmp_path, big_snapshot, "--disk", str(disk))
    assert "devices" in err and "--disk" in err


def test_truncated_snapshot_is_refused(tmp_path, big_snapshot):
    data = big_snapshot.read_bytes()
    for cut in (10, 100, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.snap"
        bad.write_bytes(data[:cut])
        err = restore_fails(tmp_path, bad)
        assert "truncated" in err, err


def test_flipped_byte_is_refused(tmp_path, big_snapshot):
    data = bytearray(big_snapshot.read_bytes())
    for where in (40, len(data) // 3, len(data) - 20):
        bad = tmp_path / f"flip{where}.snap"
        flipped = bytearray(data)
        flipped[where] ^= 0x10
        bad.write_bytes(flipped)
        err = restore_fails(tmp_path, bad)
        assert "corrupt" in err or "checksum" in err, err


def test_not_a_snapshot_is_refused(tmp_path):
    bad = tmp_path / "junk.snap"
    bad.write_bytes(os.urandom(4096))
    err = restore_fails(tmp_path, bad)
    assert "not a tern VM state stream" in err


def test_restore_rejects_kernel_option(tmp_path, big_snapshot):
    rc, out = run_tern("vm", "run", "--restore", big_snapshot, "--kernel", "/nope")
    assert rc == 2 and "do not apply" in out
