"""virtio-net with the Debian guest: the guest's interface is on a TAP
inside a network namespace made by the test; the namespace pings the
guest, and 256 MiB go each way over TCP with matching checksums."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from netlab import Namespace

HERE = Path(__file__).resolve().parent
HOST_IP, GUEST_IP = "10.77.0.1", "10.77.0.2"
MAC = "52:54:00:12:34:56"
TRANSFER = 256 << 20


@pytest.fixture(scope="module")
def ns():
    n = Namespace()
    n.add_tap("tap0", f"{HOST_IP}/24")
    yield n
    n.close()


@pytest.fixture(scope="module")
def vm(vm_factory, ns):
    return vm_factory("net", cpus=2, memory="256M", netns=ns,
                      nets=[f"tap=tap0,mac={MAC}"],
                      cmdline=f"tern.ip={GUEST_IP}/24").boot()


def peer(ns, *args):
    return ns.popen(sys.executable, HERE / "netpeer.py", *args,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_guest_has_its_mac_and_address(vm):
    assert vm.sh("cat /sys/class/net/eth0/address").strip() == MAC
    assert f"inet {GUEST_IP}/24" in vm.sh("ip addr show eth0")


def test_namespace_pings_guest(vm, ns):
    out = ns.run("ping", "-c", "3", "-W", "5", GUEST_IP, timeout=60)
    assert re.search(r"3 packets transmitted, 3 (packets )?received", out), out


def test_guest_to_host_transfer(vm, ns):
    p = peer(ns, "recv", 5001)
    assert p.stdout.readline().strip() == "LISTENING"
    # The guest checksums exactly the bytes it sends: tee feeds md5sum
    # through a fifo while netxfer writes the same stream to the socket.
    out = vm.sh("mkfifo /tmp/up && { md5sum < /tmp/up > /tmp/up.md5 & P=$!; } && "
                f"dd if=/dev/urandom bs=1M count={TRANSFER >> 20} 2>/dev/null | tee /tmp/up | "
                f"netxfer send {HOST_IP} 5001 && wait $P && cat /tmp/up.md5", timeout=900)
    guest_md5 = out.split()[-2]
    got = p.communicate(timeout=120)[0].split()
    assert got[:2] == [str(TRANSFER), guest_md5]


def test_host_to_guest_transfer(vm, ns):
    # stdin from /dev/null: a background job must not read the console.
    vm.sh("netxfer recv 5002 < /dev/null 2>/tmp/down.log | md5sum > /tmp/down.md5 &")
    p = peer(ns, "send", GUEST_IP, 5002, TRANSFER)
    sent = p.communicate(timeout=900)[0].split()
    assert sent[0] == str(TRANSFER)
    out = vm.sh("while ! [ -s /tmp/down.md5 ]; do sleep 0.5; done; "
                "cat /tmp/down.log /tmp/down.md5", timeout=300)
    assert f"NETXFER {TRANSFER} " in out
    assert out.split()[-2] == sent[1]
