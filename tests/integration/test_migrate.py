"""Live migration in the lab: a guest with a disk on shared storage and a
NIC on the lab's bridge moves from host 0 to host 1 and back while it runs
the dirtier, the heartbeat, a counter appending to its disk and an echo
service that a client in the client namespace keeps busy over one TCP
connection (and pings). After each move the connection still works with no
byte lost or repeated, the dirtier finds every page as it last wrote it,
the counter file has no gap or repeat, the heartbeat goes on, the bridge
has learnt the guest's new port, the source VMM has exited and the
destination runs. Once with one hart, once with two, once with 2 GiB."""
import re
import signal
import subprocess
import time

import pytest

from migrate_lab import GUEST_IP, ECHO_PORT, EchoClient, Lab, MovingVm

CONFIGS = {
    "1cpu-256M": dict(cpus=1, memory="256M"),
    "2cpus-256M": dict(cpus=2, memory="256M"),
    "1cpu-2G": dict(cpus=1, memory="2G"),
}


@pytest.fixture(scope="module")
def lab():
    with Lab(2) as lab:
        yield lab


def ping_summary(text):
    m = re.search(r"(\d+) packets transmitted, (\d+) received", text)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def check_guest(g, client, before_counter):
    """What must hold after every move."""
    assert g.bridge_port() == g.host, "the fabric bridge did not learn the guest's new port"
    verdict = g.dirtier_verified()
    assert "verify ok" in verdict, verdict
    n = g.counter_lines()
    assert n > before_counter, f"the counter did not go on: {n} lines, {before_counter} before"
    assert g.heartbeat_grows(), "no heartbeat from the guest after the move"
    assert client.proc.poll() is None, "the echo client stopped:\n" + "\n".join(client.stderr_lines)
    # The guest answers on the network from where it is now.
    g.lab.client.run("ping", "-c", "2", "-W", "2", GUEST_IP, timeout=30)
    return n


@pytest.mark.parametrize("config", list(CONFIGS))
def test_there_and_back(lab, tmp_path, config):
    g = MovingVm(lab, tmp_path, **CONFIGS[config]).boot(host=0)
    client = pinger = None
    try:
        client = EchoClient(lab.client, GUEST_IP, ECHO_PORT, interval_ms=10).start()
        client.wait_connected()
        pinger = lab.client.popen("ping", "-i", "0.005", "-q", GUEST_IP, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        time.sleep(0.5)
        counter = g.counter_lines()
        reports = []
        for dest in (1, 0):
            time.sleep(1)     # let the dirtier and the client run on this host
            # --verify: the destination also checks all of guest RAM
            # against the source's digest before the guest may run there.
            st = g.move_to(dest, "--verify")
            reports.append(st)
            assert st["downtime_ms"] < 2000, st
            assert st["pass"] >= 1 and st["bytes_sent"] > 0, st
            assert "guest RAM verified" in g.vm.log_text(), g.vm.log_text()
            counter = check_guest(g, client, counter)
            assert g.history[-1][1].proc.returncode == 0
        summary = client.stop()
        pinger.send_signal(signal.SIGINT)
        sent, received = ping_summary(pinger.communicate(timeout=30)[0])
        print(f"{config}: moves {[(r['elapsed_ms'], r['downtime_ms'], r['bytes_sent'], r['pass']) for r in reports]}"
              f" echo {summary} ping {received}/{sent}")
        assert summary["ok"], summary
        assert summary["unanswered"] == 0 and summary["errors"] == 0, summary
        assert summary["replies"] == summary["lines_sent"] > 100, summary
        assert received > 0 and sent - received < sent // 2, (sent, received)
        # What the guest wrote reached the shared disk, in order.
        g.vm.sh("kill $(cat /tmp/counter.pid); sleep 0.2")
        n = g.counter_lines()
        g.vm.sh("umount /mnt")
        assert g.vm.api("stop")["ok"]
        assert g.vm.wait_exit(30) == 0
        out = subprocess.run(["debugfs", "-R", "cat /counter.log", str(g.disk)],
                             capture_output=True, text=True, check=True).stdout
        lines = out.split()
        assert lines == [str(i) for i in range(1, len(lines) + 1)], lines[-5:]
        assert len(lines) >= n
    finally:
        if pinger and pinger.poll() is None:
            pinger.kill()
            pinger.communicate()
        if client:
            client.kill()
        g.close()


def test_paused_guest_stays_paused(lab, tmp_path):
    """A guest the operator paused arrives paused, and runs on when resumed."""
    g = MovingVm(lab, tmp_path, dirtier=None).boot(host=0)
    try:
        before = g.counter_lines()
        assert g.vm.api("pause")["ok"]
        g.move_to(1)
        assert g.vm.api("status")["result"]["state"] == "paused"
        assert not g.heartbeat_grows(0.5), "the guest runs although it arrived paused"
        assert g.vm.api("resume")["ok"]
        assert g.heartbeat_grows()
        assert g.counter_lines() > before
    finally:
        g.close()
