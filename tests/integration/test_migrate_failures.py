"""Live migration that fails, in the lab (docs/migration-protocol.md,
"Failure cases"): nothing listens where the source connects; the
destination is killed during the first pre-copy pass, during a later pass
and during the switch-over; the operator cancels; the destination's uplink
goes down mid-migration; the destination gets garbage instead of a state
stream, or a stream from a VM of another shape. Whatever fails, the guest must end up running in exactly one place
(still the source), intact, and the operator must be told why.

One guest (256 MiB, one hart, the dirtier, the heartbeat, a counter on the
shared disk, the echo service with a client in the client namespace kept
busy throughout) boots once on lab host 0 and lives through every test in
order; the last test migrates it to host 1 for real, to show that the
failures left nothing behind that stops a migration.

After every failure: the source's migrate-status ends "failed" (or
"cancelled") with an error naming the cause; the source VM runs and its
guest goes on (heartbeat, echo replies, counter with no gap, the dirtier
finds every page as it last wrote it); the fabric still finds the guest's
MAC behind host 0; the destination process has exited (or was killed)
without running the guest.

Pre-copy passes are made long enough to hit by a bandwidth limit
(--bandwidth 20 MiB/s: pass 1 of this guest takes 2.5 to 4 s; the dirtier
at 16 MiB/s keeps later passes around a second or two each). The whole
module takes about a minute."""
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time

import pytest

from migrate_lab import ECHO_PORT, GUEST_IP, EchoClient, Lab, MovingVm, next_port
from ternvm import REPO, run_tern

BANDWIDTH = "20"             # MiB/s, for passes long enough to hit
# The failures here are those of pre-copy (docs/migration-protocol.md):
# before GO the guest runs only on the source. The default strategy, auto,
# may switch to post-copy after a few passes, after which the guest runs on
# the destination (killing that one is post-copy's own failure case).
# Raw pages: deltas and compression would let pre-copy converge (the guest
# dirties few bytes per page), and these cases need it not to.
PRECOPY = ("--strategy", "precopy", "--delta", "off", "--compress", "off")
# Options for a migration that must not finish by itself before the test
# breaks it: no downtime limit the guest's dirtying could meet, no pass limit.
SLOW = (*PRECOPY, "--bandwidth", BANDWIDTH, "--downtime-ms", "1", "--max-passes", "100000")
STALL_TIMEOUT_S = 10         # STALL_TIMEOUT_MS in src/migration/outgoing.c, incoming.c
# A dead destination process closes its connection: the source must see
# that at once (EOF or reset), not after a timeout (10 s stall, 30 s READY).
DEAD_PEER_DETECTION_S = 5
FRAME_MAGIC = 0x434E5254     # "TRNC": control frames, destination to source
FRAME_ERROR = 2
# The destinations that get garbage never run a guest: cheap to sanitize.
ASAN_BIN = os.environ.get("TERN_ASAN_BIN", str(REPO / "build-asan" / "tern"))


class Guest:
    """What the module's tests share: the moving guest, the echo client
    and the last values the checks saw."""

    def __init__(self, lab, g, client):
        self.lab, self.g, self.client = lab, g, client
        self.counter = 0
        self.replies = 0
        self.destinations = []      # every destination Vm started, closed at the end

    def incoming(self, host=1, extra_args=(), binary=None, **kw):
        """Starts a destination VMM on `host`; returns (Vm, uri)."""
        g = self.g
        if g.host != 0 or g.vm.proc.poll() is not None:
            pytest.fail(f"the guest no longer runs on host 0 (host {g.host}, VMM "
                        f"status {g.vm.proc.poll()}): an earlier test went wrong")
        port = next_port()
        uri = f"tcp:{self.lab.hosts[host].ip}:{port}"
        dst = g._vm(host, incoming=uri, extra_args=list(extra_args), binary=binary, **kw)
        self.destinations.append(dst)
        dst.start().wait_listening()
        return dst, uri


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    with Lab(2) as lab:
        g = MovingVm(lab, tmp_path_factory.mktemp("failures"))
        client = None
        shared = None
        try:
            g.boot(host=0)
            client = EchoClient(lab.client, GUEST_IP, ECHO_PORT, interval_ms=20,
                                progress=0.5).start()
            client.wait_connected()
            shared = Guest(lab, g, client)
            shared.counter = g.counter_lines()
            yield shared
        finally:
            if client:
                client.kill()
            for dst in shared.destinations if shared else ():
                dst.close()
            g.close()


