#!/usr/bin/python3
"""lab: a rack of simulated hosts in network namespaces, for tern's
live-migration tests.

Layout of a lab named NAME with N hosts (every name starts with "tl"):

    namespace     interfaces                         address
    tlNAMEf       br0 (the rack's switch)            -
                  tlh0 .. tlh<N-1>: ports to hosts
                  tlc: port to the client
    tlNAMEh<i>    br0 (host i's virtual switch)      10.90.0.<10+i>/24 on br0
                  tlup: uplink, veth peer of tlNAMEf's tlh<i>
                  VM TAPs (add_vm_tap), veth ports (attach_veth)
    tlNAMEc       eth0, veth peer of tlNAMEf's tlc   10.90.0.100/24
    tlNAMEe<k>    extra namespaces (add_namespace), e.g. a stand-in VM

So the whole lab is one L2 network, like a data-centre rack: a VM's TAP
sits on its host's br0, and the VM keeps its MAC and IP on whichever host
it runs; the fabric reaches it through that host's uplink. When a VM moves,
the fabric bridge (and the other hosts' bridges) must learn its MAC on the
new port: a frame from the VM does that, normally the gratuitous ARP the
guest sends on virtio-net's GUEST_ANNOUNCE or a RARP that tern sends for it.
Until then frames for the VM go to the old host (ageing is the default 300
s, so waiting for it is no option). where_is(mac) tells which port the
fabric bridge has learnt a MAC on.

Bridges run without STP and with forward_delay 0, so a new port forwards at
once; multicast snooping is off (multicast floods like broadcast); IPv6 is
disabled in every lab namespace (no DAD, router solicitations or MLD noise;
a guest's own IPv6 packets are simply flooded). Bridge MACs are fixed
(02:74:6c:00:00:<10+i> for host i, ...:fe for the fabric), so adding a port
never changes a host's MAC.

Nothing is created outside the lab's namespaces: every interface is made
inside one (`ip -n NS link add ... peer ... netns OTHER`), never in the
caller's namespace, and no sysctl outside them is touched. Deleting the
namespaces therefore removes everything. close() does that (idempotent),
also from `with Lab(...)`, from an atexit handler, and when creating the lab
fails half-way; before deleting a namespace it ends, by pid, the processes
still running in it (a straggling tern would keep the namespace and its
interfaces alive). For a run that was SIGKILLed, `lab.sh down` removes what
is left by name.

Python API (stdlib only):

    with Lab(2) as lab:                 # name defaults to p<pid>[x<k>]
        lab.hosts[0].ns, .ip, .run(*cmd), .popen(*cmd, ...), .prefix()
        lab.hosts[0].add_vm_tap("tltap0")     # TAP on host 0's br0, up
        lab.hosts[0].remove_tap("tltap0")
        lab.client.run("ping", "-c1", lab.hosts[1].ip)
        lab.link_down(1); lab.link_up(1)      # cut / restore host 1's uplink
        lab.where_is("52:54:00:12:34:56")     # 0, 1, ..., "client" or None

Command line (tests/lab/lab.sh is a wrapper):

    lab.py up N [--name NAME]      create a lab and leave it (default name "lab")
    lab.py down [--name NAME]      remove lab NAME, or without --name every
                                   lab namespace (tl<name>{f,c,h<i>,e<k>})
    lab.py status                  list the labs and their interfaces
"""
import argparse
import atexit
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

SUBNET = "10.90.0"          # the lab's /24
PREFIX_LEN = 24
CLIENT_HOST = 100           # the client is SUBNET.100
HOST_BASE = 10              # host i is SUBNET.(10+i)
MAX_HOSTS = 80
MAC_BASE = "02:74:6c:00:00"  # locally administered; 74:6c is "tl"
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
# tl + lab name + one of the role suffixes. Unambiguous: a suffix is "f",
# "c", or a letter and digits only, and a lab name ends before it.
NS_RE = re.compile(r"^tl(?P<lab>[a-z][a-z0-9]*?)(?P<role>f|c|h\d+|e\d+)$")


