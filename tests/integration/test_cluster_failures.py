"""The cluster when things break underneath it (docs/cluster.md,
"Ownership and fencing"), with a real etcd:

- A host cut off from etcd (its uplink down; etcd serves on the lab
  network for this test) kills its own VMs before its lease can expire;
  only then does the controller restart them elsewhere. Sampled every
  50 ms, no VM ever runs on two hosts. When the link comes back the host
  registers again with a new lease and no VM.
- In a three-member etcd the leader is killed: the agents fail over to
  the other members before their fencing deadline, no VM is restarted or
  moved, and the cluster goes on working (a VM is created and placed, a
  VM is migrated)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ternvm import INITRD, KERNEL, REPO, TERN_BIN as TERN, guest_images
from test_cluster import check_exactly_once, tern_cli, vmm_processes, wait_for

sys.path.insert(0, str(REPO / "scripts"))
from cluster_lab import ClusterLab  # noqa: E402

TERND = os.environ.get("TERND_BIN", str(REPO / "build" / "ternd"))


def spec(name, k):
    return {"name": name, "memory_mib": 256, "cpus": 1, "kernel": str(KERNEL),
            "initrd": str(INITRD), "cmdline": f"console=ttyS0 tern.ip=10.90.0.{50 + k}/24",
            "tap": f"tlf{k}", "mac": f"52:54:00:c3:00:{k:02x}"}


def running(cl, names):
    vms = cl.vms()
    return vms if all(vms.get(n, {}).get("state") == "running" for n in names) else None


def dump_logs(cl):
    for i in range(cl.n):
        try:
            print(f"---- ternd h{i}\n" + cl.agent_log(i)[-3000:])
        except OSError:
            pass


def test_partitioned_host_fences_itself_before_its_vms_restart(tmp_path):
    guest_images()
    ttl = 4
    cl = ClusterLab(3, tmp_path, name=f"f{os.getpid() % 10000}", lease_ttl=ttl, ternd=TERND,
                    tern=TERN, memory_mib=1024, cpu_milli=4000, balance=False,
                    etcd_on_network=True)
    try:
        names = ["part0", "part1", "part2"]
        for k, n in enumerate(names):
            status, reply = cl.call(0, "POST", "/v1/vms", spec(n, k))
            assert status == 200, reply
        vms = wait_for("three running VMs", lambda: running(cl, names), 180)
        victim = vms["part0"]["host"]
        idx = int(victim[1:])
        lost = [n for n, v in vms.items() if v["host"] == victim]
        others = [i for i in range(3) if i != idx]
        check_exactly_once(cl, names)

        cl.prefer = others[0]            # the cut-off agent cannot read etcd
        cl.lab.link_down(idx)
        t0 = time.monotonic()
        t_fenced = t_back = None
        while time.monotonic() - t0 < ttl + 120:
            procs = vmm_processes(cl)
            for n in names:
                assert len(procs.get(n, [])) <= 1, f"{n} runs on {procs[n]} at once"
            now = time.monotonic() - t0
            if t_fenced is None and not any(idx in procs.get(n, []) for n in lost):
                t_fenced = now
            if all(procs.get(n) and procs[n][0] != idx for n in lost):
                t_back = now
                break
            time.sleep(0.05)
        assert t_fenced is not None and t_back is not None, (t_fenced, t_back)
        print(f"\n{victim} cut off: its VMs {lost} killed by itself after {t_fenced:.2f} s, "
              f"running on other hosts after {t_back:.2f} s (lease {ttl} s)")
        assert t_fenced < ttl, f"fenced after {t_fenced:.2f} s, the lease is {ttl} s"
        assert t_back > t_fenced
        assert "fencing" in cl.agent_log(idx)
        wait_for("every VM running", lambda: running(cl, names), 180)
        vms = check_exactly_once(cl, names)
        assert all(vms[n]["host"] != victim for n in lost)

        # Back on the network: registered again, empty; nothing moves.
        cl.lab.link_up(idx)
        hosts = wait_for(f"{victim} registered again",
                         lambda: (lambda h: h if victim in h else None)(cl.hosts()), 30)
        assert hosts[victim]["vms"] == [], hosts[victim]
        host = cl.ok(idx, "GET", "/v1/host")
        assert host["fenced"] is False and host["vms"] == [], host
        time.sleep(2)
        assert check_exactly_once(cl, names) == vms or \
            {n: v["host"] for n, v in check_exactly_once(cl, names).items()} == \
            {n: v["host"] for n, v in vms.items()}
    except BaseException:
        dump_logs(cl)
        raise
    finally:
        cl.close()


def etcd_leader(member_dirs):
    """The member directory of the current leader."""
    for d in member_dirs:
        sock = d / "client:1"
        p = subprocess.run(["curl", "-s", "--unix-socket", str(sock), "-X", "POST",
                            "http://x/v3/maintenance/status", "-d", "{}"],
                           capture_output=True, text=True, timeout=10)
        try:
            st = json.loads(p.stdout)
        except ValueError:
            continue
        if st.get("leader") and st["leader"] == st.get("header", {}).get("member_id"):
            return d
    return None


def test_etcd_leader_dies_cluster_goes_on(tmp_path):
    guest_images()
    ttl = 6
    cl = ClusterLab(2, tmp_path, name=f"e{os.getpid() % 10000}", lease_ttl=ttl, ternd=TERND,
                    tern=TERN, memory_mib=1024, cpu_milli=4000, balance=False,
                    etcd_members=3)
    try:
        status, reply = cl.call(0, "POST", "/v1/vms", spec("quorum0", 0))
        assert status == 200, reply
        vms = wait_for("the VM running", lambda: running(cl, ["quorum0"]), 180)
        members = sorted(p for p in (tmp_path / "etcd").glob("m*") if p.is_dir())
        assert len(members) == 3, members
        leader = etcd_leader(members)
        assert leader is not None, "no etcd member says it leads"
        os.kill(int((leader / "pid").read_text()), signal.SIGKILL)
        t0 = time.monotonic()
        # Past the fencing deadline (3/4 of the lease) and the lease itself.
        time.sleep(ttl + 1)
        for i in range(2):
            host = cl.ok(i, "GET", "/v1/host")
            assert host["fenced"] is False, host
            assert "fencing" not in cl.agent_log(i), cl.agent_log(i)[-2000:]
        after = check_exactly_once(cl, ["quorum0"])
        assert after["quorum0"]["owner_revision"] == vms["quorum0"]["owner_revision"], \
            "the VM was restarted or moved"
        # And it works: a new VM is placed and runs; the old one migrates.
        status, reply = cl.call(1, "POST", "/v1/vms", spec("quorum1", 1))
        assert status == 200, reply
        wait_for("the new VM running", lambda: running(cl, ["quorum0", "quorum1"]), 180)
        src = after["quorum0"]["host"]
        dst = "h1" if src == "h0" else "h0"
        tern_cli(cl, "vm", "migrate", "quorum0", "--to", dst)
        wait_for("quorum0 moved", lambda: (lambda v: v if v["quorum0"]["host"] == dst and
                                           v["quorum0"]["state"] == "running" else None)(
            cl.vms()), 120)
        check_exactly_once(cl, ["quorum0", "quorum1"])
        print(f"\netcd leader {leader.name} killed; {time.monotonic() - t0:.1f} s later the "
              "cluster had placed a new VM and migrated another, no agent fenced")
    except BaseException:
        dump_logs(cl)
        raise
    finally:
        cl.close()
