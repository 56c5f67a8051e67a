"""netpeer: the host end of a TCP transfer test, run inside a namespace.

  netpeer.py recv PORT          accept one connection, read to EOF, print "<bytes> <md5>"
  netpeer.py send HOST PORT N   connect, send N random bytes, print "<bytes> <md5>"
"""
import hashlib
import os
import socket
import sys
import time


def recv(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", port))
        srv.listen(1)
        print("LISTENING", flush=True)
        conn, _ = srv.accept()
        t0 = time.monotonic()
        h, n = hashlib.md5(), 0
        with conn:
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    break
                h.update(data)
                n += len(data)
    print(n, h.hexdigest(), "%.3f" % (time.monotonic() - t0), flush=True)


def send(host, port, total):
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = socket.create_connection((host, port), timeout=10)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    t0 = time.monotonic()
    h, n = hashlib.md5(), 0
    conn.settimeout(300)
    with conn:
        while n < total:
            chunk = os.urandom(min(1 << 20, total - n))
            conn.sendall(chunk)
            h.update(chunk)
            n += len(chunk)
    print(n, h.hexdigest(), "%.3f" % (time.monotonic() - t0), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "recv":
        recv(int(sys.argv[2]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
