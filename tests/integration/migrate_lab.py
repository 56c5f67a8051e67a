"""migrate_lab: a guest that lives in the migration lab (tests/lab) and
moves between its hosts, for the live-migration tests.

A MovingVm boots on one lab host with a disk every host can open (a file
on this machine: shared storage) and a NIC on a TAP of that host's bridge,
always with the same MAC and IP. move_to(i) starts `tern vm run
--incoming` on host i, tells the current tern `tern vm migrate --to`, and
returns the final migration status; the guest's workload (heartbeat,
dirtier, echo service, a counter appending to the disk) runs throughout.
The checks say what a user of the guest would notice."""
import json
import subprocess
import sys
import time
from pathlib import Path

from ternvm import REPO, Vm, run_tern

sys.path.insert(0, str(REPO / "tests" / "lab"))
from lab import Lab  # noqa: E402,F401  (re-exported for the tests)
from echo_client import EchoClient  # noqa: E402,F401

GUEST_IP = "10.90.0.200"
MAC = "52:54:00:74:00:01"
ECHO_PORT = 7000
TAP = "tlvm0"
# The guest appends 1, 2, 3, ... to this file on the shared disk, one line
# every 50 ms: a lost or repeated write shows as a wrong line.
COUNTER = "/mnt/counter.log"

_next_port = [47300]


def next_port():
    _next_port[0] += 1
    return _next_port[0]


def mkdisk(path, size="32M"):
    subprocess.run(["bash", str(REPO / "scripts" / "mkdisk.sh"), str(path), size],
                   check=True, stdout=subprocess.DEVNULL)
    return path


