"""The VMM process holds only what it needs, and its API refuses what does
not make sense (issue: "Trust nobody on the wire").

  - a running tern is confined by a seccomp filter (/proc says so), a
    forbidden system call kills it (TERN_SECCOMP_PROBE=1 makes one right
    after the filter is installed: execve), --no-seccomp runs without;
  - the API socket is the owner's only;
  - migrate requests with wrong types or unknown fields are refused, and
    while a migration runs a second one, a snapshot, and (from its
    switch-over on) a resume are refused; the VM runs on throughout."""
import os
import signal
import stat
import subprocess
import time

import pytest

from ternvm import KERNEL, INITRD, TERN_BIN, Vm, free_port, guest_images


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


@pytest.fixture(scope="module")
def vm(vm_factory):
    return vm_factory("hardened", memory="256M").boot()


def test_running_vmm_is_confined(vm):
    st = proc_status(vm.proc.pid)
    assert st["Seccomp"] == "2", st["Seccomp"]          # filter mode
    assert int(st["Seccomp_filters"]) >= 1
    assert st["NoNewPrivs"] == "1"


def test_forbidden_call_kills_the_process(tmp_path):
    guest_images()
    p = subprocess.run([TERN_BIN, "vm", "run", "--kernel", str(KERNEL), "--initrd", str(INITRD),
                        "--console", "none"], env={**os.environ, "TERN_SECCOMP_PROBE": "1"},
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert p.returncode == -signal.SIGSYS, (p.returncode, p.stderr)
    assert "seccomp probe: calling execve" in p.stderr, p.stderr
    assert "forbidden system call" in p.stderr, p.stderr


def test_no_seccomp_runs_unconfined(vm_factory):
    v = vm_factory("unconfined", extra_args=["--no-seccomp"]).start()
    try:
        deadline = time.monotonic() + 30
        while not v.api_path.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert proc_status(v.proc.pid)["Seccomp"] == "0"
    finally:
        v.close()


def test_api_socket_is_owner_only(vm):
    mode = stat.S_IMODE(os.stat(vm.api_path).st_mode)
    assert mode == 0o600, oct(mode)


@pytest.mark.parametrize("args,words", [
    ({"downtime_ms": "fast"}, "downtime_ms"),
    ({"streams": 99}, "streams"),
    ({"strategy": "teleport"}, "strategy"),
    ({"copy_storage": "yes"}, "copy_storage"),
    ({"colour": "red"}, "colour"),
])
def test_migrate_bad_arguments(vm, args, words):
    reply = vm.api("migrate", {"to": "tcp:127.0.0.1:9", **args})
    assert reply["ok"] is False, reply
    assert reply["error"]["code"] == "EINVAL", reply
    assert words in reply["error"]["message"], reply
    assert vm.api("status")["result"]["state"] == "running"


def test_requests_in_the_wrong_state(vm, tmp_path):
    port = free_port()
    dst = Vm(tmp_path / "dst", incoming=f"tcp:127.0.0.1:{port}").start().wait_listening()
    try:
        # 1 MiB/s: the first pass alone takes minutes.
        first = vm.api("migrate", {"to": f"tcp:127.0.0.1:{port}", "bandwidth_bytes_s": 1 << 20})
        assert first["ok"], first
        again = vm.api("migrate", {"to": f"tcp:127.0.0.1:{port}"})
        assert not again["ok"] and again["error"]["code"] == "EBUSY", again
        assert "already" in again["error"]["message"]
        snap = vm.api("snapshot", {"path": str(tmp_path / "x.snap")})
        assert not snap["ok"] and snap["error"]["code"] == "EBUSY", snap
        assert "migration" in snap["error"]["message"]
        assert not (tmp_path / "x.snap").exists()
        # Pausing and resuming during the passes is the operator's right.
        assert vm.api("pause")["ok"] and vm.api("resume")["ok"]
        assert vm.api("migrate-cancel")["ok"]
        deadline = time.monotonic() + 30
        while vm.api("migrate-status")["result"]["phase"] != "cancelled":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        dst.close()
    assert vm.api("status")["result"]["state"] == "running"
    assert vm.sh("echo alive").strip() == "alive"
