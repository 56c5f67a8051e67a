#!/usr/bin/env python3
"""migrate_bench: live migration of the same Debian guest on tern and on
qemu-system-riscv64 (TCG, -M virt, Debian's OpenSBI), side by side in one
run, source and destination on this machine, over 127.0.0.1.

Both VMMs get the same kernel, initrd, memory, harts and kernel command line:
the guest's /init runs `heartbeat -l -i 5000` (a line "HB <seq> <ns>" every
5 ms on ttyS1) and, for the loaded rows, `dirtier -s 256 -r RATE -f` (one word
rewritten in each page of a 256 MiB working set, RATE MiB/s, 0 = flat out).
ttyS1 is tern's second UART and, on QEMU, a PCI 16550 (`-device pci-serial`):
the same 8250 driver in the guest, ttyS1 there too.

Per row and VMM: boot the source, wait until the dirtier has written its
whole working set (plus 2 s to read its rate), wait --settle seconds, start
the destination, migrate, poll the status until it ends, then check the
guest on the destination (it beats again, its shell answers, the dirtier's
own check of every page it wrote says ok).
  tern          `tern vm migrate --to tcp:...` with tern's defaults (downtime
                limit 30 ms, strategy auto), polled with migrate-status; the run
                uses a copy of build/tern made at its start. Migration TLS off:
                `--no-tls` on source and destination (tern's default is TLS 1.3
                with certificates on both ends), as QEMU migrates in plaintext
                unless given TLS credentials: every tern variant below does the
                same except tern-tls, so they stay apples-to-apples with the
                plaintext QEMU variants
  qemu          QMP migrate-set-parameters max-bandwidth 100 GiB/s (uncapped)
                and downtime-limit 300 ms (QEMU's default), migrate,
                query-migrate
  qemu-dl30     the same with downtime-limit 30 ms, tern's default
  qemu-dl30-ac  (not in the default set) dl=30 plus QEMU's auto-converge
Variants for --matrix tls (the cost of migration TLS; any --vmms can name them):
  tern-tls      tern's defaults, TLS included: both ends started with
                `--tls-dir DIR`, DIR the integration tests' throwaway
                credentials (ternvm.test_tls_dir(): scripts/mkcerts.sh, a CA and
                one ECDSA P-256 host certificate naming 127.0.0.1, made once per
                run); TLS 1.3, each end verifies the other's certificate
  qemu-tls      qemu-dl30 with TLS: `-object tls-creds-x509,id=tls0,dir=DIR,
                endpoint=server,verify-peer=on` on the destination (started with
                -incoming defer), endpoint=client on the source, and
                migrate-set-parameters {"tls-creds": "tls0"} on both before
                migrate-incoming / migrate. DIR has QEMU's file names, made with
                scripts/mkcerts.sh (a CA and one ECDSA P-256 certificate for
                127.0.0.1 with serverAuth and clientAuth, used as both server and
                client certificate); QEMU checks the server's certificate
                against the URI's host, 127.0.0.1 (an IP SAN). After each cell
                query-migrate-parameters must show tls-creds "tls0" on both
                sides, else the cell fails.
Variants for --matrix strategies (any of them can be given to --vmms):
  tern-precopy  `--strategy precopy`     tern-ac  `--strategy auto-converge`
  tern-postcopy `--strategy postcopy`    tern-2streams  `--streams 2`
  tern-delta    `--delta on --compress off`
  tern-zstd     `--compress on --delta off --streams 2`
                (all with tern's default 30 ms downtime limit; plain `tern` is
                strategy, delta and compress auto)
  qemu-dl30-postcopy  dl=30, capability postcopy-ram on both sides, then
                migrate-start-postcopy once query-migrate shows
                ram.dirty-sync-count >= 2 (pass 1 done)
  qemu-dl30-multifd2  dl=30, capability multifd and multifd-channels 2 on
                both sides
  qemu-dl30-xbzrle    dl=30, capability xbzrle, xbzrle-cache-size as tern's
                default delta cache (a quarter of guest RAM, at most 256 MiB)
  qemu-dl30-zstd      dl=30, multifd with 2 channels and multifd-compression
                zstd on both sides
  A QEMU destination given capabilities or parameters starts with -incoming
  defer and gets migrate-incoming once they are set.
--matrix tls runs rows 1G-idle and 1G-dirty64 with tern, tern-tls, qemu-dl30
and qemu-tls, 3 runs per cell (median), 90 s per migration at most, and
prints (and writes to docs/benchmarks.md, section "Migration TLS cost
(bench/migrate --matrix tls)") total, VMM downtime, heartbeat gap at the
switch-over and wire per variant, with the ratios tern-tls/tern and
qemu-tls/qemu-dl30 (what TLS costs each VMM) and tern-tls/qemu-tls, and,
under the table, each figure's spread over the runs. The wire figures count
the migration stream before encryption (tern bytes_sent, QEMU
ram.transferred): TLS records add some 22 bytes per 16 KiB, which they do not
show.
--matrix strategies runs rows 1G-dirty64 and 1G-dirtymax, one run per cell,
90 s per migration at most, and prints (and writes to docs/benchmarks.md,
section "Live migration strategies (bench/migrate --matrix strategies)") a
paired table: precopy (tern-precopy vs qemu-dl30), auto-converge (tern-ac vs
qemu-dl30-ac), postcopy, 2 streams (vs multifd2), delta (vs xbzrle), zstd,
and auto (tern vs QEMU's best completed setting on the row, metric by metric).
QEMU 7.2 (Debian 12) does not migrate armed timers (fixed upstream in QEMU
10.2, "Fix RISC-V timer migration issues", not backported): on the
destination the interrupt Linux waits for never comes and the guest hangs.
So QEMU runs with Sstc off (Linux programs its timer through SBI, i.e. the
ACLINT's mtimecmp) and, as soon as its destination reports running, this
script writes each hart's mtimecmp back as it is through a qtest socket,
which arms the timer again (--no-qemu-timer-fix shows the hang). That costs
a QMP round trip and a few qtest ones, and is inside the heartbeat figure.
Figures:
  total       the VMM's own total time (tern elapsed_ms, QEMU total-time)
  downtime    as the VMM reports it (tern: pause until the destination's
              RUNNING; QEMU: stop until the source finished sending)
  pause → sent  the same span for both: pause until the source had written
              the final state (tern downtime_sent_us, QEMU downtime, whole ms)
  pause → running there  the source's pause until the destination ran,
              to the microsecond, from each side's own log: tern's debug
              log lines "migration: guest paused" (source) and "vm: hart N
              runs" (destination, the first hart entering the guest), stamped with CLOCK_MONOTONIC;
              QEMU from its trace logs (-msg timestamp=on -trace
              vm_state_notify on both sides: the source's stop for
              finish-migrate to the destination's run, both stamps taken with
              gettimeofday on this machine). For a post-copy that is until the
              destination started; its page waits come after (hb figures)
  hb gap      the largest gap between arrivals, on the host, of heartbeat
              lines across the switch-over (the source's ttyS1, then the
              destination's), from 1 s before the last line of the source to
              2 s after the first line of the destination
  hb switch   the gap between the source's last line and the destination's
              first
  hb guest    the switch-over gap by the guest's own clock (the HB lines'
              timestamps): near the host's figure when the guest was stalled
              with its time running (a throttled hart, a post-copy page wait),
              small when it was paused (time stands still)
  hb mig      the largest gap anywhere from the migrate command to 2 s after
              the destination's first line (throttling stalls show here)
  hb base     the largest gap in the --settle seconds before the migration:
              the heartbeat's own jitter on this guest and load
  wire        bytes sent as the VMM counts them (tern bytes_sent, QEMU
              ram.transferred)
  passes      tern `pass` (memory rounds, the stop-and-copy one included);
              QEMU ram.dirty-sync-count (bitmap syncs, the final one included)
  floor       wire bytes / loopback bandwidth, measured here first with a
              socket pair moving 1 GiB over 127.0.0.1 (best of 3)
  guest speed (dirty rows) the dirtier's rate during the migration divided by
              its rate before: its status lines (once a second, cumulative MiB
              and the guest's CLOCK_MONOTONIC, mono=) read on the destination;
              the migrate command and the VMM's "completed" placed on the
              guest's clock by the first heartbeat line to arrive after each
              (the HB lines carry the same clock); rate during = MiB written
              between the two / guest seconds between them, rate before = MiB
              written in the --settle seconds before the migration / settle;
              1.00 = unaffected, lower = the guest was slowed
  throttle    the highest seen while polling: tern throttle_pct (and, at the
              end, throttle_stall_ms: hart time its dirty limit made harts
              wait, summed over harts), QEMU cpu-throttle-percentage (QEMU
              reports 0 once completed, so the end value says nothing)
  With multifd-compression QEMU 7.2 counts pages in ram.transferred before
  compression; for those variants the source runs with `-trace
  enable=multifd_send,file=...` and wire = ram.transferred - multifd pages x
  4096 + the packets' real payload sizes from that trace.
Prints each figure, the tern/QEMU ratios and the exact commands; with the
full default matrix (or --write-docs) it writes the results into
docs/benchmarks.md, section "Live migration (bench/migrate)"; with the full
strategies matrix, section "Live migration strategies (...)"; with the full
tls matrix, section "Migration TLS cost (...)". Each keeps the section's
hand-written "### Reading" part."""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import ternvm  # noqa: E402
from ternvm import KERNEL, INITRD, TERN_BIN, Vm, free_port, guest_images  # noqa: E402

OPENSBI = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin"
DOCS = REPO / "docs" / "benchmarks.md"
SECTION = "## Live migration (bench/migrate)"
QEMU_MAX_BANDWIDTH = 100 << 30          # bytes/s: loopback never hits it
TERN_DEFAULT_DOWNTIME_MS = 30           # docs/migration-protocol.md, Parameters

# name: (guest MiB, dirtier rate in MiB/s or None for idle; 0 = flat out)
ROWS = {
    "256M-idle": (256, None),
    "1G-idle": (1024, None),
    "2G-idle": (2048, None),
    "1G-dirty16": (1024, 16),
    "1G-dirty64": (1024, 64),
    "1G-dirty256": (1024, 256),
    "1G-dirtymax": (1024, 0),
}
DEFAULT_ROWS = ["1G-idle", "2G-idle", "1G-dirty16", "1G-dirty64", "1G-dirty256", "1G-dirtymax"]
QUICK_ROWS = ["256M-idle"]
WORKING_SET_MIB = 256
# Variants: a VMM with its migration settings. name: label in the tables.
VMMS = {"tern": "tern", "tern-tls": "tern TLS",
        "tern-precopy": "tern precopy", "tern-ac": "tern auto-converge",
        "tern-postcopy": "tern postcopy", "tern-2streams": "tern 2 streams",
        "tern-delta": "tern delta", "tern-zstd": "tern zstd 2 streams", "tern-raw": "tern raw",
        "qemu": "QEMU dl=300", "qemu-dl30": "QEMU dl=30", "qemu-tls": "QEMU dl=30 TLS",
        "qemu-dl30-ac": "QEMU dl=30 ac",
        "qemu-dl30-postcopy": "QEMU dl=30 postcopy", "qemu-dl30-multifd2": "QEMU dl=30 multifd 2",
        "qemu-dl30-xbzrle": "QEMU dl=30 xbzrle", "qemu-dl30-zstd": "QEMU dl=30 multifd 2 zstd"}
