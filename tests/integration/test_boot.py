"""The stock Debian riscv64 kernel on tern: it reaches /init, the guest sees
the harts and memory it was given, its shell answers, pause and resume stop
and restart it, and power-off ends the VMM. One guest per configuration,
shared by the tests of this module."""
import os
import re
import time

import pytest

from ternvm import Vm


@pytest.fixture(scope="module")
def vm2(vm_factory):
    """Two harts, 256 MiB, with a heartbeat on ttyS1 every 20 ms."""
    return vm_factory("smp2", cpus=2, memory="256M",
                      cmdline="tern.heartbeat=20000").boot()


@pytest.fixture(scope="module")
def vm1(vm_factory):
    return vm_factory("up1", cpus=1, memory="256M").boot()


def meminfo_kib(vm, field):
    out = vm.sh(f"grep '^{field}:' /proc/meminfo")
    return int(re.search(r"(\d+) kB", out).group(1))


def kernel_memory_kib(vm):
    """The B of the kernel's "Memory: A/BK available" boot line: all the RAM
    it was given, before its own image and reservations are taken off."""
    out = vm.sh("dmesg | grep 'Memory:'")
    return int(re.search(r"Memory: \d+K/(\d+)K available", out).group(1))


def test_guest_reaches_init(vm2):
    text = vm2.console.text()
    assert "Linux version 6.12" in text
    assert "Run /init as init process" in text
    assert "TERN-INIT-REACHED" in text
    assert "TERN-ERROR" not in text


def test_shell_command_output_comes_back(vm2):
    assert vm2.sh("echo $((6 * 7)) tern") .strip() == "42 tern"
    assert vm2.sh("uname -m").strip() == "riscv64"


def test_cpuinfo_lists_two_harts(vm2):
    out = vm2.sh("cat /proc/cpuinfo")
    assert re.findall(r"^processor\s*:\s*(\d+)", out, re.M) == ["0", "1"]
    assert re.findall(r"^hart\s*:\s*(\d+)", out, re.M) == ["0", "1"]
    assert "rv64imafdc" in out
    assert vm2.sh("nproc").strip() == "2"


def test_cpuinfo_lists_one_hart(vm1):
    out = vm1.sh("cat /proc/cpuinfo")
    assert re.findall(r"^processor\s*:\s*(\d+)", out, re.M) == ["0"]


def test_both_harts_run_guest_work(vm2):
    """Two busy loops pinned to the two harts both finish, each on its hart
    (field 39 of /proc/self/stat is the CPU a process last ran on)."""
    loop = ("i=0; while [ \\$i -lt 3000 ]; do i=\\$((i+1)); done; "
            "echo done-$c-\\$(cut -d' ' -f39 /proc/self/stat)")
    out = vm2.sh(f'for c in 0 1; do taskset -c $c sh -c "{loop}" & done; wait', timeout=120)
    assert sorted(re.findall(r"done-(\d)-(\d)", out)) == [("0", "0"), ("1", "1")]


def test_meminfo_matches_256m(vm1):
    assert kernel_memory_kib(vm1) == 256 * 1024
    # The kernel's image and its early reservations (about 70 MiB on this
    # Debian kernel) come off MemTotal.
    assert 160 * 1024 < meminfo_kib(vm1, "MemTotal") < 256 * 1024


def test_meminfo_matches_2g(vm_factory):
    vm = vm_factory("mem2g", cpus=1, memory="2G").boot()
    assert kernel_memory_kib(vm) == 2048 * 1024
    assert 1900 * 1024 < meminfo_kib(vm, "MemTotal") < 2048 * 1024
    vm.close()


def test_guest_time_advances_with_host_time(vm1):
    """The guest's clock runs at the host's rate (10 MHz timebase)."""
    t0 = time.monotonic()
    g0 = float(vm1.sh("cat /proc/uptime").split()[0])
    time.sleep(3)
    g1 = float(vm1.sh("cat /proc/uptime").split()[0])
    elapsed = time.monotonic() - t0
    assert abs((g1 - g0) - elapsed) < 0.5 + 0.1 * elapsed


def test_guest_illegal_instruction_is_sigill(vm1):
    out = vm1.sh("illegal; echo status=$?")
    assert "status=132" in out          # 128 + SIGILL
    out = vm1.sh("illegal csr; echo status=$?")
    assert "status=132" in out
    assert vm1.sh("echo still-here").strip() == "still-here"


def test_status_through_api(vm2):
    reply = vm2.api("status")
    assert reply["ok"] is True
    st = reply["result"]
    assert st["state"] == "running"
    assert st["cpus"] == 2
    assert st["memory_bytes"] == 256 << 20
    assert [h["state"] for h in st["harts"]] == ["started", "started"]


def heartbeat_size(vm):
    return os.path.getsize(vm.serial1_path) if vm.serial1_path.exists() else 0


def wait_growth(vm, seconds):
    before = heartbeat_size(vm)
    time.sleep(seconds)
    return heartbeat_size(vm) - before


def test_pause_and_resume_stop_and_restart_heartbeat(vm2):
    assert wait_growth(vm2, 1.0) > 5, "the heartbeat is not running"

    reply = vm2.api("pause")
    assert reply["ok"] is True, reply
    assert vm2.api("status")["result"]["state"] == "paused"
    assert wait_growth(vm2, 1.5) == 0, "the guest kept running while paused"

    assert vm2.api("resume")["ok"] is True
    assert wait_growth(vm2, 1.5) > 5, "the heartbeat did not come back"
    assert vm2.sh("echo alive").strip() == "alive"


def test_pause_resume_through_cli(vm2):
    from ternvm import run_tern
    rc, out = run_tern("vm", "pause", "--api-socket", vm2.api_path)
    assert rc == 0 and '"paused"' in out
    rc, out = run_tern("vm", "status", "--api-socket", vm2.api_path)
    assert rc == 0 and '"state": "paused"' in out
    rc, out = run_tern("vm", "resume", "--api-socket", vm2.api_path)
    assert rc == 0 and '"running"' in out
    assert vm2.sh("echo back").strip() == "back"


def test_poweroff_ends_the_vmm(vm1):
    vm1.console.write("poweroff -f\n")
    assert vm1.wait_exit(60) == 0
    assert "reboot: Power down" in vm1.console.text()
    assert not vm1.api_path.exists()


def test_reboot_ends_the_vmm_with_status_3(vm_factory):
    vm = vm_factory("reboot", cpus=1, memory="256M").boot()
    vm.console.write("reboot -f\n")
    assert vm.wait_exit(60) == 3


def test_asan_build_boots_to_shell(vm_factory):
    """The sanitizer build runs a whole boot without a report."""
    binary = os.environ.get("TERN_ASAN_BIN")
    if not binary:
        pytest.fail("TERN_ASAN_BIN is not set: run through `make integration`")
    vm = vm_factory("asan", cpus=2, memory="256M", binary=binary).boot(timeout=600)
    assert vm.sh("echo sanitized").strip() == "sanitized"
    vm.console.write("poweroff -f\n")
    assert vm.wait_exit(120) == 0
    log = vm.log_text()
    assert "ERROR: AddressSanitizer" not in log and "runtime error" not in log
