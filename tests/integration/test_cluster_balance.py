"""Load balancing and consolidation on the lab (docs/cluster.md), with a
real etcd: three hosts, six VMs. Three idle guests are placed, then two
hosts are drained (their guests move live to the third) and three guests
that each keep a hart busy (the guest's tern.busy) start there too; once
the drained hosts come back, the controller's automatic balancing moves
VMs live until the CPU imbalance is under its threshold, every guest's
TCP echo session unbroken, and then leaves them alone (hysteresis).
Consolidation then packs the VMs onto as few hosts as fit and names the
hosts that could be powered off; rules made afterwards move VMs again.

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
CALM = ["calm0", "calm1", "calm2"]
ALL = NAMES + CALM


def spec(k):
    """VM k of ALL: the first three busy, the others idle."""
    busy = k < len(NAMES)
    return {"name": ALL[k], "memory_mib": 256, "cpus": 1, "kernel": str(KERNEL),
            "initrd": str(INITRD),
            "cmdline": f"console=ttyS0 tern.ip=10.90.0.{40 + k}/24 tern.echoctr={ECHO_PORT}"
                       + (" tern.busy=1" if busy else ""),
            "tap": f"tlb{k}", "mac": f"52:54:00:c2:00:{k:02x}"}


def all_running(cl, names):
    v = cl.vms()
    return v if all(v.get(n, {}).get("state") == "running" for n in names) else None


@pytest.fixture(scope="module")
def cl(tmp_path_factory):
    guest_images()
    work = tmp_path_factory.mktemp("balance")
    c = ClusterLab(HOSTS, work, name=f"b{os.getpid() % 10000}", lease_ttl=4, ternd=TERND,
                   tern=TERN, memory_mib=2048, cpu_milli=3000, balance=False)
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


def test_six_vms_then_the_load_on_one_host(cl):
    for k in range(len(NAMES), len(ALL)):
        status, reply = cl.call(k % HOSTS, "POST", "/v1/vms", spec(k))
        assert status == 200, reply
    wait_for("the idle VMs running", lambda: all_running(cl, CALM), 180)
    # Two hosts drained: their VMs move, live, to the third.
    for h in ("h1", "h2"):
        tern_cli(cl, "host", "drain", h)
    # h0 is the last schedulable host: it cannot be drained.
    status, reply = cl.call(0, "POST", "/v1/hosts/h0/drain")
    assert status == 409 and "last" in reply["error"], reply
    assert cl.hosts()["h0"]["schedulable"] is True
    for k in range(len(NAMES)):
        status, reply = cl.call(0, "POST", "/v1/vms", spec(k))
        assert status == 200, reply
    vms = wait_for("six VMs running on h0", lambda: (lambda v: v if v and all(
        x["host"] == "h0" for x in v.values()) else None)(all_running(cl, ALL)), 180)
    assert len(vms) == 6, vms
    for k in range(len(ALL)):
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
                   lambda: (lambda v: v if v and len({v[n]["host"] for n in NAMES}) == 3
                            else None)(all_running(cl, ALL)), 180)
    print(f"\nspread after {time.monotonic() - t0:.1f} s: "
          f"{ {n: v['host'] for n, v in vms.items()} }")
    check_exactly_once(cl, ALL)
    imbalance = wait_for("the imbalance under the threshold",
                         lambda: (lambda i: i if i < THRESHOLD else None)(
                             cl.ok(0, "GET", "/v1/hosts")["imbalance"] + 1e-9), 60)
    print(f"imbalance now {imbalance:.3f}")
    decisions = cl.ok(1, "GET", "/v1/cluster/decisions")["decisions"]
    # The drains' moves are there too, with their own reason.
    assert any(d["reason"].startswith("draining h1") for d in decisions), decisions
    moves = [d for d in decisions
             if d["what"].startswith("move ") and d["reason"].startswith("balancing")]
    assert len(moves) >= 2, decisions
    for d in moves:
        assert "imbalance" in d["reason"] and "cost" in d["reason"], d
    # Hysteresis: balanced, nothing moves again.
    revs = {n: v["owner_revision"] for n, v in cl.vms().items()}
    time.sleep(12)
    assert {n: v["owner_revision"] for n, v in cl.vms().items()} == revs
    for e in cl.echo:
        assert e.proc.poll() is None, "an echo session ended"


def test_consolidation_packs_and_names_hosts_to_power_off(cl):
    tern_cli(cl, "cluster", "balance", "--disable")
    plan = json.loads(tern_cli(cl, "cluster", "consolidate", "--dry-run", "--json").stdout)
    # Memory allows all six on one host (1536 of 2048 MiB, 10% headroom);
    # CPU (at most 1000 mcpu a busy guest, 2700 of 3000 usable) two busy
    # ones at least.
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
    check_exactly_once(cl, ALL)
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
    vms = wait_for("the rules kept", lambda: (lambda v: v if v and v[NAMES[0]]["host"] !=
                                              v[NAMES[1]]["host"] and v[NAMES[2]]["host"] ==
                                              "h2" else None)(all_running(cl, ALL)), 120)
    print(f"\nrules kept: { {n: v['host'] for n, v in vms.items()} } "
          f"(before: { {n: v['host'] for n, v in before.items()} })")
    check_exactly_once(cl, ALL)
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