DEFAULT_VMMS = ["tern", "qemu", "qemu-dl30"]
# tern variants: options added to `tern vm migrate` (all keep the default
# downtime limit, 30 ms; "tern" is strategy, delta and compress auto). All
# run source and destination with --no-tls (plaintext, as QEMU) except those
# in TERN_TLS, which keep tern's default, TLS, with the test credentials.
TERN_VARIANTS = {
    "tern": [],
    "tern-tls": [],
    "tern-precopy": ["--strategy", "precopy"],
    "tern-ac": ["--strategy", "auto-converge"],
    "tern-postcopy": ["--strategy", "postcopy"],
    "tern-2streams": ["--streams", "2"],
    "tern-delta": ["--delta", "on", "--compress", "off"],
    "tern-zstd": ["--compress", "on", "--delta", "off", "--streams", "2"],
    "tern-raw": ["--delta", "off", "--compress", "off"],
}
# QEMU variants: downtime-limit (ms); capabilities and parameters set on the
# source, and on the destination (which then starts with -incoming defer and
# is given migrate-incoming once set); xbzrle: xbzrle-cache-size as tern's
# default delta cache; postcopy: migrate-start-postcopy once pass 1 is done.
TERN_TLS = {"tern-tls"}
QEMU_VARIANTS = {
    "qemu": {"downtime": 300},
    "qemu-dl30": {"downtime": 30},
    # tls: x509 credentials "tls0" on both sides, tls-creds set on both.
    "qemu-tls": {"downtime": 30, "tls": True},
    "qemu-dl30-ac": {"downtime": 30, "caps": ["auto-converge"]},
    "qemu-dl30-postcopy": {"downtime": 30, "caps": ["postcopy-ram"],
                           "dst_caps": ["postcopy-ram"], "postcopy": True},
    "qemu-dl30-multifd2": {"downtime": 30, "caps": ["multifd"], "dst_caps": ["multifd"],
                           "params": {"multifd-channels": 2},
                           "dst_params": {"multifd-channels": 2}},
    "qemu-dl30-xbzrle": {"downtime": 30, "caps": ["xbzrle"], "xbzrle": True},
    "qemu-dl30-zstd": {"downtime": 30, "caps": ["multifd"], "dst_caps": ["multifd"],
                       "params": {"multifd-channels": 2, "multifd-compression": "zstd"},
                       "dst_params": {"multifd-channels": 2, "multifd-compression": "zstd"}},
}
# --matrix strategies: each of tern's strategies and options beside QEMU's
# equivalent; "auto" (tern's defaults) beside QEMU's best completed setting
# on the row, metric by metric.
SECTION_STRATEGIES = "## Live migration strategies (bench/migrate --matrix strategies)"
STRATEGY_ROWS = ["1G-dirty64", "1G-dirtymax"]
STRATEGY_PAIRS = [  # label, tern variant, QEMU variant (None: QEMU's best)
    ("precopy", "tern-precopy", "qemu-dl30"),
    ("auto-converge", "tern-ac", "qemu-dl30-ac"),
    ("postcopy", "tern-postcopy", "qemu-dl30-postcopy"),
    ("2 streams", "tern-2streams", "qemu-dl30-multifd2"),
    ("delta", "tern-delta", "qemu-dl30-xbzrle"),
    ("zstd", "tern-zstd", "qemu-dl30-zstd"),
    ("auto", "tern", None),
]
STRATEGY_VMMS = [t for _, t, _ in STRATEGY_PAIRS] + [q for _, _, q in STRATEGY_PAIRS if q]
STRATEGY_TIMEOUT = 90.0
STRATEGY_RUNS = 1
# --matrix tls: what migration TLS costs each VMM, and tern's against QEMU's.
SECTION_TLS = "## Migration TLS cost (bench/migrate --matrix tls)"
TLS_ROWS = ["1G-idle", "1G-dirty64"]
TLS_VMMS = ["tern", "tern-tls", "qemu-dl30", "qemu-tls"]
TLS_TIMEOUT = 90.0
TLS_RUNS = 3
QEMU_TLS_ID = "tls0"
FINAL = ("completed", "failed", "cancelled", "unknown", "none")

COMMANDS = []                            # (label, command text), in order
TERN = [TERN_BIN]                        # the binary this run uses: a copy, see main()
MACHINE = ["?"]                          # machine_info() when the run started


def note_cmd(label, text):
    if (label, text) not in COMMANDS:
        COMMANDS.append((label, text))
    print(f"# {label}: {text}", flush=True)


# ---- loopback bandwidth -------------------------------------------------------

def loopback_once(nbytes):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    got = [0]

    def sink():
        conn, _ = srv.accept()
        buf = memoryview(bytearray(4 << 20))
        with conn:
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                got[0] += n

    th = threading.Thread(target=sink)
    th.start()
    chunk = b"\x5a" * (4 << 20)
    t0 = time.monotonic()
    with socket.create_connection(srv.getsockname()) as c:
        for _ in range(nbytes // len(chunk)):
            c.sendall(chunk)
        c.shutdown(socket.SHUT_WR)
        th.join()
    dt = time.monotonic() - t0
    srv.close()
    assert got[0] == nbytes, (got[0], nbytes)
    return nbytes / dt


def loopback_bandwidth(nbytes=1 << 30, runs=3):
    """The best of a few runs: the floor is a lower bound."""
    rates = [loopback_once(nbytes) for _ in range(runs)]
    return max(rates), rates


# ---- heartbeat ----------------------------------------------------------------

class HbReader:
    """Connects to a unix socket carrying the guest's ttyS1 (retrying until it
    exists) and timestamps each "HB <seq> <ns>" line as it arrives."""

    def __init__(self, path, label, connect_timeout=600.0):
        self.path, self.label = str(path), label
        self.lines = []                  # (host monotonic ns, seq, guest ns)
        self.connected_ns = None
        self.error = None
        self._stop = threading.Event()
        self._sock = None
        self._deadline = time.monotonic() + connect_timeout
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.path)
                break
            except OSError:
                s.close()
                if time.monotonic() > self._deadline:
                    self.error = f"{self.path}: never appeared"
                    return
                time.sleep(0.001)
        else:
            return
        self._sock = s
        self.connected_ns = time.monotonic_ns()
        pending = b""
        rx = re.compile(rb"HB (\d+) (\d+)")
        while not self._stop.is_set():
            try:
                data = s.recv(65536)
            except OSError:
                break
            if not data:
                break
            now = time.monotonic_ns()
            pending += data
            *full, pending = pending.split(b"\n")
            for line in full:
                m = rx.search(line)
                if m:
                    self.lines.append((now, int(m.group(1)), int(m.group(2))))

    def count(self):
        return len(self.lines)

    def close(self):
        self._stop.set()
        if self._sock:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        if self._sock:
            self._sock.close()


def max_gap_ms(times):
    return max((b - a for a, b in zip(times, times[1:])), default=0) / 1e6


def heartbeat_figures(src, dst, t_migrate_ns, settle_s):
    """Gaps in the merged stream: the source's lines, then the destination's."""
    s, d = list(src.lines), list(dst.lines)
    if not s or not d:
        raise RuntimeError(f"heartbeat lines: {len(s)} from the source, {len(d)} from the "
                           "destination")
    last_src, first_dst = s[-1], d[0]
    t_lo = last_src[0] - 1_000_000_000
    t_hi = first_dst[0] + 2_000_000_000
    merged = [t for t, _, _ in s if t >= t_lo] + [t for t, _, _ in d if t <= t_hi]
    base_lines = [x for x in s if t_migrate_ns - settle_s * 1e9 <= x[0] <= t_migrate_ns]
    base = [t for t, _, _ in base_lines]
    return {
        "hb_gap_ms": max_gap_ms(merged),
        "hb_switch_ms": (first_dst[0] - last_src[0]) / 1e6,
        "hb_base_ms": max_gap_ms(base),
        "hb_base_guest_ms": max_gap_ms([g for _, _, g in base_lines]),
        "hb_mig_ms": max_gap_ms([t for t, _, _ in s if t >= t_migrate_ns] +
                                [t for t, _, _ in d if t <= t_hi]),
        "hb_lost": first_dst[1] - last_src[1] - 1,
        "hb_guest_ms": (first_dst[2] - last_src[2]) / 1e6,
    }


# ---- guest workload -------------------------------------------------------------

def guest_cmdline(args, rate):
    words = [f"tern.heartbeat={args.heartbeat_us}", "tern.heartbeat_lines=1"]
    if rate is not None:
        # -f: incompressible data in the working set, as real memory holds.
        words.append(f"tern.dirtier=-s,{WORKING_SET_MIB},-r,{rate},-f")
    return " ".join(words)


def prepare_guest(vm, rate, hb, settle_s):
    """Waits for the heartbeat and, for a loaded row, until the dirtier wrote
    its whole working set; returns the dirtier's last-second rate."""
    deadline = time.monotonic() + 120
    while hb.count() < 10:
        if hb.error or time.monotonic() > deadline:
            raise RuntimeError(f"no heartbeat on ttyS1 ({hb.error or 'timeout'})")
        time.sleep(0.1)
    achieved = None
    if rate is not None:
        deadline = time.monotonic() + 1200
        while True:
            out = vm.sh("tail -1 /tmp/dirtier.log", timeout=60)
            m = re.search(r"dirtied=([\d.]+) MiB \(last second ([\d.]+) MiB\)", out)
            if m and float(m.group(1)) >= WORKING_SET_MIB:
                # The rate once populating is over, in a full second of it.
                time.sleep(2)
                out = vm.sh("tail -1 /tmp/dirtier.log", timeout=60)
                m = re.search(r"last second ([\d.]+) MiB", out)
                achieved = float(m.group(1)) if m else None
                break
            if time.monotonic() > deadline:
                raise TimeoutError("dirtier never covered its working set: " + out)
            time.sleep(1)
    time.sleep(settle_s)
    return achieved


def wait_heartbeat(hb, seconds=10.0):
    """The destination's guest beats again (or the run fails: it hangs)."""
    deadline = time.monotonic() + seconds
    while not hb.count():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no heartbeat from the destination {seconds:.0f} s after the "
                               "migration ended: the guest does not run there")
        time.sleep(0.01)


def check_destination(vm, rate):
    """The migrated guest answers, and the dirtier finds every page as it
    last wrote it. Returns the verify line (or "shell ok")."""
    vm.sh("true", timeout=120)
    if rate is None:
        return "shell ok"
    vm.sh("kill -USR2 $(cat /tmp/dirtier.pid)", timeout=60)
    deadline = time.monotonic() + 300
    while True:
        out = vm.sh("grep 'verify' /tmp/dirtier.log || true", timeout=60)
        if "verify" in out:
            line = out.strip().splitlines()[-1]
            if "verify ok" not in line:
                raise RuntimeError(f"dirtier after migration: {line}")
            # The dirtier's rate second by second around the migration.
            log = vm.sh("tail -n 16 /tmp/dirtier.log", timeout=60)
            rates = re.findall(r"last second ([\d.]+) MiB", log)
            return f"{line}; dirtier MiB/s, last {len(rates)} s: " + " ".join(
                f"{float(x):.0f}" for x in rates)
        if time.monotonic() > deadline:
            raise TimeoutError("the dirtier never answered SIGUSR2")
        time.sleep(1)


# ---- guest slowdown -------------------------------------------------------------

DIRTIER_STATUS = re.compile(r"dirtied=([\d.]+) MiB \(last second [\d.]+ MiB\) mono=([\d.]+)")


def guest_time_at(hb_src, hb_dst, t_ns):
    """The guest's CLOCK_MONOTONIC (s) at host time t_ns: the timestamp of
    the first heartbeat line to arrive at or after it (the source's lines,
    then the destination's: the guest runs in one place at a time)."""
    for t, _, g in list(hb_src.lines) + list(hb_dst.lines):
        if t >= t_ns:
            return g / 1e9
    return None


def dirtied_at(samples, g):
    """MiB the dirtier had written at guest time g, interpolated between its
    once-a-second status lines ((mono, dirtied) pairs); None outside them."""
    for (g0, d0), (g1, d1) in zip(samples, samples[1:]):
        if g0 <= g <= g1:
            return d1 if g1 == g0 else d0 + (d1 - d0) * (g - g0) / (g1 - g0)
    return None


