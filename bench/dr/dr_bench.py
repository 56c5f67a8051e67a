#!/usr/bin/python3
"""bench/dr: continuous replication (docs/replication.md) at several epoch
lengths, asynchronous and synchronous: what it costs the guest and the
link, and what it buys.

For each cell a 256 MiB guest runs the dirtier (a 64 MiB working set at
--rate MiB/s; 0 = flat out, a guest that needs every cycle), the
heartbeat and the echo service; it runs in one namespace of a lab, its
standby in another (TLS off, as the migration benchmarks), and a client
in a third keeps a TCP echo session with it (a line every 20 ms); after
--settle seconds of protection the primary is SIGKILLed and the standby
fails over. Figures:

  guest speed   the dirtier's rate while replicated / before (1.00 = no slowdown)
  echo ms       the client's round trip, mean and max, while replicated, and
                its mean before (what synchronous mode costs what the guest
                sends: a reply leaves once its epoch is on the standby)
  MiB/s         replication bytes per second of protection
  pause         the guest's pause per epoch, mean and max (ms)
  lag           what a loss at a random moment would cost: the status's lag_ms
                sampled every 50 ms, mean and max (the measured RPO)
  lost          guest time lost at the fail-over: the last heartbeat the
                primary printed minus the replica's first (ms)
  RTO           from the kill to the standby's first heartbeat (s): link-loss
                detection, the failover request, the restore

QEMU has no comparable built-in mode to run side by side here (COLO needs
a patched guest network path and block replication set up by hand); the
cells compare tern with itself across epoch lengths, which is what an
operator chooses. Prints the exact commands and a table."""
import argparse
import json
import re
import shlex
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from ternvm import Vm, free_port, heartbeats  # noqa: E402
sys.path.insert(0, str(REPO / "tests" / "lab"))
from echo_client import EchoClient  # noqa: E402
from lab import Lab  # noqa: E402

GUEST_IP = "10.90.0.211"
MAC = "52:54:00:74:00:31"
TAP = "tlbdr0"
ECHO_PORT = 7000
ECHO_MS = 20


def dirtier_rate(vm, seconds):
    """The dirtier's mean rate over its last `seconds` per-second lines."""
    out = vm.sh(f"grep 'last second' /tmp/dirtier.log | tail -n {seconds}", timeout=60)
    rates = [float(x) for x in re.findall(r"last second ([\d.]+) MiB", out)]
    return statistics.mean(rates) if rates else 0.0


def echo_during(lab, seconds):
    """An echo session of `seconds`: its summary."""
    c = EchoClient(lab.client, GUEST_IP, ECHO_PORT, interval_ms=ECHO_MS)
    c.start()
    c.wait_connected(timeout=60)
    time.sleep(seconds)
    return c.stop()


