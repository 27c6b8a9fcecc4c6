"""Test hosts: each daemon on a machine of its own, made of a network namespace with its own
address in the benchmarking range (198.18.0.0/15) on a bridge of the run's own, so every
daemon uses the default port range and port as on real machines. A host's link can be slowed
down (`tc tbf`: this kernel has no netem) or cut (link down); latency comes from `relay`, a
delaying TCP relay of the tests' own on a host of its own.

Used by tests/e2e/test_hosts.py and scripts/bench/bench_hosts.py; needs root (CI runs as root)."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import JINAD, Daemon, children_of_home

NETWORK = (198, 18)  # the /15 of RFC 2544, made of 512 /24s
_networks = itertools.count()
RELAY = Path(__file__).resolve().parent / "relay.py"
RELAY_PORT = 9  # where a relay host's redirected connections arrive (discard's port: never a daemon's)


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and result.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result


def cannot_make_hosts() -> str | None:
    """Why test hosts cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "test hosts need root (network namespaces, veth pairs, a bridge, tc)"
    probe = f"jinad-probe-{os.getpid()}"
    made = run("ip", "netns", "add", probe, check=False)
    if made.returncode:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    run("ip", "netns", "del", probe, check=False)
    return None


def _listens(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


class HostDaemon(Daemon):
    """A `jinad` inside a host's namespace, listening on every address with the default port
    and port range (no --port-range: hosts do not share ports), without auth."""

    headers: dict[str, str] = {}  # what a client sends it (the benchmarks' upload helper reads it)

    def __init__(self, home: Path, host: "Host", *extra: str) -> None:
        super().__init__(home, *extra, host=host.address)
        self.namespace = host.namespace
        self.port = 8000

    def command(self) -> tuple[list[str], dict[str, str] | None]:
        settings = {"host": "0.0.0.0", "port-expose": str(self.port), **self.settings}
        return ["ip", "netns", "exec", self.namespace, str(JINAD), "--workspace", str(self.home), "--no-auth",
                *(f for k, v in settings.items() for f in (f"--{k}", v))], None


class Host:
    """A machine of its own: a namespace, a veth pair to the bridge, an address."""

    def __init__(self, network: "Network", name: str, index: int) -> None:
        self.network = network
        self.name = name
        self.namespace = f"{network.tag}-{name}"
        self.link = f"{network.tag}v{index}"  # the pair's end on the bridge, where tc and cuts act
        self.address = network.address(index + 2)
        self.daemon: HostDaemon | None = None

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return run("ip", "netns", "exec", self.namespace, *argv, check=check)

    def limit(self, rate: str) -> None:
        """Limit what reaches this host to `rate` (e.g. "2mbit"), and what leaves it too."""
        for where in (["ip", "netns", "exec", self.namespace, "tc"], ["tc"]):
            dev = "eth0" if len(where) > 1 else self.link
            run(*where, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms")

    def unlimit(self) -> None:
        for where in (["ip", "netns", "exec", self.namespace, "tc"], ["tc"]):
            run(*where, "qdisc", "del", "dev", "eth0" if len(where) > 1 else self.link, "root", check=False)

    def cut(self) -> None:
        run("ip", "link", "set", self.link, "down")

    def heal(self) -> None:
        run("ip", "link", "set", self.link, "up")

    def start_daemon(self, home: Path, *extra: str) -> HostDaemon:
        self.daemon = HostDaemon(home, self, *extra).start()
        return self.daemon


class Network:
    """A bridge with an address of the root namespace (where the tests' client runs) and the
    hosts on it. Names carry the run's pid and a counter, so parallel runs never clash."""

    def __init__(self) -> None:
        n = next(_networks)
        self.tag = f"jt{os.getpid() % 10**6}{n}"[:11]  # interface names are at most 15 bytes
        self.bridge = f"{self.tag}br"
        taken = run("ip", "-4", "route", "show").stdout
        for attempt in range(512):
            slot = (os.getpid() * 7 + n * 131 + attempt) % 512
            self.prefix = f"{NETWORK[0]}.{NETWORK[1] + slot // 256}.{slot % 256}"
            if f"{self.prefix}.0/24" not in taken:
                break
        self.hosts: list[Host] = []
        self._forward_rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        self._relays: list[subprocess.Popen] = []
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.address(1)}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        # Once dockerd has run, FORWARD drops by default and bridged traffic passes iptables.
        run("iptables", "-I", *self._forward_rule)

    def address(self, index: int) -> str:
        return f"{self.prefix}.{index}"

    def add_host(self, name: str) -> Host:
        host = Host(self, name, len(self.hosts))
        self.hosts.append(host)
        run("ip", "netns", "add", host.namespace)
        run("ip", "link", "add", host.link, "type", "veth", "peer", "name", "eth0", "netns", host.namespace)
        run("ip", "link", "set", host.link, "master", self.bridge, "up")
        host.exec("ip", "addr", "add", f"{host.address}/24", "dev", "eth0")
        host.exec("ip", "link", "set", "eth0", "up")
        host.exec("ip", "link", "set", "lo", "up")  # a daemon checks its children on 127.0.0.1
        return host

    def relay(self, name: str, target: Host, delay_s: float) -> Host:
        """A host whose every TCP port leads to the same port of `target`, each chunk held back
        `delay_s` in each direction: dial it instead of the target to add latency."""
        host = self.add_host(name)
        host.exec("iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "-j", "REDIRECT", "--to-ports", str(RELAY_PORT))
        self._relays.append(subprocess.Popen(
            ["ip", "netns", "exec", host.namespace, sys.executable, str(RELAY), str(RELAY_PORT), target.address, str(delay_s)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while not _listens(host.address, RELAY_PORT):
            if time.monotonic() > deadline:
                raise AssertionError(f"the relay on {host.address} did not listen within 10 s")
            time.sleep(0.05)
        return host

    def close(self) -> list[str]:
        """Stop every daemon and relay, remove every namespace, link and rule; what was left
        over (daemons' children, or parts of the network that would not go) is returned."""
        left: list[str] = []
        for host in self.hosts:
            if host.daemon is not None:
                try:
                    host.daemon.stop()
                except subprocess.TimeoutExpired:  # the rest is torn down all the same
                    left.append(f"daemon of {host.name} did not stop within 60 s; killed")
                    host.daemon.stop(signal.SIGKILL)
                procs = children_of_home(host.daemon.home)
                left += [f"process {p.pid} {' '.join(p.cmdline())}" for p in procs]
                for proc in procs:
                    with contextlib.suppress(OSError):
                        proc.kill()
        for relay in self._relays:
            relay.kill()
            relay.wait(10)
        for host in self.hosts:
            run("ip", "link", "del", host.link, check=False)  # now: a namespace's own links go later, in the kernel's time
            run("ip", "netns", "del", host.namespace, check=False)
        run("ip", "link", "del", self.bridge, check=False)
        while run("iptables", "-C", *self._forward_rule, check=False).returncode == 0:
            run("iptables", "-D", *self._forward_rule)
        namespaces = run("ip", "netns", "list").stdout
        links = run("ip", "-o", "link", "show").stdout
        left += [f"namespace {h.namespace}" for h in self.hosts if h.namespace in namespaces]
        left += [f"link {name}" for name in [self.bridge, *(h.link for h in self.hosts)] if f" {name}:" in links or f" {name}@" in links]
        if run("iptables", "-C", *self._forward_rule, check=False).returncode == 0:
            left.append("iptables rule " + " ".join(self._forward_rule))
        return left
