"""Migration TLS in the lab (src/migration/tls.c, scripts/mkcerts.sh).

Every test VM migrates with TLS 1.3 and mutual certificates (ternvm's test
CA, as a host would by default). Here:
  - a move with TLS completes, and a capture of the lab's fabric bridge
    during it holds no byte of a marker the guest keeps in its memory; the
    same capture of a plaintext move (--no-tls on both ends, a second guest)
    does find the marker, so the capture would have seen it;
  - a destination whose certificate another CA signed, one whose
    certificate has expired, one without TLS, and one whose allow list does
    not name the source are each refused at the handshake, and the guest
    keeps running where it was; an allow list naming the source lets the
    move through."""
import os
import signal
import time

import pytest

from migrate_lab import Lab, MovingVm
from ternvm import make_certs, test_tls_dir, TEST_CERT_IPS

MARKER = "TERN-SECRET-MARKER-5d41402abc4b2a76b9719d911017c592"


@pytest.fixture(scope="module")
def lab():
    with Lab(2) as lab:
        yield lab


def plant_marker(g):
    """Keeps the marker in guest memory (a file on the initramfs: RAM)."""
    g.vm.sh(f"i=0; while [ $i -lt 256 ]; do echo {MARKER}; i=$((i+1)); done > /tmp/marker; "
            "sync; grep -c MARKER /tmp/marker")


class Capture:
    """tcpdump on the fabric bridge, full packets, into a file."""

    def __init__(self, lab, path):
        self.path = path
        self.proc = lab.fabric.popen("tcpdump", "-i", "br0", "-U", "-s", "0", "-w", path, "tcp",
                                     stdout=open(os.devnull, "wb"), stderr=open(os.devnull, "wb"))
        deadline = time.monotonic() + 10
        while not (os.path.exists(path) and os.path.getsize(path) > 0):
            assert self.proc.poll() is None, "tcpdump exited"
            assert time.monotonic() < deadline, "tcpdump never started writing"
            time.sleep(0.05)

    def stop(self):
        time.sleep(0.5)                  # the last packets reach the file
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10)
        with open(self.path, "rb") as f:
            return f.read()


@pytest.fixture(scope="module")
def guest(lab, tmp_path_factory):
    g = MovingVm(lab, tmp_path_factory.mktemp("tls"), dirtier=None)
    try:
        g.boot(0)
        plant_marker(g)
        yield g
    finally:
        g.close()


def test_plaintext_move_shows_guest_memory(lab, tmp_path_factory, tmp_path):
    """The capture's control: without TLS the marker is on the wire. (First,
    with its own guest, which leaves the lab's TAPs to the next one.)"""
    g = MovingVm(lab, tmp_path_factory.mktemp("plain"), dirtier=None, tls="off")
    try:
        g.boot(0)
        plant_marker(g)
        cap = Capture(lab, str(tmp_path / "plain.pcap"))
        try:
            st = g.move_to(1, "--compress", "off", "--delta", "off")
        finally:
            data = cap.stop()
        assert st["phase"] == "completed", st
        assert MARKER.encode() in data
    finally:
        g.close()


def test_tls_move_hides_guest_memory(guest, lab, tmp_path):
    cap = Capture(lab, str(tmp_path / "tls.pcap"))
    try:
        # Pages raw on the wire (no zstd), so that only TLS can hide them.
        st = guest.move_to(1, "--compress", "off", "--delta", "off", tls_allow="testhost")
    finally:
        data = cap.stop()
    assert st["phase"] == "completed", st
    assert st["bytes_sent"] > 4 << 20
    # The move went over the bridge (and so through the capture; tcpdump
    # may drop a few packets under load)...
    assert len(data) > st["bytes_sent"] // 2, (len(data), st["bytes_sent"])
    # ...encrypted: the marker is nowhere in it.
    assert MARKER.encode() not in data
    assert MARKER in guest.vm.sh("head -1 /tmp/marker")


def refused(g, why, at_handshake=True, **dst_kw):
    """Starts a destination with dst_kw, migrates to it; the migration must
    fail at once naming `why` (at the handshake: before any byte of the VM
    was sent), and the guest go on where it was."""
    host = g.host
    other = 1 - host
    dst, uri = g.start_incoming(other, **dst_kw)
    try:
        g.migrate(uri)
        st = g.wait_finished(timeout=60)
        rc = dst.wait_exit(30)
    finally:
        dst.close()
    assert st["phase"] == "failed", st
    assert why in st["error"], st["error"]
    if at_handshake:
        assert st["pass"] == 0 and st["bytes_sent"] == 0, st
    else:
        assert st["pass"] <= 1 and st["downtime_ms"] == 0, st
    assert rc != 0
    assert g.vm.proc.poll() is None
    assert MARKER in g.vm.sh("head -1 /tmp/marker")
    assert g.heartbeat_grows()
    assert g.host == host
    return st


def test_destination_from_another_ca_refused(guest, tmp_path):
    rogue = make_certs(tmp_path, "testhost", ca="otherca",
                       extra=[f"IP:{ip}" for ip in TEST_CERT_IPS])
    st = refused(guest, "its certificate is not accepted", tls=str(rogue))
    assert "ca.pem" in st["error"], st["error"]


def test_expired_destination_refused(guest, tmp_path):
    # The same CA as every test VM, but a certificate whose time is over.
    expired = make_certs(test_tls_dir().parent, "testhost", expired=True,
                         extra=[f"IP:{ip}" for ip in TEST_CERT_IPS])
    refused(guest, "certificate has expired", tls=str(expired))


def test_plaintext_destination_refused(guest):
    refused(guest, "TLS handshake with the destination", tls="off")


def test_allow_list_refuses_other_names(guest):
    # The handshake itself succeeds (the CA signed both); the destination
    # then tells the source, over the secured connection, why it refuses.
    refused(guest, "names no peer on the destination's allow list", at_handshake=False,
            tls_allow="somebody-else")