def guest_slowdown(vm, hb_src, hb_dst, t_mig, t_end, settle_s):
    """The dirtier's rate during the migration (from the migrate command to
    the VMM's "completed", both mapped onto the guest's clock by the
    heartbeat) over its rate in the settle window before it, from the
    dirtier's log read on the destination (it holds the whole log)."""
    deadline = time.monotonic() + 30
    while not hb_dst.lines or hb_dst.lines[-1][0] < t_end:
        if time.monotonic() > deadline:
            raise RuntimeError("no heartbeat line from the destination after the migration ended")
        time.sleep(0.01)
    g0 = guest_time_at(hb_src, hb_dst, t_mig)
    g1 = guest_time_at(hb_src, hb_dst, t_end)
    lines = int(g1 - g0 + settle_s) + 10
    deadline = time.monotonic() + 60
    while True:
        # The whole window plus a status line after its end.
        out = vm.sh(f"grep mono= /tmp/dirtier.log | tail -n {lines}", timeout=120)
        samples = [(float(m.group(2)), float(m.group(1))) for m in DIRTIER_STATUS.finditer(out)]
        if samples and samples[-1][0] >= g1:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the dirtier's log has no line after the migration (guest time "
                               f"{g1:.3f} s): {out[-300:]}")
        time.sleep(0.5)
    d_lo, d0, d1 = (dirtied_at(samples, g) for g in (g0 - settle_s, g0, g1))
    if None in (d_lo, d0, d1) or g1 <= g0:
        raise RuntimeError(f"the dirtier's log does not cover guest time {g0 - settle_s:.3f} to "
                           f"{g1:.3f} s: first line at {samples[0][0]:.3f} s")
    before = (d0 - d_lo) / settle_s
    during = (d1 - d0) / (g1 - g0)
    return {"rate_before": before, "rate_during": during, "mig_guest_s": g1 - g0,
            "slowdown": during / before if before else None}


# ---- tern -------------------------------------------------------------------

class TernVm(Vm):
    """ternvm.Vm with ttyS1 on a unix socket (for the heartbeat reader)."""

    def __init__(self, workdir, **kw):
        super().__init__(workdir, **kw)
        self.hb_path = self.workdir / "ttyS1.sock"

    def command(self):
        cmd = super().command()
        cmd[cmd.index("--serial1") + 1] = f"unix:{self.hb_path}"
        return cmd


def tern_tls_dir():
    """The integration tests' throwaway migration credentials (made once per
    run, removed at exit), noting how they were made."""
    d = ternvm.test_tls_dir()
    base = ternvm._tls.get("base", d.parent)
    mk = shlex.quote(str(REPO / "scripts" / "mkcerts.sh"))
    note_cmd("tern TLS credentials",
             f"bash {mk} ca {base / 'ca'}; bash {mk} host {base / 'ca'} {d} testhost " +
             " ".join(f"IP:{ip}" for ip in ternvm.TEST_CERT_IPS) +
             "   (ternvm.test_tls_dir(); --tls-dir " + str(d) + " on both ends)")
    return d


# Lines of a tern log that would say a connection went without TLS.
PLAINTEXT_LOG = re.compile(r"plaintext|no-tls|not speak TLS|without TLS", re.I)


TERN_PAUSED = re.compile(r"^tern: debug: \[(\d+\.\d+)\] migration: guest paused", re.M)
TERN_STARTED = re.compile(r"^tern: debug: \[(\d+\.\d+)\] vm: hart \d+ runs", re.M)


def tern_stop_to_run_ms(src_log, dst_log):
    """From the debug logs (CLOCK_MONOTONIC stamps, one clock on this
    machine): the source's pause to the destination's first hart entering
    the guest."""
    paused, started = TERN_PAUSED.findall(src_log), TERN_STARTED.findall(dst_log)
    if not paused or not started:
        raise RuntimeError("no \"guest paused\" line in the source's log or no \"hart N "
                           "runs\" in the destination's")
    return (float(started[0]) - float(paused[-1])) * 1000


def tern_round(args, row, mem_mib, rate, work, name="tern"):
    run_dir = work / f"{name}-{row}"
    for sub in ("src", "dst"):
        for f in ("console.sock", "api.sock", "ttyS1.sock"):
            (run_dir / sub / f).unlink(missing_ok=True)
    # Plaintext (--no-tls on both ends) as QEMU, except the TLS variants.
    tls_on = name in TERN_TLS
    tls = str(tern_tls_dir()) if tls_on else "off"
    src = TernVm(run_dir / "src", cpus=args.cpus, memory=f"{mem_mib}M", binary=TERN[0],
                 kernel=KERNEL, initrd=INITRD, cmdline=guest_cmdline(args, rate), tls=tls,
                 extra_args=["--log-level", "debug"])
    port = free_port()
    # Debug logs, stamped with CLOCK_MONOTONIC, for the pause and the
    # destination's harts starting (tern_stop_to_run_ms).
    dst = TernVm(run_dir / "dst", incoming=f"tcp:127.0.0.1:{port}", binary=TERN[0], tls=tls,
                 extra_args=["--log-level", "debug"])
    for vm in (src, dst):
        cmd = vm.command()
        if ("--tls-dir" in cmd) != tls_on or ("--no-tls" in cmd) == tls_on:
            raise RuntimeError(f"{name}: TLS {'on' if tls_on else 'off'} wanted, but the "
                               f"command is {shlex.join(cmd)}")
    readers = []
    try:
        note_cmd(f"{row} {name} source", shlex.join(src.command()))
        src.start()
        hb_src = HbReader(src.hb_path, "src")
        readers.append(hb_src)
        src.console.wait_for(r"TERN-READY", 600)
        src.sh("true", timeout=60)
        achieved = prepare_guest(src, rate, hb_src, args.settle)
        note_cmd(f"{row} {name} destination", shlex.join(dst.command()))
        dst.start()
        dst.wait_listening(60)
        hb_dst = HbReader(dst.hb_path, "dst", connect_timeout=args.timeout + 60)
        readers.append(hb_dst)
        mig = [TERN[0], "vm", "migrate", "--api-socket", str(src.api_path),
               "--to", f"tcp:127.0.0.1:{port}"] + TERN_VARIANTS[name]
        note_cmd(f"{row} {name} migrate", shlex.join(mig))
        note_cmd(f"{row} {name} poll", shlex.join([TERN[0], "vm", "migrate", "--api-socket",
                                                 str(src.api_path), "--status"]) +
                 "   (sent as the API request {\"command\":\"migrate-status\"} every 20 ms)")
        t_mig = time.monotonic_ns()
        p = subprocess.run(mig, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"tern vm migrate failed ({p.returncode}): {p.stdout}{p.stderr}")
        st, last_err, throttle_max = None, None, 0
        deadline = time.monotonic() + args.timeout
        while True:
            try:
                reply = src.api("migrate-status", timeout=10)
                st = reply.get("result", st)
                throttle_max = max(throttle_max, (st or {}).get("throttle_pct") or 0)
            except (OSError, ValueError) as e:
                # The source exits ~1 s after completing; a poll can miss it.
                last_err = e
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
        slow = guest_slowdown(dst, hb_src, hb_dst, t_mig, t_end, args.settle) if rate is not None \
            else {}
        verified = check_destination(dst, rate)
        time.sleep(2.5)                  # heartbeat after the switch-over
        hb = heartbeat_figures(hb_src, hb_dst, t_mig, args.settle)
        try:
            src_rc = src.wait_exit(30)
        except subprocess.TimeoutExpired:
            src_rc = "still running"
        # Neither log may speak of plaintext when TLS is on (tern logs the
        # handshake only at debug level; --no-tls on both ends says nothing).
        said = [f"{where}: {line.strip()}" for where, vm in (("source", src), ("destination", dst))
                for line in vm.log_text().splitlines() if PLAINTEXT_LOG.search(line)]
        if tls_on and said:
            raise RuntimeError(f"{name}: TLS wanted, but the logs say: " + "; ".join(said))
        return {
            "ok": True, "total_s": st["elapsed_ms"] / 1000, "host_s": (t_end - t_mig) / 1e9,
            "tls": f"--tls-dir {tls}" if tls_on else "--no-tls", "tls_log": said,
            "downtime_ms": st["downtime_us"] / 1000, "downtime_src_ms": st["downtime_sent_us"] / 1000,
            "downtime_run_ms": tern_stop_to_run_ms(src.log_text(), dst.log_text()),
            "wire_mib": st["bytes_sent"] / 2**20,
            "passes": st["pass"], "pages": st.get("pages_sent"), "dirty_rate": achieved,
            "verified": verified, "src_exit": src_rc, "status": st,
            "throttle": st.get("throttle_pct"), "throttle_max": throttle_max,
            "throttle_stall_ms": st.get("throttle_stall_ms"), **slow, **hb,
        }
    finally:
        for r in readers:
            r.close()
        src.close()
        dst.close()


# ---- QEMU -------------------------------------------------------------------

