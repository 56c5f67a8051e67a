#!/usr/bin/python3
"""echo_client: the host end of the guest's `echoctr` service, for
migration tests: it keeps one TCP connection busy and tells whether the
connection survived unharmed, and how long it stalled.

Run it inside a lab namespace (the lab's client or a host), e.g.

    ip netns exec tllabc python3 tests/lab/echo_client.py 10.90.0.200 7000 \\
        --interval-ms 10 --duration 20

It connects (retrying for --connect-timeout seconds, so it may start before
the guest's service does), then sends the line "L<n> <padding>" every
--interval-ms milliseconds on absolute deadlines (slots missed because this
process did not run are skipped, not sent in a burst). It checks every
reply "<server_seq> <line>": server_seq must be exactly one more than the
last (from 1), and the line must be the oldest one not yet answered, so
anything lost, duplicated or reordered is caught. It stops sending after
--duration seconds (0: never), when the --stop-file appears, or on SIGTERM
or SIGINT; then it waits up to --drain seconds for the replies still owed.

At the end it prints one JSON object on stdout:

    ok            true if there was no error and every line was answered
    lines_sent, replies, unanswered, errors
    first_error   a description of the first broken reply, or null
    max_rtt_ms    the longest time from sending a line to getting its reply
    max_rtt_at_s  when (seconds after connecting) that reply came
    avg_rtt_ms
    max_gap_ms    the longest time between two consecutive replies: with a
                  steady sender this is the service's downtime as seen
                  from the network (e.g. a migration's blackout)
    max_gap_at_s  when (seconds after connecting) the reply ending it came
    duration_s, connect_s, interval_ms, host, port

and exits 0 if ok, 1 if not, 2 on bad usage or if it never connected.
On stderr it prints "CONNECTED" once connected (tests wait for it), and
with --progress SEC a status line every SEC seconds.

From Python, EchoClient runs this script in a namespace and collects the
summary:

    c = EchoClient(lab.client, "10.90.0.200", 7000, interval_ms=10)
    c.start(); c.wait_connected()
    ...                      # migrate the VM
    summary = c.stop()       # SIGTERM, drain, parse the JSON
"""
import argparse
import collections
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

# ---- the client --------------------------------------------------------------


class _Stop:
    """Set by SIGTERM/SIGINT: finish sending, drain, report."""
    requested = False


def _on_signal(signum, frame):
    _Stop.requested = True


