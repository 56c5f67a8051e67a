#!/usr/bin/python3
"""cluster_lab: a tern cluster on one machine (`tern cluster up --hosts N`).

N lab hosts (network namespaces on one rack bridge, tests/lab/lab.py), an
etcd (one member, or three with --etcd-members 3) on unix sockets, and a
ternd in every host's namespace:

    ternd --name h<i> --etcd <the members> --state-dir DIR/h<i>
          --listen 10.90.0.<10+i>:7450 --token-file DIR/token --ip 10.90.0.<10+i>
          --bridge br0 --tls-dir DIR/tls/h<i>

The agents' unix sockets are DIR/h<i>/api.sock; the first is written to
DIR/agent and /run/tern-lab/agent, where the tern CLI looks when neither
--agent nor $TERN_AGENT is given. Migrations between the hosts use TLS with
a CA made for the lab (scripts/mkcerts.sh).

    cluster_lab.py up --hosts N [--dir DIR] [--name NAME] [--etcd-members 1|3]
    cluster_lab.py down [--dir DIR]

Python API (tests): ClusterLab(n, workdir, ...) with .hosts, .agent(i),
.call(i, method, path, body), .kill_host(i), .close()."""
import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "lab"))
from lab import Lab  # noqa: E402

DEFAULT_DIR = Path("/run/tern-lab")
AGENT_PORT = 7450
LAB_AGENT_FILE = DEFAULT_DIR / "agent"


