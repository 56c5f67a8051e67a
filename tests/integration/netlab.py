"""netlab: network namespaces and TAP devices for tests that need a network.

Everything is created with a name unique to this process (prefix "ternt")
and removed by close(), also when a test fails, so tests never touch the
host's own interfaces and leave nothing behind."""
import os
import subprocess
import threading


def sh(*cmd, check=True, timeout=30):
    p = subprocess.run(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({p.returncode}): "
                           f"{p.stdout.decode(errors='replace')}")
    return p.stdout.decode(errors="replace")


_counter = 0
_lock = threading.Lock()


def unique(prefix):
    global _counter
    with _lock:
        _counter += 1
        return f"{prefix}{os.getpid() % 100000}x{_counter}"


class Namespace:
    """A network namespace: a "host" with its own interfaces and routes."""

    def __init__(self, name=None):
        self.name = name or unique("ternt")
        sh("ip", "netns", "add", self.name)
        sh("ip", "-n", self.name, "link", "set", "lo", "up")

    def run(self, *cmd, **kw):
        return sh("ip", "netns", "exec", self.name, *cmd, **kw)

    def popen(self, *cmd, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.name, *map(str, cmd)], **kw)

    def prefix(self):
        """What to put in front of a command to run it in here."""
        return ["ip", "netns", "exec", self.name]

    def add_tap(self, name, address=None):
        sh("ip", "-n", self.name, "tuntap", "add", name, "mode", "tap")
        if address:
            sh("ip", "-n", self.name, "addr", "add", address, "dev", name)
        sh("ip", "-n", self.name, "link", "set", name, "up")
        return name

    def close(self):
        sh("ip", "netns", "delete", self.name, check=False)
