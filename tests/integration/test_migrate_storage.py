"""Live storage migration in the lab (`tern vm migrate --copy-storage`).

The guest has a 2 GiB raw disk that only host 0 has (host0/disk.img, sparse,
with 64 MiB of random data at 512 MiB so that the bulk copy has something to
carry). In the guest two writers run throughout, each write flushed before
it counts (O_DIRECT + fdatasync, i.e. a virtio-blk FLUSH):
  - `diskrec append`: numbered, checksummed 4 KiB records from offset 0;
  - `diskrec random`: random 4 KiB overwrites of a 16 MiB region at 1 GiB.
First two failures while the disk is being copied (the destination is killed;
the link to it drops): the guest keeps running on host 0 with its disk, and
the destination leaves no image behind. Then two mistakes a migration
without --copy-storage must catch before it pauses the guest: the
destination has no image at that path, or one of another size. Then the guest moves to host 1 and
back with --copy-storage. At the end, from the image the VM uses: every
record the guest saw acknowledged is there, in order, and checks out; the
random region's CRC-32 read by the guest (O_DIRECT, from the device) equals
the host's CRC-32 of the same bytes of the file; the 64 MiB the guest never
touched are unchanged; and the copies stayed sparse. Last, on loopback, a VM
with a read-only second disk: it is copied too."""
import os
import re
import signal
import subprocess
import time
import zlib

import pytest

from migrate_lab import Lab, MovingVm
from ternvm import Vm, free_port, run_tern

DISK_SIZE = 2 << 30
FILL_OFFSET, FILL_SIZE = 512 << 20, 64 << 20
RANDOM_OFFSET_MIB, RANDOM_SIZE_MIB = 1024, 16
RECORD = 4096
STALL_TIMEOUT_S = 10          # the migration's (docs/migration-protocol.md)


def fill(path):
    with open(path, "r+b") as f:
        f.seek(FILL_OFFSET)
        f.write(os.urandom(FILL_SIZE))


def crc_of(path, offset, size):
    crc = 0
    with open(path, "rb") as f:
        f.seek(offset)
        left = size
        while left:
            chunk = f.read(min(left, 4 << 20))
            assert chunk, f"{path} ends before {offset + size}"
            crc = zlib.crc32(chunk, crc)
            left -= len(chunk)
    return crc


@pytest.fixture(scope="module")
def lab():
    with Lab(2) as lab:
        yield lab


@pytest.fixture(scope="module")
def guest(lab, tmp_path_factory):
    g = MovingVm(lab, tmp_path_factory.mktemp("storage"), dirtier="-s,16,-r,8",
                 local_disk=DISK_SIZE, prepare=fill)
    g.fill_crc = crc_of(g.disk_path(0), FILL_OFFSET, FILL_SIZE)
    try:
        g.boot(0)
        g.vm.sh("diskrec append /dev/vda -r 40 > /tmp/append.log 2>&1 & "
                "echo $! > /tmp/append.pid")
        g.vm.sh(f"diskrec random /dev/vda -o {RANDOM_OFFSET_MIB} -n {RANDOM_SIZE_MIB} -r 40 "
                "> /tmp/random.log 2>&1 & echo $! > /tmp/random.pid")
        yield g
    finally:
        g.close()


def acked(g):
    out = g.vm.sh("tail -1 /tmp/append.log")
    m = re.search(r"acked (\d+)", out)
    return int(m.group(1)) if m else 0


def writers_progress(g, seconds=2.0):
    """The appender acknowledges new records (the guest and its disk work)."""
    a = acked(g)
    time.sleep(seconds)
    b = acked(g)
    assert b > a, f"the appender is stuck at {a} records"
    return b


