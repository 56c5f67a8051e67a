#!/usr/bin/env python3
"""storage_bench: live migration of a VM together with its local disk, tern
(`tern vm migrate --copy-storage`) against qemu-system-riscv64 7.2's block
migration, side by side in one run, source and destination on this machine,
over 127.0.0.1.

Both VMMs get the same kernel, initrd, 512 MiB of RAM, one hart and the guest
command line `tern.heartbeat=5000 tern.heartbeat_lines=1` (a line "HB <seq>
<ns>" every 5 ms on ttyS1; QEMU: a PCI 16550, as in migrate_bench.py).

The disk: a raw image of 2 GiB with 512 MiB of random data at offset 0, the
rest a hole, written once per row and copied (`cp --sparse=always`) into
each VMM's source directory; the guest sees it as /dev/vda (virtio-blk). The
destination's image path is in its own directory: tern creates it itself
(its destination is given `--disk PATH` of a file that does not exist); QEMU
needs an existing file of the same size (`truncate -s 2G`).
Rows:
  2G-disk-idle     the guest does nothing with its disk
  2G-disk-write20  the guest runs `diskrec random /dev/vda -o 1024 -n 512
                   -k 256 -r 80`: 80 writes of 256 KiB a second, each
                   O_DIRECT and fdatasync'd before the next (20 MiB/s), at
                   random places in [1 GiB, 1.5 GiB); started after boot,
                   migrated --settle (3) seconds later, stopped (SIGTERM) on
                   the destination after the migration
  256M-disk-idle   (--quick) a 256 MiB disk with 64 MiB of data, idle
VMMs:
  tern          `tern vm migrate --to tcp:... --copy-storage` with tern's
                defaults (downtime limit 30 ms), polled with migrate-status
                every 20 ms; the run uses a copy of build/tern made at its
                start; migration in plaintext (--no-tls on both sides) like
                QEMU's, unless --tern-tls
  qemu          QEMU block migration (`migrate -b`: capability "block" on the
                source), max-bandwidth 100 GiB/s, downtime-limit 300 ms
                (QEMU's default)
  qemu-dl30     the same with downtime-limit 30 ms (tern's default)
  qemu-dl30-zb  the same plus capability "zero-blocks" (off by default: QEMU
                then sends the disk's holes as 1 MiB blocks of zeros)
  (drive-mirror to an NBD export, the other way QEMU moves a disk, is not
  measured: block migration works on this QEMU.)
QEMU 7.2 does not migrate armed RISC-V timers: as in migrate_bench.py, QEMU
runs with `-cpu rv64,sstc=off` and the destination's mtimecmp registers are
written back through qtest as soon as it runs.
Figures:
  total       the VMM's own total time (tern elapsed_ms, QEMU total-time)
  downtime    as the VMM reports it (tern downtime_ms, QEMU downtime)
  hb gap      the largest gap between heartbeat lines (host arrival times)
              across the switch-over, from 1 s before the source's last line
              to 2 s after the destination's first (migrate_bench's)
  hb mig      the largest gap from the migrate command to 2 s after the
              destination's first line (stalls during the disk copy show),
              and when it began (ms after the migrate command)
  wire        bytes on the migration connection: tern's bytes_sent (its own
              count, disk included); for QEMU the kernel's count of bytes the
              destination acknowledged on the connection (TCP_INFO
              tcpi_bytes_acked): QEMU 7.2 has no total, its ram.transferred
              counts RAM only and its disk.transferred is the bulk copy's
              progress (the whole disk, holes included) and is gone once the
              migration completed. So QEMU's source is given the connection
              already made: the script connects to the destination, passes
              the socket with QMP getfd and migrates to `fd:mig`, keeping a
              copy of the socket to read its counters.
  disk        disk bytes sent: tern's disk.bytes_sent; QEMU: wire less
              ram.transferred (the device state's few KiB included)
  dest alloc  what the destination's image file occupies on the host
              (st_blocks): holes kept or filled
Checks (a mismatch fails the cell): the guest's shell answers on the
destination and its heartbeat resumes; the first DATA bytes of the
destination's image hold the prepared data (zlib CRC-32); in the write20 row,
after the writer stopped, `diskrec crc /dev/vda -o 1024 -n 512` in the guest
(O_DIRECT, from the device) equals the CRC-32 of the same 512 MiB of the
destination's image file.
Prints each figure, the tern/QEMU ratios and the exact commands; with
--write-docs it writes the section "Storage migration
(bench/migrate/storage.sh)" of docs/benchmarks.md (keeping that section's
hand-written "### Reading" part)."""
import argparse
import datetime
import inspect
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "integration"))
import migrate_bench  # noqa: E402
from migrate_bench import (ACLINT_MTIMECMP, COMMANDS, OPENSBI, HbReader, Qmp,  # noqa: E402
                           Qtest, free_port, heartbeat_figures, loopback_bandwidth,
                           machine_info, note_cmd, rearm_timers)
from ternvm import INITRD, KERNEL, TERN_BIN, Vm, guest_images  # noqa: E402

DOCS = REPO / "docs" / "benchmarks.md"
SECTION = "## Storage migration (bench/migrate/storage.sh)"
QEMU_MAX_BANDWIDTH = 100 << 30          # bytes/s: loopback never hits it
MEM_MIB = 512
MiB = 1 << 20
FINAL = ("completed", "failed", "cancelled", "unknown", "none")

