"""Bad input to `tern vm run` and to the control API: each gets one clear
message and a non-zero exit or an error reply; never a crash or a hang.
Runs against both the release and the ASan+UBSan binary."""
import json
import os
import socket
import subprocess
import time

import pytest

import rvimage
from ternvm import TERN_BIN, Vm

BINARIES = [TERN_BIN]
if os.environ.get("TERN_ASAN_BIN"):
    BINARIES.append(os.environ["TERN_ASAN_BIN"])


def run(binary, *args, timeout=60):
    p = subprocess.run([binary, *map(str, args)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stderr.decode(errors="replace")


@pytest.fixture(params=BINARIES, ids=lambda b: os.path.basename(os.path.dirname(b)))
def tern(request):
    return request.param


@pytest.fixture
def idle_kernel(tmp_path):
    path = tmp_path / "idle.Image"
    path.write_bytes(rvimage.idle_kernel())
    return path


def test_missing_kernel(tern, tmp_path):
    rc, err = run(tern, "vm", "run", "--kernel", tmp_path / "nope", "--console", "none")
    assert rc == 1
    assert "cannot open the kernel" in err and "No such file" in err


def test_kernel_that_is_not_an_image(tern, tmp_path):
    bogus = tmp_path / "bogus"
    bogus.write_bytes(os.urandom(4096))
    rc, err = run(tern, "vm", "run", "--kernel", bogus, "--console", "none")
    assert rc == 1
    assert "not a RISC-V Linux kernel Image" in err


def test_truncated_kernel(tern, tmp_path):
    short = tmp_path / "short"
    short.write_bytes(b"MZ\x00\x00")
    rc, err = run(tern, "vm", "run", "--kernel", short, "--console", "none")
    assert rc == 1
    assert "not a RISC-V Linux kernel Image" in err


def test_empty_kernel(tern, tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    rc, err = run(tern, "vm", "run", "--kernel", empty, "--console", "none")
    assert rc == 1
    assert "not a RISC-V Linux kernel Image" in err


def test_kernel_is_a_directory(tern, tmp_path):
    rc, err = run(tern, "vm", "run", "--kernel", tmp_path, "--console", "none")
    assert rc == 1
    assert "kernel" in err


def test_missing_initrd(tern, tmp_path, idle_kernel):
    rc, err = run(tern, "vm", "run", "--kernel", idle_kernel, "--initrd", tmp_path / "nope",
                  "--console", "none")
    assert rc == 1
    assert "cannot open the initrd" in err


def test_initrd_larger_than_memory(tern, tmp_path, idle_kernel):
    big = tmp_path / "big.img"
    with open(big, "wb") as f:
        f.truncate(300 << 20)   # sparse: costs no disk
    rc, err = run(tern, "vm", "run", "--kernel", idle_kernel, "--initrd", big,
                  "--memory", "256M", "--console", "none")
    assert rc == 1
    assert "does not fit in guest memory" in err


@pytest.mark.parametrize("memory", ["16M", "0", "127M"])
def test_memory_below_minimum(tern, idle_kernel, memory):
    rc, err = run(tern, "vm", "run", "--kernel", idle_kernel, "--memory", memory)
    assert rc == 2
    assert "give at least 128 MiB" in err


def test_memory_above_host(tern, idle_kernel):
    rc, err = run(tern, "vm", "run", "--kernel", idle_kernel, "--memory", "100000G")
    assert rc == 2
    assert "more than this host has" in err


@pytest.mark.parametrize("memory", ["lots", "12Q", "-5M", "99999999999999999999G"])
def test_memory_not_a_size(tern, idle_kernel, memory):
    rc, err = run(tern, "vm", "run", "--kernel", idle_kernel, "--memory", memory)
    assert rc == 2
    assert "--memory" in err


def test_kernel_too_big_for_memory(tern, tmp_path):
    """The Image header says how much memory the kernel occupies (bss
    included); tern refuses a VM too small to hold it."""
    kernel = tmp_path / "huge.Image"
    kernel.write_bytes(rvimage.idle_kernel(image_size=200 << 20))
    rc, err = run(tern, "vm", "run", "--kernel", kernel, "--memory", "128M", "--console", "none")
    assert rc == 1
    assert "too small for this kernel" in err


@pytest.mark.parametrize("cpus", ["0", "9", "1000", "two", "-1"])
def test_bad_cpu_count(tern, idle_kernel, cpus):
    rc, err = run(tern, "vm", "run", "--kernel", idle_kernel, "--cpus", cpus)
    assert rc == 2
    assert "--cpus" in err


def test_unknown_flag(tern, idle_kernel):
    rc, err = run(tern, "vm", "run", "--kernel", idle_kernel, "--frobnicate")
    assert rc == 2
    assert "unknown option --frobnicate" in err


def test_flag_without_value(tern):
    rc, err = run(tern, "vm", "run", "--kernel")
    assert rc == 2
    assert "needs a value" in err


def test_no_kernel(tern):
    rc, err = run(tern, "vm", "run")
    assert rc == 2
    assert "needs --kernel" in err


def test_unknown_command(tern):
    rc, err = run(tern, "vm", "fly")
    assert rc == 2
    assert "unknown command" in err


def test_bad_console_spec(tern, idle_kernel):
    rc, err = run(tern, "vm", "run", "--kernel", idle_kernel, "--console", "carrier-pigeon")
    assert rc == 1
    assert "unknown backend" in err


def test_api_socket_in_missing_directory(tern, tmp_path, idle_kernel):
    rc, err = run(tern, "vm", "run", "--kernel", idle_kernel, "--console", "none",
                  "--api-socket", tmp_path / "no" / "such" / "dir" / "api.sock")
    assert rc == 1
    assert "api.sock" in err


def test_control_command_without_vm(tern, tmp_path):
    rc, err = run(tern, "vm", "status", "--api-socket", tmp_path / "none.sock")
    assert rc == 1
    assert "status" in err


def test_guest_illegal_instruction_traps_to_guest(tern, tmp_path):
    """The guest's own trap handler sees scause 2 and reports it; tern
    neither aborts nor hangs."""
    kernel = tmp_path / "illegal.Image"
    kernel.write_bytes(rvimage.illegal_instruction_kernel())
    out = tmp_path / "console.out"
    rc, err = run(tern, "vm", "run", "--kernel", kernel, "--console", f"file:{out}")
    assert rc == 0, err
    assert out.read_bytes() == b"2"


@pytest.fixture
def idle_vm(tern, tmp_path, idle_kernel):
    vm = Vm(tmp_path / "vm", binary=tern, kernel=idle_kernel, initrd=None)
    vm.start()
    deadline = time.monotonic() + 30
    while not vm.api_path.exists():
        assert time.monotonic() < deadline, vm.log_text()
        time.sleep(0.05)
    yield vm
    vm.close()


def raw_request(vm, payload, timeout=10):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(vm.api_path))
        s.sendall(payload)
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


@pytest.mark.parametrize("payload,code,words", [
    (b"this is not json\n", "EINVAL", "invalid JSON"),
    (b"[1,2,3]\n", "EINVAL", "object"),
    (b'{"command": 42}\n', "EINVAL", "command"),
    (b'{"command": "fly"}\n', "ENOSYS", "fly"),
    (b'{"command": "status", "args": 7}\n', "EINVAL", "args"),
    (b'{"command": "status", "colour": "red"}\n', "EINVAL", "colour"),
    (b"[" * 200 + b"]" * 200 + b"\n", "EINVAL", "deep"),
])
def test_api_rejects_malformed_requests(idle_vm, payload, code, words):
    reply = raw_request(idle_vm, payload)
    assert reply["ok"] is False
    assert reply["error"]["code"] == code
    assert words.lower() in reply["error"]["message"].lower()
    # and the VM is still there, answering
    assert idle_vm.api("status")["result"]["state"] == "running"


def test_api_refuses_oversized_request(idle_vm):
    reply = raw_request(idle_vm, b'{"command": "status", "pad": "' + b"x" * 200000 + b'"}\n')
    assert reply["ok"] is False
    assert reply["error"]["code"] == "EMSGSIZE"
    assert idle_vm.api("status")["ok"] is True


def test_api_wrong_state_requests(idle_vm):
    assert idle_vm.api("resume")["error"]["code"] == "EBUSY"
    assert idle_vm.api("pause")["ok"] is True
    reply = idle_vm.api("pause")
    assert reply["ok"] is False and "paused" in reply["error"]["message"]
    assert idle_vm.api("resume")["ok"] is True


def test_api_stop_ends_process(idle_vm):
    assert idle_vm.api("stop")["ok"] is True
    assert idle_vm.wait_exit(30) == 0


# ---- disks and network cards ---------------------------------------------------

def test_missing_disk_image(tern, tmp_path, idle_kernel):
    rc, err = run(tern, "vm", "run", "--kernel", idle_kernel, "--console", "none",
                  "--disk", tmp_path / "nope.img")
    assert rc == 1
    assert "nope.img" in err and "No such file" in err


def test_disk_size_not_multiple_of_512(tern, tmp_path, idle_kernel):
    img = tmp_path / "odd.img"
    img.write_bytes(b"\0" * 1000)
    rc, err = run(tern, "vm", "run", "--kernel", idle_kernel, "--console", "none", "--disk", img)
    assert rc == 1
    assert "512" in err and "odd.img" in err


def test_unreadable_disk_image(tern, tmp_path, idle_kernel):
    rc, err = run(tern, "vm", "run", "--kernel", idle_kernel, "--console", "none",
                  "--disk", tmp_path)
    assert rc == 1
    assert str(tmp_path) in err


def test_disk_option_unknown(tern, tmp_path, idle_kernel):
    rc, err = run(tern, "vm", "run", "--kernel", idle_kernel, "--disk", f"{tmp_path}/x.img,fast")
    assert rc == 2
    assert "unknown option" in err and "fast" in err


def test_disk_in_use_by_another_vm(tern, tmp_path, idle_kernel):
    img = tmp_path / "shared.img"
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    first = Vm(tmp_path / "first", binary=tern, kernel=idle_kernel, initrd=None, disks=[img])
    first.start()
    try:
        deadline = time.monotonic() + 30
        while not first.api_path.exists():
            assert time.monotonic() < deadline, first.log_text()
            time.sleep(0.05)
        rc, err = run(tern, "vm", "run", "--kernel", idle_kernel, "--console", "none", "--disk", img)
        assert rc == 1
        assert "in use by another process" in err
        assert first.api("status")["result"]["state"] == "running"
    finally:
        first.close()


@pytest.mark.parametrize("mac", ["zz:00:00:00:00:01", "52:54:00:12:34", "01:00:5e:00:00:01",
                                 "00:00:00:00:00:00", "52-54-00-12-34-56x"])
def test_malformed_mac(tern, idle_kernel, mac):
    rc, err = run(tern, "vm", "run", "--kernel", idle_kernel, "--net", f"tap=tap0,mac={mac}")
    assert rc == 2
    assert "--net" in err and "MAC" in err.upper()


def test_net_without_tap(tern, idle_kernel):
    rc, err = run(tern, "vm", "run", "--kernel", idle_kernel, "--net", "mac=52:54:00:00:00:01")
    assert rc == 2
    assert "tap=NAME" in err


def test_tap_that_does_not_exist(tern, idle_kernel):
    rc, err = run(tern, "vm", "run", "--kernel", idle_kernel, "--console", "none",
                  "--net", "tap=terntnope0")
    assert rc == 1
    assert "no TAP device terntnope0" in err


def test_tap_that_is_busy(tern, tmp_path, idle_kernel):
    from netlab import Namespace
    ns = Namespace()
    try:
        ns.add_tap("tap0")
        first = Vm(tmp_path / "first", binary=tern, kernel=idle_kernel, initrd=None,
                   nets=["tap=tap0"], netns=ns)
        first.start()
        try:
            deadline = time.monotonic() + 30
            while not first.api_path.exists():
                assert time.monotonic() < deadline, first.log_text()
                time.sleep(0.05)
            p = subprocess.run(ns.prefix() + [tern, "vm", "run", "--kernel", str(idle_kernel),
                                              "--console", "none", "--net", "tap=tap0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            assert p.returncode == 1
            assert b"busy" in p.stderr
        finally:
            first.close()
    finally:
        ns.close()