class Qmp:
    def __init__(self, path, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.s.connect(str(path))
                break
            except OSError:
                self.s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.s.settimeout(120)
        self.f = self.s.makefile("rwb")
        greeting = self._read()
        if "QMP" not in greeting:
            raise RuntimeError(f"not a QMP greeting: {greeting}")
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.f.readline()
        if not line:
            raise EOFError("QMP closed")
        return json.loads(line)

    def cmd(self, name, **arguments):
        req = {"execute": name}
        if arguments:
            req["arguments"] = arguments
        self.f.write(json.dumps(req).encode() + b"\n")
        self.f.flush()
        while True:
            msg = self._read()
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise RuntimeError(f"QMP {name}: {msg['error']}")
            # events (STOP, RESUME, MIGRATION...) are skipped

    def close(self):
        try:
            self.f.close()
            self.s.close()
        except OSError:
            pass


class Qtest:
    """QEMU's qtest protocol on a unix socket: physical memory reads and
    writes that go through the devices, used here for the ACLINT."""

    def __init__(self, path, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.s.connect(str(path))
                break
            except OSError:
                self.s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.s.settimeout(30)
        self.f = self.s.makefile("rwb")

    def cmd(self, line):
        self.f.write(line.encode() + b"\n")
        self.f.flush()
        while True:
            reply = self.f.readline().decode().strip()
            if not reply:
                raise EOFError("qtest closed")
            if reply.startswith("OK"):
                return reply[2:].strip()
            if reply.startswith(("FAIL", "ERR")):
                raise RuntimeError(f"qtest {line}: {reply}")

    def close(self):
        try:
            self.f.close()
            self.s.close()
        except OSError:
            pass


ACLINT_MTIMECMP = 0x2004000              # -M virt: hart i's mtimecmp at + 8 * i


def rearm_timers(qt, harts):
    """Writes each hart's mtimecmp back as it is: QEMU re-arms the timer.

    QEMU up to 10.1 does not migrate armed timers (upstream "Fix RISC-V timer
    migration issues", QEMU 10.2, not backported): the destination restores
    mtimecmp but never arms its QEMUTimer, the interrupt Linux waits for never
    comes and the guest hangs. Rewriting the register arms it again."""
    for i in range(harts):
        addr = ACLINT_MTIMECMP + 8 * i
        qt.cmd(f"writeq {addr:#x} {qt.cmd(f'readq {addr:#x}')}")


class QemuVm(Vm):
    """ternvm.Vm driving qemu-system-riscv64: console on a unix socket, ttyS1
    on a PCI 16550 whose chardev is another unix socket, QMP on a third; with
    timer_fix, Sstc off (Linux then programs its timer through SBI, that is
    the ACLINT's mtimecmp) and, on the destination, a qtest socket."""

    def __init__(self, workdir, mem_mib, cpus, cmdline, incoming=None, timer_fix=True,
                 trace_multifd=False, tls_dir=None):
        super().__init__(workdir)
        self.mem_mib, self.qcpus, self.qcmdline = mem_mib, cpus, cmdline
        self.qincoming, self.timer_fix = incoming, timer_fix
        self.tls_dir = tls_dir           # x509 credentials: endpoint=server if incoming
        self.trace_multifd = trace_multifd
        self.trace_path = self.workdir / "trace.log"
        self.hb_path = self.workdir / "ttyS1.sock"
        self.qmp_path = self.workdir / "qmp.sock"
        self.qtest_path = self.workdir / "qtest.sock"

    def command(self):
        cmd = ["qemu-system-riscv64", "-M", "virt", "-m", str(self.mem_mib),
               "-smp", str(self.qcpus)]
        if self.timer_fix:
            cmd += ["-accel", "tcg", "-cpu", "rv64,sstc=off"]
        cmd += ["-display", "none", "-bios", OPENSBI,
                "-kernel", str(KERNEL), "-initrd", str(INITRD),
                "-append", f"console=ttyS0 {self.qcmdline}",
                "-chardev", f"socket,id=con,path={self.console_path},server=on,wait=off",
                "-serial", "chardev:con",
                "-chardev", f"socket,id=hb,path={self.hb_path},server=on,wait=off",
                "-device", "pci-serial,chardev=hb",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        # vm_state_notify with a wall-clock stamp on both sides: when the
        # source stopped and when the destination ran, to the microsecond.
        cmd += ["-msg", "timestamp=on", "-trace", "enable=vm_state_notify"]
        if self.trace_multifd:
            cmd += ["-trace", "enable=multifd_send"]
        cmd += ["-trace", f"file={self.trace_path}"]
        if self.tls_dir:
            cmd += ["-object", f"tls-creds-x509,id={QEMU_TLS_ID},dir={self.tls_dir},"
                    f"endpoint={'server' if self.qincoming else 'client'},verify-peer=on"]
        if self.qincoming:
            cmd += ["-incoming", self.qincoming]
            if self.timer_fix:
                cmd += ["-qtest", f"unix:{self.qtest_path},server=on,wait=off"]
        return cmd


VM_STATE = re.compile(r"^\d+@(\d+\.\d+):vm_state_notify running (\d) reason \d+ \((\S+)\)",
                      re.M)


def qemu_stop_to_run_ms(src_trace, dst_trace):
    """From the trace logs: the source's last stop for the migration
    (finish-migrate) to the destination's first run, in ms; both stamps
    are gettimeofday() on this machine."""
    def events(path):
        try:
            return VM_STATE.findall(Path(path).read_text(errors="replace"))
        except OSError:
            return []
    stops = [float(t) for t, running, why in events(src_trace)
             if running == "0" and why == "finish-migrate"]
    runs = [float(t) for t, running, _ in events(dst_trace) if running == "1"]
    if not stops or not runs:
        raise RuntimeError(f"no vm_state_notify stop in {src_trace} or run in {dst_trace}")
    return (runs[0] - stops[-1]) * 1000


MULTIFD_SEND = re.compile(r"multifd_send .*normal pages (\d+) flags \S+ next packet size (\d+)")


def multifd_wire_mib(transferred, trace_path):
    """QEMU 7.2 counts multifd pages in ram.transferred before compression
    (pages x page size). Its multifd_send trace event gives each packet's
    real payload (next packet size, the compressed size with zstd): the
    bytes sent are ram.transferred less the pages' raw size plus that."""
    try:
        text = Path(trace_path).read_text(errors="replace")
    except OSError:
        return None
    pkts = [(int(a), int(b)) for a, b in MULTIFD_SEND.findall(text)]
    if not pkts:
        return None
    return (transferred - sum(n for n, _ in pkts) * 4096 + sum(b for _, b in pkts)) / 2**20


QEMU_TLS_DIR = [None]                    # made once per run, see qemu_tls_dir()


def qemu_tls_dir(work):
    """QEMU's x509 credentials directory (ca-cert.pem, server-cert.pem,
    server-key.pem, client-cert.pem, client-key.pem) from scripts/mkcerts.sh:
    a CA and one ECDSA P-256 certificate for 127.0.0.1 (serverAuth and
    clientAuth), both server and client certificate. Made once per run."""
    if QEMU_TLS_DIR[0]:
        return QEMU_TLS_DIR[0]
    base = Path(work) / "qemu-tls"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    mk = ["bash", str(REPO / "scripts" / "mkcerts.sh")]
    steps = [mk + ["ca", str(base / "ca")],
             mk + ["host", str(base / "ca"), str(base / "h"), "localhost", "IP:127.0.0.1"]]
    for step in steps:
        subprocess.run(step, check=True, stdout=subprocess.DEVNULL)
    x509 = base / "x509"
    x509.mkdir()
    layout = {"ca-cert.pem": "ca/ca.pem", "server-cert.pem": "h/host.pem",
              "server-key.pem": "h/host.key", "client-cert.pem": "h/host.pem",
              "client-key.pem": "h/host.key"}
    for dst, src in layout.items():
        shutil.copy2(base / src, x509 / dst)
    note_cmd("QEMU TLS credentials", "; ".join(shlex.join(s) for s in steps) + "; then in "
             f"{x509}: " + ", ".join(f"{d} = {s}" for d, s in layout.items()))
    QEMU_TLS_DIR[0] = x509
    return x509


def qemu_settings(name, mem_mib):
    """QMP arguments for a QEMU variant: source capabilities and parameters,
    destination capabilities and parameters (empty: plain -incoming URI)."""
    v = QEMU_VARIANTS[name]
    caps = [{"capability": c, "state": True} for c in v.get("caps", [])]
    params = {"max-bandwidth": QEMU_MAX_BANDWIDTH, "downtime-limit": v["downtime"]}
    params.update(v.get("params", {}))
    if v.get("xbzrle"):
        # tern's default delta cache: a quarter of guest RAM, at most 256 MiB.
        params["xbzrle-cache-size"] = min(mem_mib // 4, 256) << 20
    dst_caps = [{"capability": c, "state": True} for c in v.get("dst_caps", [])]
    dst_params = dict(v.get("dst_params", {}))
    if v.get("tls"):
        params["tls-creds"] = dst_params["tls-creds"] = QEMU_TLS_ID
    return caps, params, dst_caps, dst_params


def qemu_round(args, row, mem_mib, rate, work, name):
    caps, params, dst_caps, dst_params = qemu_settings(name, mem_mib)
    postcopy = QEMU_VARIANTS[name].get("postcopy", False)
    tls_dir = qemu_tls_dir(work) if QEMU_VARIANTS[name].get("tls") else None
    defer = bool(dst_caps or dst_params)
    run_dir = work / f"{name}-{row}"
    for sub in ("src", "dst"):
        for f in ("console.sock", "ttyS1.sock", "qmp.sock", "qtest.sock", "trace.log"):
            (run_dir / sub / f).unlink(missing_ok=True)
    cmdline = guest_cmdline(args, rate)
    port = free_port()
    uri = f"tcp:127.0.0.1:{port}"
    fix = args.qemu_timer_fix
    # The wire figure of multifd with compression needs the packets' sizes.
    src = QemuVm(run_dir / "src", mem_mib, args.cpus, cmdline, timer_fix=fix,
                 trace_multifd="multifd-compression" in params, tls_dir=tls_dir)
    dst = QemuVm(run_dir / "dst", mem_mib, args.cpus, cmdline,
                 incoming="defer" if defer else uri, timer_fix=fix, tls_dir=tls_dir)
    readers, socks = [], []
    try:
        note_cmd(f"{row} {name} source", shlex.join(src.command()))
        src.start()
        hb_src = HbReader(src.hb_path, "src")
        readers.append(hb_src)
        src.console.wait_for(r"TERN-READY", 600)
        src.sh("true", timeout=60)
        achieved = prepare_guest(src, rate, hb_src, args.settle)
        note_cmd(f"{row} {name} destination", shlex.join(dst.command()))
        dst.start()
        hb_dst = HbReader(dst.hb_path, "dst", connect_timeout=60)
        readers.append(hb_dst)
        qd = Qmp(dst.qmp_path)           # QMP answers: -incoming listens (or waits, defer)
        socks.append(qd)
        qt = None
        if fix:
            qt = Qtest(dst.qtest_path)
            socks.append(qt)
        qs = Qmp(src.qmp_path)
        socks.append(qs)
        dst_text = ""
        if defer:
            dst_text = "on the destination " + "; ".join(
                ([json.dumps({"execute": "migrate-set-capabilities",
                              "arguments": {"capabilities": dst_caps}})] if dst_caps else []) +
                ([json.dumps({"execute": "migrate-set-parameters",
                              "arguments": dst_params})] if dst_params else []) +
                [json.dumps({"execute": "migrate-incoming", "arguments": {"uri": uri}})]) + \
                "; then on the source "
        note_cmd(f"{row} {name} QMP",
                 dst_text +
                 (json.dumps({"execute": "migrate-set-capabilities",
                              "arguments": {"capabilities": caps}}) + "; " if caps else "") +
                 json.dumps({"execute": "migrate-set-parameters", "arguments": params}) + "; " +
                 json.dumps({"execute": "migrate",
                             "arguments": {"uri": uri}}) +
                 '; {"execute": "query-migrate"} every 20 ms' +
                 ('; once it shows ram.dirty-sync-count >= 2 (pass 1 done): '
                  '{"execute": "migrate-start-postcopy"}' if postcopy else '') +
                 '; on the destination {"execute": "query-status"} every 2 ms' +
                 ("; once it runs, qtest `readq`/`writeq` of each hart's mtimecmp "
                  f"({ACLINT_MTIMECMP:#x} + 8 * hart)" if fix else "") +
                 ('; after it, on both sides {"execute": "query-migrate-parameters"} '
                  f'(tls-creds must be "{QEMU_TLS_ID}")' if tls_dir else ""))
        if defer:
            if dst_caps:
                qd.cmd("migrate-set-capabilities", capabilities=dst_caps)
            if dst_params:
                qd.cmd("migrate-set-parameters", **dst_params)
            qd.cmd("migrate-incoming", uri=uri)
        if caps:
            qs.cmd("migrate-set-capabilities", capabilities=caps)
        qs.cmd("migrate-set-parameters", **params)
        t_mig = time.monotonic_ns()
        qs.cmd("migrate", uri=uri)
        deadline = time.monotonic() + args.timeout
        st, t_end, t_run, t_fixed, last_poll = None, None, None, None, 0.0
        throttle_max, t_postcopy, postcopy_error = 0, None, None
        while True:
            now = time.monotonic()
            if t_end is None and now - last_poll >= 0.02:
                last_poll = now
                st = qs.cmd("query-migrate")
                throttle_max = max(throttle_max, st.get("cpu-throttle-percentage") or 0)
                if st.get("status") in ("completed", "failed", "cancelled"):
                    t_end = time.monotonic_ns()
                    if st["status"] != "completed":
                        raise RuntimeError(f"QEMU migration ended {st}")
                elif (postcopy and t_postcopy is None and postcopy_error is None
                      and st.get("status") == "active"
                      and st.get("ram", {}).get("dirty-sync-count", 0) >= 2):
                    try:
                        qs.cmd("migrate-start-postcopy")
                        t_postcopy = time.monotonic_ns()
                    except RuntimeError as e:   # e.g. it completed meanwhile
                        postcopy_error = str(e)
            if t_run is None and qd.cmd("query-status").get("status") == "running":
                t_run = time.monotonic_ns()
                if qt:
                    rearm_timers(qt, args.cpus)
                t_fixed = time.monotonic_ns()
            if t_end is not None and t_run is not None:
                break
            if now > deadline:
                try:
                    qs.cmd("migrate_cancel")
                except RuntimeError as e:    # post-copy cannot be cancelled
                    print(f"#   {e}", flush=True)
                ram = (st or {}).get("ram", {})
                raise TimeoutError(
                    f"not converged in {args.timeout:.0f} s (cancelled): "
                    f"{ram.get('dirty-sync-count')} syncs, "
                    f"{ram.get('transferred', 0) / 2**20:.0f} MiB sent, "
                    f"expected downtime {(st or {}).get('expected-downtime')} ms, "
                    f"dirty rate {ram.get('dirty-pages-rate', 0) * 4096 / 2**20:.0f} MiB/s, "
                    f"{ram.get('mbps', 0):.0f} Mbit/s" +
                    (f", throttle up to {throttle_max}%" if throttle_max else "") +
                    (f", status {(st or {}).get('status')}" if postcopy else ""))
            time.sleep(0.002)
        wait_heartbeat(hb_dst)
        slow = guest_slowdown(dst, hb_src, hb_dst, t_mig, t_end, args.settle) if rate is not None \
            else {}
        verified = check_destination(dst, rate)
        time.sleep(2.5)
        hb = heartbeat_figures(hb_src, hb_dst, t_mig, args.settle)
        hb["run_after_last_hb_ms"] = (t_run - hb_src.lines[-1][0]) / 1e6
        ram = st["ram"]
        out = {
            "ok": True, "total_s": st["total-time"] / 1000, "host_s": (t_end - t_mig) / 1e9,
            "downtime_ms": st["downtime"], "downtime_src_ms": st["downtime"],
            "wire_mib": ram["transferred"] / 2**20,
            "passes": ram["dirty-sync-count"], "pages": ram.get("normal"),
            "dirty_rate": achieved, "verified": verified, "status": st,
            "throttle": st.get("cpu-throttle-percentage"), "throttle_max": throttle_max,
            "rearm_ms": (t_fixed - t_run) / 1e6 if qt else None, **slow, **hb,
        }
        if tls_dir:
            # The migration really went through TLS: both sides still hold
            # the credentials it was set up with.
            creds = {side: q.cmd("query-migrate-parameters").get("tls-creds")
                     for side, q in (("source", qs), ("destination", qd))}
            if any(c != QEMU_TLS_ID for c in creds.values()):
                raise RuntimeError(f"QEMU TLS: tls-creds after the migration {creds}, "
                                   f"not {QEMU_TLS_ID!r} on both sides")
            out["tls"] = "tls-creds " + ", ".join(f"{k} {v}" for k, v in creds.items())
        time.sleep(0.2)                  # the trace log is written by QEMU's log thread
        out["downtime_run_ms"] = qemu_stop_to_run_ms(src.trace_path, dst.trace_path)
        if src.trace_multifd:
            wire = multifd_wire_mib(ram["transferred"], src.trace_path)
            if wire is None:
                raise RuntimeError(f"no multifd_send lines in {src.trace_path}")
            out["transferred_mib"], out["wire_mib"] = out["wire_mib"], wire
        if postcopy:
            out["postcopy_started_s"] = (t_postcopy - t_mig) / 1e9 if t_postcopy else None
            out["postcopy_error"] = postcopy_error
        return out
    finally:
        for q in socks:
            q.close()
        for r in readers:
            r.close()
        src.close()
        dst.close()


# ---- report -------------------------------------------------------------------

METRICS = [  # key, label, format
    ("total_s", "total time (s)", "{:.2f}"),
    ("downtime_ms", "downtime, VMM (ms)", "{:.1f}"),
    ("downtime_src_ms", "downtime, pause → sent (ms)", "{:.1f}"),
    ("downtime_run_ms", "downtime, pause → running there (ms)", "{:.1f}"),
    ("hb_gap_ms", "downtime, heartbeat (ms)", "{:.0f}"),
    ("hb_switch_ms", "heartbeat, last src → first dst (ms)", "{:.0f}"),
    ("hb_guest_ms", "same gap by the guest's clock (ms)", "{:.0f}"),
    ("hb_mig_ms", "largest heartbeat gap, whole migration (ms)", "{:.0f}"),
    ("hb_base_ms", "heartbeat jitter before (ms)", "{:.0f}"),
    ("wire_mib", "on the wire (MiB)", "{:.1f}"),
    ("passes", "passes", "{:.0f}"),
    ("floor_s", "floor: wire / loopback (s)", "{:.3f}"),
]


def median_result(results, keys=None):
    """The last good run with each of `keys` (default: this matrix's
    figures) replaced by its median over the good runs."""
    ok = [r for r in results if r.get("ok")]
    if not ok:
        return {"ok": False, "error": results[-1].get("error", "?") if results else "not run"}
    out = dict(ok[-1])
    if keys is None:
        keys = [m[0] for m in METRICS] + [m[0] for m in PAIR_METRICS] + ["throttle_max",
                                                                         "throttle_stall_ms"]
    for key in keys:
        vals = [r[key] for r in ok if r.get(key) is not None]
        if vals:
            out[key] = statistics.median(vals)
    out["n_ok"], out["n"] = len(ok), len(results)
    return out


def fmt(r, key, spec):
    if not r.get("ok") or r.get(key) is None:
        return "—"
    return spec.format(r[key])


def ratio(t, q, key):
    if not (t.get("ok") and q.get("ok")) or t.get(key) is None or not q.get(key):
        return "—"
    return f"{t[key] / q[key]:.2f}x"


def build_tables(table_rows, vmms, metrics=None, names=None, first="guest"):
    """Text and markdown tables: a line per row and metric, a column per
    VMM, then tern's ratio to each other VMM."""
    metrics = METRICS if metrics is None else metrics
    names = VMMS if names is None else names
    others = [v for v in vmms if v != "tern"]
    head = [first, "metric"] + [names[v] for v in vmms]
    if "tern" in vmms:
        head += [f"tern/{names[v]}" for v in others]
    lines = []
    for row, res in table_rows:
        for key, label, spec in metrics:
            cells = [row, label] + [fmt(res[v], key, spec) for v in vmms]
            if "tern" in vmms:
                cells += [ratio(res["tern"], res[v], key) for v in others]
            lines.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines)]
    text = ["  ".join(str(c).rjust(w) if i > 1 else str(c).ljust(w)
                      for i, (c, w) in enumerate(zip(cells, widths)))
            for cells in [head] + lines]
    md = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    md += ["| " + " | ".join(str(c) for c in cells) + " |" for cells in lines]
    return "\n".join(text), "\n".join(md)


# --matrix strategies: key, label, format, better ("low" or "high")
PAIR_METRICS = [
    ("total_s", "total (s)", "{:.2f}", "low"),
    ("downtime_ms", "downtime, VMM (ms)", "{:.1f}", "low"),
    ("downtime_src_ms", "downtime, pause → sent (ms)", "{:.1f}", "low"),
    ("downtime_run_ms", "downtime, pause → running there (ms)", "{:.1f}", "low"),
    ("hb_gap_ms", "hb gap at switch (ms)", "{:.0f}", "low"),
    ("hb_mig_ms", "hb gap, largest (ms)", "{:.0f}", "low"),
    ("wire_mib", "wire (MiB)", "{:.1f}", "low"),
    ("slowdown", "guest speed", "{:.2f}", "high"),
]
SHORT = {"qemu": "dl=300", "qemu-dl30": "dl=30", "qemu-dl30-ac": "ac",
         "qemu-dl30-postcopy": "postcopy", "qemu-dl30-multifd2": "multifd",
         "qemu-dl30-xbzrle": "xbzrle", "qemu-dl30-zstd": "zstd"}


def not_finished(r, timeout):
    """The text of a cell that has no figures."""
    err = r.get("error", "")
    if err == "not run":
        return err
    if "not converged" in err or "not done after" in err:
        return f"did not finish in {timeout:.0f} s"
    return "failed: " + (err.split(":", 1)[0] or "?")


def throttle_text(v, r):
    if not r.get("ok"):
        return "—"
    pct = r.get("throttle_max") or 0
    if v in TERN_VARIANTS:
        stall = r.get("throttle_stall_ms")
        return f"{pct}%" + (f", {stall:.0f} ms" if stall is not None else "")
    return f"{pct}%" if QEMU_VARIANTS[v].get("caps") == ["auto-converge"] or pct else "—"


def qemu_best(res, qemus):
    """Metric by metric, the best figure of the QEMU variants that finished:
    (value, variant) or None."""
    best = {}
    for key, _, _, better in PAIR_METRICS:
        cand = [(res[q][key], q) for q in qemus
                if res[q].get("ok") and res[q].get(key) is not None]
        if cand:
            best[key] = (max if better == "high" else min)(cand, key=lambda c: c[0])
    return best


def strategy_pairs(vmms):
    qemus = [v for v in vmms if v in QEMU_VARIANTS]
    return [(label, t, q) for label, t, q in STRATEGY_PAIRS
            if t in vmms or q in vmms], qemus


def build_pair_tables(table_rows, vmms, timeout):
    """Per row and pair: tern's line, QEMU's line, tern / QEMU."""
    pairs, qemus = strategy_pairs(vmms)
    head = ["guest", "pair", "VMM"] + [m[1] for m in PAIR_METRICS] + ["throttle"]
    lines = []
    for row, res in table_rows:
        best = qemu_best(res, qemus)
        for label, t, q in pairs:
            rt = res.get(t, {"ok": False, "error": "not run"})
            cells = [row, label, VMMS[t]]
            if rt.get("ok"):
                cells += [fmt(rt, key, spec) for key, _, spec, _ in PAIR_METRICS]
            else:
                cells += [not_finished(rt, timeout)] + ["—"] * (len(PAIR_METRICS) - 1)
            lines.append(cells + [throttle_text(t, rt)])
            if q:
                rq = res.get(q, {"ok": False, "error": "not run"})
                cells = [row, label, VMMS[q]]
                if rq.get("ok"):
                    cells += [fmt(rq, key, spec) for key, _, spec, _ in PAIR_METRICS]
                else:
                    cells += [not_finished(rq, timeout)] + ["—"] * (len(PAIR_METRICS) - 1)
                lines.append(cells + [throttle_text(q, rq)])
                ratios = [ratio(rt, rq, key) for key, _, _, _ in PAIR_METRICS]
            else:
                cells = [row, label, "QEMU best"]
                for key, _, spec, _ in PAIR_METRICS:
                    b = best.get(key)
                    cells.append(f"{spec.format(b[0])} {SHORT.get(b[1], b[1])}" if b else "—")
                lines.append(cells + ["—"])
                ratios = [ratio(rt, {"ok": True, key: best[key][0]}, key) if key in best
                          else "—" for key, _, _, _ in PAIR_METRICS]
            lines.append([row, label, "tern/QEMU"] + ratios + [""])
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines)]
    text = ["  ".join(str(c).rjust(w) if i > 2 else str(c).ljust(w)
                      for i, (c, w) in enumerate(zip(cells, widths)))
            for cells in [head] + lines]
    md = ["| " + " | ".join(head) + " |",
          "|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|"]
    md += ["| " + " | ".join(str(c) for c in cells) + " |" for cells in lines]
    return "\n".join(text), "\n".join(md)