def cell(args, lab, work, epoch_ms, sync, rate):
    name = f"{'sync' if sync else 'async'}-{epoch_ms}ms" + ("-flat-out" if rate == 0 else "")
    d = work / name
    shutil.rmtree(d, ignore_errors=True)    # the serial files are appended to
    nic = [f"tap={TAP},mac={MAC}"]
    src = Vm(d / "src", memory="256M", tls="off", netns=lab.hosts[0], nets=nic,
             cmdline=f"tern.heartbeat=5000 tern.heartbeat_lines=1 tern.ip={GUEST_IP}/24 "
                     f"tern.echoctr={ECHO_PORT} tern.dirtier=-s,64,-r,{rate}")
    src.boot()
    uri = f"tcp:{lab.hosts[1].ip}:{free_port()}"
    dst = Vm(d / "dst", replica=uri, tls="off", netns=lab.hosts[1], nets=nic)
    echo = None
    try:
        print(f"# {name} source: {shlex.join(map(str, src.command()))}")
        echo_before = echo_during(lab, args.settle_before)
        before = dirtier_rate(src, int(args.settle_before) - 1)
        dst.start().wait_listening()
        print(f"# {name} standby: {shlex.join(map(str, dst.command()))}")
        req = {"to": uri, "epoch_ms": epoch_ms, "rpo_ms": max(epoch_ms * 2, 1000),
               "sync": sync}
        print(f"# {name} replicate: {json.dumps({'command': 'replicate', 'args': req})}")
        r = src.api("replicate", req)
        if not r["ok"]:
            raise RuntimeError(r)
        t0 = time.monotonic()
        while src.api("replicate-status")["result"]["epoch"] < 1:
            if time.monotonic() - t0 > 120:
                raise TimeoutError("no epoch 1 in 120 s")
            time.sleep(0.05)
        echo = EchoClient(lab.client, GUEST_IP, ECHO_PORT, interval_ms=ECHO_MS)
        echo.start()
        echo.wait_connected(timeout=60)
        t_prot = time.monotonic()
        st0 = src.api("replicate-status")["result"]
        lags, pauses = [], []
        while time.monotonic() - t_prot < args.settle:
            st = src.api("replicate-status")["result"]
            lags.append(st["lag_ms"])
            pauses.append(st["pause_us_last"] / 1000)
            time.sleep(0.05)
        st = src.api("replicate-status")["result"]
        protected_s = time.monotonic() - t_prot
        echo_st = echo.stop()
        echo = None
        during = dirtier_rate(src, max(1, int(args.settle) - 1))
        bytes_s = (st["bytes_total"] - st0["bytes_total"]) / protected_s
        last_src = heartbeats(src.serial1_path)[-1]
        src.proc.send_signal(signal.SIGKILL)
        t_kill = time.monotonic()
        src.proc.wait(30)
        while dst.api("replica-status")["result"]["phase"] != "link-lost":
            if time.monotonic() - t_kill > 60:
                raise TimeoutError("the standby never saw the link go")
            time.sleep(0.01)
        r = dst.api("failover")
        if not r["ok"]:
            raise RuntimeError(r)
        while not heartbeats(dst.serial1_path):
            if time.monotonic() - t_kill > 60:
                raise TimeoutError("no heartbeat on the standby")
            time.sleep(0.005)
        rto = time.monotonic() - t_kill
        first_dst = heartbeats(dst.serial1_path)[0]
        lost_ms = (last_src[1] - first_dst[1]) / 1e6
        return {"cell": name, "epoch_ms": epoch_ms, "sync": sync, "rate": rate,
                "echo_before_ms": echo_before["avg_rtt_ms"],
                "echo_mean_ms": echo_st["avg_rtt_ms"], "echo_max_ms": echo_st["max_rtt_ms"],
                "echo_ok": echo_st["ok"],
                "speed": during / before if before else 0.0, "rate_before": before,
                "rate_during": during, "mib_s": bytes_s / 2**20,
                "pause_mean_ms": statistics.mean(pauses) if pauses else 0,
                "pause_max_ms": st["pause_us_max"] / 1000,
                "lag_mean_ms": statistics.mean(lags) if lags else 0,
                "lag_max_ms": max(lags) if lags else 0, "lost_ms": lost_ms, "rto_s": rto,
                "epochs": st["epoch"]}
    finally:
        if echo is not None:
            echo.kill()
        dst.close()
        src.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", default="100,300,1000,3000",
                    help="epoch lengths in ms (comma-separated)")
    ap.add_argument("--modes", default="async,sync")
    ap.add_argument("--rate", type=int, default=16, help="the dirtier's MiB/s")
    ap.add_argument("--flat-out-epochs", default="100,1000",
                    help="epoch lengths of the cells with the dirtier flat out ('' for none)")
    ap.add_argument("--settle", type=float, default=10.0, help="seconds of protection")
    ap.add_argument("--settle-before", type=float, default=4.0)
    ap.add_argument("--quick", action="store_true", help="one short cell (CI smoke)")
    ap.add_argument("--workdir", default="/tmp/tern-dr-bench")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.modes, args.settle, args.flat_out_epochs = "300", "sync", 3.0, ""
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    print(f"# bench/dr: {shlex.join(sys.argv)}")
    rows = []
    cells = [(int(e), mode == "sync", args.rate) for mode in args.modes.split(",")
             for e in args.epochs.split(",")]
    cells += [(int(e), mode == "sync", 0) for mode in args.modes.split(",")
              for e in args.flat_out_epochs.split(",") if e]
    with Lab(2) as lab:
        for h in lab.hosts:
            h.add_vm_tap(TAP)
        for epoch_ms, sync, rate in cells:
            rows.append(cell(args, lab, work, epoch_ms, sync, rate))
            print(f"#   {json.dumps(rows[-1])}")
    head = ["cell", "guest speed", "MiB/s", "pause mean/max ms", "lag mean/max ms",
            "lost ms", "RTO s", "echo ms before / mean / max"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(f"| {r['cell']} | {r['speed']:.2f} | {r['mib_s']:.1f} | "
              f"{r['pause_mean_ms']:.1f} / {r['pause_max_ms']:.1f} | "
              f"{r['lag_mean_ms']:.0f} / {r['lag_max_ms']:.0f} | {r['lost_ms']:.0f} | "
              f"{r['rto_s']:.2f} | {r['echo_before_ms']:.1f} / {r['echo_mean_ms']:.1f} / "
              f"{r['echo_max_ms']:.0f}{'' if r['echo_ok'] else ' (session broken)'} |")
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
