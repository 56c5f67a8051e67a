#!/usr/bin/python3
"""demo.py: tern's live migration, end to end, on this machine.

Makes a lab of two hosts and a client (network namespaces on one bridge,
tests/lab), boots the Debian guest on host 0 with a disk both hosts open
and a NIC on the bridge, has the client talk to an echo service in the
guest over one TCP connection, then moves the guest to host 1 and back
with `tern vm migrate --watch`, and shows what the guest and the client
saw. Everything it makes is removed at the end. Run by scripts/demo.sh."""
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from migrate_lab import ECHO_PORT, GUEST_IP, EchoClient, Lab, MovingVm  # noqa: E402
from ternvm import TERN_BIN  # noqa: E402


def say(text):
    print(f"\n== {text}", flush=True)


def migrate_watched(g, dest):
    """Like MovingVm.move_to, with tern's own progress display."""
    dst, uri = g.start_incoming(dest)
    cmd = [TERN_BIN, "vm", "migrate", "--api-socket", str(g.vm.api_path), "--to", uri, "--watch"]
    print("$ " + " ".join(cmd), flush=True)
    # Progress and the report go to the terminal (stderr); the JSON status
    # on stdout is for scripts.
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode
    if rc != 0:
        dst.close()
        raise SystemExit(f"the migration failed (tern exited {rc}); the guest runs on host "
                         f"{g.host}:\n{g.vm.log_text()}")
    g.vm.wait_exit(30)
    dst.attach()
    g.vm.close()
    g.vm, g.host = dst, dest


def show_guest(g):
    up = g.vm.sh("cut -d' ' -f1 /proc/uptime").strip()
    n = g.counter_lines()
    verdict = g.dirtier_verified()
    print(f"guest on host {g.host} ({g.lab.hosts[g.host].ns}): up {up} s, counter file "
          f"{n} lines with no gap, {verdict}; the bridge forwards to host {g.bridge_port()}")


def main():
    work = Path(tempfile.mkdtemp(prefix="tern-demo."))
    with Lab(2, name="demo") as lab:
        say(f"lab: hosts {lab.hosts[0].ip} and {lab.hosts[1].ip}, client {lab.client.ip}, "
            "one bridge")
        say(f"booting Debian riscv64 on host 0: 256 MiB, 2 harts, disk {work}/shared.img,"
            f" address {GUEST_IP}")
        t = time.monotonic()
        g = MovingVm(lab, work, cpus=2, memory="256M", dirtier="-s,32,-r,16").boot(host=0)
        print(f"booted in {time.monotonic() - t:.1f} s; the guest runs a dirtier (32 MiB at "
              "16 MiB/s), a heartbeat, a counter appending to its disk, and an echo service")
        client = EchoClient(lab.client, GUEST_IP, ECHO_PORT, interval_ms=10).start()
        try:
            client.wait_connected()
            say("the client sends a numbered line every 10 ms over one TCP connection")
            time.sleep(2)
            for dest in (1, 0):
                say(f"migrating host {g.host} -> host {dest}")
                migrate_watched(g, dest)
                show_guest(g)
                time.sleep(2)
            summary = client.stop()
            say("what the client saw")
            print(f"{summary['lines_sent']} lines sent, {summary['replies']} answered in order, "
                  f"{summary['errors']} errors; longest wait for a reply "
                  f"{summary['max_gap_ms']:.0f} ms (both switch-overs included)")
            ok = summary["ok"]
        finally:
            client.kill()
            g.vm.api("stop")
            g.close()
            shutil.rmtree(work, ignore_errors=True)
    say("done: lab removed" if ok else "the connection did not survive: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
