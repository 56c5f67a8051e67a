"""The cluster dashboard (web/, docs/dashboard.md) in a real browser:
Debian's chromium driven by playwright-core (tests/web/dashboard.mjs),
inside the lab's client namespace, against a real lab cluster (two hosts,
etcd, agents, two booted guests). The page must list the hosts and VMs as
the API does; a migration started from the page's form must move the VM,
its progress bar reaching 100%; draining a host with its button must empty
it; undrained, a VM dragged onto it must move there; when the test kills
that host, the page must mark it lost and show its VM where the controller
restarted it. A screenshot of each state goes to build/artifacts/dashboard/.

Then the page against a simulated cluster of 200 VMs on 20 hosts (its event
stream answered inside the browser): all 200 drawn, the form still works,
and the times to the first picture and per redraw are printed (bench/
dashboard measures them; timings are not asserted here)."""
import json
import os
import subprocess
import sys
import threading

import pytest

from ternvm import INITRD, KERNEL, REPO, TERN_BIN as TERN, guest_images
from test_cluster import wait_for

sys.path.insert(0, str(REPO / "scripts"))
from cluster_lab import AGENT_PORT, ClusterLab  # noqa: E402

# Under ASan/UBSan: the event streams and file serving are new C code.
TERND = os.environ.get("TERND_BIN", str(REPO / "build-asan" / "ternd"))
SCRIPT = REPO / "tests" / "web" / "dashboard.mjs"
SHOTS = REPO / "build" / "artifacts" / "dashboard"
VMS = ["web0", "web1"]


def browse(cl, *args, timeout=300, on_step=None):
    """dashboard.mjs in the lab's client namespace: its JSON result.
    on_step(words) is called for each "STEP ..." line it prints on stderr."""
    assert (REPO / "tests" / "web" / "node_modules" / "playwright-core").is_dir(), \
        "playwright-core is missing: npm ci --prefix tests/web (scripts/deps.sh does it)"
    p = subprocess.Popen(["ip", "netns", "exec", cl.lab.client.ns, "node", str(SCRIPT), *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errors = []

    def steps():
        for line in p.stderr:
            errors.append(line)
            if line.startswith("STEP ") and on_step:
                on_step(line.split()[1:])

    reader = threading.Thread(target=steps)
    reader.start()
    try:
        out = p.stdout.read()
        p.wait(timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        reader.join()
    lines = out.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {}
    assert p.returncode == 0 and "error" not in result, \
        f"dashboard.mjs {args[0]}: {result.get('error')}\npage said: " \
        f"{result.get('page_messages')}; its errors: {result.get('page_errors')}\n" \
        f"{''.join(errors)[-3000:]}"
    return result


def check_screenshots(result):
    for step in result["steps"]:
        with open(step["screenshot"], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", step


@pytest.fixture(scope="module")
def cl(tmp_path_factory):
    guest_images()
    SHOTS.mkdir(parents=True, exist_ok=True)
    work = tmp_path_factory.mktemp("dashboard")
    c = ClusterLab(2, work, name=f"d{os.getpid() % 10000}", lease_ttl=4, ternd=TERND, tern=TERN,
                   memory_mib=1024, cpu_milli=4000, balance=False)
    try:
        for name in VMS:
            status, reply = c.call(0, "POST", "/v1/vms", {
                "name": name, "memory_mib": 256, "kernel": str(KERNEL), "initrd": str(INITRD),
                "cmdline": "console=ttyS0 tern.dirtier=-s,16,-r,8"})
            assert status == 200, reply
        wait_for("the VMs running", lambda: (lambda v: v if all(
            v.get(n, {}).get("state") == "running" for n in VMS) else None)(c.vms()), 180)
        yield c
    finally:
        for i in range(2):
            if c.agents[i] is not None:
                print(f"---- ternd h{i}\n" + c.agent_log(i)[-3000:])
        c.close()
        # Stopped by SIGTERM, the agents exit normally: LeakSanitizer ran.
        for i in range(2):
            log = c.agent_log(i)
            assert "Sanitizer" not in log and "runtime error" not in log, log[-6000:]


def url(cl, host="h0"):
    return f"http://{cl.host(int(host[1:])).ip}:{AGENT_PORT}"


def test_page_lists_migrates_and_drains(cl):
    vms = cl.vms()
    src = vms[VMS[0]]["host"]
    dst = "h1" if src == "h0" else "h0"
    token = cl.token_file.read_text().strip()
    killed = []

    def kill(words):
        if words[0] == "kill":
            killed.append(words[1])
            cl.kill_host(int(words[1][1:]))

    # The page talks to the agent of the host that stays.
    r = browse(cl, "lab", url(cl, src), token, str(SHOTS), VMS[0], dst, dst, VMS[1], on_step=kill)
    print(f"\ndashboard: first picture {r['first_picture_ms']} ms (load event "
          f"{r['load_event_ms']:.0f} ms); progress seen {r['percents']}; {r['result']}")
    # The page showed the cluster as the API has it.
    api_before = {h: sorted(n for n, v in vms.items() if v["host"] == h) for h in ("h0", "h1")}
    assert {h: sorted(v) for h, v in r["before"].items()} == api_before, (r["before"], vms)
    # The migration from the page: done, at 100%, the VM where it was sent.
    assert r["percents"][-1] == 100 and max(r["percents"]) == 100, r["percents"]
    assert "completed" in r["result"], r["result"]
    assert VMS[0] in r["after_migration"][dst], r["after_migration"]
    # The drain from the page: dst empty, unschedulable, its VMs on src.
    assert r["after_drain"][dst] == [] and sorted(r["after_drain"][src]) == sorted(VMS), r
    # Undrained, a VM dragged onto it went there; then the host was lost.
    assert VMS[1] in r["after_drag"][dst], r["after_drag"]
    assert killed == [dst] and VMS[1] in r["after_loss"][src], r["after_loss"]
    wait_for("both VMs running on the host left", lambda: (lambda v: v if all(
        v[n]["host"] == src and v[n]["state"] == "running" for n in VMS) else None)(cl.vms()), 120)
    assert dst not in cl.hosts()
    moves = cl.ok(0, "GET", "/v1/migrations")["history"]
    assert any(m["vm"] == VMS[0] and m["to"] == dst and m["reason"] == "dashboard" and
               m["result"] == "completed" and m["samples"] for m in moves), moves
    check_screenshots(r)


def test_two_hundred_vms(cl):
    r = browse(cl, "load", str(REPO / "web"), str(SHOTS), "200", "20")
    render = sorted(r["render_ms"])
    print(f"\n200 VMs on 20 hosts: first picture {r['first_picture_ms']} ms; redraw median "
          f"{render[len(render) // 2]:.1f} ms, max {render[-1]:.1f} ms; selecting a VM "
          f"{r['click_ms']} ms; long tasks {[round(x) for x in r['long_tasks_ms']]}")
    assert r["vm_chips"] == 200, r
    assert len(r["render_ms"]) >= 60 and len(r["click_ms"]) == 5, r
    check_screenshots(r)