def span(vals, spec="{:.0f}"):
    vals = sorted(v for v in vals if v is not None)
    if not vals:
        return "—"
    lo, hi = spec.format(vals[0]), spec.format(vals[-1])
    return lo if lo == hi else f"{lo}-{hi}"


def strategy_notes(table_rows, vmms, timeout):
    """The lines under the strategies table: the goal, per row; the guest's
    rates; post-copy; what failed."""
    pairs, qemus = strategy_pairs(vmms)
    out = []
    for row, res in table_rows:
        dnf = [VMMS[q] for q in qemus if not res[q].get("ok")
               and "did not finish" in not_finished(res[q], timeout)]
        tern_dnf = [VMMS[t] for t in vmms if t in TERN_VARIANTS and not res[t].get("ok")]
        best = qemu_best(res, qemus)
        goal = []
        if "tern" in vmms and res["tern"].get("ok"):
            for key, label, spec in (("total_s", "total", "{:.2f} s"),
                                     ("downtime_ms", "VMM downtime", "{:.1f} ms"),
                                     ("downtime_src_ms", "downtime pause → sent",
                                      "{:.1f} ms"),
                                     ("downtime_run_ms", "downtime pause → running there",
                                      "{:.2f} ms"),
                                     ("hb_gap_ms", "heartbeat gap", "{:.0f} ms")):
                if key in best:
                    tv, (qv, qn) = res["tern"][key], best[key]
                    goal.append(f"{label} {spec.format(tv)} vs {spec.format(qv)} ({SHORT[qn]}): "
                                + ("below" if tv < qv else "NOT below"))
        out.append(f"{row}: QEMU settings that did not finish in {timeout:.0f} s: "
                   + (", ".join(dnf) or "none") + "; tern variants that failed: "
                   + (", ".join(tern_dnf) or "none")
                   + ("; tern (auto) against QEMU's best: " + "; ".join(goal) if goal else "")
                   + ".")
    rates = []
    for row, res in table_rows:
        for kind, names in (("tern", [v for v in vmms if v in TERN_VARIANTS]),
                            ("QEMU", [v for v in vmms if v in QEMU_VARIANTS])):
            before = [res[v].get("rate_before") for v in names if res[v].get("ok")]
            if any(b is not None for b in before):
                rates.append(f"{row} {kind} {span(before)}")
    if rates:
        out.append("Dirtier rate before the migration, MiB per second of guest time over the "
                   "settle window (the \"guest speed\" denominator): " + ", ".join(rates) + ".")
    pc = []
    for row, res in table_rows:
        for v in vmms:
            r = res[v]
            if not r.get("ok"):
                continue
            st = r.get("status") if isinstance(r.get("status"), dict) else {}
            if v in TERN_VARIANTS and st.get("postcopy_requests"):
                pc.append(f"{row} {VMMS[v]}: post-copy, {st['postcopy_requests']} pages asked for")
            elif "postcopy_started_s" in r:
                pc.append(f"{row} {VMMS[v]}: " + (
                    f"migrate-start-postcopy {r['postcopy_started_s']:.2f} s in, "
                    f"{st.get('ram', {}).get('postcopy-requests')} pages asked for"
                    if r["postcopy_started_s"] is not None else "pre-copy finished first"))
    if pc:
        out.append("Post-copy: " + "; ".join(pc) + ".")
    fails = failures(table_rows, vmms)
    if fails:
        out.append("Failed or unfinished cells: " + "; ".join(fails) + ".")
    return out