# ---- helpers ----------------------------------------------------------------------


def echo_progress(client):
    """(replies, errors) from the echo client's last progress line."""
    for line in reversed(client.stderr_lines):
        m = re.search(r"replies (\d+) errors (\d+)", line)
        if m:
            return int(m.group(1)), int(m.group(2))
    return 0, 0


def wait_status(s, pred, what, timeout=60):
    """Polls the source's migrate-status until pred(status); returns it."""
    deadline = time.monotonic() + timeout
    while True:
        st = s.g.status()
        if pred(st):
            return st
        if st["phase"] in ("completed", "failed", "cancelled", "unknown"):
            raise AssertionError(f"the migration ended before {what}: {st}\n"
                                 + s.g.vm.log_text()[-3000:])
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout}s: {st}")
        time.sleep(0.02)


def start_migration(s, uri, *options):
    reply = s.g.migrate(uri, *options)
    assert reply["phase"] in ("setup", "precopy"), reply
    return reply


def in_first_pass(s):
    """Waits until the migration is well inside pass 1 (50 MB or more at
    20 MiB/s: 2.5 s or more)."""
    wait_status(s, lambda st: st["phase"] == "precopy" and st["pass"] == 1, "pass 1")
    time.sleep(0.8)
    st = s.g.status()
    assert st["phase"] == "precopy" and st["pass"] == 1, f"pass 1 was over too soon: {st}"


def sigkill(dst):
    """Kills the destination VMM (`ip netns exec` execs tern: the pid is tern's)."""
    dst.proc.send_signal(signal.SIGKILL)
    rc = dst.wait_exit(30)
    assert rc == -signal.SIGKILL, f"the destination had exited {rc}:\n{dst.log_text()}"
    return time.monotonic()


def error_of(st):
    err = st.get("error", "")
    assert err, f"the migration ended {st['phase']} without saying why: {st}"
    return err


def check_destination_did_not_run(dst, status=None):
    """The destination VMM is gone and never ran the guest."""
    rc = dst.wait_exit(60)
    log = dst.log_text()
    if status == "killed":
        assert rc == -signal.SIGKILL, (rc, log)
    else:
        # A clean refusal: tern's own error status, not a crash or a signal.
        assert rc == 1, f"destination exited {rc}:\n{log}"
    assert "the guest runs here" not in log, log
    assert "incoming migration complete" not in log, log
    return log


def check_source_runs(s):
    """What must hold on the source after every failed migration."""
    g = s.g
    assert g.vm.proc.poll() is None, "the source VMM exited:\n" + g.vm.log_text()
    state = g.vm.api("status")
    assert state["ok"] and state["result"]["state"] == "running", state
    # The guest's MAC is still where the guest runs (nobody announced it elsewhere).
    assert g.bridge_port() == 0, "the fabric no longer finds the guest behind host 0"
    assert g.heartbeat_grows(), "no heartbeat from the guest after the failed migration"
    verdict = g.dirtier_verified()
    assert "verify ok" in verdict, verdict
    n = g.counter_lines()
    assert n > s.counter, f"the counter did not go on: {n} lines, {s.counter} before"
    s.counter = n
    # The echo service answers, and every reply so far was right.
    assert s.client.proc.poll() is None, "the echo client stopped:\n" + \
        "\n".join(s.client.stderr_lines)
    deadline = time.monotonic() + 10
    while echo_progress(s.client)[0] <= s.replies and time.monotonic() < deadline:
        time.sleep(0.2)
    replies, errors = echo_progress(s.client)
    assert errors == 0, s.client.stderr_lines[-5:]
    assert replies > s.replies, f"no echo replies since the last check ({replies})"
    s.replies = replies


def finished(s, timeout=60):
    st = s.g.wait_finished(timeout)
    assert st["phase"] in ("failed", "cancelled"), (st, s.g.vm.log_text()[-3000:])
    return st


def report(name, st, **extra):
    more = " ".join(f"{k}={v}" for k, v in extra.items())
    print(f"\n{name}: {st['phase']} in pass {st['pass']} after {st['bytes_sent']} bytes, "
          f"{st['elapsed_ms']} ms: {st.get('error')!r} {more}")


# ---- no destination, or it dies ---------------------------------------------------------


