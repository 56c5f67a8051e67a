"""Synchronous replication (Remus-style, docs/replication.md) in the lab:
the primary on host 0, the standby on host 1, a client holding a TCP echo
session with the guest (its echoctr numbers every reply from a counter in
guest memory). With `sync`, what the guest sends leaves host 0 only once
the epoch that produced it is on the standby. The primary is SIGKILLed in
the middle of the session and the standby fails over: the client's
session goes on, every reply it ever got is one the replica's state
agrees with (the counter never goes back, no reply is lost or repeated),
every time, over RUNS runs (TERN_DR_RUNS, default 3).

Beside it, a second client asks the guest's record service (`diskrec
serve`) for records: each reply acknowledges a numbered, checksummed
record written and fdatasynced to the guest's disk, which the standby
replicates too. After the failover every record the client had an
acknowledgement for is on the replica's disk, intact, none torn."""
import os
import signal
import sys
import time

import pytest

from ternvm import REPO, Vm, free_port, wait_for
from test_replication import records

sys.path.insert(0, str(REPO / "tests" / "lab"))
from lab import Lab  # noqa: E402
from echo_client import EchoClient  # noqa: E402

RUNS = int(os.environ.get("TERN_DR_RUNS", "3"))
EPOCH_MS = 200
GUEST_IP = "10.90.0.201"
MAC = "52:54:00:74:00:21"
TAP = "tlrep0"
ECHO_PORT = 7000
RECORD_PORT = 7001
DISK_BYTES = 64 << 20


@pytest.fixture(scope="module")
def lab():
    with Lab(2) as lab:
        for h in lab.hosts:
            h.add_vm_tap(TAP)
        yield lab


@pytest.mark.parametrize("run", range(RUNS))
def test_client_never_sees_lost_state(lab, tmp_path, run):
    disk = tmp_path / "primary.img"
    with open(disk, "wb") as f:
        f.truncate(DISK_BYTES)
    replica_disk = tmp_path / "standby" / "replica.img"
    primary = Vm(tmp_path / "primary", memory="256M", netns=lab.hosts[0], disks=[disk],
                 nets=[f"tap={TAP},mac={MAC}"],
                 cmdline=f"tern.ip={GUEST_IP}/24 tern.echoctr={ECHO_PORT} "
                         "tern.dirtier=-s,16,-r,8").boot()
    primary.sh(f"diskrec serve /dev/vda -p {RECORD_PORT} > /tmp/serve.log 2>&1 &")
    uri = f"tcp:{lab.hosts[1].ip}:{free_port()}"
    standby = Vm(tmp_path / "standby", replica=uri, netns=lab.hosts[1], disks=[replica_disk],
                 nets=[f"tap={TAP},mac={MAC}"]).start().wait_listening()
    client = EchoClient(lab.client, GUEST_IP, ECHO_PORT, interval_ms=20)
    writer = EchoClient(lab.client, GUEST_IP, RECORD_PORT, interval_ms=20)
    try:
        r = primary.api("replicate", dict(to=uri, epoch_ms=EPOCH_MS, sync=True,
                                          copy_storage=True))
        assert r["ok"] and r["result"]["sync"] is True, r
        wait_for("protection", lambda: primary.api("replicate-status")["result"]["epoch"] >= 2,
                 60)
        client.start()
        writer.start()
        client.wait_connected(timeout=60)
        writer.wait_connected(timeout=60)
        time.sleep(1.0 + run * 0.137)       # a different moment in each run
        st = primary.api("replicate-status")["result"]
        primary.proc.send_signal(signal.SIGKILL)
        primary.proc.wait(30)
        t_kill = time.monotonic()
        wait_for("the standby to see the link lost",
                 lambda: standby.api("replica-status")["result"]["phase"] == "link-lost", 40)
        r = standby.api("failover")
        assert r["ok"], r
        standby.attach(timeout=60)
        # The sessions go on against the replica: new replies come.
        time.sleep(3)
        summary = client.stop()
        written = writer.stop()
        on_disk, torn = records(replica_disk)
        print(f"\nrun {run}: killed at epoch {st['epoch']} (pause max {st['pause_us_max']} us); "
              f"failover {time.monotonic() - t_kill:.1f} s; echo {summary}; "
              f"records acknowledged {written['replies']}, on the replica's disk {on_disk}")
        assert summary["errors"] == 0 and summary["first_error"] is None, summary
        assert summary["ok"] and summary["unanswered"] == 0, summary
        assert summary["replies"] > 0 and summary["max_gap_ms"] > 0, summary
        assert written["ok"] and written["errors"] == 0, written
        assert written["replies"] > 0 and on_disk >= written["replies"] and not torn, \
            (written, on_disk, torn)
    finally:
        for c in (client, writer):
            c.stop() if c.proc and c.proc.poll() is None else None
        standby.close()
        primary.close()
