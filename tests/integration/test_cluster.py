"""The cluster on the lab (docs/cluster.md): three hosts, each a network
namespace with a ternd, one etcd on a unix socket, six VMs.

One cluster and its VMs live through the module's tests, in order: the
VMs are created and placed; bad requests are refused and change nothing;
a VM is moved by the CLI; a host is drained (its VMs move live, their TCP
echo sessions unbroken) and undrained; a host dies (agent and VMMs killed
at once) and its VMs come back on the others, each exactly once, and the
host rejoins, empty; the
controller's host dies and another agent takes over.

Every VM runs the echo service (guest tool echoctr) on its own address of
the lab's subnet; the lab's client keeps one TCP session busy with each.
"Exactly once" is checked twice: by the owner records in etcd, and by the
`tern vm run` processes found in the hosts' namespaces."""
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import ternvm
from ternvm import INITRD, KERNEL, REPO, TERN_BIN as TERN, guest_images

sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests" / "lab"))
from cluster_lab import ClusterLab  # noqa: E402
from echo_client import EchoClient  # noqa: E402

HOSTS = 3
VMS = 6
LEASE_TTL = 4                    # seconds (ternd --lease-ttl)
ECHO_PORT = 7000
# This module's agents run under AddressSanitizer and UBSan: any report
# in their logs fails it (the other cluster modules use the release build).
TERND = os.environ.get("TERND_BIN", str(REPO / "build-asan" / "ternd"))
BOOT_S = 180                     # six guests booting at once on two cores


def vm_name(k):
    return f"vm{k}"


def vm_ip(k):
    return f"10.90.0.{30 + k}"


def spec(k):
    return {"name": vm_name(k), "memory_mib": 256, "cpus": 1,
            "kernel": str(KERNEL), "initrd": str(INITRD),
            "cmdline": f"console=ttyS0 tern.ip={vm_ip(k)}/24 tern.echoctr={ECHO_PORT}",
            "tap": f"tlv{k}", "mac": f"52:54:00:c1:00:{k:02x}"}


def tern_cli(cl, *args, check=True):
    p = subprocess.run([TERN, *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "TERN_AGENT": f"unix:{cl.sock(0)}"})
    if check and p.returncode != 0:
        raise AssertionError(f"tern {' '.join(args)} failed ({p.returncode}): "
                             f"{p.stdout}{p.stderr}")
    return p