class CommandError(RuntimeError):
    """A command failed; the message has the command, its status and output."""


def sh(*cmd, check=True, timeout=30, input=None):
    """Runs a command; returns its output (stdout and stderr together).
    With check, a failure raises CommandError carrying that output."""
    cmd = [str(c) for c in cmd]
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL if input is None else None,
                           input=input, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.output or b"").decode(errors="replace")
        raise CommandError(f"{' '.join(cmd)} timed out after {timeout}s: {out}") from None
    out = p.stdout.decode(errors="replace")
    if check and p.returncode != 0:
        raise CommandError(f"{' '.join(cmd)} failed ({p.returncode}): {out.strip()}")
    return out


def list_namespaces():
    """Names of all network namespaces (`ip netns list`)."""
    out = sh("ip", "netns", "list")
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def namespace_pids(ns):
    """Pids of the processes in namespace `ns`."""
    out = sh("ip", "netns", "pids", ns, check=False)
    return [int(w) for w in out.split() if w.isdigit()]


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _end_processes(ns, log=None):
    """Ends the processes still in namespace `ns`, by pid: SIGTERM, then
    SIGKILL for those still there after 5 s. Returns their descriptions."""
    pids = namespace_pids(ns)
    if not pids:
        return []
    desc = [f"{pid} ({_cmdline(pid)[:120]})" for pid in pids]
    if log:
        log(f"ending processes in {ns}: {', '.join(desc)}")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids = [p for p in pids if os.path.exists(f"/proc/{p}") and
                    _state(p) != "Z"]
            if not pids:
                return desc
            time.sleep(0.05)
    return desc


def _state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def delete_namespace(ns, log=None):
    """Ends what runs in `ns` and deletes it; missing is fine. Returns an
    error message or None."""
    if ns not in list_namespaces():
        return None
    _end_processes(ns, log)
    out = sh("ip", "netns", "delete", ns, check=False)
    if ns in list_namespaces():
        return f"ip netns delete {ns} failed: {out.strip()}"
    return None


class Node:
    """One network namespace of the lab: a host, the client, the fabric or an
    extra one. Commands run in it through `ip netns exec`."""

    def __init__(self, lab, ns, ip=None):
        self.lab = lab
        self.ns = ns
        self.ip = ip            # its lab address, without the prefix length

    def __repr__(self):
        return f"<{type(self).__name__} {self.ns} {self.ip or ''}>"

    def prefix(self):
        """What to put in front of a command to run it in here (for ternvm.Vm's netns)."""
        return ["ip", "netns", "exec", self.ns]

    def run(self, *cmd, check=True, timeout=30):
        """Runs a command in here; returns its output; raises CommandError on failure."""
        return sh(*self.prefix(), *cmd, check=check, timeout=timeout)

    def popen(self, *cmd, **kw):
        """Starts a command in here (subprocess.Popen arguments); close() ends it if it
        still runs then."""
        p = subprocess.Popen([*self.prefix(), *map(str, cmd)], **kw)
        if self.lab:
            self.lab._procs.append(p)
        return p

    def ip_cmd(self, *args, check=True):
        """`ip -n NS ARGS`: configures this namespace from outside."""
        return sh("ip", "-n", self.ns, *args, check=check)

    def links(self):
        """This namespace's interfaces, as `ip -j link` dicts."""
        return json.loads(self.ip_cmd("-j", "link", "show") or "[]")

    def has_link(self, name):
        return any(link.get("ifname") == name for link in self.links())

    def remove_link(self, name):
        """Deletes interface `name` (a TAP, a veth port with its peer); missing is fine."""
        if self.has_link(name):
            self.ip_cmd("link", "del", name)


