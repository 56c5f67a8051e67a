"""Continuous replication to a standby and fail-over (docs/replication.md),
VMM to VMM on loopback, with TLS: a guest dirtying memory and appending
numbered, checksummed, fsynced records to its local disk is replicated,
disk included, in 300 ms epochs with an RPO of 1 s to a `tern vm run
--replica`; the source is SIGKILLed; the standby fails over and the guest
runs on from the last complete epoch: its shell answers, the dirtier finds
every page as it last wrote it (the replica is one consistent moment of
the guest), every record acknowledged more than the RPO before the kill
is in the standby's disk and intact, no record there is torn, and the
heartbeat shows how much guest time was lost (bounded by an epoch plus
its transfer).

Then fail-back: the VM, now at the standby site, is replicated back to a
new standby at home until protected, the replication is stopped, and a
planned live migration (disk included) brings it home, records and
memory intact.

Also: requests that would clash with the replication (a migration, a
second replication, bad epochs) are refused and change nothing; a
replication whose standby is not there fails, naming why, and the VM runs
on."""
import os
import re
import signal
import time
import zlib

import pytest

from ternvm import Vm, free_port, heartbeats, wait_for

EPOCH_MS = 300
RPO_MS = 1000
HEARTBEAT_US = 20000
DISK_BYTES = 64 << 20
RECORD = 4096


def records(path):
    """The records at the start of a disk image: (how many in a row are
    intact, whether one after them is torn)."""
    n = 0
    with open(path, "rb") as f:
        while True:
            rec = f.read(RECORD)
            if len(rec) < RECORD or rec[:8] != b"TERNREC1":
                return n, False
            if int.from_bytes(rec[8:16], "little") != n or \
                    zlib.crc32(rec[:RECORD - 4]) != int.from_bytes(rec[RECORD - 4:], "little"):
                return n, True
            n += 1


def acked(vm):
    m = re.findall(r"acked (\d+)", vm.sh("tail -1 /tmp/append.log"))
    return int(m[-1]) if m else 0


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    work = tmp_path_factory.mktemp("replica")
    disk = work / "primary.img"
    with open(disk, "wb") as f:
        f.truncate(DISK_BYTES)
    vm = Vm(work / "src", memory="256M", disks=[disk],
            cmdline=f"tern.heartbeat={HEARTBEAT_US} tern.heartbeat_lines=1 "
                    "tern.dirtier=-s,32,-r,16").boot()
    vm.work = work
    vm.sh("diskrec append /dev/vda -r 50 > /tmp/append.log 2>&1 & echo $! > /tmp/append.pid")
    vm.others = []                  # every other VMM of the module, closed at the end
    yield vm
    for other in vm.others:
        other.close()
    vm.close()


def test_nowhere_to_replicate_to(source):
    port = free_port()
    r = source.api("replicate", dict(to=f"tcp:127.0.0.1:{port}", epoch_ms=EPOCH_MS))
    assert r["ok"], r
    st = wait_for("the replication to fail",
                  lambda: (lambda s: s if s["phase"] == "failed" else None)(
                      source.api("replicate-status")["result"]), 30)
    assert "127.0.0.1" in st["error"] and "refused" in st["error"].lower(), st
    assert source.api("status")["result"]["state"] == "running"
    source.sh("true")


