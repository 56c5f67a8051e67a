"""Disaster recovery across two sites (docs/replication.md, "Sites"): two
labs, east (10.90.0.0/24) and west (10.91.0.0/24), each with its own
bridge, two hosts, etcd and agents, joined by one link between their
bridges that the test can cut; the sites know each other's agents (`tern
site add`). A VM of east with a TCP echo
session from the lab's client is protected synchronously to west (`tern
dr protect --to west --sync`). Fail-over is refused while east still runs
it; then the whole east site is lost (its agents, VMMs and etcd killed at
once); fail-over without --force is refused (west cannot see east fenced),
with --force the replica runs at west, as an ordinary VM of west (spec and
owner record in west's etcd), exactly once, and the client's echo session
carried on with no reply lost or repeated; the VM's disk goes with it
(replicated; `diskrec serve` in the guest acknowledges numbered,
checksummed, fdatasynced records to a second client) and every record the
client had an acknowledgement for is on west's disk, intact, none torn.
Before that, the line between
the sites is cut for a moment: west cannot see east, and its fail-over is
refused (a partition is not a disaster)."""
import json
import os
import subprocess
import sys
import time

import pytest

from ternvm import INITRD, KERNEL, REPO, TERN_BIN as TERN, guest_images
from test_cluster import vmm_processes, wait_for
from test_dashboard import SHOTS, browse, check_screenshots, url
from test_replication import records

sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests" / "lab"))
from cluster_lab import ClusterLab  # noqa: E402
from echo_client import EchoClient  # noqa: E402
from lab import Lab  # noqa: E402

TERND = os.environ.get("TERND_BIN", str(REPO / "build" / "ternd"))
GUEST_IP = "10.90.0.60"
ECHO_PORT = 7000
RECORD_PORT = 7001           # the guest's acknowledged records (diskrec serve)
DISK_BYTES = 64 << 20
ACKED = {"records": 0}       # acknowledged before the site loss, for the fail-back


def cli(site, *args, check=True):
    p = subprocess.run([TERN, *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "TERN_AGENT": f"unix:{site.sock(0)}"})
    if check and p.returncode != 0:
        raise AssertionError(f"tern {' '.join(args)}: {p.stdout}{p.stderr}")
    return p


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    guest_images()
    work = tmp_path_factory.mktemp("dr")
    east_lab = Lab(2, name=f"e{os.getpid() % 10000}")
    west_lab = Lab(2, name=f"w{os.getpid() % 10000}", subnet="10.91.0",
                   mac_base="02:74:6c:00:01")
    east = west = None
    try:
        east_lab.join(west_lab)
        common = dict(lease_ttl=4, ternd=TERND, tern=TERN, memory_mib=1024, cpu_milli=4000,
                      balance=False, shared_dir=work / "shared")
        east = ClusterLab(2, work / "east", site="east", lab=east_lab, **common)
        west = ClusterLab(2, work / "west", site="west", lab=west_lab, **common)
        yield east, west, east_lab
    finally:
        for s in (east, west):
            if s is not None:
                for i in range(2):
                    try:
                        print(f"---- {s.site} ternd h{i}\n" + s.agent_log(i)[-3000:])
                    except OSError:
                        pass
                s.close()
        west_lab.close()
        east_lab.close()


