"""A short run of tern-sim, the cluster simulator (docs/cluster-sim.md),
as CI's smoke run of it: the same placement and balancing code as the
controller, on 200 simulated hosts, checked for what must hold whatever
the load: balancing lowers the imbalance, breaks no rule, stays above the
lower bound; consolidation frees hosts and stays above its bound."""
import json
import os
import subprocess

from ternvm import REPO

SIM = os.environ.get("TERN_SIM_BIN", str(REPO / "build" / "tern-sim"))


def test_simulator_at_200_hosts():
    p = subprocess.run([SIM, "--hosts", "200", "--ticks", "100", "--seed", "7", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["cluster"]["hosts"] == 200 and d["cluster"]["unplaced"] == 0, d["cluster"]
    none, tern, greedy = (d["runs"][k] for k in ("none", "tern", "greedy baseline"))
    assert tern["migrations"] > 0, tern
    assert tern["imbalance_after"]["mean"] < none["imbalance_after"]["mean"], (tern, none)
    assert tern["rules_broken"] == 0, tern
    assert d["lower_bound"]["imbalance_after"]["mean"] <= tern["imbalance_after"]["mean"]
    # Cost-aware: fewer predicted migration seconds than the greedy baseline.
    assert tern["migration_s"] < greedy["migration_s"], (tern, greedy)
    c = d["consolidation"]
    assert c["bound"] <= c["hosts_after"] < c["hosts_before"], c
    print(f"\n{d['command']}: imbalance {none['imbalance_after']['mean']:.4f} -> "
          f"{tern['imbalance_after']['mean']:.4f} with {tern['migrations']} migrations "
          f"(greedy {greedy['imbalance_after']['mean']:.4f}, {greedy['migrations']}); "
          f"{c['summary']}")