# name: disk size, random data at offset 0, the writer (None: idle)
WRITER = {"offset_mib": 1024, "size_mib": 512, "kib": 256, "per_s": 80}
ROWS = {
    "2G-disk-idle": {"disk": 2 << 30, "data": 512 * MiB, "writer": None},
    "2G-disk-write20": {"disk": 2 << 30, "data": 512 * MiB, "writer": WRITER},
    "256M-disk-idle": {"disk": 256 * MiB, "data": 64 * MiB, "writer": None},
}
DEFAULT_ROWS = ["2G-disk-idle", "2G-disk-write20"]
QUICK_ROWS = ["256M-disk-idle"]
VMMS = {"tern": "tern", "qemu": "QEMU dl=300", "qemu-dl30": "QEMU dl=30",
        "qemu-dl30-zb": "QEMU dl=30 zero-blocks"}
DEFAULT_VMMS = ["tern", "qemu", "qemu-dl30", "qemu-dl30-zb"]
QEMU_VARIANTS = {
    "qemu": {"downtime": 300, "caps": ["block"]},
    "qemu-dl30": {"downtime": 30, "caps": ["block"]},
    "qemu-dl30-zb": {"downtime": 30, "caps": ["block", "zero-blocks"]},
}

TERN = [TERN_BIN]                        # the binary this run uses: a copy, see measure()
MACHINE = ["?"]


def writer_cmd(w):
    return (f"diskrec random /dev/vda -o {w['offset_mib']} -n {w['size_mib']} -k {w['kib']} "
            f"-r {w['per_s']}")


def guest_cmdline(args):
    return f"tern.heartbeat={args.heartbeat_us} tern.heartbeat_lines=1"


# ---- the disk image ----------------------------------------------------------------

def crc_of(path, offset, size):
    crc = 0
    with open(path, "rb") as f:
        f.seek(offset)
        left = size
        while left:
            chunk = f.read(min(left, 8 * MiB))
            if not chunk:
                raise RuntimeError(f"{path} ends before {offset + size}")
            crc = zlib.crc32(chunk, crc)
            left -= len(chunk)
    return crc


def prepare_image(path, spec):
    """A sparse raw image of spec["disk"] bytes, random data at offset 0;
    returns the data's CRC-32."""
    path.unlink(missing_ok=True)
    crc = 0
    with open(path, "wb") as f:
        f.truncate(spec["disk"])
        left = spec["data"]
        while left:
            chunk = os.urandom(min(left, 4 * MiB))
            f.write(chunk)
            crc = zlib.crc32(chunk, crc)
            left -= len(chunk)
    return crc


def copy_image(image, dest, row, name):
    dest.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["cp", "--sparse=always", str(image), str(dest)]
    note_cmd(f"{row} {name} source image", shlex.join(cmd))
    subprocess.run(cmd, check=True)


def allocated_mib(path):
    try:
        return os.stat(path).st_blocks * 512 / MiB
    except OSError:
        return None


# ---- the guest -------------------------------------------------------------------

def prepare_guest(vm, spec, hb, settle_s, row):
    """Waits for the heartbeat, starts the writer (write rows), waits
    settle_s; returns the writer's figures before the migration."""
    deadline = time.monotonic() + 120
    while hb.count() < 10:
        if hb.error or time.monotonic() > deadline:
            raise RuntimeError(f"no heartbeat on ttyS1 ({hb.error or 'timeout'})")
        time.sleep(0.1)
    w = spec["writer"]
    if not w:
        time.sleep(settle_s)
        return {}
    start = f"{writer_cmd(w)} > /tmp/diskrec.log 2>&1 & echo $! > /tmp/diskrec.pid"
    note_cmd(f"{row} guest writer", start + "   (in the guest's shell on ttyS0, once it booted; "
             "the migration starts --settle seconds later)")
    vm.sh(start, timeout=60)
    t_start = time.monotonic()
    time.sleep(settle_s)
    out = vm.sh("tail -n 2 /tmp/diskrec.log", timeout=60)
    counts = [int(x) for x in re.findall(r"random: writes (\d+)", out)]
    if not counts:
        raise RuntimeError(f"the disk writer does not run: {out!r}")
    last_s = (counts[-1] - counts[-2]) * w["kib"] / 1024 if len(counts) > 1 else None
    return {"writer_t0": t_start, "writer_mibs_before": last_s}


def largest_gap_at(hb_src, hb_dst, t_mig_ns):
    """Where the largest heartbeat gap from the migrate command to 2 s after
    the destination's first line (hb_mig_ms) starts, in ms after the
    command."""
    d = list(hb_dst.lines)
    t_hi = d[0][0] + 2_000_000_000 if d else 0
    times = [t for t, _, _ in hb_src.lines if t >= t_mig_ns] + [t for t, _, _ in d if t <= t_hi]
    gaps = [(b - a, a) for a, b in zip(times, times[1:])]
    return (max(gaps)[1] - t_mig_ns) / 1e6 if gaps else None


def wait_heartbeat(hb, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not hb.count():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no heartbeat from the destination {seconds:.0f} s after the "
                               "migration ended: the guest does not run there")
        time.sleep(0.01)


