"""ternvm: drives a real `tern vm run` process for the integration tests.

A Vm owns one tern process, its console (a unix socket, read by a thread
into a buffer), its second serial port (a file) and its API socket. Tests
talk to the guest's shell with sh(), which frames each command with a
unique end marker carrying the exit status.
"""
import atexit
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TERN_BIN = os.environ.get("TERN_BIN", str(REPO / "build" / "tern"))
GUEST_DIR = Path(os.environ.get("GUEST_DIR", Path.home() / ".cache" / "tern" / "guest"))
KERNEL = GUEST_DIR / "Image"
INITRD = GUEST_DIR / "initrd.img"
BOOT_TIMEOUT = float(os.environ.get("TERN_BOOT_TIMEOUT", "180"))
# The lab's addresses (tests/lab/lab.py) and loopback: what a test VM's
# certificate must name for a peer's allow list to find it.
TEST_CERT_IPS = ["127.0.0.1"] + [f"10.90.0.{i}" for i in range(1, 30)]

_tls = {}


def free_port():
    """A TCP port of 127.0.0.1 free a moment ago (for a VMM to listen on)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, pred, timeout, interval=0.05):
    """pred()'s first true value within timeout seconds, else TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout} s")
        time.sleep(interval)


def heartbeats(path):
    """The (seq, guest ns) pairs of a heartbeat_lines serial file."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [(int(a), int(b)) for a, b in re.findall(r"HB (\d+) (\d+)", text)]


def make_certs(base, name, ca="ca", extra=(), expired=False):
    """A host certificate directory (for --tls-dir) under base, signed by
    the CA in base/ca (made on first use)."""
    base = Path(base)
    mk = ["bash", str(REPO / "scripts" / "mkcerts.sh")]
    if not (base / ca / "ca.pem").exists():
        subprocess.run(mk + ["ca", str(base / ca)], check=True, stdout=subprocess.DEVNULL)
    out = base / f"{name}-{ca}{'-expired' if expired else ''}"
    if not (out / "host.pem").exists():
        subprocess.run(mk + ["host", str(base / ca), str(out), name, *extra]
                       + (["--expired"] if expired else []), check=True,
                       stdout=subprocess.DEVNULL)
    return out


def test_tls_dir():
    """The credentials every test VM migrates with, made once per run:
    migration TLS is on by default, so the tests run with it."""
    if "dir" not in _tls:
        base = Path(tempfile.mkdtemp(prefix="tern-tls-"))
        atexit.register(shutil.rmtree, base, True)
        _tls["base"] = base
        _tls["dir"] = make_certs(base, "testhost", extra=[f"IP:{ip}" for ip in TEST_CERT_IPS])
    return _tls["dir"]


test_tls_dir.__test__ = False     # not a pytest test


def guest_images():
    """The kernel and initrd, or a failure telling how to build them."""
    for p in (KERNEL, INITRD):
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing: run `make guest` first")
    return KERNEL, INITRD


class Console:
    """The guest's ttyS0 over tern's unix-socket console backend."""

    def __init__(self, path, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.buf = bytearray()
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()

    def _reader(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            with self.cond:
                if not data:
                    self.closed = True
                    self.cond.notify_all()
                    return
                self.buf += data
                self.cond.notify_all()

    def text(self):
        with self.cond:
            return self.buf.decode("utf-8", "replace")

    def wait_for(self, pattern, timeout=30.0, start=0):
        """Waits until regex `pattern` appears after offset `start`; returns the match."""
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                m = rx.search(self.buf, start)
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    tail = self.buf[-3000:].decode("utf-8", "replace")
                    why = "console closed" if self.closed else f"timeout after {timeout}s"
                    raise TimeoutError(f"{why} waiting for {pattern!r}; console tail:\n{tail}")
                self.cond.wait(min(left, 0.5))

    def mark(self):
        with self.cond:
            return len(self.buf)

    def write(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class Vm:
    def __init__(self, workdir, cpus=1, memory="256M", cmdline="", binary=None,
                 kernel=None, initrd=None, extra_args=(), disks=(), nets=(), netns=None,
                 restore=None, incoming=None, tls="test", tls_allow=None, replica=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cpus = cpus
        self.memory = memory
        self.cmdline = cmdline
        self.binary = binary or TERN_BIN
        self.kernel = kernel
        self.initrd = initrd
        self.extra_args = list(extra_args)
        self.disks = list(disks)       # "PATH" or "PATH,ro"
        self.nets = list(nets)         # "tap=NAME,mac=MAC"
        self.netns = netns             # a netlab.Namespace to run tern in
        self.restore = restore         # a snapshot file to continue instead of booting
        self.replica = replica         # "tcp:ADDR:PORT": a standby for a replicated VM
        # Both wait for their VM from the network (console made later).
        self.incoming = incoming or replica
        self.tls = tls                 # "test" (test_tls_dir), "off", None or a dir
        self.tls_allow = tls_allow
        self.console_path = self.workdir / "console.sock"
        self.api_path = self.workdir / "api.sock"
        self.serial1_path = self.workdir / "ttyS1.out"
        self.log_path = self.workdir / "tern.log"
        self.proc = None
        self.console = None
        self._marker = 0

    def command(self):
        if self.restore:
            cmd = [self.binary, "vm", "run", "--restore", str(self.restore)]
        elif self.replica:
            cmd = [self.binary, "vm", "run", "--replica", self.replica]
        elif self.incoming:
            cmd = [self.binary, "vm", "run", "--incoming", self.incoming]
        else:
            if self.kernel is None:
                self.kernel, self.initrd = guest_images()
            cmd = [self.binary, "vm", "run", "--kernel", str(self.kernel),
                   "--memory", str(self.memory), "--cpus", str(self.cpus)]
        cmd += ["--console", f"unix:{self.console_path}",
               "--serial1", f"file:{self.serial1_path}",
               "--api-socket", str(self.api_path)]
        if self.initrd and not (self.restore or self.incoming):
            cmd += ["--initrd", str(self.initrd)]
        for d in self.disks:
            cmd += ["--disk", str(d)]
        for n in self.nets:
            cmd += ["--net", n]
        if self.tls == "off":
            cmd += ["--no-tls"]
        elif self.tls:
            cmd += ["--tls-dir", str(test_tls_dir() if self.tls == "test" else self.tls)]
        if self.tls_allow:
            cmd += ["--tls-allow", self.tls_allow]
        if not (self.restore or self.incoming):
            cmd += ["--cmdline", f"console=ttyS0 {self.cmdline}".strip()]
        cmd += self.extra_args
        return (self.netns.prefix() if self.netns else []) + cmd

    def start(self):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        # An incoming VMM makes its console only once the stream says what
        # VM arrives: attach() after the migration.
        if not self.incoming:
            self.console = Console(self.console_path)
        return self

    def wait_listening(self, timeout=30.0):
        """For an incoming VM: waits until tern says it listens."""
        deadline = time.monotonic() + timeout
        said = "waiting for a replication stream" if self.replica else \
            "waiting for an incoming migration"
        while said not in self.log_text():
            if self.proc.poll() is not None:
                raise AssertionError(f"incoming tern exited {self.proc.returncode}:\n"
                                     + self.log_text())
            if time.monotonic() > deadline:
                raise TimeoutError("incoming tern never listened:\n" + self.log_text())
            time.sleep(0.02)
        return self

    def attach(self, timeout=60.0):
        """For a migrated-in VM: connects the console and, unless the VM
        arrived paused, syncs with the shell."""
        self.console = Console(self.console_path, timeout=timeout)
        if self.api("status")["result"]["state"] != "paused":
            self.sh("true", timeout=timeout)
        return self

    def boot(self, timeout=BOOT_TIMEOUT):
        """Starts tern and waits for the guest's shell."""
        self.start()
        self.console.wait_for(r"TERN-READY", timeout)
        # The shell prints its prompt after TERN-READY; sync on a command.
        self.sh("true", timeout=60)
        return self

    def sh(self, command, timeout=60.0, check=True):
        """Runs a shell command in the guest; returns its output (stdout+stderr).

        The command prints its own start and end markers, so the output is
        what lies between two lines the guest printed, whatever the shell
        echoes or however it wraps the command line."""
        self._marker += 1
        begin, end = f"__TERN_S{self._marker}__", f"__TERN_E{self._marker}__"
        start = self.console.mark()
        # A command ending in & already ends its list: no ";" after it.
        sep = " " if command.rstrip().endswith("&") else "; "
        self.console.write(f"echo {begin}; {command}{sep}echo {end} $?\n")
        b = self.console.wait_for(rb"(?:^|\n)" + begin.encode() + rb"\r?\n", timeout, start)
        # From the newline that ends the begin line, so empty output matches.
        e = self.console.wait_for(rb"\n" + end.encode() + rb" (\d+)\r?\n", timeout, b.end() - 1)
        out = bytes(self.console.buf[b.end():max(b.end(), e.start())]).decode("utf-8", "replace")
        out = out.replace("\r", "")
        status = int(e.group(1))
        if check and status != 0:
            raise AssertionError(f"guest command {command!r} failed with {status}:\n{out}")
        return out

    def api(self, command, args=None, timeout=30.0, raw=None):
        """Sends one API request; returns the decoded reply object."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.api_path))
            if raw is None:
                req = {"command": command}
                if args is not None:
                    req["args"] = args
                raw = json.dumps(req).encode() + b"\n"
            s.sendall(raw)
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return json.loads(data)

    def resumed(self, timeout=60.0):
        """For a restored VM: connects and waits until its shell answers."""
        self.start()
        self.sh("true", timeout=timeout)
        return self

    def snapshot(self, path, stop=False):
        """Snapshots through the CLI; returns the reply's result."""
        args = ["vm", "snapshot", "--api-socket", self.api_path, "--to", path]
        rc, out = run_tern(*args, *(["--stop"] if stop else []), timeout=600)
        if rc != 0:
            raise AssertionError(f"tern vm snapshot failed ({rc}): {out}")
        return json.loads(out)

    def wait_exit(self, timeout=60.0):
        return self.proc.wait(timeout)

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.console:
            self.console.close()
        if getattr(self, "log", None):
            self.log.close()


def run_tern(*args, timeout=60):
    """Runs the tern CLI to completion; returns (status, combined output)."""
    p = subprocess.run([TERN_BIN, *map(str, args)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")