def vmm_processes(cl):
    """{vm name: [host index, ...]} of the `tern vm run` processes in the
    hosts' namespaces."""
    found = {}
    for h in cl.lab.hosts:
        pids = subprocess.run(["ip", "netns", "pids", h.ns], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"vm" in argv and b"run" in argv:
                m = re.search(rb"/vms/([a-z0-9-]+)/api\.sock", b" ".join(argv))
                if m:
                    found.setdefault(m.group(1).decode(), []).append(h.index)
    return found


def wait_for(what, pred, timeout):
    """ternvm.wait_for at a pace the agents' APIs do not notice."""
    return ternvm.wait_for(what, pred, timeout, interval=0.25)


def all_running(cl, names):
    vms = cl.vms()
    return vms if all(vms.get(n, {}).get("state") == "running" for n in names) else None


def check_exactly_once(cl, names):
    """Each VM runs on exactly one host, the one its owner record names."""
    vms = cl.vms()
    procs = vmm_processes(cl)
    for n in names:
        host = vms[n]["host"]
        assert host is not None, vms[n]
        assert procs.get(n) == [int(host[1:])], \
            f"{n}: owner record says {host}, VMMs run on {procs.get(n)}"
    return vms


class Cluster:
    def __init__(self, cl):
        self.cl = cl
        self.names = [vm_name(k) for k in range(VMS)]
        self.echo = {}

    def start_echo(self, k):
        c = EchoClient(self.cl.lab.client, vm_ip(k), ECHO_PORT, interval_ms=100)
        c.start()
        self.echo[k] = c
        return c


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    guest_images()
    work = tmp_path_factory.mktemp("cluster")
    cl = ClusterLab(HOSTS, work, name=f"c{os.getpid() % 10000}", lease_ttl=LEASE_TTL,
                    ternd=TERND, tern=TERN, memory_mib=1024, cpu_milli=4000,
                    balance=False)
    c = Cluster(cl)
    try:
        yield c
    finally:
        for e in c.echo.values():
            e.stop()
        for i in range(HOSTS):
            if cl.agents[i] is not None:
                print(f"---- ternd h{i}\n" + cl.agent_log(i)[-4000:])
        cl.close()
        # Stopped by SIGTERM, the agents exit normally: LeakSanitizer ran.
        for i in range(HOSTS):
            log = cl.agent_log(i)
            assert "Sanitizer" not in log and "runtime error" not in log, log[-6000:]


def test_create_and_place(cluster):
    cl = cluster.cl
    # One by the CLI's options, the others as specs to the API of each agent.
    s = spec(0)
    out = tern_cli(cl, "vm", "create", s["name"], "--kernel", s["kernel"], "--initrd",
                   s["initrd"], "--cmdline", s["cmdline"], "--memory-mib", "256",
                   "--tap", s["tap"], "--mac", s["mac"]).stdout
    assert "created" in out, out
    for k in range(1, VMS):
        status, reply = cl.call(k % HOSTS, "POST", "/v1/vms", spec(k))
        assert status == 200 and reply["state"] == "pending", reply
    vms = wait_for("six running VMs", lambda: all_running(cl, cluster.names), BOOT_S)
    hosts = {v["host"] for v in vms.values()}
    assert hosts == {"h0", "h1", "h2"}, f"placement used {hosts}: {vms}"
    check_exactly_once(cl, cluster.names)
    # The CLI's table and JSON agree with the API.
    out = tern_cli(cl, "vm", "list").stdout
    for n in cluster.names:
        assert re.search(rf"^{n}\s+h\d\s+running", out, re.M), out
    listed = json.loads(tern_cli(cl, "host", "list", "--json").stdout)
    assert sum(len(h["vms"]) for h in listed["hosts"]) == VMS, listed
    for k in range(VMS):
        cluster.start_echo(k)
    for k in range(VMS):
        cluster.echo[k].wait_connected(timeout=BOOT_S)
    # The agents measure each VM: its harts' CPU, the memory it writes,
    # its NIC's traffic (the echo sessions, 10 lines a second each way).
    vms = wait_for("network traffic measured", lambda: (lambda v: v if all(
        x["net_bytes_s"] > 0 for x in v.values()) else None)(cl.vms()), 30)
    for n, v in vms.items():
        assert v["cpu_milli"] > 0 and v["dirty_bytes_s"] > 0, v


def test_bad_input_changes_nothing(cluster):
    cl = cluster.cl
    before = cl.vms()
    cases = [
        ("POST", "/v1/vms", spec(0), 409, "exists already"),
        ("POST", "/v1/vms", {**spec(9), "colour": "red"}, 400, "unknown field"),
        ("POST", "/v1/vms", {**spec(9), "kernel": "Image"}, 400, "absolute"),
        ("POST", "/v1/vms", {**spec(9), "name": "Bad_Name"}, 400, "not a VM name"),
        ("POST", "/v1/vms", {**spec(9), "memory_mib": 0}, 400, "memory_mib"),
        ("POST", "/v1/vms/nosuch/migrate", {"to": "h1"}, 404, "no VM nosuch"),
        ("POST", "/v1/vms/vm0/migrate", {"to": "h9"}, 404, "no host h9"),
        ("POST", "/v1/vms/vm0/migrate", {}, 400, "to"),
        ("POST", "/v1/hosts/h9/drain", None, 404, "no host h9"),
        ("POST", "/v1/hosts/h9/undrain", None, 404, "no host h9"),
        ("DELETE", "/v1/vms/nosuch", None, 404, "no VM nosuch"),
        ("GET", "/v1/nothing", None, 404, "no such resource"),
        ("PUT", "/v1/vms", None, 405, "not allowed"),
    ]
    for method, path, body, want, words in cases:
        status, reply = cl.call(1, method, path, body)
        assert status == want and words in reply.get("error", ""), (method, path, status, reply)
    # A body that is not JSON.
    p = subprocess.run(["curl", "-s", "--unix-socket", str(cl.sock(0)), "-X", "POST",
                        "-d", "{nope", "http://x/v1/vms"], capture_output=True, text=True)
    assert "not JSON" in p.stdout, p.stdout
    # Over TCP without the token: refused.
    h = cl.lab.hosts[0]
    p = subprocess.run(h.prefix() + ["curl", "-s", f"http://{h.ip}:7450/v1/hosts"],
                       capture_output=True, text=True)
    assert "Bearer" in p.stdout, p.stdout
    # The CLI says why, with a failing status.
    p = tern_cli(cl, "host", "drain", "h9", check=False)
    assert p.returncode == 1 and "no host h9" in p.stderr, p
    after = cl.vms()
    assert {n: (v["host"], v["owner_revision"]) for n, v in after.items()} == \
        {n: (v["host"], v["owner_revision"]) for n, v in before.items()}


def test_migrate_by_cli(cluster):
    cl = cluster.cl
    vms = cl.vms()
    name = "vm0"
    src = vms[name]["host"]
    dst = next(h for h in ("h0", "h1", "h2") if h != src)
    out = tern_cli(cl, "vm", "migrate", name, "--to", dst).stdout
    assert f"to {dst}" in out, out
    moved = wait_for(f"{name} on {dst}",
                     lambda: (lambda v: v if v[name]["host"] == dst and
                              v[name]["state"] == "running" else None)(cl.vms()), 120)
    assert moved[name]["owner_revision"] > vms[name]["owner_revision"]
    check_exactly_once(cl, cluster.names)
    assert cluster.echo[0].proc.poll() is None, "the echo session to vm0 ended"


def test_migration_asked_for_three_times_at_once_runs_once(cluster):
    """The controller asks again each round until a VM has moved; requests
    that overlap must not start a second destination VMM (CI once found
    three VMMs of one VM on a host after a drain)."""
    cl = cluster.cl
    name = "vm1"
    src = cl.vms()[name]["host"]
    dst = next(h for h in ("h0", "h1", "h2") if h != src)
    barrier = threading.Barrier(3)
    answers = []

    def ask(i):
        barrier.wait()
        answers.append(cl.call(i, "POST", f"/v1/vms/{name}/migrate", {"to": dst}))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(s for s, _ in answers)
    assert statuses == [200, 409, 409], answers
    assert all("already migrating" in r["error"] for s, r in answers if s == 409), answers
    wait_for(f"{name} on {dst}", lambda: (lambda v: v if v[name]["host"] == dst and
                                          v[name]["state"] == "running" else None)(cl.vms()),
             120)
    # The source's VMM exits about a second after the switch-over.
    wait_for("one VMM per VM", lambda: all(len(p) == 1 for p in vmm_processes(cl).values()), 15)
    check_exactly_once(cl, cluster.names)
    assert cluster.echo[1].proc.poll() is None, "the echo session to vm1 ended"


def test_drain_and_undrain(cluster):
    cl = cluster.cl
    before = cl.vms()
    # The host with the most VMs.
    count = {h: 0 for h in ("h0", "h1", "h2")}
    for v in before.values():
        count[v["host"]] += 1
    host = max(count, key=count.get)
    leaving = [n for n, v in before.items() if v["host"] == host]
    assert leaving
    reply = json.loads(tern_cli(cl, "host", "drain", host, "--json").stdout)
    assert reply["schedulable"] is False and len(reply["planned"]) == len(leaving), reply
    vms = wait_for(f"{host} empty",
                   lambda: (lambda v: v if all(x["host"] != host and x["state"] == "running"
                                               for x in v.values()) else None)(cl.vms()),
                   240)
    for n in leaving:
        # Moved live: a handover, not a restart (which would show as a
        # new owner record created by the controller, state "start").
        assert vms[n]["owner_revision"] > before[n]["owner_revision"]
    check_exactly_once(cl, cluster.names)
    hosts = cl.hosts()
    assert hosts[host]["schedulable"] is False and hosts[host]["vms"] == [], hosts[host]
    # Draining again, or draining what cannot fit: refused, nothing changes.
    status, reply = cl.call(0, "POST", f"/v1/hosts/{host}/drain")
    assert status == 409 and "already" in reply["error"], reply
    other = next(h for h in ("h0", "h1", "h2") if h != host and count[h] > 0) \
        if any(count[h] for h in count if h != host) else None
    status, reply = cl.call(0, "POST", f"/v1/hosts/{other}/drain")
    assert status == 409 and "nowhere" in reply["error"].lower() or \
        "no room" in reply["error"].lower() or "fit" in reply["error"].lower(), reply
    assert cl.hosts()[other]["schedulable"] is True
    # Every echo session survived the moves.
    for k, e in cluster.echo.items():
        assert e.proc.poll() is None, f"the echo session to {vm_name(k)} ended"
    tern_cli(cl, "host", "undrain", host)
    assert cl.hosts()[host]["schedulable"] is True
    for k, e in list(cluster.echo.items()):
        summary = e.stop()
        assert summary["ok"] and summary["errors"] == 0 and summary["unanswered"] == 0, \
            (vm_name(k), summary)
        del cluster.echo[k]


def test_host_dies_vms_restart_elsewhere_once(cluster):
    cl = cluster.cl
    vms = cl.vms()
    count = {h: [n for n, v in vms.items() if v["host"] == h] for h in ("h0", "h1", "h2")}
    victim = max(count, key=lambda h: len(count[h]))
    lost = count[victim]
    assert lost, vms
    t0 = time.monotonic()
    cl.kill_host(int(victim[1:]))
    back = wait_for("the dead host's VMs running elsewhere",
                    lambda: (lambda v: v if all(v[n]["host"] not in (None, victim) and
                                                v[n]["state"] == "running" for n in lost)
                             else None)(cl.vms()), LEASE_TTL + BOOT_S)
    took = time.monotonic() - t0
    print(f"\n{victim} died: {lost} running again on "
          f"{[back[n]['host'] for n in lost]} after {took:.1f} s")
    # The host is gone from the cluster, and each VM runs exactly once.
    assert victim not in cl.hosts()
    alive = [n for n in cluster.names]
    check_exactly_once(cl, alive)
    # And stays so: nothing restarts twice a moment later.
    time.sleep(2)
    again = check_exactly_once(cl, alive)
    assert {n: again[n]["owner_revision"] for n in lost} == \
        {n: back[n]["owner_revision"] for n in lost}
    # The host comes back (a new agent, a new lease), empty, and schedulable.
    cl.start_agent(int(victim[1:]))
    hosts = cl.wait_hosts(HOSTS)
    assert hosts[victim]["vms"] == [] and hosts[victim]["schedulable"], hosts[victim]


def test_controller_host_dies_another_takes_over(cluster):
    cl = cluster.cl
    alive = [i for i in range(HOSTS) if cl.agents[i] is not None]
    ctl = [i for i in alive if cl.ok(i, "GET", "/v1/host")["controller"]]
    assert len(ctl) == 1, ctl
    cl.kill_host(ctl[0])
    rest = [i for i in alive if i != ctl[0]]
    t0 = time.monotonic()
    wait_for("a new controller",
             lambda: [i for i in rest if cl.ok(i, "GET", "/v1/host")["controller"]],
             LEASE_TTL + 5)
    print(f"\ncontroller h{ctl[0]} died; h{rest} took over after "
          f"{time.monotonic() - t0:.1f} s")
    # The new controller does its job: the dead host's VMs come back.
    wait_for("every VM running", lambda: all_running(cl, cluster.names), BOOT_S)
    check_exactly_once(cl, cluster.names)