def strategy_commands(rows):
    """The first row's commands: each variant's migrate (tern) or QMP (QEMU)
    line, the VMMs' command lines once (they differ only in paths, ports and,
    for QEMU destinations set up over QMP, -incoming defer)."""
    full = {"tern", "qemu-dl30", "qemu-dl30-zstd"}
    out = []
    for label, text in COMMANDS:
        parts = label.split(" ")
        if label == "loopback" or (parts[0] == rows[0] and (
                parts[-1] in ("migrate", "QMP") or parts[1] in full)):
            out.append((label, text))
    return out


def write_strategies_docs(args, rows, vmms, md_table, extra, argv, minutes):
    today = datetime.date.today().isoformat()
    cmds = "\n".join(f"{label}: {text}" for label, text in strategy_commands(rows))
    pairs, _ = strategy_pairs(vmms)
    pair_text = "; ".join(
        f"{label}: " + (f"`{' '.join(TERN_VARIANTS[t])}`" if TERN_VARIANTS[t] else
                        "tern's defaults") + " vs " +
        (VMMS[q] if q else "QEMU's best completed setting on the row, metric by metric")
        for label, t, q in pairs)
    body = [SECTION_STRATEGIES, "",
            f"Measured {today} with `{('bash bench/migrate/run.sh ' + shlex.join(argv)).strip()}`" +
            f" ({args.runs} run(s) per cell, median; {args.timeout:.0f} s per migration at most, "
            f"then cancelled; {minutes:.0f} min in all).",
            f"Machine: {MACHINE[0]}; the run used a copy of build/tern taken at its start.",
            "",
            "The same guests, heartbeat, dirtier and QEMU timer re-arm as in \"Live migration "
            "(bench/migrate)\" above (`--cpus "
            f"{args.cpus}`, heartbeat every {args.heartbeat_us} µs, "
            f"`dirtier -s {WORKING_SET_MIB} -r RATE -f`, settle {args.settle:g} s), with each of "
            "tern's strategies and options beside QEMU's nearest equivalent. Every tern variant "
            f"keeps the default downtime limit ({TERN_DEFAULT_DOWNTIME_MS} ms) and migrates in "
            "plaintext (`--no-tls` on both ends, as QEMU); every QEMU "
            "variant has downtime-limit 30 ms and max-bandwidth 100 GiB/s. Pairs: " +
            pair_text + ".", "",
            "QEMU settings: ac = capability auto-converge; postcopy = capability postcopy-ram "
            "on both sides, then `migrate-start-postcopy` once query-migrate shows "
            "ram.dirty-sync-count >= 2 (pass 1 done); multifd = capability multifd, "
            "multifd-channels 2, on both sides; xbzrle = capability xbzrle, xbzrle-cache-size "
            "256 MiB (tern's default delta cache for 1 GiB: a quarter of RAM, at most 256 MiB); "
            "zstd = multifd with 2 channels and multifd-compression zstd on both sides "
            "(supported by QEMU 7.2). QEMU 7.2 counts multifd pages before compression in "
            "ram.transferred, so for zstd the source runs with `-trace "
            "enable=multifd_send,file=...` and its wire figure is ram.transferred less the "
            "multifd pages' raw size plus the packets' real (compressed) payload sizes from that "
            "trace. Destinations "
            "given capabilities or parameters start with `-incoming defer` and get "
            "`migrate-incoming` once set.", "",
            "Columns: total and downtime as each VMM reports them (tern: from the pause "
            "until the destination reported RUNNING; QEMU: from the pause until its source "
            "had written the last byte, its destination not yet running); downtime, pause → "
            "sent = that last span for both VMMs (tern's downtime_sent_us, QEMU's downtime in "
            "whole ms); downtime, pause → running there = from the source's pause until the "
            "destination ran, to the microsecond, the same span on both, from each side's log (tern's debug "
            "lines \"guest paused\" and \"hart N runs\", CLOCK_MONOTONIC stamps; QEMU's from "
            "vm_state_notify trace lines with wall-clock stamps, the source's stop for "
            "finish-migrate to the destination's run; for a post-copy, until the "
            "destination started, its page waits come after); hb gap at switch = the "
            "largest gap between heartbeat lines around the switch-over (host arrival times); "
            "hb gap, largest = the largest gap from the migrate command to 2 s after the "
            "destination's first line (throttling and post-copy stalls show here); wire = "
            "bytes sent; guest speed = the dirtier's rate during the migration (MiB written "
            "from the migrate command to the VMM's \"completed\", both placed on the guest's "
            "clock by the heartbeat lines, over that guest time) divided by its rate over the "
            "settle window before (1.00 = unaffected, higher is better; read from the "
            "dirtier's log on the destination); throttle = the highest throttle seen while "
            "polling (tern: throttle_pct and throttle_stall_ms, the hart time its dirty limit "
            "made harts wait; QEMU: cpu-throttle-percentage, shown for ac). Ratios are "
            "tern / QEMU: below 1 is better for tern, except guest speed (above 1). "
            "\"QEMU best\" takes each metric from whichever QEMU setting did best on that row "
            "(named beside it). A cell that did not finish in time is a finding for QEMU and "
            "a failure for tern.", "",
            md_table, "", *extra, "",
            "Commands (1G-dirty64; 1G-dirtymax differs only in the dirtier's rate, ports and "
            "paths; each VMM's command lines are shown once, the variants differ in the "
            "migrate options or QMP lines):", "", "```", cmds, "```", ""]
    write_section(SECTION_STRATEGIES, body)


# --matrix tls: key, label, format; ratios: label, numerator, denominator.
TLS_METRICS = [
    ("total_s", "total (s)", "{:.2f}"),
    ("downtime_ms", "downtime, VMM (ms)", "{:.0f}"),
    ("hb_gap_ms", "hb gap at switch (ms)", "{:.0f}"),
    ("wire_mib", "wire (MiB)", "{:.1f}"),
]
TLS_RATIOS = [
    ("tern: TLS / plain", "tern-tls", "tern"),
    ("QEMU: TLS / plain", "qemu-tls", "qemu-dl30"),
    ("TLS: tern / QEMU", "tern-tls", "qemu-tls"),
]
TLS_LABELS = {"tern": "tern (plain)", "tern-tls": "tern TLS", "qemu-dl30": "QEMU dl=30 (plain)",
              "qemu-tls": "QEMU dl=30 TLS"}