def test_nobody_listening(guest):
    s = guest
    if s.g.host != 0 or s.g.vm.proc.poll() is not None:
        pytest.fail("the guest no longer runs on host 0: an earlier test went wrong")
    uri = f"tcp:{s.lab.hosts[1].ip}:{next_port()}"
    start_migration(s, uri, *SLOW)
    st = finished(s)
    report("nobody listening", st)
    assert st["phase"] == "failed" and st["pass"] == 0 and st["bytes_sent"] == 0, st
    err = error_of(st)
    assert "cannot connect" in err and "refused" in err, err
    check_source_runs(s)



def test_kill_destination_in_first_pass(guest):
    s = guest
    dst, uri = s.incoming()
    start_migration(s, uri, *SLOW)
    in_first_pass(s)
    t_kill = sigkill(dst)
    st = finished(s)
    detected = time.monotonic() - t_kill
    report("kill in pass 1", st, detected_s=round(detected, 2))
    assert st["phase"] == "failed"
    assert st["pass"] == 1, st
    err = error_of(st)
    assert "the destination closed the connection" in err, err
    assert re.search(r"reset|broken pipe", err, re.I), err
    assert detected < DEAD_PEER_DETECTION_S, f"took {detected:.1f}s to notice a dead peer"
    check_destination_did_not_run(dst, "killed")
    check_source_runs(s)


def test_kill_destination_in_later_pass(guest):
    s = guest
    dst, uri = s.incoming()
    start_migration(s, uri, *SLOW)
    wait_status(s, lambda st: st["phase"] == "precopy" and st["pass"] >= 3, "pass 3")
    time.sleep(0.2)
    t_kill = sigkill(dst)
    st = finished(s)
    detected = time.monotonic() - t_kill
    report("kill in a later pass", st, detected_s=round(detected, 2))
    assert st["phase"] == "failed"
    assert st["pass"] >= 3, st
    err = error_of(st)
    assert "the destination closed the connection" in err, err
    assert re.search(r"reset|broken pipe", err, re.I), err
    assert detected < DEAD_PEER_DETECTION_S, f"took {detected:.1f}s to notice a dead peer"
    check_destination_did_not_run(dst, "killed")
    check_source_runs(s)


def test_kill_destination_in_switch_over(guest):
    """A downtime limit large enough that pass 2 is already the stop-and-copy,
    at 20 MiB/s: the guest is paused while its last pages go, for a second
    or two. Killed then, the destination leaves the source to resume it."""
    s = guest
    dst, uri = s.incoming()
    start_migration(s, uri, *PRECOPY, "--bandwidth", BANDWIDTH, "--downtime-ms", "60000")
    # Only "stop-copy": "commit" is a few milliseconds, and a kill that came
    # after RUNNING would kill the guest itself.
    st = wait_status(s, lambda st: st["phase"] == "stop-copy", "the switch-over")
    paused = s.g.vm.api("status")["result"]["state"]
    t_kill = sigkill(dst)
    st = finished(s)
    detected = time.monotonic() - t_kill
    report("kill in the switch-over", st, detected_s=round(detected, 2), state_then=paused)
    assert paused == "paused", f"the source VM was {paused} during the stop-and-copy"
    assert st["phase"] == "failed"
    assert st["downtime_ms"] == 0, st
    err = error_of(st)
    assert "the destination closed the connection" in err, err
    assert re.search(r"reset|broken pipe", err, re.I), err
    assert detected < DEAD_PEER_DETECTION_S, f"took {detected:.1f}s to notice a dead peer"
    check_destination_did_not_run(dst, "killed")
    check_source_runs(s)


# ---- the operator cancels -------------------------------------------------------------


def test_cancel(guest):
    s = guest
    dst, uri = s.incoming()
    start_migration(s, uri, *SLOW)
    in_first_pass(s)
    rc, out = run_tern("vm", "migrate", "--api-socket", s.g.vm.api_path, "--cancel")
    assert rc == 0, out
    assert json.loads(out)["phase"] == "cancelling", out
    t_cancel = time.monotonic()
    st = finished(s)
    detected = time.monotonic() - t_cancel
    report("cancel", st, took_s=round(detected, 2))
    assert st["phase"] == "cancelled" and st["pass"] == 1, st
    assert "cancel" in error_of(st), st
    rc, out = run_tern("vm", "migrate", "--api-socket", s.g.vm.api_path, "--status")
    assert rc == 0 and json.loads(out)["phase"] == "cancelled", out
    assert detected < DEAD_PEER_DETECTION_S, f"cancelling took {detected:.1f}s"
    # Nothing left to cancel.
    rc, out = run_tern("vm", "migrate", "--api-socket", s.g.vm.api_path, "--cancel")
    assert rc != 0 and "no migration is running" in out, out
    # The destination sees the stream end and gives up.
    log = check_destination_did_not_run(dst)
    assert "truncated" in log, log
    check_source_runs(s)


