"""virtio-blk with the Debian guest: an ext4 image made on the host is
mounted in the guest, data the guest writes and syncs is in the image file
afterwards (read back with debugfs, checksums compared), a read-only disk
refuses writes, and two disks work at once."""
import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from ternvm import REPO

SEED = b"tern seed file\n" * 1000


def mkdisk(path, size, src_dir=None):
    cmd = ["bash", str(REPO / "scripts" / "mkdisk.sh"), str(path), size]
    if src_dir:
        cmd.append(str(src_dir))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return path


def debugfs_dump(image, guest_path, out):
    subprocess.run(["debugfs", "-R", f"dump {guest_path} {out}", str(image)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Path(out).read_bytes()


@pytest.fixture(scope="module")
def disks(tmp_path_factory):
    d = tmp_path_factory.mktemp("disks")
    (d / "src").mkdir()
    (d / "src" / "seed.bin").write_bytes(SEED)
    (d / "ro").mkdir()
    (d / "ro" / "readme.txt").write_text("read only\n")
    return {"data": mkdisk(d / "data.img", "64M", d / "src"),
            "ro": mkdisk(d / "ro.img", "16M", d / "ro"),
            "dir": d}


@pytest.fixture(scope="module")
def vm(vm_factory, disks):
    return vm_factory("disk", cpus=2, memory="256M",
                      disks=[disks["data"], f"{disks['ro']},ro"],
                      cmdline="tern.disk=/dev/vda tern.mount=/mnt").boot()


def test_both_disks_are_present_with_their_sizes(vm):
    # /sys/block/*/size counts 512-byte sectors
    assert vm.sh("cat /sys/block/vda/size").strip() == str(64 * 2048)
    assert vm.sh("cat /sys/block/vdb/size").strip() == str(16 * 2048)
    assert "TERN-MOUNTED /dev/vda on /mnt" in vm.console.text()


def test_guest_reads_file_made_on_host(vm):
    out = vm.sh("md5sum /mnt/seed.bin")
    assert out.split()[0] == hashlib.md5(SEED).hexdigest()


def test_read_only_disk_refuses_writes(vm):
    assert vm.sh("cat /sys/block/vdb/ro").strip() == "1"
    vm.sh("mkdir -p /ro && mount -o ro /dev/vdb /ro")
    assert vm.sh("cat /ro/readme.txt").strip() == "read only"
    out = vm.sh("dd if=/dev/zero of=/dev/vdb bs=512 count=1 conv=fsync 2>&1; echo rc=$?")
    assert "rc=0" not in out
    assert re.search(r"Read-only|Operation not permitted|Input/output", out), out
    out = vm.sh("mount -o remount,rw /ro 2>&1; echo rc=$?")
    assert "rc=0" not in out


def test_written_data_reaches_the_image(vm, disks):
    out = vm.sh("dd if=/dev/urandom of=/mnt/random.bin bs=64k count=64 2>/dev/null && "
                "sync && md5sum /mnt/random.bin", timeout=180)
    guest_md5 = out.split()[0]
    # Power off: the host reads the image only after the guest is gone.
    vm.console.write("poweroff -f\n")
    assert vm.wait_exit(60) == 0
    data = debugfs_dump(disks["data"], "/random.bin", disks["dir"] / "random.out")
    assert len(data) == 64 * 65536
    assert hashlib.md5(data).hexdigest() == guest_md5
    # and the read-only image is byte-for-byte untouched but for nothing
    ro = debugfs_dump(disks["ro"], "/readme.txt", disks["dir"] / "readme.out")
    assert ro == b"read only\n"