def test_protect_then_lose_a_site(sites):
    east, west, lab = sites
    cli(east, "site", "add", "west", "--site-agent", f"http://{west.host(0).ip}:7450")
    cli(west, "site", "add", "east", "--site-agent", f"http://{east.host(0).ip}:7450")
    sites_of_east = json.loads(cli(east, "site", "list", "--json").stdout)
    assert sites_of_east["site"] == "east" and sites_of_east["sites"][0]["name"] == "west"

    disk = east.workdir / "db.img"
    with open(disk, "wb") as f:
        f.truncate(DISK_BYTES)
    spec = {"name": "db", "memory_mib": 256, "kernel": str(KERNEL), "initrd": str(INITRD),
            "cmdline": f"console=ttyS0 tern.ip={GUEST_IP}/24 tern.echoctr={ECHO_PORT} "
                       f"tern.recserve={RECORD_PORT} tern.dirtier=-s,16,-r,8",
            "tap": "tldr0", "mac": "52:54:00:c4:00:01", "disk": str(disk)}
    status, reply = east.call(0, "POST", "/v1/vms", spec)
    assert status == 200, reply
    wait_for("db running at east",
             lambda: east.vms().get("db", {}).get("state") == "running", 180)

    # Bad requests: nothing changes.
    status, reply = east.call(0, "POST", "/v1/vms/db/protect", {"site": "north"})
    assert status == 404 and "no site north" in reply["error"], reply
    status, reply = west.call(0, "POST", "/v1/replicas/db/failover", {})
    assert status == 404 and "no standby" in reply["error"], reply
    p = cli(east, "site", "add", "east", "--site-agent", "http://1.2.3.4:1", check=False)
    assert p.returncode == 1 and "this site" in p.stderr, p

    out = cli(east, "dr", "protect", "db", "--to", "west", "--rpo", "1000", "--epoch", "200",
              "--sync").stdout
    assert "protected by a standby at west" in out, out
    st = wait_for("protection with the RPO met", lambda: (lambda d: d if d["protected"] and
                  (d["protected"][0].get("status") or {}).get("epoch", 0) >= 3 and
                  d["protected"][0]["status"]["rpo_met"] else None)(
        json.loads(cli(east, "dr", "status", "--json").stdout)), 120)
    print(f"\nprotected: {st['protected'][0]}")
    # The dashboard of east shows it too.
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browse(east, "dr", url(east), east.token_file.read_text().strip(), str(SHOTS), "db")
    print(f"dashboard: {page['dr_row']}")
    assert "west" in page["dr_row"], page
    check_screenshots(page)
    wst = json.loads(cli(west, "dr", "status", "--json").stdout)
    assert wst["standbys"][0]["vm"] == "db" and wst["standbys"][0]["status"]["consistent"], wst

    # East still runs it: fail-over refused, even forced.
    p = cli(west, "dr", "failover", "db", "--force", check=False)
    assert p.returncode == 1 and "still runs at site east" in p.stderr, p
    # The line is cut: west cannot see east; without --force, refused.
    lab.cut_join()
    try:
        p = cli(west, "dr", "failover", "db", check=False)
        assert p.returncode == 1 and "cannot reach site east" in p.stderr, p
    finally:
        lab.restore_join()
    assert west.vms() == {} and len(vmm_processes(east).get("db", [])) == 1

    client = EchoClient(lab.client, GUEST_IP, ECHO_PORT, interval_ms=50)
    writer = EchoClient(lab.client, GUEST_IP, RECORD_PORT, interval_ms=20)
    client.start()
    writer.start()
    try:
        client.wait_connected(timeout=60)
        writer.wait_connected(timeout=60)
        time.sleep(1.5)
        # The whole east site is lost at once: agents, VMMs, etcd.
        for i in range(2):
            east.kill_host(i)
        subprocess.run(["bash", str(REPO / "scripts" / "etcd-lab.sh"), "stop",
                        str(east.etcd_dir)], capture_output=True, timeout=60)
        assert "db" not in vmm_processes(east)
        p = cli(west, "dr", "failover", "db", check=False)
        assert p.returncode == 1 and "--force" in p.stderr, p
        t0 = time.monotonic()
        out = cli(west, "dr", "failover", "db", "--force").stdout
        print(f"failover: {out.strip()} ({time.monotonic() - t0:.2f} s)")
        vms = wait_for("db an ordinary VM of west",
                       lambda: (lambda v: v if v.get("db", {}).get("state") == "running"
                                else None)(west.vms()), 30)
        host = vms["db"]["host"]
        procs = vmm_processes(west)
        assert len(procs.get("db", [])) == 1, procs
        time.sleep(3)
    finally:
        summary = client.stop()
        written = writer.stop()
    print(f"echo across the site loss: {summary}")
    assert summary["ok"] and summary["errors"] == 0 and summary["unanswered"] == 0, summary
    # Every record the client had an acknowledgement for, on west's disk.
    on_disk, torn = records(west.workdir / host / "vms" / "db" / "replica.img")
    print(f"records acknowledged {written['replies']}, on west's disk {on_disk}")
    assert written["ok"] and written["replies"] > 0, written
    assert on_disk >= written["replies"] and not torn, (written, on_disk, torn)
    ACKED["records"] = written["replies"]
    assert json.loads(cli(west, "dr", "status", "--json").stdout)["standbys"] == []
    assert host in ("h0", "h1")


