"""Load balancing and consolidation on the lab (docs/cluster.md), with a
real etcd: three hosts; three guests that each keep a hart busy (the
guest's tern.busy) start on one host, the other two being drained
meanwhile; once those come back, the controller's automatic balancing
moves VMs live until the CPU imbalance is under its threshold, every
guest's TCP echo session unbroken, and then leaves them alone
(hysteresis). Consolidation then packs the VMs onto as few hosts as fit
and names the hosts that could be powered off.

Also: draining the last schedulable host is refused; the balancing plan
can be read without acting on it (--dry-run); every decision is recorded
with its reason."""
import json
import os
import subprocess
import sys
import time

import pytest

from ternvm import INITRD, KERNEL, REPO, TERN_BIN as TERN, guest_images
from test_cluster import check_exactly_once, tern_cli, wait_for

sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests" / "lab"))
from cluster_lab import ClusterLab  # noqa: E402
from echo_client import EchoClient  # noqa: E402

HOSTS = 3
ECHO_PORT = 7000
TERND = os.environ.get("TERND_BIN", str(REPO / "build" / "ternd"))
THRESHOLD = 0.10             # cl_policy_default's imbalance_threshold
NAMES = ["busy0", "busy1", "busy2"]


def spec(k):
    return {"name": NAMES[k], "memory_mib": 256, "cpus": 1, "kernel": str(KERNEL),
            "initrd": str(INITRD),
            "cmdline": f"console=ttyS0 tern.ip=10.90.0.{40 + k}/24 tern.echoctr={ECHO_PORT} "
                       "tern.busy=1",
            "tap": f"tlb{k}", "mac": f"52:54:00:c2:00:{k:02x}"}


@pytest.fixture(scope="module")
def cl(tmp_path_factory):
    guest_images()
    work = tmp_path_factory.mktemp("balance")
    c = ClusterLab(HOSTS, work, name=f"b{os.getpid() % 10000}", lease_ttl=4, ternd=TERND,
                   tern=TERN, memory_mib=1024, cpu_milli=3000, balance=False)
    c.echo = []
    try:
        yield c
    finally:
        for e in c.echo:
            e.stop()
        for i in range(HOSTS):
            if c.agents[i] is not None:
                print(f"---- ternd h{i}\n" + c.agent_log(i)[-4000:])
        c.close()


def test_busy_vms_start_on_one_host(cl):
    for h in ("h1", "h2"):
        tern_cli(cl, "host", "drain", h)
    # h0 is the last schedulable host: it cannot be drained.
    status, reply = cl.call(0, "POST", "/v1/hosts/h0/drain")
    assert status == 409 and "last" in reply["error"], reply
    assert cl.hosts()["h0"]["schedulable"] is True
    for k in range(3):
        status, reply = cl.call(0, "POST", "/v1/vms", spec(k))
        assert status == 200, reply
    vms = wait_for("three running VMs", lambda: (lambda v: v if len(v) == 3 and all(
        x["state"] == "running" for x in v.values()) else None)(cl.vms()), 180)
    assert {v["host"] for v in vms.values()} == {"h0"}, vms
    for k in range(3):
        e = EchoClient(cl.lab.client, f"10.90.0.{40 + k}", ECHO_PORT, interval_ms=100)
        e.start()
        cl.echo.append(e)
    for e in cl.echo:
        e.wait_connected(timeout=180)
    for h in ("h1", "h2"):
        tern_cli(cl, "host", "undrain", h)
    # The busy guests show in the load the agents publish.
    hosts = wait_for("h0's load measured",
                     lambda: (lambda h: h if h["h0"]["cpu_used_milli"] > 1000 else None)(
                         cl.hosts()), 30)
    imbalance = cl.ok(0, "GET", "/v1/hosts")["imbalance"]
    print(f"\nbefore balancing: h0 uses {hosts['h0']['cpu_used_milli']} of "
          f"{hosts['h0']['cpu_milli']} mcpu, "
          f"imbalance {imbalance:.3f}")
    assert imbalance > THRESHOLD


def test_dry_run_plans_without_moving(cl):
    before = cl.vms()
    out = json.loads(tern_cli(cl, "cluster", "balance", "--dry-run", "--json").stdout)
    assert out["dry_run"] is True and out["moves"], out
    for m in out["moves"]:
        assert m["from"] == "h0" and m["to"] in ("h1", "h2") and "imbalance" in m["reason"], m
    assert out["imbalance_after"] < out["imbalance_before"], out
    time.sleep(1)
    assert {n: v["host"] for n, v in cl.vms().items()} == \
        {n: v["host"] for n, v in before.items()}