def check_destination(vm, spec, dst_img, data_crc, pre, args, row):
    """The migrated guest answers; its disk holds what it should (see the
    module docstring). Returns (text, writer figures)."""
    vm.sh("true", timeout=120)
    notes, extra = ["shell ok"], {}
    w = spec["writer"]
    if w:
        stop = ("kill -TERM $(cat /tmp/diskrec.pid); "
                "while kill -0 $(cat /tmp/diskrec.pid) 2>/dev/null; do sleep 0.1; done; "
                "tail -n 1 /tmp/diskrec.log")
        crc = f"diskrec crc /dev/vda -o {w['offset_mib']} -n {w['size_mib']}"
        note_cmd(f"{row} guest check", f"{stop}; then {crc}   (in the destination guest's "
                 "shell; its crc32 is compared with zlib.crc32 of the same bytes of the "
                 "destination's image file)")
        out = vm.sh(stop, timeout=120)
        t_stop = time.monotonic()
        m = re.search(r"random: writes (\d+) \(ended\)", out)
        if not m:
            raise RuntimeError(f"the disk writer did not end cleanly: {out!r}")
        writes = int(m.group(1))
        extra["writes"] = writes
        extra["writer_mibs_run"] = writes * w["kib"] / 1024 / (t_stop - pre["writer_t0"])
        t0 = time.monotonic()
        out = vm.sh(crc, timeout=args.crc_timeout)
        extra["guest_crc_s"] = time.monotonic() - t0
        m = re.search(r"crc32 ([0-9a-f]{8})", out)
        if not m:
            raise RuntimeError(f"diskrec crc printed no crc: {out!r}")
        guest = int(m.group(1), 16)
        host = crc_of(dst_img, w["offset_mib"] * MiB, w["size_mib"] * MiB)
        if guest != host:
            raise RuntimeError(f"written region: the guest reads crc32 {guest:08x}, the "
                               f"destination's image holds {host:08x}")
        notes.append(f"{writes} writes acknowledged; written region crc32 {guest:08x} in the "
                     f"guest and in the destination's image ({extra['guest_crc_s']:.0f} s to "
                     "read it in the guest)")
    host = crc_of(dst_img, 0, spec["data"])
    if host != data_crc:
        raise RuntimeError(f"the first {spec['data'] // MiB} MiB of the destination's image: "
                           f"crc32 {host:08x}, prepared {data_crc:08x}")
    notes.append(f"data crc32 {host:08x} as prepared")
    size = os.stat(dst_img).st_size
    if size != spec["disk"]:
        raise RuntimeError(f"the destination's image has {size} bytes, not {spec['disk']}")
    return "; ".join(notes), extra


def tls_kw():
    """tern migrates with TLS by default; QEMU here in plaintext: tern too,
    when this tern and ternvm know the option (--tern-tls keeps TLS)."""
    if "tls" not in inspect.signature(Vm.__init__).parameters:
        return {}
    if ARGS[0].tern_tls:
        return {"tls": "test"}
    usage = subprocess.run([TERN[0], "help"], capture_output=True, text=True)
    return {"tls": "off" if "--no-tls" in usage.stdout + usage.stderr else None}


ARGS = [None]


# ---- tern --------------------------------------------------------------------

class TernVm(Vm):
    """ternvm.Vm with ttyS1 on a unix socket (for the heartbeat reader)."""

    def __init__(self, workdir, **kw):
        super().__init__(workdir, **kw)
        self.hb_path = self.workdir / "ttyS1.sock"

    def command(self):
        cmd = super().command()
        cmd[cmd.index("--serial1") + 1] = f"unix:{self.hb_path}"
        return cmd


def tern_round(args, row, spec, work, image, data_crc, name="tern"):
    run_dir = work / f"{name}-{row}"
    shutil.rmtree(run_dir, ignore_errors=True)
    src_img, dst_img = run_dir / "src" / "disk.img", run_dir / "dst" / "disk.img"
    copy_image(image, src_img, row, name)
    (run_dir / "dst").mkdir(parents=True)
    kw = tls_kw()
    src = TernVm(run_dir / "src", cpus=args.cpus, memory=f"{MEM_MIB}M", binary=TERN[0],
                 kernel=KERNEL, initrd=INITRD, cmdline=guest_cmdline(args), disks=[src_img],
                 **kw)
    port = free_port()
    dst = TernVm(run_dir / "dst", incoming=f"tcp:127.0.0.1:{port}", binary=TERN[0],
                 disks=[dst_img], **kw)
    readers = []
    try:
        note_cmd(f"{row} {name} source", shlex.join(src.command()))
        src.start()
        hb_src = HbReader(src.hb_path, "src")
        readers.append(hb_src)
        src.console.wait_for(r"TERN-READY", 600)
        src.sh("true", timeout=60)
        pre = prepare_guest(src, spec, hb_src, args.settle, row)
        note_cmd(f"{row} {name} destination", shlex.join(dst.command()))
        dst.start()
        dst.wait_listening(60)
        hb_dst = HbReader(dst.hb_path, "dst", connect_timeout=args.timeout + 60)
        readers.append(hb_dst)
        mig = [TERN[0], "vm", "migrate", "--api-socket", str(src.api_path),
               "--to", f"tcp:127.0.0.1:{port}", "--copy-storage"]
        note_cmd(f"{row} {name} migrate", shlex.join(mig))
        note_cmd(f"{row} {name} poll", shlex.join([TERN[0], "vm", "migrate", "--api-socket",
                                                 str(src.api_path), "--status"]) +
                 "   (sent as the API request {\"command\":\"migrate-status\"} every 20 ms)")
        t_mig = time.monotonic_ns()
        p = subprocess.run(mig, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"tern vm migrate failed ({p.returncode}): {p.stdout}{p.stderr}")
        st, last_err = None, None
        deadline = time.monotonic() + args.timeout
        while True:
            try:
                st = src.api("migrate-status", timeout=10).get("result", st)
            except (OSError, ValueError) as e:
                last_err = e             # the source exits ~1 s after completing
                if src.proc.poll() is not None:
                    break
            if st and st.get("phase") in FINAL:
                break
            if time.monotonic() > deadline:
                subprocess.run([TERN[0], "vm", "migrate", "--api-socket", str(src.api_path),
                                "--cancel"], capture_output=True, timeout=30)
                raise TimeoutError(f"tern migration not done after {args.timeout:.0f} s "
                                   f"(cancelled): {st}")
            time.sleep(0.02)
        t_end = time.monotonic_ns()
        if not st or st.get("phase") != "completed":
            raise RuntimeError(f"tern migration ended {st} (last poll error {last_err}); "
                               f"source log:\n{src.log_text()[-3000:]}\n"
                               f"destination log:\n{dst.log_text()[-3000:]}")
        wait_heartbeat(hb_dst)
        dst.attach(timeout=120)
        verified, wextra = check_destination(dst, spec, dst_img, data_crc, pre, args, row)
        hb = heartbeat_figures(hb_src, hb_dst, t_mig, args.settle)
        hb["hb_mig_at_ms"] = largest_gap_at(hb_src, hb_dst, t_mig)
        try:
            src_rc = src.wait_exit(30)
        except subprocess.TimeoutExpired:
            src_rc = "still running"
        disk = st.get("disk") or {}
        return {
            "ok": True, "total_s": st["elapsed_ms"] / 1000, "host_s": (t_end - t_mig) / 1e9,
            "downtime_ms": st["downtime_ms"], "wire_mib": st["bytes_sent"] / MiB,
            "disk_mib": disk.get("bytes_sent", 0) / MiB, "passes": st.get("pass"),
            "alloc_mib": allocated_mib(dst_img), "src_alloc_mib": allocated_mib(src_img),
            "verified": verified, "src_exit": src_rc, "status": st,
            "writer_mibs_before": pre.get("writer_mibs_before"), **wextra, **hb,
        }
    finally:
        for r in readers:
            r.close()
        src.close()
        dst.close()