def test_site_returns_then_fail_back(sites):
    """East comes back (etcd with its data, new agents): it does not start
    db again, which west runs now (its controller asks west and forgets
    db); then `tern dr failback db` reverses the replication and hands db
    over home with one last epoch: the client's echo session goes on, db
    runs once, at east, as east's."""
    east, west, lab = sites
    out = subprocess.run(["bash", str(REPO / "scripts" / "etcd-lab.sh"), "start",
                          str(east.etcd_dir)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out
    # An agent registers once its old lease has expired (etcd gives the
    # leases it restores a whole TTL again).
    for i in range(2):
        deadline = time.monotonic() + 20
        while True:
            try:
                east.start_agent(i)
                break
            except RuntimeError as e:
                assert "already registered" in str(e), e
                assert time.monotonic() < deadline, e
                time.sleep(1)
    east.wait_hosts(2)
    # Longer than the old leases' TTL and several controller rounds.
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        assert "db" not in vmm_processes(east), "east started db again: two copies"
        time.sleep(0.2)
    assert "db" not in east.vms(), east.vms()
    decisions = east.ok(0, "GET", "/v1/cluster/decisions")["decisions"]
    assert any(d["what"] == "db" and "failed over" in d["reason"] for d in decisions), decisions

    # Bad requests change nothing.
    p = cli(west, "dr", "failback", "db", "--to", "west", check=False)
    assert p.returncode == 1 and "already" in p.stderr, p
    p = cli(west, "dr", "failback", "db", "--to", "north", check=False)
    assert p.returncode == 1 and "no site north" in p.stderr, p
    p = cli(west, "dr", "failback", "nosuch", check=False)
    assert p.returncode == 1 and "nosuch" in p.stderr, p
    assert west.vms()["db"]["state"] == "running"

    client = EchoClient(lab.client, GUEST_IP, ECHO_PORT, interval_ms=50)
    writer = EchoClient(lab.client, GUEST_IP, RECORD_PORT, interval_ms=20)
    client.start()
    writer.start()
    try:
        client.wait_connected(timeout=60)
        writer.wait_connected(timeout=60)
        time.sleep(1)
        t0 = time.monotonic()
        out = cli(west, "dr", "failback", "db").stdout
        print(f"\nfailback: {out.strip()} ({time.monotonic() - t0:.1f} s)")
        assert "is home at east" in out, out
        vms = wait_for("db running at east", lambda: (lambda v: v if v.get("db", {}).get(
            "state") == "running" else None)(east.vms()), 30)
        assert "db" not in west.vms(), west.vms()
        wait_for("no VMM of db left at west", lambda: "db" not in vmm_processes(west), 15)
        assert len(vmm_processes(east).get("db", [])) == 1, vmm_processes(east)
        time.sleep(3)
    finally:
        summary = client.stop()
        written = writer.stop()
    print(f"echo across the fail-back: {summary}")
    assert summary["ok"] and summary["errors"] == 0 and summary["unanswered"] == 0, summary
    host = vms["db"]["host"]
    assert host in ("h0", "h1")
    # Every record acknowledged, before the site loss and since, at home.
    on_disk, torn = records(east.workdir / host / "vms" / "db" / "replica.img")
    print(f"records acknowledged in this session {written['replies']}, at home {on_disk}")
    assert written["ok"] and written["replies"] > 0, written
    acked = ACKED["records"] + written["replies"]
    assert on_disk >= acked and not torn, (written, acked, on_disk, torn)
    for s in (east, west):
        st = json.loads(cli(s, "dr", "status", "--json").stdout)
        assert st["protected"] == [] and st["standbys"] == [], st