def _connect(host, port, timeout):
    """Connects, retrying until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(max(0.5, min(3.0, deadline - time.monotonic())))
        try:
            s.connect((host, port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            return s
        except OSError as e:
            last = e
            s.close()
        if time.monotonic() >= deadline or _Stop.requested:
            raise ConnectionError(f"cannot connect to {host}:{port} within {timeout}s: {last}")
        time.sleep(0.2)


def run(host, port, interval_ms=10.0, duration=20.0, stop_file=None, size=32,
        connect_timeout=30.0, drain=15.0, progress=0.0, log=sys.stderr):
    """Runs one session; returns the summary dict (see the module docstring)."""
    t_connect0 = time.monotonic()
    sock = _connect(host, port, connect_timeout)
    t0 = time.monotonic()
    print("CONNECTED", file=log, flush=True)
    interval = interval_ms / 1000.0
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)

    pending = collections.deque()  # (line bytes without "\n", send time)
    outbuf = bytearray()
    inbuf = bytearray()
    sent = replies = errors = 0
    first_error = None
    expected_seq = 1
    rtt_sum = 0.0
    max_rtt = max_gap = 0.0
    max_rtt_at = max_gap_at = None
    last_reply_t = None
    next_send = t0
    stop_t = None            # when sending stopped
    next_progress = t0 + progress if progress > 0 else None
    closed_reason = None

    def error(msg):
        nonlocal errors, first_error
        errors += 1
        if first_error is None:
            first_error = f"at {time.monotonic() - t0:.3f}s: {msg}"

    while True:
        now = time.monotonic()
        if stop_t is None and (_Stop.requested or (duration and now - t0 >= duration) or
                               (stop_file and os.path.exists(stop_file))):
            stop_t = now
        if stop_t is not None and (not pending or now - stop_t >= drain or closed_reason):
            break
        if stop_t is None and closed_reason is None and now >= next_send:
            sent += 1
            body = f"L{sent} ".encode()
            body += b"x" * max(0, size - len(body))
            pending.append((body, now))
            outbuf += body + b"\n"
            next_send += interval
            if next_send < now:  # this process was held up: skip, no burst
                next_send = now + interval
        if outbuf and closed_reason is None:
            try:
                n = sock.send(outbuf)
                del outbuf[:n]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as e:
                closed_reason = f"send failed: {e}"
                error(closed_reason)
        mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if outbuf else 0)
        sel.modify(sock, mask)
        wake = 0.05 if stop_t is not None else max(0.0, min(next_send - now, 0.05))
        if next_progress is not None:
            wake = min(wake, max(0.0, next_progress - now))
        try:
            ready = sel.select(wake)
        except InterruptedError:
            ready = []
        now = time.monotonic()
        for _key, ev in ready:
            if not ev & selectors.EVENT_READ or closed_reason:
                continue
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                closed_reason = f"recv failed: {e}"
                error(closed_reason)
                continue
            if not data:
                closed_reason = "the server closed the connection"
                error(closed_reason)
                continue
            inbuf += data
            while True:
                nl = inbuf.find(b"\n")
                if nl < 0:
                    break
                line = bytes(inbuf[:nl])
                del inbuf[:nl + 1]
                replies += 1
                if last_reply_t is not None and now - last_reply_t > max_gap:
                    max_gap, max_gap_at = now - last_reply_t, now - t0
                last_reply_t = now
                seq_txt, _, echoed = line.partition(b" ")
                try:
                    seq = int(seq_txt)
                except ValueError:
                    seq = None
                if seq != expected_seq:
                    error(f"reply {replies}: server_seq {seq_txt[:40]!r}, expected {expected_seq}")
                if seq is not None:
                    expected_seq = seq + 1
                if not pending:
                    error(f"reply {replies} ({line[:60]!r}) to no line sent")
                    continue
                want, t_sent = pending.popleft()
                if echoed != want:
                    error(f"reply {replies}: echoed {echoed[:60]!r}, expected {want[:60]!r}")
                rtt = now - t_sent
                rtt_sum += rtt
                if rtt > max_rtt:
                    max_rtt, max_rtt_at = rtt, now - t0
        if next_progress is not None and now >= next_progress:
            print(f"echo_client: {now - t0:.1f}s sent {sent} replies {replies} errors {errors} "
                  f"max_rtt {max_rtt * 1000:.1f}ms max_gap {max_gap * 1000:.1f}ms",
                  file=log, flush=True)
            next_progress += progress
    end = time.monotonic()
    sel.close()
    sock.close()
    unanswered = len(pending)
    if unanswered and closed_reason is None:
        error(f"{unanswered} lines unanswered {drain}s after sending stopped")
    if inbuf:
        error(f"{len(inbuf)} bytes of an unfinished reply line at the end")
    return {
        "ok": errors == 0 and unanswered == 0 and sent > 0,
        "host": host, "port": port, "interval_ms": interval_ms,
        "lines_sent": sent, "replies": replies, "unanswered": unanswered,
        "errors": errors, "first_error": first_error,
        "max_rtt_ms": round(max_rtt * 1000, 3),
        "max_rtt_at_s": None if max_rtt_at is None else round(max_rtt_at, 3),
        "avg_rtt_ms": round(rtt_sum / replies * 1000, 3) if replies else None,
        "max_gap_ms": round(max_gap * 1000, 3),
        "max_gap_at_s": None if max_gap_at is None else round(max_gap_at, 3),
        "duration_s": round(end - t0, 3),
        "connect_s": round(t0 - t_connect0, 3),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--interval-ms", type=float, default=10.0, help="time between lines (10)")
    ap.add_argument("--duration", type=float, default=20.0,
                    help="seconds to send for; 0: until stopped (20)")
    ap.add_argument("--stop-file", help="stop sending once this file exists")
    ap.add_argument("--size", type=int, default=32, help="bytes per line, at least 'L<n> ' (32)")
    ap.add_argument("--connect-timeout", type=float, default=30.0,
                    help="seconds to keep retrying the connection (30)")
    ap.add_argument("--drain", type=float, default=15.0,
                    help="seconds to wait for owed replies after sending stops (15)")
    ap.add_argument("--progress", type=float, default=0.0,
                    help="print a status line to stderr every SEC seconds (0: never)")
    a = ap.parse_args(argv)
    if a.interval_ms <= 0 or a.size > 4000:
        ap.error("--interval-ms must be > 0 and --size at most 4000")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        summary = run(a.host, a.port, a.interval_ms, a.duration, a.stop_file, a.size,
                      a.connect_timeout, a.drain, a.progress)
    except ConnectionError as e:
        print(json.dumps({"ok": False, "host": a.host, "port": a.port, "lines_sent": 0,
                          "replies": 0, "errors": 1, "first_error": str(e)}), flush=True)
        return 2
    print(json.dumps(summary), flush=True)
    return 0 if summary["ok"] else 1


# ---- for tests: run it in a namespace ------------------------------------------


class EchoClient:
    """Runs this script in a lab namespace (anything with .prefix(), such as
    lab.client or lab.hosts[i]) as a child process."""

    def __init__(self, node, host, port, interval_ms=10, duration=0, size=32,
                 connect_timeout=30, drain=15, progress=0, stop_file=None):
        self.args = [str(host), str(port), "--interval-ms", str(interval_ms),
                     "--duration", str(duration), "--size", str(size),
                     "--connect-timeout", str(connect_timeout), "--drain", str(drain),
                     "--progress", str(progress)]
        if stop_file:
            self.args += ["--stop-file", str(stop_file)]
        self.node = node
        self.proc = None
        self.stderr_lines = []
        self._connected = threading.Event()
        self._reader = None

    def start(self):
        self.proc = subprocess.Popen(
            [*self.node.prefix(), sys.executable, os.path.abspath(__file__), *self.args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        return self

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))
            if line.strip() == "CONNECTED":
                self._connected.set()
        self._connected.set()  # exited: wait_connected() must not hang

    def wait_connected(self, timeout=60):
        """Waits for the connection; raises with the client's output if it failed."""
        if not self._connected.wait(timeout) or "CONNECTED" not in self.stderr_lines:
            out = self.proc.stdout.read() if self.proc.poll() is not None else ""
            raise RuntimeError(f"echo client did not connect: {out}\n" +
                               "\n".join(self.stderr_lines))

    def result(self, timeout=120):
        """Waits for the client to finish by itself; returns its summary dict."""
        out, _ = self.proc.communicate(timeout=timeout)
        if self._reader:
            self._reader.join(5)
        try:
            summary = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError(f"echo client exited {self.proc.returncode} without a summary; "
                               f"stdout: {out!r}; stderr:\n" + "\n".join(self.stderr_lines))
        summary["exit_status"] = self.proc.returncode
        return summary

    def stop(self, timeout=120):
        """Stops sending (SIGTERM), lets the replies drain; returns the summary."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.result(timeout)

    def kill(self):
        """For cleanup: ends the client if it still runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


if __name__ == "__main__":
    sys.exit(main())