class Host(Node):
    """Lab host i: namespace tl<lab>h<i> with its own br0 (address
    SUBNET.<10+i>) and the uplink veth "tlup" to the fabric bridge."""

    UPLINK = "tlup"

    def __init__(self, lab, ns, index, ip):
        super().__init__(lab, ns, ip)
        self.index = index

    def add_vm_tap(self, tap_name):
        """Creates TAP `tap_name` here, attached to br0 and up, for a VM
        (`--net tap=NAME,mac=...` with tern running in this namespace).
        Names are at most 15 characters; tl... is the convention."""
        self.ip_cmd("tuntap", "add", tap_name, "mode", "tap")
        try:
            self.ip_cmd("link", "set", tap_name, "master", "br0")
            self.ip_cmd("link", "set", tap_name, "up")
        except CommandError:
            self.ip_cmd("link", "del", tap_name, check=False)
            raise
        return tap_name

    def remove_tap(self, tap_name):
        """Deletes a TAP made by add_vm_tap (missing is fine). A tern still
        holding it loses its network."""
        self.remove_link(tap_name)

    def attach_veth(self, port, peer, peer_ifname="eth0", mac=None, address=None):
        """Creates a veth pair: `port` on this host's br0, its peer `peer_ifname`
        in Node `peer` (e.g. from lab.add_namespace()) with the given MAC and
        address ("A.B.C.D/PREFIX"), both up: a stand-in for a VM.
        remove_link(port) deletes both ends."""
        self.ip_cmd("link", "add", port, "type", "veth", "peer", "name", peer_ifname,
                    "netns", peer.ns)
        try:
            self.ip_cmd("link", "set", port, "master", "br0")
            self.ip_cmd("link", "set", port, "up")
            if mac:
                peer.ip_cmd("link", "set", peer_ifname, "address", mac)
            if address:
                peer.ip_cmd("addr", "add", address, "dev", peer_ifname)
            peer.ip_cmd("link", "set", peer_ifname, "up")
        except CommandError:
            self.ip_cmd("link", "del", port, check=False)
            raise
        return port

    def remove_port(self, port):
        """Deletes a port made by attach_veth (and so its peer); missing is fine."""
        self.remove_link(port)

    def ports(self):
        """Names of the interfaces attached to this host's br0."""
        return [link["ifname"] for link in self.links() if link.get("master") == "br0"]