def http_unix(path, method, url, body=None, timeout=60):
    """One JSON request over a unix socket; returns (status, decoded reply)."""
    data = json.dumps(body).encode() if body is not None else b""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
        s.sendall(f"{method} {url} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                  .encode() + data)
        raw = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
    finally:
        s.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"chunked" in head.lower():
        out, rest = b"", payload
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        payload = out
    return status, json.loads(payload or b"{}")


class ClusterLab:
    def __init__(self, n, workdir=DEFAULT_DIR, name=None, etcd_members=1, lease_ttl=4,
                 tern=None, ternd=None, memory_mib=2048, cpu_milli=1000, balance=True,
                 extra_args=(), log=print, etcd_on_network=False, lab=None, first=0,
                 site=None, shared_dir=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.n = n
        self.tern = tern or str(REPO / "build" / "tern")
        self.ternd = ternd or str(REPO / "build" / "ternd")
        self.lease_ttl = lease_ttl
        self.log = log
        self.agents = [None] * n
        # A site of a larger lab: hosts first..first+n-1 of a shared Lab,
        # with an etcd and agents of its own (the caller closes the lab).
        self.shared_lab = lab is not None
        self.first = first
        self.site = site
        self.lab = lab if lab is not None else Lab(n, name=name)
        self.etcd_dir = self.workdir / "etcd"
        try:
            # Sites of one lab share the token and the TLS CA (shared_dir):
            # their agents call each other, their VMMs replicate to each other.
            self.shared = Path(shared_dir) if shared_dir else self.workdir
            self.shared.mkdir(parents=True, exist_ok=True)
            self.token_file = self.shared / "token"
            if not self.token_file.exists():
                self.token_file.write_text(secrets.token_hex(24) + "\n")
                self.token_file.chmod(0o600)
            self.etcd_proc = None
            self.endpoints = (self._start_etcd_on_network() if etcd_on_network
                              else self._start_etcd(etcd_members))
            self._make_certs()
            self.args = dict(memory_mib=memory_mib, cpu_milli=cpu_milli, balance=balance,
                             extra=list(extra_args))
            for i in range(n):
                self.start_agent(i)
            self.wait_hosts(n)
            (self.workdir / "agent").write_text(f"unix:{self.sock(0)}\n")
        except BaseException:
            self.close()
            raise

    # ---- setup ---------------------------------------------------------------------

    def _start_etcd(self, members):
        out = subprocess.run(["bash", str(REPO / "scripts" / "etcd-lab.sh"), "start",
                              str(self.etcd_dir), "--members", str(members)],
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"etcd-lab.sh start failed: {out.stdout}{out.stderr}")
        return out.stdout.strip().splitlines()[-1]

    def _start_etcd_on_network(self):
        """One etcd member in the lab client's namespace, serving clients on
        its address of the lab network (port 2379 of that fresh namespace,
        free by construction): the hosts reach it over their uplinks, so
        cutting a host's uplink cuts it off from etcd, as a partition would."""
        d = self.etcd_dir / "net"
        d.mkdir(parents=True, exist_ok=True)
        url = f"http://{self.lab.client.ip}:2379"
        cmd = self.lab.client.prefix() + [
            "etcd", "--name", "e0", "--data-dir", str(d / "data"),
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", "unix://peer:1", "--initial-advertise-peer-urls",
            "unix://peer:1", "--initial-cluster", "e0=unix://peer:1",
            "--heartbeat-interval", "10", "--election-timeout", "100"]
        log = open(d / "etcd.log", "ab")
        self.etcd_proc = subprocess.Popen(cmd, cwd=d, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 20
        while subprocess.run(self.lab.client.prefix() + ["curl", "-sf", "-X", "POST",
                                                          f"{url}/v3/maintenance/status",
                                                          "-d", "{}"],
                             capture_output=True).returncode != 0:
            if self.etcd_proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("etcd on the lab network did not start:\n" +
                                   (d / "etcd.log").read_text(errors="replace")[-2000:])
            time.sleep(0.1)
        return url

    def _make_certs(self):
        tls = self.shared / "tls"
        mk = ["bash", str(REPO / "scripts" / "mkcerts.sh")]
        if not (tls / "ca" / "ca.pem").exists():
            subprocess.run(mk + ["ca", str(tls / "ca")], check=True, capture_output=True)
        for h in self.lab.hosts[self.first:self.first + self.n]:
            d = tls / f"h{h.index}"
            if not (d / "host.pem").exists():
                subprocess.run(mk + ["host", str(tls / "ca"), str(d), f"h{h.index}",
                                     f"IP:{h.ip}"], check=True, capture_output=True)

    def host(self, i):
        return self.lab.hosts[self.first + i]

    def host_name(self, i):
        return f"h{i}"

    def sock(self, i):
        return self.workdir / self.host_name(i) / "api.sock"

    def start_agent(self, i):
        h = self.host(i)
        state = self.workdir / self.host_name(i)
        state.mkdir(parents=True, exist_ok=True)
        cmd = [self.ternd, "--name", self.host_name(i), "--etcd", self.endpoints,
               "--state-dir", str(state), "--listen", f"{h.ip}:{AGENT_PORT}",
               "--token-file", str(self.token_file), "--ip", h.ip, "--bridge", "br0",
               "--tls-dir", str(self.shared / "tls" / f"h{h.index}"), "--tern", self.tern,
               "--lease-ttl", str(self.lease_ttl), "--memory-mib", str(self.args["memory_mib"]),
               "--cpu-milli", str(self.args["cpu_milli"])] + self.args["extra"]
        if not self.args["balance"]:
            cmd.append("--no-balance")
        if self.site:
            cmd += ["--site", self.site]
        # A socket left by a killed agent would look like a ready one.
        self.sock(i).unlink(missing_ok=True)
        log = open(state / "ternd.log", "ab")
        p = subprocess.Popen(h.prefix() + cmd, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        (state / "ternd.pid").write_text(f"{p.pid}\n")
        self.agents[i] = p
        deadline = time.monotonic() + 30
        while not self.sock(i).exists():
            if p.poll() is not None:
                raise RuntimeError(f"ternd on {h.ns} exited {p.returncode}:\n" +
                                   (state / "ternd.log").read_text(errors="replace")[-3000:])
            if time.monotonic() > deadline:
                raise TimeoutError(f"ternd on {h.ns} did not start")
            time.sleep(0.05)
        return p

    def wait_hosts(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                hosts = self.hosts()
            except OSError:
                hosts = {}
            if len(hosts) == n:
                return hosts
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(hosts)} of {n} hosts registered: {hosts}")
            time.sleep(0.1)

    # ---- use ---------------------------------------------------------------------------

    def call(self, i, method, path, body=None, timeout=60):
        """A request to agent i; returns (status, reply)."""
        return http_unix(self.sock(i), method, path, body, timeout)

    def ok(self, i, method, path, body=None):
        status, reply = self.call(i, method, path, body)
        if status != 200:
            raise RuntimeError(f"{method} {path} on h{i}: HTTP {status}: {reply}")
        return reply

    def alive_agent(self):
        """The agent that answers for the cluster: self.prefer if set (e.g.
        while another host is cut off), else the first one running."""
        if getattr(self, "prefer", None) is not None:
            return self.prefer
        for i, p in enumerate(self.agents):
            if p is not None and p.poll() is None:
                return i
        raise RuntimeError("no agent runs")

    def hosts(self):
        return {h["name"]: h for h in self.ok(self.alive_agent(), "GET", "/v1/hosts")["hosts"]}

    def vms(self):
        return {v["name"]: v for v in self.ok(self.alive_agent(), "GET", "/v1/vms")["vms"]}

    def kill_host(self, i):
        """The host dies: its agent and every process in its namespace, at once."""
        ns = self.host(i).ns
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.agents[i] is not None:
            self.agents[i].wait()
            self.agents[i] = None

    def agent_log(self, i):
        return (self.workdir / self.host_name(i) / "ternd.log").read_text(errors="replace")

    # ---- teardown ------------------------------------------------------------------------

    def close(self):
        for i, p in enumerate(self.agents):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            self.agents[i] = None
        if getattr(self, "etcd_proc", None) is not None:
            self.etcd_proc.terminate()
            try:
                self.etcd_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.etcd_proc.kill()
                self.etcd_proc.wait()
        subprocess.run(["bash", str(REPO / "scripts" / "etcd-lab.sh"), "stop",
                        str(self.etcd_dir)], capture_output=True, timeout=60)
        if not self.shared_lab:
            self.lab.close()
        for f in (self.workdir / "agent", LAB_AGENT_FILE):
            try:
                if f.read_text().strip() == f"unix:{self.sock(0)}":
                    f.unlink()
            except OSError:
                pass


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("up", "down"))
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--dir", default=str(DEFAULT_DIR))
    ap.add_argument("--name", default="cl")
    ap.add_argument("--etcd-members", type=int, choices=(1, 3), default=1)
    args = ap.parse_args()
    workdir = Path(args.dir)
    if args.action == "up":
        cl = ClusterLab(args.hosts, workdir, name=args.name, etcd_members=args.etcd_members)
        cl.lab.detach()
        LAB_AGENT_FILE.parent.mkdir(parents=True, exist_ok=True)
        LAB_AGENT_FILE.write_text(f"unix:{cl.sock(0)}\n")
        print(f"cluster up: {args.hosts} hosts (namespaces tl{args.name}h0..), etcd "
              f"{cl.endpoints}")
        print(f"agents: {', '.join(str(cl.sock(i)) for i in range(args.hosts))}")
        token = cl.token_file.read_text().strip()
        print(f"dashboard: http://{cl.host(0).ip}:{AGENT_PORT}/#token={token} (inside the lab: "
              f"ip netns exec {cl.lab.client.ns} chromium ...)")
        print("try: tern host list; tern vm list; tern cluster down")
        return 0
    # down: agents by pid, etcd, the lab's namespaces.
    for state in sorted(workdir.glob("h*")):
        pid_file = state / "ternd.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
            pid_file.unlink()
    time.sleep(1)
    subprocess.run(["bash", str(REPO / "scripts" / "etcd-lab.sh"), "stop",
                    str(workdir / "etcd")], timeout=60)
    subprocess.run(["bash", str(REPO / "tests" / "lab" / "lab.sh"), "down", "--name",
                    args.name], timeout=120)
    for f in (workdir / "agent", LAB_AGENT_FILE):
        f.unlink(missing_ok=True)
    print("cluster down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