# ---- QEMU --------------------------------------------------------------------

class QemuVm(Vm):
    """ternvm.Vm driving qemu-system-riscv64 (as migrate_bench's): console
    and ttyS1 (a PCI 16550) on unix sockets, QMP on a third, Sstc off, the
    disk as virtio-blk on virtio-mmio; on the destination, a qtest socket."""

    def __init__(self, workdir, mem_mib, cpus, cmdline, disk, incoming=None):
        super().__init__(workdir)
        self.mem_mib, self.qcpus, self.qcmdline = mem_mib, cpus, cmdline
        self.disk, self.qincoming = disk, incoming
        self.hb_path = self.workdir / "ttyS1.sock"
        self.qmp_path = self.workdir / "qmp.sock"
        self.qtest_path = self.workdir / "qtest.sock"

    def command(self):
        cmd = ["qemu-system-riscv64", "-M", "virt", "-m", str(self.mem_mib),
               "-smp", str(self.qcpus), "-accel", "tcg", "-cpu", "rv64,sstc=off",
               "-display", "none", "-bios", OPENSBI,
               "-kernel", str(KERNEL), "-initrd", str(INITRD),
               "-append", f"console=ttyS0 {self.qcmdline}",
               "-chardev", f"socket,id=con,path={self.console_path},server=on,wait=off",
               "-serial", "chardev:con",
               "-chardev", f"socket,id=hb,path={self.hb_path},server=on,wait=off",
               "-device", "pci-serial,chardev=hb",
               "-drive", f"file={self.disk},format=raw,if=none,id=d0,cache=writeback",
               "-device", "virtio-blk-device,drive=d0",
               "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        if self.qincoming:
            cmd += ["-incoming", self.qincoming,
                    "-qtest", f"unix:{self.qtest_path},server=on,wait=off"]
        return cmd


def qmp_getfd(qmp, fdname, fd):
    """QMP getfd: the command goes with fd attached (SCM_RIGHTS)."""
    qmp.f.flush()
    req = json.dumps({"execute": "getfd", "arguments": {"fdname": fdname}}).encode() + b"\n"
    socket.send_fds(qmp.s, [req], [fd])
    while True:
        msg = qmp._read()
        if "return" in msg:
            return msg["return"]
        if "error" in msg:
            raise RuntimeError(f"QMP getfd: {msg['error']}")


def tcp_acked(sock, settle_s=10.0):
    """Bytes the peer acknowledged on sock (TCP_INFO tcpi_bytes_acked), once
    nothing is left unsent or unacknowledged."""
    deadline = time.monotonic() + settle_s
    while True:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
        unacked = struct.unpack_from("<I", info, 24)[0]
        acked = struct.unpack_from("<Q", info, 120)[0]
        notsent = struct.unpack_from("<I", info, 144)[0]
        if (unacked == 0 and notsent == 0) or time.monotonic() > deadline:
            return acked
        time.sleep(0.01)


def qemu_round(args, row, spec, work, image, data_crc, name):
    v = QEMU_VARIANTS[name]
    run_dir = work / f"{name}-{row}"
    shutil.rmtree(run_dir, ignore_errors=True)
    src_img, dst_img = run_dir / "src" / "disk.img", run_dir / "dst" / "disk.img"
    copy_image(image, src_img, row, name)
    (run_dir / "dst").mkdir(parents=True)
    trunc = ["truncate", "-s", str(spec["disk"]), str(dst_img)]
    note_cmd(f"{row} {name} destination image", shlex.join(trunc))
    subprocess.run(trunc, check=True)
    port = free_port()
    src = QemuVm(run_dir / "src", MEM_MIB, args.cpus, guest_cmdline(args), src_img)
    dst = QemuVm(run_dir / "dst", MEM_MIB, args.cpus, guest_cmdline(args), dst_img,
                 incoming=f"tcp:127.0.0.1:{port}")
    caps = [{"capability": c, "state": True} for c in v["caps"]]
    params = {"max-bandwidth": QEMU_MAX_BANDWIDTH, "downtime-limit": v["downtime"]}
    readers, socks = [], []
    try:
        note_cmd(f"{row} {name} source", shlex.join(src.command()))
        src.start()
        hb_src = HbReader(src.hb_path, "src")
        readers.append(hb_src)
        src.console.wait_for(r"TERN-READY", 600)
        src.sh("true", timeout=60)
        pre = prepare_guest(src, spec, hb_src, args.settle, row)
        note_cmd(f"{row} {name} destination", shlex.join(dst.command()))
        dst.start()
        hb_dst = HbReader(dst.hb_path, "dst", connect_timeout=60)
        readers.append(hb_dst)
        qd = Qmp(dst.qmp_path)           # QMP answers: -incoming listens
        socks.append(qd)
        qt = Qtest(dst.qtest_path)
        socks.append(qt)
        qs = Qmp(src.qmp_path)
        socks.append(qs)
        note_cmd(f"{row} {name} QMP",
                 json.dumps({"execute": "migrate-set-capabilities",
                             "arguments": {"capabilities": caps}}) + "; " +
                 json.dumps({"execute": "migrate-set-parameters", "arguments": params}) +
                 f"; (the script connects to 127.0.0.1:{port}, the destination) " +
                 json.dumps({"execute": "getfd", "arguments": {"fdname": "mig"}}) +
                 " with the socket attached; " +
                 json.dumps({"execute": "migrate", "arguments": {"uri": "fd:mig"}}) +
                 '; {"execute": "query-migrate"} every 20 ms; on the destination '
                 '{"execute": "query-status"} every 2 ms; once it runs, qtest `readq`/`writeq` '
                 f"of each hart's mtimecmp ({ACLINT_MTIMECMP:#x} + 8 * hart)")
        qs.cmd("migrate-set-capabilities", capabilities=caps)
        qs.cmd("migrate-set-parameters", **params)
        conn = socket.create_connection(("127.0.0.1", port))
        socks.append(conn)
        qmp_getfd(qs, "mig", conn.fileno())
        t_mig = time.monotonic_ns()
        qs.cmd("migrate", uri="fd:mig")
        deadline = time.monotonic() + args.timeout
        st, t_end, t_run, last_poll, disk_seen = None, None, None, 0.0, None
        while True:
            now = time.monotonic()
            if t_end is None and now - last_poll >= 0.02:
                last_poll = now
                st = qs.cmd("query-migrate")
                if st.get("disk"):
                    disk_seen = st["disk"]
                if st.get("status") in ("completed", "failed", "cancelled"):
                    t_end = time.monotonic_ns()
                    if st["status"] != "completed":
                        raise RuntimeError(f"QEMU migration ended {st}")
            if t_run is None and qd.cmd("query-status").get("status") == "running":
                t_run = time.monotonic_ns()
                rearm_timers(qt, args.cpus)
            if t_end is not None and t_run is not None:
                break
            if now > deadline:
                qs.cmd("migrate_cancel")
                raise TimeoutError(f"QEMU migration not done after {args.timeout:.0f} s "
                                   f"(cancelled): {st}")
            time.sleep(0.002)
        wire = tcp_acked(conn)
        wait_heartbeat(hb_dst)
        verified, wextra = check_destination(dst, spec, dst_img, data_crc, pre, args, row)
        hb = heartbeat_figures(hb_src, hb_dst, t_mig, args.settle)
        hb["hb_mig_at_ms"] = largest_gap_at(hb_src, hb_dst, t_mig)
        ram = st["ram"]
        return {
            "ok": True, "total_s": st["total-time"] / 1000, "host_s": (t_end - t_mig) / 1e9,
            "downtime_ms": st["downtime"], "wire_mib": wire / MiB,
            "disk_mib": (wire - ram["transferred"]) / MiB, "passes": ram.get("dirty-sync-count"),
            "ram_mib": ram["transferred"] / MiB, "disk_seen": disk_seen,
            "alloc_mib": allocated_mib(dst_img), "src_alloc_mib": allocated_mib(src_img),
            "verified": verified, "status": st,
            "writer_mibs_before": pre.get("writer_mibs_before"), **wextra, **hb,
        }
    finally:
        for q in socks:
            q.close()
        for r in readers:
            r.close()
        src.close()
        dst.close()


# ---- report --------------------------------------------------------------------

METRICS = [  # key, label, format
    ("total_s", "total time (s)", "{:.2f}"),
    ("downtime_ms", "downtime, VMM (ms)", "{:.0f}"),
    ("hb_gap_ms", "downtime, heartbeat (ms)", "{:.0f}"),
    ("hb_mig_ms", "largest heartbeat gap, whole migration (ms)", "{:.0f}"),
    ("wire_mib", "on the wire (MiB)", "{:.1f}"),
    ("disk_mib", "disk data sent (MiB)", "{:.1f}"),
    ("alloc_mib", "destination image allocated (MiB)", "{:.0f}"),
]
MEDIAN_KEYS = [m[0] for m in METRICS] + ["host_s", "hb_switch_ms", "hb_base_ms",
                                         "writer_mibs_before", "writer_mibs_run", "ram_mib"]


def median_result(results):
    return migrate_bench.median_result(results, MEDIAN_KEYS)


def build_tables(table_rows, vmms):
    return migrate_bench.build_tables(table_rows, vmms, METRICS, VMMS, first="disk")


def notes(table_rows, vmms):
    out = []
    for row, res in table_rows:
        w = ROWS[row]["writer"]
        if w:
            parts = []
            for v in vmms:
                r = res[v]
                if r.get("ok") and r.get("writer_mibs_run") is not None:
                    b = r.get("writer_mibs_before")
                    parts.append(f"{VMMS[v]} {b:.1f} before, {r['writer_mibs_run']:.1f} over "
                                 f"the whole run ({r.get('writes')} writes)" if b is not None
                                 else f"{VMMS[v]} {r['writer_mibs_run']:.1f} over the run")
            if parts:
                out.append(f"{row}: the guest's writer (`{writer_cmd(w)}`), MiB/s in its last "
                           "second before the migration and from its start to its stop on the "
                           "destination: " + "; ".join(parts) + ".")
            crc_s = [f"{VMMS[v]} {res[v]['guest_crc_s']:.0f} s" for v in vmms
                     if res[v].get("ok") and res[v].get("guest_crc_s") is not None]
            if crc_s:
                out.append(f"{row}: reading the written {w['size_mib']} MiB back in the guest "
                           "(diskrec crc, O_DIRECT) took " + ", ".join(crc_s) + ".")
        qr = [f"{VMMS[v]} ram.transferred {res[v]['ram_mib']:.1f} MiB" for v in vmms
              if v in QEMU_VARIANTS and res[v].get("ok") and res[v].get("ram_mib") is not None]
        if qr:
            out.append(f"{row}: QEMU's own RAM count: " + ", ".join(qr) + ".")
        at = [f"{VMMS[v]} {res[v]['hb_mig_ms']:.0f} ms at {res[v]['hb_mig_at_ms'] / 1000:.2f} s "
              f"of {res[v]['host_s']:.2f} s" for v in vmms
              if res[v].get("ok") and res[v].get("hb_mig_at_ms") is not None]
        if at:
            out.append(f"{row}: the largest heartbeat gap during the migration, and when it began "
                       "(after the migrate command, of the migration's length on the host): "
                       + ", ".join(at) + ".")
        pas = [f"{VMMS[v]} {res[v]['passes']}" for v in vmms
               if res[v].get("ok") and res[v].get("passes") is not None]
        if pas:
            out.append(f"{row}: passes (tern `pass`, QEMU ram.dirty-sync-count): "
                       + ", ".join(pas) + ".")
    fails = []
    for row, res in table_rows:
        for v in vmms:
            r = res[v]
            if not r.get("ok"):
                fails.append(f"{row} {VMMS[v]}: {r.get('error', '?')}")
            elif r.get("n_ok", 1) < r.get("n", 1):
                fails.append(f"{row} {VMMS[v]}: {r['n'] - r['n_ok']} of {r['n']} runs failed: "
                             f"{r.get('first_error', '')}")
    if fails:
        out.append("Failed cells: " + "; ".join(fails) + ".")
    return out


def docs_commands(rows):
    """The first row's commands (QEMU's command lines once: the variants
    differ only in their QMP line, ports and paths), every row's image and
    the commands typed into the guest's shell."""
    out = []
    for label, text in COMMANDS:
        parts = label.split(" ")
        if len(parts) == 1 or parts[1] in ("image", "guest") or (
                parts[0] == rows[0] and (parts[1] in ("tern", "qemu") or parts[-1] == "QMP")):
            out.append((label, text))
    return out


def write_section(body):
    """Replaces this script's section of docs/benchmarks.md (up to the next
    "## "), keeping its hand-written "### Reading" part; a new section goes
    at the end. Everything else in the file is kept as it is."""
    old = DOCS.read_text()
    reading = None
    start = old.find(SECTION)
    if start >= 0:
        end = old.find("\n## ", start + len(SECTION))
        end = len(old) if end < 0 else end + 1
        section = old[start:end]
        r = section.find("### Reading")
        if r >= 0:
            reading = section[r:].rstrip() + "\n"
        before, after = old[:start], old[end:]
    else:
        before, after = old.rstrip() + "\n\n", ""
    body = body + [reading if reading else "### Reading\n\n(not written yet)\n"]
    DOCS.write_text(before + "\n".join(body) + ("\n" + after.lstrip("\n") if after else ""))
    print(f"# wrote {DOCS.relative_to(REPO)}, section {SECTION!r}")


def write_docs(args, rows, vmms, md_table, extra, argv, minutes, bw):
    today = datetime.date.today().isoformat()
    cmds = "\n".join(f"{label}: {text}" for label, text in docs_commands(rows))
    tls = ("with TLS (test certificates)" if args.tern_tls else
           "in plaintext (`--no-tls` on both sides, tern's default is TLS), as QEMU")
    w = WRITER
    body = [SECTION, "",
            f"Measured {today} with `{('bash bench/migrate/storage.sh ' + shlex.join(argv)).strip()}`"
            f" ({args.runs} run(s) per cell, median; {minutes:.0f} min in all).",
            f"Machine: {MACHINE[0]}; the run used a copy of build/tern taken at its start.",
            "",
            "A VM and its local disk move together, source and destination on the same "
            "machine over 127.0.0.1: tern with `tern vm migrate --copy-storage`, QEMU with "
            "its block migration (`migrate -b`: capability `block` on the source). Same "
            f"kernel, initrd, {MEM_MIB} MiB of RAM, harts (--cpus {args.cpus}) and guest "
            f"command line for both VMMs, a heartbeat line every {args.heartbeat_us} µs on "
            "ttyS1 (QEMU: a PCI 16550). The disk is a 2 GiB raw image with 512 MiB of random "
            "data at offset 0 and the rest a hole, the same file for both (made once per row, "
            "`cp --sparse=always` into each source directory), virtio-blk in the guest "
            "(QEMU: `-drive ...,format=raw,cache=writeback` on virtio-mmio). tern's "
            "destination creates its copy itself (`--disk` names a file that does not exist "
            "yet); QEMU's needs an empty image of the same size (`truncate`). Rows: "
            "2G-disk-idle, the guest leaves its disk alone; 2G-disk-write20, the guest runs "
            f"`{writer_cmd(w)}` (80 writes of 256 KiB a second, each O_DIRECT and "
            f"fdatasync'd, 20 MiB/s at random places in [1 GiB, 1.5 GiB)), started "
            f"{args.settle:g} s before the migration. tern runs with its defaults (downtime "
            f"limit 30 ms), migrating {tls}. QEMU: max-bandwidth 100 GiB/s, downtime-limit "
            "300 ms (its default, \"dl=300\") or 30 ms (tern's, \"dl=30\"); \"zero-blocks\" "
            "adds the capability of that name (off by default: QEMU then sends every hole "
            "as 1 MiB of zeros and writes them into the destination's image). QEMU runs with "
            "`-cpu rv64,sstc=off` and its destination's timers are re-armed through qtest, "
            "as in \"Live migration (bench/migrate)\" above.", "",
            "Checks, each failing its cell: the guest's shell answers on the destination and "
            "its heartbeat resumes; the first 512 MiB of the destination's image hold the "
            "prepared data (CRC-32); in the write row, once the writer stopped, the guest's "
            "own CRC-32 of [1 GiB, 1.5 GiB) read with O_DIRECT (`diskrec crc /dev/vda -o "
            "1024 -n 512`) equals the CRC-32 of the same bytes of the destination's image "
            "file.", "",
            "Metrics: total and downtime as each VMM reports them (tern elapsed_ms and "
            "downtime_ms, QEMU total-time and downtime); heartbeat = the largest gap between "
            "heartbeat lines, host arrival times, around the switch-over and over the whole "
            "migration; on the wire = tern's bytes_sent, and for QEMU the bytes the "
            "destination acknowledged on the migration connection (TCP_INFO "
            "tcpi_bytes_acked: QEMU 7.2 reports no total with block migration, its "
            "ram.transferred counts RAM only and its disk.transferred is the bulk copy's "
            "progress, gone once completed; so the script makes the connection, hands it to "
            "QEMU with QMP `getfd` and migrates to `fd:mig`); disk data sent = tern's "
            "disk.bytes_sent, for QEMU the wire less ram.transferred; destination image "
            "allocated = the image file's blocks on the host afterwards. Lower is better "
            "everywhere; ratios are tern / QEMU. The meaning of each figure in detail: the "
            "docstring of `bench/migrate/storage_bench.py`.", "",
            md_table, "", *extra,
            f"Loopback: {bw / 2**30:.2f} GiB/s (best of 3 × 512 MiB over one TCP connection "
            "on 127.0.0.1).", "",
            f"Commands ({rows[0]}'s; QEMU's command lines are shown once, its variants differ "
            "in their QMP line; the other rows run the same commands with other ports and "
            "paths, plus what is typed into the guest's shell):", "", "```", cmds,
            "```", ""]
    write_section(body)


# ---- main ----------------------------------------------------------------------

def measure(args, rows, vmms):
    guest_images()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)

    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    MACHINE[0] = machine_info()
    TERN[0] = str(work / "tern")
    shutil.copy2(TERN_BIN, TERN[0])
    print(f"# tern binary: {TERN_BIN} copied to {TERN[0]} (built "
          f"{datetime.datetime.fromtimestamp(os.stat(TERN_BIN).st_mtime):%Y-%m-%d %H:%M:%S}; "
          f"{MACHINE[0]})", flush=True)
    print(f"# tern migration TLS: {tls_kw() or 'ternvm default'}", flush=True)
    t_start = time.monotonic()
    bw, bws = loopback_bandwidth(512 * MiB)
    note_cmd("loopback", "one TCP connection over 127.0.0.1 moving 512 MiB in 4 MiB "
             "sendall()s to a recv_into() thread, 3 times (migrate_bench.loopback_bandwidth)")
    print(f"# loopback: {bw / 2**30:.2f} GiB/s (runs: "
          + ", ".join(f"{b / 2**30:.2f}" for b in bws) + ")", flush=True)

    table_rows = []
    for row in rows:
        spec = ROWS[row]
        image = work / f"image-{row}.img"
        data_crc = prepare_image(image, spec)
        note_cmd(f"{row} image", f"a sparse file of {spec['disk']} bytes (truncate), "
                 f"{spec['data'] // MiB} MiB from os.urandom written at offset 0 (in this script)")
        print(f"# {row}: image {image}, {spec['data'] // MiB} MiB of data, crc32 "
              f"{data_crc:08x}", flush=True)
        per = {v: [] for v in vmms}
        for i in range(args.runs):
            for v in vmms:
                t0 = time.monotonic()
                print(f"# {row} {VMMS[v]} run {i + 1}/{args.runs} ...", flush=True)
                try:
                    if v == "tern":
                        r = tern_round(args, row, spec, work, image, data_crc)
                    else:
                        r = qemu_round(args, row, spec, work, image, data_crc, v)
                    print(f"#   total {r['total_s']:.2f} s (host {r['host_s']:.2f} s), downtime "
                          f"{r['downtime_ms']} ms, heartbeat gap {r['hb_gap_ms']:.0f} ms "
                          f"(switch-over {r['hb_switch_ms']:.0f} ms, largest during the "
                          f"migration {r['hb_mig_ms']:.0f} ms, {r['hb_mig_at_ms']:.0f} ms after the "
                          f"migrate command, before {r['hb_base_ms']:.0f} ms), "
                          f"{r['wire_mib']:.1f} MiB on the wire, {r['disk_mib']:.1f} MiB disk, "
                          f"destination image {r['alloc_mib']:.0f} MiB allocated; "
                          f"{r['verified']}; {time.monotonic() - t0:.0f} s in all", flush=True)
                    if r.get("ram_mib") is not None:
                        print(f"#   QEMU ram.transferred {r['ram_mib']:.1f} MiB; last disk "
                              f"object seen while active: {r.get('disk_seen')}", flush=True)
                    if r.get("src_exit") not in (None, 0):
                        print(f"#   the tern source exited {r['src_exit']} (0 expected)",
                              flush=True)
                    shutil.rmtree(work / f"{v}-{row}", ignore_errors=True)
                except Exception as e:  # noqa: BLE001 - one cell failing keeps the others
                    r = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                    print(f"#   FAILED: {r['error']}", flush=True)
                    print(f"#   (its files stay in {work / f'{v}-{row}'})", flush=True)
                    if not isinstance(e, TimeoutError):
                        print("#   " + traceback.format_exc().replace("\n", "\n#   "),
                              flush=True)
                per[v].append(r)
        image.unlink(missing_ok=True)
        res = {}
        for v in vmms:
            res[v] = median_result(per[v])
            res[v]["runs"] = per[v]
            errs = [r["error"] for r in per[v] if not r.get("ok")]
            if errs:
                res[v]["first_error"] = errs[0].splitlines()[0]
                if not res[v].get("ok"):
                    res[v]["error"] = errs[0].splitlines()[0]
        table_rows.append((row, res))
    return bw, table_rows, (time.monotonic() - t_start) / 60


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=None,
                    help=f"comma-separated rows, of: {', '.join(ROWS)} (default: "
                         f"{','.join(DEFAULT_ROWS)})")
    ap.add_argument("--vmms", default=None,
                    help=f"comma-separated, of: {', '.join(VMMS)} (default: all)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: --rows {','.join(QUICK_ROWS)} --settle 1 (unless given)")
    ap.add_argument("--runs", type=int, default=1, help="rounds per cell (median; default 1)")
    ap.add_argument("--cpus", type=int, default=1, help="guest harts (both VMMs)")
    ap.add_argument("--heartbeat-us", type=int, default=5000)
    ap.add_argument("--settle", type=float, default=None,
                    help="seconds between a ready guest (writer started) and the migration "
                         "(default 3)")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds a migration may take before it is cancelled")
    ap.add_argument("--crc-timeout", type=float, default=900.0,
                    help="seconds the guest may take to read the written region back")
    ap.add_argument("--tern-tls", action="store_true",
                    help="tern migrates with TLS (test certificates); default plaintext, as QEMU")
    ap.add_argument("--workdir", default="/tmp/tern-storage-bench")
    ap.add_argument("--write-docs", action="store_true",
                    help="write the section of docs/benchmarks.md")
    ap.add_argument("--from-results", metavar="JSON",
                    help="measure nothing: print (and with --write-docs write) the tables of a "
                         "run saved in WORKDIR/results.json")
    argv = sys.argv[1:]
    args = ap.parse_args()
    ARGS[0] = args
    if args.rows is None:
        args.rows = ",".join(QUICK_ROWS if args.quick else DEFAULT_ROWS)
    if args.vmms is None:
        args.vmms = ",".join(DEFAULT_VMMS)
    if args.settle is None:
        args.settle = 1.0 if args.quick else 3.0
    rows = args.rows.split(",")
    for r in rows:
        if r not in ROWS:
            ap.error(f"unknown row {r!r}")
    for v in args.vmms.split(","):
        if v not in VMMS:
            ap.error(f"unknown VMM {v!r}")
    vmms = [v for v in VMMS if v in args.vmms.split(",")]
    if args.from_results:
        saved = json.loads(Path(args.from_results).read_text())
        rows, vmms, argv = saved["rows_order"], saved["vmms"], saved["argv"]
        for key, value in saved["args"].items():
            setattr(args, key, value)
        MACHINE[0] = saved["machine"]
        COMMANDS[:] = [tuple(c) for c in saved["commands"]]
        bw, minutes = saved["loopback_bytes_s"], saved["minutes"]
        table_rows = [(row, saved["rows"][row]) for row in rows]
    else:
        bw, table_rows, minutes = measure(args, rows, vmms)
        saved = {"argv": argv, "rows_order": rows, "vmms": vmms, "machine": MACHINE[0],
                 "args": {k: getattr(args, k) for k in ("runs", "cpus", "heartbeat_us",
                                                        "timeout", "settle", "tern_tls")},
                 "commands": COMMANDS, "loopback_bytes_s": bw, "minutes": minutes,
                 "rows": {row: res for row, res in table_rows}}
        path = Path(args.workdir) / "results.json"
        path.write_text(json.dumps(saved, indent=1, default=str))
        print(f"# every figure of every run: {path} (--from-results renders it again)")
    text, md = build_tables(table_rows, vmms)
    extra = notes(table_rows, vmms)
    print(f"# --cpus {args.cpus}, {MEM_MIB} MiB guest, heartbeat every {args.heartbeat_us} us, "
          f"median of {args.runs} run(s); {minutes * 60:.0f} s in all")
    print(text)
    print()
    for e in extra:
        print("# " + e)
    print()
    print(md)
    print()
    print("# commands:")
    for label, cmd in COMMANDS:
        print(f"# {label}: {cmd}")
    if args.write_docs:
        write_docs(args, rows, vmms, md, extra, argv, minutes, bw)
    # A tern cell that fails is a failure of the run.
    return 1 if any(not r.get("ok") or r.get("n_ok", 1) < r.get("n", 1)
                    for _, res in table_rows for v, r in res.items() if v == "tern") else 0


if __name__ == "__main__":
    sys.exit(main())