def test_replicate_then_fail_over(source):
    port = free_port()
    uri = f"tcp:127.0.0.1:{port}"
    replica_disk = source.work / "standby" / "replica.img"
    standby = Vm(source.work / "standby", replica=uri, disks=[replica_disk]).start() \
        .wait_listening()
    source.others.append(standby)
    source.standby = standby
    source.replica_disk = replica_disk
    if True:
        bad = [({"to": uri, "epoch_ms": 5}, "epoch_ms"),
               ({"to": 7}, "to"),
               ({"to": uri, "colour": 1}, "colour")]
        for args, words in bad:
            r = source.api("replicate", dict(**args))
            assert not r["ok"] and words in r["error"]["message"], (args, r)
        r = source.api("replicate", dict(to=uri, epoch_ms=EPOCH_MS, rpo_ms=RPO_MS,
                                         copy_storage=True))
        assert r["ok"], r
        st = wait_for("five epochs with the RPO met", lambda: (lambda s: s if s["epoch"] >= 5
                                                              and s["rpo_met"] else None)(
            source.api("replicate-status")["result"]), 120)
        print(f"\nreplicating: {st}")
        assert st["phase"] == "protecting" and st["bytes_last_epoch"] > 0, st
        assert st["pause_us_max"] < 500000, st
        assert st["disk_bytes_last_epoch"] > 0, st          # the appender's records
        # What would clash is refused while it runs.
        r = source.api("replicate", dict(to=uri))
        assert not r["ok"] and "already replicated" in r["error"]["message"], r
        r = source.api("migrate", dict(to=f"tcp:127.0.0.1:{free_port()}"))
        assert not r["ok"] and "replicated" in r["error"]["message"], r
        rs = standby.api("replica-status")["result"]
        assert rs["consistent"] and rs["epoch"] >= 5, rs

        # The primary dies, more than the RPO after the appender said how
        # many records it had acknowledged.
        src_hb = heartbeats(source.serial1_path)
        safe = acked(source)
        assert safe > 0
        time.sleep(RPO_MS / 1000 + 0.5)
        source.proc.send_signal(signal.SIGKILL)
        source.proc.wait(30)
        last_seq, last_ns = heartbeats(source.serial1_path)[-1]
        rs = wait_for("the standby to see the link lost", lambda: (lambda s: s if s["phase"] ==
                                                                   "link-lost" else None)(
            standby.api("replica-status")["result"]), 40)
        r = standby.api("failover")
        assert r["ok"] and r["result"]["epoch"] == rs["epoch"], r
        standby.attach(timeout=60)
        assert standby.api("status")["result"]["state"] == "running"
        before = len(heartbeats(standby.serial1_path))
        wait_for("the heartbeat on the standby",
                 lambda: len(heartbeats(standby.serial1_path)) > before + 5, 30)
        first_seq, first_ns = heartbeats(standby.serial1_path)[0]
        # The replica went back to its last epoch: the beats after it are
        # lost, a bounded amount of guest time.
        lost_ms = (last_ns - first_ns) / 1e6
        print(f"failover from epoch {rs['epoch']}: guest time lost {lost_ms:.0f} ms "
              f"(beats {first_seq}..{last_seq} again; epochs of {EPOCH_MS} ms)")
        assert first_seq <= last_seq + 1 and lost_ms < EPOCH_MS + 3000, (first_seq, last_seq)
        # One consistent moment: the dirtier finds every page as it wrote it.
        standby.sh("kill -USR2 $(cat /tmp/dirtier.pid)")
        out = standby.sh("i=0; while ! grep -q verify /tmp/dirtier.log && [ $i -lt 300 ]; "
                         "do sleep 0.1; i=$((i+1)); done; grep verify /tmp/dirtier.log | tail -1",
                         timeout=120)
        assert "verify ok" in out, out
        assert len(src_hb) > 0
        # The disk: the replica got its name at the failover; every record
        # acknowledged more than the RPO before the kill is there, intact,
        # and none is torn. (The appender carries on from its epoch's state,
        # rewriting records past it, which is why the count may grow.)
        assert replica_disk.exists() and os.path.getsize(replica_disk) == DISK_BYTES
        n, torn = records(replica_disk)
        print(f"records: {safe} acknowledged {RPO_MS + 500} ms before the kill; {n} intact "
              "in the replica's disk")
        assert n >= safe and not torn, (n, safe, torn)
        assert not list((source.work / "standby").glob(".*tmp*"))


def test_fail_back_home(source):
    """Reverse the replication (the failed-over VM protected by a standby
    at home), then a planned handover home: one last epoch taken with the
    guest paused, the standby at home runs from it, nothing lost."""
    vm = source.standby
    assert vm.api("status")["result"]["state"] == "running"
    home = source.work / "home"
    uri = f"tcp:127.0.0.1:{free_port()}"
    home_disk = home / "standby" / "disk.img"
    back = Vm(home / "standby", replica=uri, disks=[home_disk]).start().wait_listening()
    source.others.append(back)
    # A last epoch only once the bulk copy is done.
    # Compressed on the wire (zstd after each pause), whatever it costs.
    r = vm.api("replicate", dict(to=uri, epoch_ms=EPOCH_MS, copy_storage=True, compress="on"))
    assert r["ok"] and r["result"]["compress"] == "on", r
    r = vm.api("replicate", dict(to=uri, compress="zstd"))
    assert not r["ok"] and "compress" in r["error"]["message"], r
    r = vm.api("replicate-stop", dict(final=True))
    assert not r["ok"] and "bulk copy" in r["error"]["message"], r
    r = vm.api("replicate-stop", dict(final="yes"))
    assert not r["ok"] and "final" in r["error"]["message"], r
    wait_for("the way back protected", lambda: vm.api("replicate-status")["result"]["epoch"]
             >= 3, 120)
    # Every record acknowledged before the handover is in the last epoch.
    safe = acked(vm)
    r = vm.api("replicate-stop", dict(final=True))
    assert r["ok"] and r["result"]["phase"] == "completed", r
    assert r["result"]["epochs_compressed"] == r["result"]["epoch"] + 1, r
    assert r["result"]["bytes_total"] < r["result"]["stream_bytes_total"] / 2, r
    print(f"\nway home compressed: {r['result']['stream_bytes_total']} stream bytes in "
          f"{r['result']['bytes_total']} on the wire")
    assert vm.api("status")["result"]["state"] == "paused"
    last = r["result"]["epoch"]
    wait_for("the standby to see the link end",
             lambda: back.api("replica-status")["result"]["phase"] == "link-lost", 30)
    r = back.api("failover")
    assert r["ok"] and r["result"]["epoch"] == last, r
    assert vm.api("stop")["ok"]
    vm.proc.wait(30)
    back.attach(timeout=60)
    out = back.sh("kill -USR2 $(cat /tmp/dirtier.pid); i=0; while [ $(grep -c verify "
                  "/tmp/dirtier.log) -lt 2 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; "
                  "grep verify /tmp/dirtier.log | tail -1", timeout=120)
    assert "verify ok" in out, out
    assert acked(back) >= safe
    n, torn = records(home_disk)
    print(f"\nfail-back: home at epoch {last} with {n} intact records ({safe} acknowledged "
          f"before the handover)")
    assert n >= safe and not torn, (n, safe, torn)