def wait_disk_copy_started(g, min_bytes=4 << 20, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        st = g.status()
        disk = st.get("disk", {})
        if disk.get("bytes_sent", 0) >= min_bytes:
            assert disk["bytes_sent"] < disk["bytes_total"], \
                f"the bulk copy finished before the failure could be staged: {st}"
            return st
        assert st["phase"] not in ("completed", "failed", "cancelled"), st
        assert time.monotonic() < deadline, f"the disk copy did not start: {st}"
        time.sleep(0.1)


def host_dir_files(g, host):
    return sorted(os.listdir(g.host_dir(host)))


def test_destination_killed_mid_copy(guest):
    g = guest
    inode = os.stat(g.disk_path(0)).st_ino
    dst, uri = g.start_incoming(1)
    try:
        # 8 MiB/s: the 64 MiB of data take ~8 s, time to kill the destination.
        first = g.migrate(uri, "--copy-storage", "--bandwidth", "8")
        assert first["params"]["copy_storage"] is True, first
        st = wait_disk_copy_started(g)
        assert st["disk"]["bytes_total"] >= FILL_SIZE, st
        dst.proc.send_signal(signal.SIGKILL)
        st = g.wait_finished(timeout=60)
    finally:
        dst.close()
    assert st["phase"] == "failed", st
    assert g.vm.proc.poll() is None, "the source VMM exited"
    writers_progress(g)
    assert os.stat(g.disk_path(0)).st_ino == inode, "the source's image was replaced"
    assert host_dir_files(g, 1) == [], "a half-copied image was left on the destination"


def test_link_down_mid_copy(guest, lab):
    g = guest
    dst, uri = g.start_incoming(1)
    try:
        g.migrate(uri, "--copy-storage", "--bandwidth", "8")
        wait_disk_copy_started(g)
        lab.link_down(1)
        try:
            st = g.wait_finished(timeout=STALL_TIMEOUT_S + 50)
            # The destination gives up on its own once nothing arrives.
            dst_rc = dst.wait_exit(STALL_TIMEOUT_S + 30)
        finally:
            lab.link_up(1)
    finally:
        dst.close()
    assert st["phase"] == "failed", st
    assert dst_rc != 0, dst_rc
    writers_progress(g)
    assert host_dir_files(g, 1) == [], "a half-copied image was left on the destination"


@pytest.mark.parametrize("mistake", ["missing", "other size"])
def test_shared_storage_mistake_found_before_pause(guest, mistake):
    """Without --copy-storage the destination must see the same image: a
    missing path or an image of another size stops the migration at its
    start, and the guest never stops."""
    g = guest
    wrong = g.disk_path(1)
    if mistake == "other size":
        with open(wrong, "wb") as f:
            f.truncate(DISK_SIZE // 2)
    dst, uri = g.start_incoming(1)
    try:
        g.migrate(uri)
        st = g.wait_finished(timeout=60)
        dst_rc = dst.wait_exit(30)
    finally:
        dst.close()
        if mistake == "other size":
            os.unlink(wrong)
    assert st["phase"] == "failed", st
    assert st["downtime_ms"] == 0 and st["pass"] <= 1, st
    want = ("No such file" if mistake == "missing"
            else "shared storage needs the same image on both hosts")
    assert want in st["error"], st["error"]
    assert dst_rc != 0
    writers_progress(g)
    assert host_dir_files(g, 1) == []


def test_copy_storage_there_and_back(guest):
    g = guest
    before = writers_progress(g)
    st = g.move_to(1, "--copy-storage")
    assert st["params"]["copy_storage"] is True, st
    assert st["disk"]["bytes_sent"] >= FILL_SIZE, st
    copy = os.stat(g.disk_path(1))
    assert copy.st_size == DISK_SIZE
    # Sparse: the 64 MiB, the records and the random region, not 2 GiB.
    assert copy.st_blocks * 512 < 256 << 20, f"the copy is not sparse: {copy.st_blocks * 512}"
    assert host_dir_files(g, 1) == ["disk.img"], host_dir_files(g, 1)
    middle = writers_progress(g)
    assert middle > before

    st = g.move_to(0, "--copy-storage")
    assert st["phase"] == "completed", st
    writers_progress(g)

    # Stop the writers; what they acknowledged must be on the disk.
    g.vm.sh("kill -TERM $(cat /tmp/append.pid) $(cat /tmp/random.pid); "
            "while kill -0 $(cat /tmp/append.pid) 2>/dev/null || "
            "kill -0 $(cat /tmp/random.pid) 2>/dev/null; do sleep 0.1; done")
    out = g.vm.sh("tail -1 /tmp/append.log; tail -1 /tmp/random.log")
    n = int(re.search(r"append: acked (\d+) \(ended\)", out).group(1))
    writes = int(re.search(r"random: writes (\d+) \(ended\)", out).group(1))
    assert n > middle and writes > 0, out
    out = g.vm.sh(f"diskrec crc /dev/vda -o {RANDOM_OFFSET_MIB} -n {RANDOM_SIZE_MIB}",
                  timeout=180)
    guest_crc = int(re.search(r"crc32 ([0-9a-f]{8})", out).group(1), 16)

    image = g.disk_path(0)
    with open(image, "rb") as f:
        data = f.read(n * RECORD)
    for i in range(n):
        rec = data[i * RECORD:(i + 1) * RECORD]
        assert rec[:8] == b"TERNREC1", f"record {i} of {n} acknowledged ones is missing"
        assert int.from_bytes(rec[8:16], "little") == i, f"record {i} holds another number"
        assert zlib.crc32(rec[:RECORD - 4]) == int.from_bytes(rec[RECORD - 4:], "little"), \
            f"record {i} is corrupt"
    region = crc_of(image, RANDOM_OFFSET_MIB << 20, RANDOM_SIZE_MIB << 20)
    assert region == guest_crc, (f"random region: the guest reads crc {guest_crc:08x}, "
                                 f"the image holds {region:08x}")
    with open(image, "rb") as f:
        f.seek(RANDOM_OFFSET_MIB << 20)
        blocks = f.read(RANDOM_SIZE_MIB << 20)
    for k in range(len(blocks) // RECORD):
        b = blocks[k * RECORD:(k + 1) * RECORD]
        if b == bytes(RECORD):
            continue
        assert b[:8] == b"TERNRND1" and int.from_bytes(b[8:16], "little") == k, \
            f"random block {k} is not what the writer wrote there"
        assert zlib.crc32(b[:RECORD - 4]) == int.from_bytes(b[RECORD - 4:], "little"), \
            f"random block {k} is corrupt"
    assert crc_of(image, FILL_OFFSET, FILL_SIZE) == g.fill_crc, "untouched data changed"
    assert os.stat(image).st_blocks * 512 < 256 << 20, "the copy back is not sparse"
    # The guest's view of its whole disk agrees: its flushes reached the file.
    subprocess.run(["sync"], check=True)


def test_read_only_disk_is_copied_too(tmp_path):
    """--copy-storage copies every disk, a read-only one as well (the
    destination writes its copy through its own descriptor), on loopback."""
    src_dir, dst_dir = tmp_path / "a", tmp_path / "b"
    src_dir.mkdir()
    dst_dir.mkdir()
    rw, ro = src_dir / "rw.img", src_dir / "ro.img"
    for path, size in ((rw, 64 << 20), (ro, 32 << 20)):
        with open(path, "wb") as f:
            f.truncate(size)
    with open(ro, "r+b") as f:
        f.seek(4 << 20)
        f.write(os.urandom(8 << 20))
    want = crc_of(ro, 0, 32 << 20)
    src = Vm(tmp_path / "src", disks=[rw, f"{ro},ro"]).boot()
    port = free_port()
    dst = Vm(tmp_path / "dst", incoming=f"tcp:127.0.0.1:{port}",
             disks=[dst_dir / "rw.img", f"{dst_dir / 'ro.img'},ro"]).start().wait_listening()
    try:
        src.sh("dd if=/dev/urandom of=/dev/vda bs=64k count=16 oflag=direct 2>/dev/null; sync")
        rc, out = run_tern("vm", "migrate", "--api-socket", src.api_path, "--to",
                           f"tcp:127.0.0.1:{port}", "--copy-storage", "--watch", timeout=120)
        assert rc == 0, out
        assert src.wait_exit(30) == 0
        dst.attach()
        assert crc_of(dst_dir / "ro.img", 0, 32 << 20) == want
        assert crc_of(dst_dir / "rw.img", 0, 1 << 20) == crc_of(rw, 0, 1 << 20)
        assert dst.sh("dd if=/dev/vdb bs=64k count=1 skip=64 iflag=direct 2>/dev/null | wc -c"
                      ).strip() == "65536"
    finally:
        src.close()
        dst.close()