class Lab:
    """N hosts, a client and the fabric bridge joining them: see the module
    docstring. Use as a context manager, or call close()."""

    def __init__(self, n, name=None, subnet=SUBNET, log=None, mac_base=MAC_BASE):
        if not 1 <= n <= MAX_HOSTS:
            raise ValueError(f"a lab has 1 to {MAX_HOSTS} hosts, not {n}")
        self.name = name or _default_name()
        if not NAME_RE.match(self.name):
            raise ValueError(f"lab name {self.name!r}: a lowercase letter, then up to 11 "
                             "lowercase letters or digits")
        self.subnet = subnet
        self.mac_base = mac_base    # another lab to join() needs another one
        self.joined = []            # (other lab, link name) made by join()
        self.log = log
        self._procs = []
        self._namespaces = []      # created by us, in creation order
        self._closed = False
        self._extra = 0
        self.fabric = Node(self, f"tl{self.name}f")
        self.client = Node(self, f"tl{self.name}c", f"{subnet}.{CLIENT_HOST}")
        self.hosts = [Host(self, f"tl{self.name}h{i}", i, f"{subnet}.{HOST_BASE + i}")
                      for i in range(n)]
        existing = [ns for ns in list_namespaces() if _lab_of(ns) == self.name]
        if existing:
            raise RuntimeError(f"lab {self.name!r} already exists ({', '.join(existing)}); "
                               f"remove it with: tests/lab/lab.sh down --name {self.name}")
        atexit.register(self.close)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # ---- construction ---------------------------------------------------------

    def _add_namespace(self, node):
        sh("ip", "netns", "add", node.ns)
        self._namespaces.append(node.ns)
        node.ip_cmd("link", "set", "lo", "up")
        if os.path.exists("/proc/sys/net/ipv6"):
            # Interfaces made later inherit "default": no IPv6 anywhere here.
            node.run("sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                     "net.ipv6.conf.default.disable_ipv6=1")

    @staticmethod
    def _add_bridge(node, mac):
        node.ip_cmd("link", "add", "br0", "address", mac, "type", "bridge", "stp_state", "0",
                    "forward_delay", "0", "mcast_snooping", "0")
        node.ip_cmd("link", "set", "br0", "up")

    def _build(self):
        f = self.fabric
        self._add_namespace(f)
        self._add_bridge(f, f"{self.mac_base}:fe")
        for h in self.hosts:
            self._add_namespace(h)
            self._add_bridge(h, f"{self.mac_base}:{HOST_BASE + h.index:02x}")
            port = f"tlh{h.index}"
            f.ip_cmd("link", "add", port, "type", "veth", "peer", "name", Host.UPLINK,
                     "netns", h.ns)
            f.ip_cmd("link", "set", port, "master", "br0")
            f.ip_cmd("link", "set", port, "up")
            h.ip_cmd("link", "set", Host.UPLINK, "master", "br0")
            h.ip_cmd("link", "set", Host.UPLINK, "up")
            h.ip_cmd("addr", "add", f"{h.ip}/{PREFIX_LEN}", "dev", "br0")
        c = self.client
        self._add_namespace(c)
        f.ip_cmd("link", "add", "tlc", "type", "veth", "peer", "name", "eth0", "netns", c.ns)
        f.ip_cmd("link", "set", "tlc", "master", "br0")
        f.ip_cmd("link", "set", "tlc", "up")
        c.ip_cmd("link", "set", "eth0", "address", f"{self.mac_base}:{CLIENT_HOST:02x}")
        c.ip_cmd("addr", "add", f"{c.ip}/{PREFIX_LEN}", "dev", "eth0")
        c.ip_cmd("link", "set", "eth0", "up")
        # Every host must answer the client before the lab is handed out.
        for h in self.hosts:
            self.client.run("ping", "-q", "-c", "1", "-W", "3", h.ip, timeout=10)

    @classmethod
    def attach(cls, name):
        """A Lab object for an existing lab (made by `lab.sh up`); its close()
        removes it like any other."""
        lab = cls.__new__(cls)
        lab.name, lab.subnet, lab.log = name, SUBNET, None
        lab._procs, lab._closed, lab._extra = [], False, 0
        found = sorted(ns for ns in list_namespaces() if _lab_of(ns) == name)
        if f"tl{name}f" not in found:
            raise RuntimeError(f"no lab {name!r} (namespaces: {found})")
        lab._namespaces = found
        lab.fabric = Node(lab, f"tl{name}f")
        lab.client = Node(lab, f"tl{name}c", f"{SUBNET}.{CLIENT_HOST}")
        idx = sorted(int(_role_of(ns)[1:]) for ns in found if _role_of(ns).startswith("h"))
        lab.hosts = [Host(lab, f"tl{name}h{i}", i, f"{SUBNET}.{HOST_BASE + i}") for i in idx]
        lab._extra = len([ns for ns in found if _role_of(ns).startswith("e")])
        atexit.register(lab.close)
        return lab

    def detach(self):
        """Leaves the lab in place when this process exits (lab.sh up)."""
        atexit.unregister(self.close)

    # ---- use --------------------------------------------------------------------

    def add_namespace(self):
        """An extra namespace tl<lab>e<k> (lo up, no IPv6), removed with the lab:
        somewhere to put a stand-in VM (see Host.attach_veth)."""
        while True:
            node = Node(self, f"tl{self.name}e{self._extra}")
            self._extra += 1
            if node.ns not in list_namespaces():
                break
        self._add_namespace(node)
        return node

    def join(self, other):
        """Joins this lab's rack and another's (another subnet and
        mac_base) with one link between the two fabric bridges, as two
        sites joined by a line: one L2 segment, two subnets, each host and
        client given an on-link route to the other's subnet. Returns the
        link's name here; cut_join()/restore_join() take it down and up."""
        link = f"tlj{len(self.joined)}"
        self.fabric.ip_cmd("link", "add", link, "type", "veth", "peer", "name", link,
                           "netns", other.fabric.ns)
        for lab in (self, other):
            lab.fabric.ip_cmd("link", "set", link, "master", "br0")
            lab.fabric.ip_cmd("link", "set", link, "up")
        for a, b in ((self, other), (other, self)):
            for node in [*a.hosts, a.client]:
                dev = "br0" if node in a.hosts else "eth0"
                node.ip_cmd("route", "add", f"{b.subnet}.0/{PREFIX_LEN}", "dev", dev)
        self.joined.append((other, link))
        self.client.run("ping", "-q", "-c", "1", "-W", "3", other.hosts[0].ip, timeout=10)
        return link

    def cut_join(self, link="tlj0"):
        """The line between the two sites goes down (both ends)."""
        self.fabric.ip_cmd("link", "set", link, "down")

    def restore_join(self, link="tlj0"):
        self.fabric.ip_cmd("link", "set", link, "up")

    def link_down(self, i):
        """Cuts host i off the rack: its uplink goes down (the fabric's end
        loses carrier too), as if the cable were pulled."""
        self.hosts[i].ip_cmd("link", "set", Host.UPLINK, "down")

    def link_up(self, i):
        """Plugs host i back in; the ports forward at once (no STP)."""
        self.hosts[i].ip_cmd("link", "set", Host.UPLINK, "up")

    def where_is(self, mac):
        """Where the fabric bridge has learnt `mac`: a host index, "client",
        another port name, or None if it has no entry (never seen, or aged
        out, or the port went down)."""
        mac = mac.lower()
        entries = json.loads(self.fabric.run("bridge", "-j", "fdb", "show", "br", "br0") or "[]")
        for e in entries:
            if e.get("mac", "").lower() == mac and "permanent" not in e.get("state", ""):
                port = e.get("ifname") or e.get("dev")
                m = re.fullmatch(r"tlh(\d+)", port or "")
                if m:
                    return int(m.group(1))
                return "client" if port == "tlc" else port
        return None

    # ---- teardown ------------------------------------------------------------------

    def close(self):
        """Removes the whole lab: ends the processes started with popen and any
        other process left in its namespaces, then deletes the namespaces (and
        with them every interface). Idempotent; raises CommandError listing
        what could not be removed."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for p in self._procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        errors = []
        for ns in reversed(self._namespaces):
            err = delete_namespace(ns, self.log)
            if err:
                errors.append(err)
        left = [ns for ns in list_namespaces() if _lab_of(ns) == self.name]
        for ns in left:
            err = delete_namespace(ns, self.log)
            if err:
                errors.append(err)
        if errors:
            raise CommandError("lab cleanup incomplete: " + "; ".join(errors))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def status(self):
        """A dict describing the lab (for lab.sh status and debugging)."""
        return lab_status(self.name)


_name_lock = threading.Lock()
_name_count = 0


def _default_name():
    global _name_count
    with _name_lock:
        _name_count += 1
        k = _name_count
    return f"p{os.getpid()}" + (f"x{k}" if k > 1 else "")


def _lab_of(ns):
    m = NS_RE.match(ns)
    return m.group("lab") if m else None


def _role_of(ns):
    m = NS_RE.match(ns)
    return m.group("role") if m else None


def lab_names():
    """Names of the labs that have namespaces here."""
    return sorted({_lab_of(ns) for ns in list_namespaces() if _lab_of(ns)})


def lab_status(name):
    """Namespaces of lab `name` with their interfaces, addresses and bridge ports."""
    out = {}
    for ns in sorted(n for n in list_namespaces() if _lab_of(n) == name):
        try:
            links = json.loads(sh("ip", "-n", ns, "-j", "addr", "show") or "[]")
        except (CommandError, ValueError) as e:
            out[ns] = {"error": str(e)}
            continue
        ifs = []
        for link in links:
            if link.get("ifname") == "lo":
                continue
            addrs = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                     if a.get("family") == "inet"]
            ifs.append({"name": link.get("ifname"), "state": link.get("operstate"),
                        "mac": link.get("address"), "master": link.get("master"),
                        "addr": addrs})
        out[ns] = {"role": _role_of(ns), "interfaces": ifs, "pids": namespace_pids(ns)}
    return out


def down(name=None, log=print):
    """Removes lab `name`, or every lab; for runs that died without close().
    Returns the namespaces removed; raises CommandError if some remain."""
    targets = [ns for ns in list_namespaces()
               if _lab_of(ns) and (name is None or _lab_of(ns) == name)]
    errors = []
    for ns in sorted(targets, key=lambda ns: (_role_of(ns) == "f", ns)):
        err = delete_namespace(ns, log)
        if err:
            errors.append(err)
        elif log:
            log(f"removed namespace {ns}")
    if errors:
        raise CommandError("; ".join(errors))
    return targets


# ---- command line -------------------------------------------------------------


def _stray_root_links():
    """tl* interfaces in this (the caller's) namespace: the lab never makes any."""
    try:
        links = json.loads(sh("ip", "-j", "link", "show") or "[]")
    except (CommandError, ValueError):
        return []
    return [link["ifname"] for link in links if link.get("ifname", "").startswith("tl")]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="lab.sh", description="tern's migration lab: hosts in "
                                 "network namespaces on one bridge (see tests/lab/lab.py)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="create a lab and leave it running")
    up.add_argument("n", type=int, help="number of hosts")
    up.add_argument("--name", default="lab")
    dn = sub.add_parser("down", help="remove a lab (default: every lab namespace tl*)")
    dn.add_argument("--name")
    st = sub.add_parser("status", help="list labs, interfaces and addresses")
    st.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)

    # SIGTERM must unwind like Ctrl-C, so that a half-made lab is removed.
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(143))
    try:
        if a.cmd == "up":
            lab = Lab(a.n, a.name, log=print)
            lab.detach()
            print(f"lab {lab.name}: fabric {lab.fabric.ns} (br0), client {lab.client.ns} "
                  f"{lab.client.ip}/{PREFIX_LEN}")
            for h in lab.hosts:
                print(f"  host {h.index}: {h.ns} br0 {h.ip}/{PREFIX_LEN}")
            print(f"remove with: tests/lab/lab.sh down --name {lab.name}")
        elif a.cmd == "down":
            if a.name is not None and not NAME_RE.match(a.name):
                ap.error(f"bad lab name {a.name!r}")
            removed = down(a.name)
            if not removed:
                print("no lab namespaces" + (f" for lab {a.name}" if a.name else ""))
            stray = _stray_root_links()
            if stray:
                print("warning: tl* interfaces outside any lab namespace (not made by "
                      f"the lab, left alone): {', '.join(stray)}")
        elif a.cmd == "status":
            labs = {name: lab_status(name) for name in lab_names()}
            if a.json:
                print(json.dumps(labs, indent=2))
            elif not labs:
                print("no labs")
            for name, nss in labs.items() if not a.json else ():
                print(f"lab {name}:")
                for ns, info in nss.items():
                    pids = f"  processes: {info['pids']}" if info.get("pids") else ""
                    print(f"  {ns} ({info.get('role')}){pids}")
                    for i in info.get("interfaces", []):
                        extra = f" master {i['master']}" if i.get("master") else ""
                        print(f"    {i['name']:<10} {i['state']:<8} {i['mac']} "
                              f"{' '.join(i['addr'])}{extra}")
    except CommandError as e:
        print(f"lab: {e}", file=sys.stderr)
        return 1
    except (RuntimeError, ValueError) as e:
        print(f"lab: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