def build_tls_tables(table_rows, vmms):
    """Per row and metric: each variant's median, then the TLS ratios."""
    ratios = [(label, a, b) for label, a, b in TLS_RATIOS if a in vmms and b in vmms]
    head = ["guest", "metric"] + [TLS_LABELS.get(v, VMMS[v]) for v in vmms] + \
        [label for label, _, _ in ratios]
    lines = []
    for row, res in table_rows:
        for key, label, spec in TLS_METRICS:
            lines.append([row, label] + [fmt(res[v], key, spec) for v in vmms] +
                         [ratio(res[a], res[b], key) for _, a, b in ratios])
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines)]
    text = ["  ".join(str(c).rjust(w) if i > 1 else str(c).ljust(w)
                      for i, (c, w) in enumerate(zip(cells, widths)))
            for cells in [head] + lines]
    md = ["| " + " | ".join(head) + " |",
          "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    md += ["| " + " | ".join(str(c) for c in cells) + " |" for cells in lines]
    return "\n".join(text), "\n".join(md)


def tls_notes(table_rows, vmms):
    """The lines under the TLS table: each figure's spread over the runs,
    how each cell's TLS (or its absence) was checked, what failed."""
    out = []
    for row, res in table_rows:
        parts = []
        for v in vmms:
            ok = [r for r in res[v].get("runs", []) if r.get("ok")]
            if not ok:
                continue
            fig = [f"total {span([r['total_s'] for r in ok], '{:.2f}')} s",
                   f"downtime {span([r['downtime_ms'] for r in ok])} ms",
                   f"hb gap {span([r['hb_gap_ms'] for r in ok])} ms",
                   f"largest hb gap {span([r['hb_mig_ms'] for r in ok])} ms"]
            if any(r.get("slowdown") is not None for r in ok):
                fig.append(f"guest speed {span([r.get('slowdown') for r in ok], '{:.2f}')}")
            parts.append(f"{TLS_LABELS.get(v, VMMS[v])} " + ", ".join(fig) +
                         f" ({len(ok)} run{'s' if len(ok) != 1 else ''})")
        if parts:
            out.append(f"{row}, lowest-highest over the runs: " + "; ".join(parts) + ".")
    checks = []
    for v in vmms:
        runs = [r for _, res in table_rows for r in res[v].get("runs", []) if r.get("ok")]
        if not runs:
            continue
        seen = sorted({r.get("tls") or "" for r in runs})
        if v in TERN_VARIANTS:
            flags = "--tls-dir on both ends" if v in TERN_TLS else "--no-tls on both ends"
            logs = sum(len(r.get("tls_log") or []) for r in runs)
            checks.append(f"{TLS_LABELS.get(v, VMMS[v])}: {flags} in every run"
                          + (", no log line about plaintext" if v in TERN_TLS and not logs
                             else f", {logs} log lines about TLS" if logs else ""))
        elif QEMU_VARIANTS[v].get("tls"):
            checks.append(f"{TLS_LABELS.get(v, VMMS[v])}: query-migrate-parameters after "
                          f"every one of its {len(runs)} completed runs (all rows): "
                          + " / ".join(seen))
    if checks:
        out.append("TLS checks: " + "; ".join(checks) + ".")
    fails = failures(table_rows, vmms)
    if fails:
        out.append("Failed or incomplete cells: " + "; ".join(fails) + ".")
    return out


def tls_commands(rows):
    """The first row's commands, each label once, with the credentials'."""
    out, seen = [], set()
    for label, text in COMMANDS:
        first = label.split(" ", 1)[0]
        if (first == rows[0] or label == "loopback" or label.endswith("credentials")) \
                and label not in seen:
            seen.add(label)
            out.append((label, text))
    return out


def write_tls_docs(args, rows, vmms, md_table, extra, argv, minutes):
    today = datetime.date.today().isoformat()
    cmds = "\n".join(f"{label}: {text}" for label, text in tls_commands(rows))
    body = [SECTION_TLS, "",
            f"Measured {today} with `{('bash bench/migrate/run.sh ' + shlex.join(argv)).strip()}`" +
            f" ({args.runs} run(s) per cell, median; {args.timeout:.0f} s per migration at most; "
            f"{minutes:.0f} min in all).",
            f"Machine: {MACHINE[0]}; the run used a copy of build/tern taken at its start.",
            "",
            "The same guests, heartbeat, dirtier and QEMU timer re-arm as in \"Live migration "
            f"(bench/migrate)\" above (`--cpus {args.cpus}`, heartbeat every "
            f"{args.heartbeat_us} µs, `dirtier -s {WORKING_SET_MIB} -r RATE -f`, settle "
            f"{args.settle:g} s), source and destination on this machine over 127.0.0.1, each "
            "VMM with and without migration TLS. tern: its defaults (downtime limit "
            f"{TERN_DEFAULT_DOWNTIME_MS} ms, strategy auto); \"plain\" starts both ends with "
            "`--no-tls` (what every other tern figure in this file uses, so that they compare "
            "with QEMU's plaintext migration), \"TLS\" with `--tls-dir DIR` (TLS 1.3, "
            "OpenSSL, each end verifies the other's certificate against the CA; a thread per "
            "connection moves bytes between the TLS session and a socketpair, "
            "docs/migration-protocol.md), DIR the integration tests' throwaway credentials. "
            "QEMU: downtime-limit 30 ms (tern's), max-bandwidth 100 GiB/s; \"TLS\" adds "
            f"`-object tls-creds-x509,id={QEMU_TLS_ID},dir=DIR,endpoint=server,verify-peer=on` "
            "on the destination (started with `-incoming defer`), `endpoint=client` on the "
            f"source, and `migrate-set-parameters {{\"tls-creds\": \"{QEMU_TLS_ID}\"}}` on both "
            "sides before `migrate-incoming` and `migrate` (GnuTLS; the client checks the "
            "server's certificate against the URI's host, 127.0.0.1). Both VMMs' credentials "
            "come from scripts/mkcerts.sh: a CA and an ECDSA P-256 certificate with an IP SAN "
            "127.0.0.1 (QEMU uses one certificate as both its server and client certificate; "
            "tern's two ends share one host directory). A QEMU TLS run counts only if "
            f"`query-migrate-parameters` shows tls-creds \"{QEMU_TLS_ID}\" on both sides after "
            "it; a tern run only if its two command lines carry `--tls-dir` (TLS) or "
            "`--no-tls` (plain) and, with TLS, neither log mentions plaintext.", "",
            "Columns: medians of the runs; total and downtime as each VMM reports them (tern: "
            "elapsed_ms, and pause until the destination's RUNNING; QEMU: total-time, and stop "
            "until the source has sent its last bytes); hb gap at switch = the largest gap "
            "between heartbeat lines around the switch-over, host arrival times; wire = the "
            "migration stream's bytes as each VMM counts them, before encryption (TLS records "
            "add some 22 bytes per 16 KiB, not shown). Ratios: \"tern: TLS / plain\" and "
            "\"QEMU: TLS / plain\" are what TLS costs each VMM (1.00x = nothing); "
            "\"TLS: tern / QEMU\" compares the two with TLS on (below 1 is better for tern).",
            "",
            md_table, "", *extra, "",
            f"Commands ({rows[0]}; the other row differs only in memory, the dirtier's rate, "
            "ports and paths; \"plain\" and \"TLS\" differ only in the TLS options shown):",
            "", "```", cmds, "```", ""]
    write_section(SECTION_TLS, body)


def failures(table_rows, vmms):
    out = []
    for row, res in table_rows:
        for v in vmms:
            r = res[v]
            if not r.get("ok"):
                out.append(f"{row} {VMMS[v]}: {r.get('error', '?')}")
            elif r.get("n_ok", 1) < r.get("n", 1):
                out.append(f"{row} {VMMS[v]}: {r['n'] - r['n_ok']} of {r['n']} runs failed: "
                           f"{r.get('first_error', '')}")
    return out


def machine_info():
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, AttributeError):
        pass
    qemu = subprocess.run(["qemu-system-riscv64", "--version"], capture_output=True,
                          text=True).stdout.splitlines()[0]
    commit = "?"
    try:
        git = ["git", "-C", str(REPO)]
        commit = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or "?"
        changed = subprocess.run(git + ["diff", "--quiet", "HEAD", "--", "src", "Makefile"],
                                 capture_output=True).returncode != 0
        new = subprocess.run(git + ["ls-files", "--others", "--exclude-standard", "--", "src"],
                             capture_output=True, text=True).stdout.strip()
        if changed or new:
            commit += " plus uncommitted changes in src/"
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({model}), {mem} RAM, Linux {platform.release()}; "
            f"{qemu}; tern at {commit}")


def docs_commands(rows):
    """The commands of the first row and of the first loaded row: the others
    differ only in memory, the dirtier's rate, ports and paths."""
    keep = {rows[0]}
    keep |= {next((r for r in rows if ROWS[r][1] is not None), rows[0])}
    out, seen = [], set()
    for label, text in COMMANDS:
        if (label.split(" ", 1)[0] in keep or label == "loopback") and label not in seen:
            seen.add(label)
            out.append((label, text))
    return out


def write_section(title, body):
    """Replaces section `title` of docs/benchmarks.md (up to the next "## ")
    with the lines of body, keeping its hand-written "### Reading" part;
    a new section goes at the end."""
    old = DOCS.read_text() if DOCS.exists() else (
        "# Benchmarks\n\nFigures measured with the scripts in `bench/`, tern against "
        "qemu-system-riscv64 on the same machine.\n")
    reading = None
    start = old.find(title)
    if start >= 0:
        end = old.find("\n## ", start + len(title))
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
    print(f"# wrote {DOCS.relative_to(REPO)}, section {title!r}")


def write_docs(args, rows, vmms, md_table, extra, argv, minutes):
    today = datetime.date.today().isoformat()
    cmds = "\n".join(f"{label}: {text}" for label, text in docs_commands(rows))
    body = [SECTION, "",
            f"Measured {today} with `{('bash bench/migrate/run.sh ' + shlex.join(argv)).strip()}`" +
            f" ({args.runs} run(s) per cell, median; {minutes:.0f} min in all).",
            f"Machine: {MACHINE[0]}; the run used a copy of build/tern taken at its start.",
            "",
            "Source and destination on the same machine, over 127.0.0.1. Same kernel, "
            f"initrd, memory, harts (--cpus {args.cpus}) and guest command line for both "
            "VMMs; the guest writes a heartbeat line every "
            f"{args.heartbeat_us} µs on ttyS1 (QEMU: a PCI 16550) and, in the dirty rows, "
            f"runs `dirtier -s {WORKING_SET_MIB} -r RATE -f` (working set filled with "
            f"incompressible data first; RATE MiB/s; max = flat out, "
            "which here rewrites the whole working set many times a second), migrated "
            "once it has written its whole working set. tern runs with its defaults "
            f"(downtime limit {TERN_DEFAULT_DOWNTIME_MS} ms, strategy auto: passes; while "
            "they do not shrink, a growing limit on the guest's dirtying, up to 50%; then "
            "post-copy; `docs/migration-strategies.md`) except migration TLS, on by default: "
            "both ends run with `--no-tls`, as QEMU migrates in plaintext (the cost of TLS: "
            "\"Migration TLS cost\" below). QEMU's max-bandwidth is raised to 100 GiB/s; "
            "its downtime-limit is 300 ms (its default, \"dl=300\") or 30 ms (tern's, "
            "\"dl=30\"); no auto-converge (QEMU's default)" +
            (", except in \"dl=30 ac\"" if "qemu-dl30-ac" in vmms else "") + ".", "",
            "QEMU 7.2, Debian 12's, does not migrate armed timers (fixed upstream only in "
            "QEMU 10.2, \"Fix RISC-V timer migration issues\", not backported): the guest "
            "hangs on the destination, waiting for a timer interrupt that never comes. The "
            "benchmark therefore runs QEMU with Sstc off (`-cpu rv64,sstc=off`: Linux then "
            "programs its timer through SBI, the ACLINT's mtimecmp) and, as soon as the "
            "destination reports running, writes each hart's mtimecmp back as it is "
            "through a qtest socket, which arms the timer again. That help (a QMP poll "
            "every 2 ms, then a few qtest round trips, about 1-10 ms) is inside QEMU's "
            "heartbeat figures.", "",
            "Meaning of each metric: the docstring of `bench/migrate/migrate_bench.py`. "
            "Lower is better everywhere; ratios are tern / QEMU.", "",
            md_table, "", *extra, "",
            "Commands (the other rows differ only in memory, the dirtier's rate, ports and "
            "paths):", "", "```", cmds, "```", ""]
    write_section(SECTION, body)