# ---- the switch-over gate (a cluster hands the VM over in between) ---------------------


def wait_at_gate(s):
    """Waits for the source to hold at its switch-over gate; checks the
    guest is paused there (everything is sent, the destination is ready)."""
    st = wait_status(s, lambda st: st["phase"] == "switchover", "the switch-over gate")
    state = s.g.vm.api("status")
    assert state["ok"] and state["result"]["state"] == "paused", state
    return st


def test_switchover_gate_cancel(guest):
    """--switchover-gate holds the guest paused with the destination ready
    until --continue; a cancel there (the cluster could not hand the VM
    over) resumes it here, and the destination never runs it. --continue
    with no migration at its gate is refused."""
    s = guest
    rc, out = run_tern("vm", "migrate", "--api-socket", s.g.vm.api_path, "--continue")
    assert rc != 0 and "not waiting at its switch-over" in out, out
    dst, uri = s.incoming()
    start_migration(s, uri, *PRECOPY, "--switchover-gate")
    wait_at_gate(s)
    time.sleep(0.5)
    st = wait_at_gate(s)                 # still held: nothing goes on by itself
    rc, out = run_tern("vm", "migrate", "--api-socket", s.g.vm.api_path, "--cancel")
    assert rc == 0, out
    st = finished(s)
    report("cancel at the gate", st)
    assert st["phase"] == "cancelled" and "switch-over" in error_of(st), st
    check_destination_did_not_run(dst)
    check_source_runs(s)


def test_switchover_gate_timeout(guest):
    """Nobody opens the gate: after its timeout (10 s) the migration fails
    and the guest runs on here; a paused guest is not left waiting for a
    gatekeeper that went away."""
    s = guest
    dst, uri = s.incoming()
    start_migration(s, uri, *PRECOPY, "--switchover-gate")
    wait_at_gate(s)
    t_gate = time.monotonic()
    st = finished(s, timeout=30)
    waited = time.monotonic() - t_gate
    report("gate timeout", st, waited_s=round(waited, 1))
    assert st["phase"] == "failed" and "migrate-continue" in error_of(st), st
    assert 8 < waited < 15, f"the gate timed out after {waited:.1f} s, not about 10 s"
    check_destination_did_not_run(dst)
    check_source_runs(s)


# ---- the link drops -------------------------------------------------------------------


def test_link_drop(guest):
    """Host 1's uplink goes down in pass 1: nothing more gets through, and
    the source's send stalls until TCP_USER_TIMEOUT (the stall timeout, 10 s)
    fails it. The destination, cut off, gives up on its own."""
    s = guest
    dst, uri = s.incoming()
    start_migration(s, uri, *SLOW)
    in_first_pass(s)
    s.lab.link_down(1)
    t_down = time.monotonic()
    try:
        st = finished(s, timeout=STALL_TIMEOUT_S + 50)
        detected = time.monotonic() - t_down
        # The destination, if it notices first, cannot tell the source.
        dst_rc_while_down = dst.proc.poll()
    finally:
        s.lab.link_up(1)
    report("link drop", st, detected_s=round(detected, 2), dst_rc=dst_rc_while_down)
    assert st["phase"] == "failed" and st["pass"] == 1, st
    err = error_of(st)
    assert f"the destination acknowledged nothing for {STALL_TIMEOUT_S} s" in err, err
    assert "timed out" in err, err
    # Failed by the stall timeout: not before, and not much later.
    assert STALL_TIMEOUT_S - 2 <= detected <= STALL_TIMEOUT_S + 20, detected
    log = check_destination_did_not_run(dst)
    assert re.search(r"timed out|reset|truncated", log, re.I), log
    check_source_runs(s)


# ---- the destination gets something else --------------------------------------------------

SEND_SCRIPT = r"""
import socket, sys
data = sys.stdin.buffer.read()
host, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((host, port), timeout=10)
try:
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
except OSError:
    pass
got = b""
s.settimeout(30)
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
except OSError:
    pass
sys.stdout.write(got.hex())
"""