class MovingVm:
    """local_disk: instead of the shared disk with its counter, a raw disk
    image of local_disk bytes in a directory of each host (host_dir(i)),
    created on host 0 by the caller's `prepare(path)` (or empty): moves
    then need --copy-storage."""

    def __init__(self, lab, workdir, cpus=1, memory="256M", dirtier="-s,32,-r,16",
                 heartbeat_us=20000, local_disk=None, prepare=None, tls="test"):
        self.lab = lab
        self.tls = tls                 # ternvm.Vm's tls: every VMM of this guest
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cpus, self.memory = cpus, memory
        self.local_disk = local_disk
        for h in lab.hosts:
            if not h.has_link(TAP):
                h.add_vm_tap(TAP)
        if local_disk:
            for i in range(len(lab.hosts)):
                self.host_dir(i).mkdir(parents=True, exist_ok=True)
            path = self.disk_path(0)
            with open(path, "wb") as f:
                f.truncate(local_disk)
            if prepare:
                prepare(path)
            disk_words = ""
        else:
            self.disk = mkdisk(self.workdir / "shared.img")
            disk_words = " tern.disk=/dev/vda tern.mount=/mnt"
        self.cmdline = (f"tern.ip={GUEST_IP}/24{disk_words} "
                        f"tern.heartbeat={heartbeat_us} tern.echoctr={ECHO_PORT}"
                        + (f" tern.dirtier={dirtier}" if dirtier else ""))
        self.host = None
        self.vm = None
        self.generation = 0
        self.history = []          # every finished VMM: (host index, Vm, exit status)

    def host_dir(self, host):
        return self.workdir / f"host{host}"

    def disk_path(self, host):
        """Where the VM's disk is on lab host `host`."""
        return self.host_dir(host) / "disk.img" if self.local_disk else self.disk

    def _vm(self, host, **kw):
        self.generation += 1
        kw.setdefault("tls", self.tls)
        return Vm(self.workdir / f"g{self.generation}-h{host}", cpus=self.cpus,
                  memory=self.memory, netns=self.lab.hosts[host],
                  disks=[self.disk_path(host)], nets=[f"tap={TAP},mac={MAC}"], **kw)

    def boot(self, host=0):
        self.vm = self._vm(host, cmdline=self.cmdline).boot()
        self.host = host
        if not self.local_disk:
            self.vm.sh(f"i=0; (while true; do i=$((i+1)); echo $i >> {COUNTER}; "
                       "sleep 0.05; done) </dev/null >/dev/null 2>&1 & "
                       "echo $! > /tmp/counter.pid")
        return self

    def start_incoming(self, host, port=None, **kw):
        port = port or next_port()
        uri = f"tcp:{self.lab.hosts[host].ip}:{port}"
        dst = self._vm(host, incoming=uri, **kw).start().wait_listening()
        return dst, uri

    def migrate(self, uri, *options):
        """Starts the migration; returns the CLI's reply (the first status)."""
        rc, out = run_tern("vm", "migrate", "--api-socket", self.vm.api_path, "--to", uri,
                           *options, timeout=60)
        if rc != 0:
            raise AssertionError(f"tern vm migrate failed ({rc}): {out}")
        return json.loads(out)

    def status(self, vm=None):
        reply = (vm or self.vm).api("migrate-status")
        assert reply["ok"], reply
        return reply["result"]

    def wait_finished(self, timeout=600, vm=None):
        """Polls the source until the migration ends; returns the last status."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                st = self.status(vm)
            except (OSError, ValueError):
                # The source exits about a second after completing; a
                # status read in that window may find the socket gone.
                return {"phase": "completed?"}
            if st["phase"] in ("completed", "failed", "cancelled", "unknown"):
                return st
            if time.monotonic() > deadline:
                raise TimeoutError(f"migration still {st['phase']} after {timeout}s: {st}")
            time.sleep(0.1)

    def move_to(self, host, *options, at_gate=None, **kw):
        """Migrates the guest to lab host `host`; returns the final status.
        With --switchover-gate in options, calls at_gate() (which waits for
        the gate) and then lets the switch-over go on (--continue)."""
        dst, uri = self.start_incoming(host, **kw)
        try:
            self.migrate(uri, *options)
            if at_gate:
                at_gate()
                rc, out = run_tern("vm", "migrate", "--api-socket", self.vm.api_path,
                                   "--continue", timeout=30)
                if rc != 0:
                    raise AssertionError(f"tern vm migrate --continue failed ({rc}): {out}")
            st = self.wait_finished()
            assert st["phase"] == "completed", (st, self.vm.log_text(), dst.log_text())
            status = self.vm.wait_exit(30)
            assert status == 0, f"source tern exited {status}:\n{self.vm.log_text()}"
            dst.attach()
        except BaseException:
            dst.close()
            raise
        self.history.append((self.host, self.vm, 0))
        self.vm.close()
        self.vm, self.host = dst, host
        return st

    # ---- what a user of the guest would check -------------------------------------

    def dirtier_verified(self):
        """Has the running dirtier check all its pages; returns its verdict line."""
        before = self.vm.sh("grep -c verify /tmp/dirtier.log || true").strip() or "0"
        self.vm.sh("kill -USR2 $(cat /tmp/dirtier.pid)")
        out = self.vm.sh(f"i=0; while [ $(grep -c verify /tmp/dirtier.log) -le {before} ] "
                         "&& [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; "
                         "grep verify /tmp/dirtier.log | tail -1", timeout=120)
        return out.strip()

    def counter_lines(self):
        """Checks the counter file on the disk is exactly 1..N; returns N."""
        out = self.vm.sh(f"awk 'NR != $1 {{ print \"BAD line \" NR \": \" $0; exit 1 }} "
                         f"END {{ print NR }}' {COUNTER}", check=False)
        assert "BAD" not in out, out
        return int(out.strip().splitlines()[-1])

    def heartbeat_bytes(self):
        try:
            return self.vm.serial1_path.stat().st_size
        except FileNotFoundError:
            return 0

    def heartbeat_grows(self, seconds=1.0):
        a = self.heartbeat_bytes()
        time.sleep(seconds)
        return self.heartbeat_bytes() > a

    def bridge_port(self, timeout=3.0):
        """Where the fabric has learnt the guest's MAC, polled for a while."""
        deadline = time.monotonic() + timeout
        while True:
            where = self.lab.where_is(MAC)
            if where == self.host or time.monotonic() > deadline:
                return where
            time.sleep(0.05)

    def close(self):
        if self.vm:
            self.vm.close()