def measure(args, rows, vmms):
    """Runs every cell; returns the loopback bandwidth, the rows' results
    and the minutes it took."""
    guest_images()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)

    # Ended with SIGTERM or SIGINT (even when started in the background,
    # where SIGINT comes ignored), the finally blocks still stop every VM.
    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    # The whole run uses one tern binary, even if build/tern is rebuilt
    # meanwhile.
    MACHINE[0] = machine_info()
    TERN[0] = str(work / "tern")
    shutil.copy2(TERN_BIN, TERN[0])
    print(f"# tern binary: {TERN_BIN} copied to {TERN[0]} (built "
          f"{datetime.datetime.fromtimestamp(os.stat(TERN_BIN).st_mtime):%Y-%m-%d %H:%M:%S}; "
          f"{MACHINE[0]})", flush=True)
    t_start = time.monotonic()

    bw, bws = loopback_bandwidth(args.loopback_mib << 20)
    note_cmd("loopback", f"one TCP connection over 127.0.0.1 moving {args.loopback_mib} MiB "
             "in 4 MiB sendall()s to a recv_into() thread, 3 times (in this script)")
    print(f"# loopback: {bw / 2**30:.2f} GiB/s (runs: "
          + ", ".join(f"{b / 2**30:.2f}" for b in bws) + ")", flush=True)

    table_rows = []
    for row in rows:
        mem_mib, rate = ROWS[row]
        per = {v: [] for v in vmms}
        for i in range(args.runs):
            for v in vmms:
                t0 = time.monotonic()
                print(f"# {row} {VMMS[v]} run {i + 1}/{args.runs} ...", flush=True)
                try:
                    if v in TERN_VARIANTS:
                        r = tern_round(args, row, mem_mib, rate, work, v)
                    else:
                        r = qemu_round(args, row, mem_mib, rate, work, v)
                    r["floor_s"] = r["wire_mib"] * 2**20 / bw
                    print(f"#   total {r['total_s']:.2f} s (host {r['host_s']:.2f} s), downtime "
                          f"{r['downtime_ms']:.2f} ms (pause → running there "
                          f"{r['downtime_run_ms']:.2f} ms), heartbeat gap {r['hb_gap_ms']:.0f} ms "
                          f"(switch-over {r['hb_switch_ms']:.0f} ms, largest during the "
                          f"migration {r['hb_mig_ms']:.0f} ms, before {r['hb_base_ms']:.0f} ms "
                          f"(by the guest's clock {r['hb_base_guest_ms']:.0f} ms), "
                          f"{r['hb_lost']} beats lost, guest clock gap {r['hb_guest_ms']:.0f} ms), "
                          f"{r['wire_mib']:.1f} MiB, {r['passes']} passes, dirtier "
                          f"{r['dirty_rate']} MiB/s before, throttle at the end "
                          f"{r['throttle']}%; {r['verified']}; "
                          f"{time.monotonic() - t0:.0f} s in all", flush=True)
                    if r.get("slowdown") is not None:
                        print(f"#   guest speed: dirtier {r['rate_during']:.0f} MiB/s during the "
                              f"migration ({r['mig_guest_s']:.2f} s of guest time), "
                              f"{r['rate_before']:.0f} MiB/s before: {r['slowdown']:.2f}; "
                              f"throttle up to {r.get('throttle_max')}%" +
                              (f", harts stalled {r['throttle_stall_ms']} ms"
                               if r.get("throttle_stall_ms") is not None else ""), flush=True)
                    if r.get("tls"):
                        print(f"#   TLS: {r['tls']}" + (
                            "; log lines: " + "; ".join(r["tls_log"]) if r.get("tls_log")
                            else ""), flush=True)
                    if "postcopy_started_s" in r:
                        print("#   migrate-start-postcopy " +
                              (f"sent {r['postcopy_started_s']:.2f} s after migrate"
                               if r["postcopy_started_s"] is not None else
                               "not sent: pre-copy finished first"), flush=True)
                    if r.get("transferred_mib") is not None:
                        print(f"#   ram.transferred {r['transferred_mib']:.1f} MiB counts "
                              "multifd pages uncompressed; sent after compression "
                              f"{r['wire_mib']:.1f} MiB (multifd_send trace)", flush=True)
                    if r.get("postcopy_error"):
                        print(f"#   migrate-start-postcopy refused: {r['postcopy_error']}",
                              flush=True)
                    if r.get("src_exit") not in (None, 0):
                        print(f"#   the tern source exited {r['src_exit']} (0 expected)", flush=True)
                    if r.get("rearm_ms") is not None:
                        print(f"#   destination running {r['run_after_last_hb_ms']:.0f} ms after "
                              f"the last heartbeat of the source; timers re-armed "
                              f"{r['rearm_ms']:.1f} ms after that", flush=True)
                except Exception as e:  # noqa: BLE001 - one cell failing keeps the others
                    r = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                    print(f"#   FAILED: {r['error']}", flush=True)
                    if not isinstance(e, TimeoutError):
                        print("#   " + traceback.format_exc().replace("\n", "\n#   "),
                              flush=True)
                per[v].append(r)
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
    ap.add_argument("--matrix", choices=("default", "strategies", "tls"), default="default",
                    help="default: tern vs QEMU at its default and at a 30 ms downtime "
                         "limit, on every row; strategies: each of tern's strategies and "
                         "options beside QEMU's equivalent (rows "
                         f"{','.join(STRATEGY_ROWS)}, --runs {STRATEGY_RUNS}, --timeout "
                         f"{STRATEGY_TIMEOUT:.0f} unless given), a paired table and its own "
                         "docs section; tls: the cost of migration TLS, "
                         f"{','.join(TLS_VMMS)} (rows {','.join(TLS_ROWS)}, --runs "
                         f"{TLS_RUNS}, --timeout {TLS_TIMEOUT:.0f} unless given), with the "
                         "ratios TLS / plaintext per VMM and tern TLS / QEMU TLS, and its own "
                         "docs section")
    ap.add_argument("--rows", default=None,
                    help=f"comma-separated rows, of: {', '.join(ROWS)} (default: "
                         f"{','.join(DEFAULT_ROWS)})")
    ap.add_argument("--vmms", default=None,
                    help=f"comma-separated variants, of: {', '.join(VMMS)} (default: "
                         f"{','.join(DEFAULT_VMMS)}; qemu-dl30-ac: with QEMU's auto-converge)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: --rows 256M-idle --settle 1 --runs 1 (unless given)")
    ap.add_argument("--runs", type=int, default=None,
                    help="rounds per cell, one VMM after the other; medians are reported "
                         "(the machine's other load moves single runs a lot; default 3, "
                         f"--matrix strategies {STRATEGY_RUNS}, --matrix tls {TLS_RUNS}, "
                         "--quick 1)")
    ap.add_argument("--cpus", type=int, default=1, help="guest harts (both VMMs)")
    ap.add_argument("--heartbeat-us", type=int, default=5000)
    ap.add_argument("--settle", type=float, default=None,
                    help="seconds between a ready guest and the migration (default 3)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds a migration may take before it is cancelled (default 180; "
                         f"--matrix strategies {STRATEGY_TIMEOUT:.0f}, --matrix tls "
                         f"{TLS_TIMEOUT:.0f})")
    ap.add_argument("--no-qemu-timer-fix", dest="qemu_timer_fix", action="store_false",
                    help="run QEMU as it comes (Sstc on, no timer re-arm on the destination): "
                         "its guest then hangs after the migration")
    ap.add_argument("--loopback-mib", type=int, default=1024)
    ap.add_argument("--workdir", default="/tmp/tern-migrate-bench")
    ap.add_argument("--write-docs", action="store_true",
                    help="write docs/benchmarks.md even for a partial matrix")
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--from-results", metavar="JSON",
                    help="measure nothing: print (and write to the docs) the tables of a run "
                         "saved in WORKDIR/results.json")
    argv = sys.argv[1:]
    args = ap.parse_args()
    strategies = args.matrix == "strategies"
    tls = args.matrix == "tls"
    defaults = {"rows": STRATEGY_ROWS if strategies else TLS_ROWS if tls else
                (QUICK_ROWS if args.quick else DEFAULT_ROWS),
                "vmms": STRATEGY_VMMS if strategies else TLS_VMMS if tls else DEFAULT_VMMS,
                "runs": 1 if args.quick else STRATEGY_RUNS if strategies else
                TLS_RUNS if tls else 3,
                "settle": 1.0 if args.quick else 3.0,
                "timeout": STRATEGY_TIMEOUT if strategies else TLS_TIMEOUT if tls else 180.0}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, ",".join(value) if isinstance(value, list) else value)
    rows = args.rows.split(",")
    vmms = args.vmms.split(",")
    for r in rows:
        if r not in ROWS:
            ap.error(f"unknown row {r!r}")
    for v in vmms:
        if v not in VMMS:
            ap.error(f"unknown VMM {v!r}")
    vmms = [v for v in VMMS if v in vmms]
    if args.from_results:
        saved = json.loads(Path(args.from_results).read_text())
        rows, vmms, argv = saved["rows_order"], saved["vmms"], saved["argv"]
        for key in ("runs", "cpus", "heartbeat_us", "loopback_mib", "timeout", "settle"):
            if key in saved["args"]:
                setattr(args, key, saved["args"][key])
        strategies = saved.get("matrix", "default") == "strategies"
        tls = saved.get("matrix", "default") == "tls"
        MACHINE[0] = saved["machine"]
        COMMANDS[:] = [tuple(c) for c in saved["commands"]]
        bw, minutes = saved["loopback_bytes_s"], saved["minutes"]
        table_rows = []
        for row in rows:
            res = {}
            for v in vmms:
                runs = saved["rows"][row][v]["runs"]
                res[v] = median_result(runs)
                res[v]["runs"] = runs
                errs = [r["error"] for r in runs if not r.get("ok")]
                if errs:
                    res[v]["first_error"] = errs[0].splitlines()[0]
                    if not res[v].get("ok"):
                        res[v]["error"] = errs[0].splitlines()[0]
            table_rows.append((row, res))
    else:
        bw, table_rows, minutes = measure(args, rows, vmms)
        saved = {"argv": argv, "matrix": args.matrix, "rows_order": rows, "vmms": vmms,
                 "machine": MACHINE[0],
                 "args": {k: getattr(args, k) for k in ("runs", "cpus", "heartbeat_us",
                                                        "loopback_mib", "timeout", "settle")},
                 "commands": COMMANDS, "loopback_bytes_s": bw, "minutes": minutes,
                 "rows": {row: res for row, res in table_rows}}
        path = Path(args.workdir) / "results.json"
        path.write_text(json.dumps(saved, indent=1, default=str))
        print(f"# every figure of every run: {path} (--from-results renders it again)")
    loopback = (f"Loopback: {bw / 2**30:.2f} GiB/s (best of 3 × {args.loopback_mib} MiB over "
                "one TCP connection on 127.0.0.1); floor = the VMM's own bytes on the wire at "
                "that speed, the time no migration of those bytes can beat.")
    if strategies:
        text, md = build_pair_tables(table_rows, vmms, args.timeout)
        extra = strategy_notes(table_rows, vmms, args.timeout) + [
            loopback.split(";")[0] + "."]
    elif tls:
        text, md = build_tls_tables(table_rows, vmms)
        extra = tls_notes(table_rows, vmms) + [loopback.split(";")[0] + "."]
    else:
        text, md = build_tables(table_rows, vmms)
        extra = [loopback] + default_notes(table_rows, vmms)
    print(f"# --cpus {args.cpus}, heartbeat every {args.heartbeat_us} us, median of "
          f"{args.runs} run(s); {minutes * 60:.0f} s in all")
    print(text)
    print()
    for e in extra:
        print("# " + e)
    print()
    print(md)
    if strategies:
        full = set(rows) >= set(STRATEGY_ROWS) and set(vmms) >= set(STRATEGY_VMMS)
        if (full or args.write_docs) and not args.no_docs:
            write_strategies_docs(args, rows, vmms, md, extra, argv, minutes)
    elif tls:
        full = set(rows) >= set(TLS_ROWS) and set(vmms) >= set(TLS_VMMS)
        if (full or args.write_docs) and not args.no_docs:
            write_tls_docs(args, rows, vmms, md, extra, argv, minutes)
    else:
        full = set(rows) >= set(DEFAULT_ROWS) and set(vmms) >= set(DEFAULT_VMMS)
        if (full or args.write_docs) and not args.no_docs:
            write_docs(args, rows, vmms, md, extra, argv, minutes)
    # A QEMU cell that does not converge is a finding; a tern cell that fails
    # is a failure.
    return 1 if any(not r.get("ok") or r.get("n_ok", 1) < r.get("n", 1)
                    for _, res in table_rows for v, r in res.items() if v in TERN_VARIANTS) else 0


def default_notes(table_rows, vmms):
    """The lines under the default matrix's table."""
    extra = []
    dirty = []
    for row, res in table_rows:
        for v in vmms:
            if res[v].get("ok") and res[v].get("dirty_rate") is not None:
                dirty.append(f"{row} {VMMS[v]} {res[v]['dirty_rate']:.0f}")
    if dirty:
        extra.append("Dirtier rate in the last second before the migration (MiB/s): "
                     + ", ".join(dirty) + ".")
    throttles = [f"{row} {VMMS[v]} {res[v]['throttle']}%" for row, res in table_rows
                 for v in vmms if res[v].get("ok") and res[v].get("throttle")]
    if throttles:
        extra.append("Throttle at the switch-over (tern: its limit on dirtying, "
                     "throttle_pct; QEMU: cpu-throttle-percentage): " + ", ".join(throttles) + ".")
    pc = [f"{row} run {i + 1} ({r['status'].get('postcopy_requests')} pages asked for)"
          for row, res in table_rows if "tern" in res
          for i, r in enumerate(res["tern"]["runs"])
          if r.get("ok") and isinstance(r.get("status"), dict)
          and r["status"].get("postcopy_requests")]
    if pc:
        extra.append("tern switched to post-copy (strategy auto) in: " + ", ".join(pc) + ".")
    fails = failures(table_rows, vmms)
    if fails:
        extra.append("Failed or incomplete cells: " + "; ".join(fails) + ".")
    return extra


if __name__ == "__main__":
    sys.exit(main())