def garbage(kind):
    if kind == "nothing":
        return b""
    if kind == "random":
        return random.Random(7).randbytes(65536)
    # A good stream header, then a CONFIG section whose checksum is wrong.
    header = b"TERNVMST" + struct.pack("<II", 1, 0)
    payload = bytes(range(64))
    section = struct.pack("<IIIIQ", 1, 0, 1, 0, len(payload)) + payload + b"\x5a" * 8
    return header + section


@pytest.mark.parametrize("kind,words", [
    ("nothing", ["truncated", "stream header"]),
    ("random", ["not a tern VM state stream"]),
    ("corrupt-config", ["corrupt", "checksum", "CONFIG"]),
])
def test_garbage(guest, kind, words):
    s = guest
    binary = ASAN_BIN if os.access(ASAN_BIN, os.X_OK) else None
    # Plaintext: this feeds the stream decoder itself, which with TLS only
    # a peer holding a certificate from the CA could reach (a peer without
    # one is refused at the handshake: test_migrate_tls.py).
    dst, uri = s.incoming(binary=binary, tls="off")
    _, host, port = uri.split(":")
    p = s.lab.client.popen(sys.executable, "-c", SEND_SCRIPT, host, port,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, _ = p.communicate(garbage(kind), timeout=60)
    assert p.returncode == 0, out
    log = check_destination_did_not_run(dst)
    for w in words:
        assert w in log, log
    assert "incoming migration failed, the guest did not run here" in log, log
    assert "Sanitizer" not in log and "runtime error" not in log, log
    # No VM was made: no console, no API socket.
    assert not dst.console_path.exists() and not dst.api_path.exists()
    # The destination said why, in an ERROR frame. (After random bytes it
    # closes with data unread, and the reset may overtake the frame.)
    reply = bytes.fromhex(out.decode())
    assert reply or kind == "random", "the destination closed without an ERROR frame"
    if reply:
        magic, ftype, length = struct.unpack("<III", reply[:12])
        assert (magic, ftype) == (FRAME_MAGIC, FRAME_ERROR), reply[:64]
        text = reply[12:12 + length].decode()
        for w in words:
            assert w in text, text
    print(f"\ngarbage {kind}: destination said {log.strip().splitlines()[-1]!r}")
    check_source_runs(s)


@pytest.mark.parametrize("option,value,words", [
    ("--memory", "512M", ["256 MiB", "512 MiB"]),
    ("--cpus", "2", ["1 harts", "and 2"]),
])
def test_other_vm_shape(guest, option, value, words):
    """A destination started for another VM shape refuses the CONFIG: the
    source fails the migration with the destination's reason."""
    s = guest
    dst, uri = s.incoming(extra_args=[option, value])
    # Through the CLI, watching: it must fail and say why.
    rc, out = run_tern("vm", "migrate", "--api-socket", s.g.vm.api_path, "--to", uri,
                       "--bandwidth", BANDWIDTH, "--watch", timeout=120)
    assert rc == 1, out
    assert "failed" in out and all(w in out for w in words), out
    st = finished(s)
    report(f"shape {option} {value}", st)
    assert st["phase"] == "failed", st
    err = error_of(st)
    assert "refused" in err, err
    for w in words:
        assert w in err, err
    log = check_destination_did_not_run(dst)
    for w in words:
        assert w in log, log
    check_source_runs(s)


# ---- and then it works ------------------------------------------------------------------


def test_migration_after_failures(guest):
    """The guest moves to host 1 for real, through the switch-over gate
    (held a moment, then opened with --continue)."""
    s = guest
    g = s.g
    st = g.move_to(1, "--switchover-gate", at_gate=lambda: (wait_at_gate(s), time.sleep(0.2)))
    report("move to host 1", st)
    assert st["phase"] == "completed", st
    assert g.history[-1][1].proc.returncode == 0
    assert g.host == 1
    state = g.vm.api("status")
    assert state["ok"] and state["result"]["state"] == "running", state
    assert g.bridge_port() == 1, "the fabric bridge did not learn the guest's new port"
    assert g.heartbeat_grows(), "no heartbeat from the guest after the move"
    verdict = g.dirtier_verified()
    assert "verify ok" in verdict, verdict
    n = g.counter_lines()
    assert n > s.counter, (n, s.counter)
    summary = s.client.stop()
    print(f"echo {summary}")
    assert summary["ok"], summary
    assert summary["unanswered"] == 0 and summary["errors"] == 0, summary
    assert summary["replies"] == summary["lines_sent"] > s.replies, summary