def test_automatic_balancing_spreads_the_load(cl):
    tern_cli(cl, "cluster", "balance", "--enable")
    t0 = time.monotonic()
    vms = wait_for("the busy VMs spread over the hosts",
                   lambda: (lambda v: v if len({x["host"] for x in v.values()}) == 3 and all(
                       x["state"] == "running" for x in v.values()) else None)(cl.vms()), 180)
    print(f"\nspread after {time.monotonic() - t0:.1f} s: "
          f"{ {n: v['host'] for n, v in vms.items()} }")
    check_exactly_once(cl, NAMES)
    imbalance = wait_for("the imbalance under the threshold",
                         lambda: (lambda i: i if i < THRESHOLD else None)(
                             cl.ok(0, "GET", "/v1/hosts")["imbalance"] + 1e-9), 30)
    print(f"imbalance now {imbalance:.3f}")
    decisions = cl.ok(1, "GET", "/v1/cluster/decisions")["decisions"]
    moves = [d for d in decisions if d["what"].startswith("move ")]
    assert len(moves) >= 2, decisions
    for d in moves:
        assert "balancing" in d["reason"] and "imbalance" in d["reason"], d
    # Hysteresis: balanced, nothing moves again.
    revs = {n: v["owner_revision"] for n, v in cl.vms().items()}
    time.sleep(12)
    assert {n: v["owner_revision"] for n, v in cl.vms().items()} == revs
    for e in cl.echo:
        assert e.proc.poll() is None, "an echo session ended"


def test_consolidation_packs_and_names_hosts_to_power_off(cl):
    tern_cli(cl, "cluster", "balance", "--disable")
    plan = json.loads(tern_cli(cl, "cluster", "consolidate", "--dry-run", "--json").stdout)
    # Memory allows all three on one host (768 of 1024 MiB, 10% headroom);
    # CPU (at most 1000 mcpu each, 2700 of 3000 usable) allows two at least.
    assert plan["hosts_before"] == 3 and plan["hosts_after"] <= 2, plan
    assert plan["moves"] and plan["power_off"], plan
    out = json.loads(tern_cli(cl, "cluster", "consolidate", "--json").stdout)
    off = out["power_off"]
    if out["moves"]:
        wait_for("the consolidation done",
                 lambda: (lambda v: v if all(x["host"] not in off and x["state"] == "running"
                                             for x in v.values()) else None)(cl.vms()), 180)
    hosts = cl.hosts()
    for h in off:
        assert hosts[h]["vms"] == [], hosts[h]
    print(f"\nconsolidated: {out['summary']}; could power off {off}")
    check_exactly_once(cl, NAMES)
    for e in cl.echo:
        summary = e.stop()
        assert summary["ok"] and summary["unanswered"] == 0 and summary["errors"] == 0, summary
    cl.echo = []


def test_rules_move_vms_and_impossible_rules_are_refused(cl):
    """Rules made after placement are kept by moving VMs; a rule no
    placement could keep is refused, naming why, and nothing changes."""
    before = cl.vms()
    bad = [
        ({"name": "four", "kind": "anti-affinity", "vms": NAMES + ["other"]}, "only 3 hosts"),
        ({"name": "odd", "kind": "near", "vms": NAMES[:2]}, "kind"),
        ({"name": "lonely", "kind": "affinity", "vms": NAMES[:1]}, "two"),
        ({"name": "nowhere", "kind": "host-affinity", "vms": NAMES[:1]}, "hosts"),
        ({"name": "Bad Name", "kind": "affinity", "vms": NAMES[:2]}, "name"),
        ({"name": "x", "kind": "affinity", "vms": NAMES[:2], "colour": 1}, "no field"),
    ]
    for rule, words in bad:
        status, reply = cl.call(0, "POST", "/v1/rules", rule)
        assert status == 400 and words in reply["error"], (rule, status, reply)
    assert cl.ok(0, "GET", "/v1/rules")["rules"] == []

    tern_cli(cl, "rule", "create", "apart", "--kind", "anti-affinity", "--vms",
             f"{NAMES[0]},{NAMES[1]}")
    tern_cli(cl, "rule", "create", "pin", "--kind", "host-affinity", "--vms", NAMES[2],
             "--hosts", "h2")
    # A rule that contradicts one in force.
    status, reply = cl.call(1, "POST", "/v1/rules", {"name": "together", "kind": "affinity",
                                                     "vms": NAMES[:2]})
    assert status == 400 and "contradict" in reply["error"], reply
    vms = wait_for("the rules kept", lambda: (lambda v: v if v[NAMES[0]]["host"] !=
                                              v[NAMES[1]]["host"] and v[NAMES[2]]["host"] ==
                                              "h2" and all(x["state"] == "running"
                                                           for x in v.values()) else None)(
        cl.vms()), 120)
    print(f"\nrules kept: { {n: v['host'] for n, v in vms.items()} } "
          f"(before: { {n: v['host'] for n, v in before.items()} })")
    check_exactly_once(cl, NAMES)
    decisions = cl.ok(0, "GET", "/v1/cluster/decisions")["decisions"]
    assert any("rule is broken" in d["reason"] for d in decisions), decisions[-5:]
    out = tern_cli(cl, "rule", "list").stdout
    assert "apart" in out and "anti-affinity" in out and "pin" in out, out
    # Consolidation keeps them too.
    plan = cl.ok(0, "GET", "/v1/cluster/consolidate")
    after = {n: v["host"] for n, v in vms.items()}
    for m in plan["moves"]:
        after[m["vm"]] = m["to"]
    assert after[NAMES[0]] != after[NAMES[1]] and after[NAMES[2]] == "h2", plan
    tern_cli(cl, "rule", "delete", "pin")
    status, reply = cl.call(0, "DELETE", "/v1/rules/pin")
    assert status == 404 and "no rule pin" in reply["error"], reply
    assert [r["name"] for r in cl.ok(0, "GET", "/v1/rules")["rules"]] == ["apart"]
