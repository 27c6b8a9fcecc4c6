"""Ports for Flows, Pods and Peas, handed out from the daemon's range."""

from __future__ import annotations

import socket

from .errors import Conflict


def is_free(port: int, strict: bool = False) -> bool:
    """Can a server bind this port on every address right now? Servers bind with SO_REUSEADDR,
    so a port whose old connections linger in TIME_WAIT is free to them; `strict` also
    refuses those, because Jina's gateway checks its port without that option."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if not strict:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


def any_free_port(host: str) -> int:
    """A port free on `host` now, for a daemon asked for port 0: the one its record then names."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class PortAllocator:
    """Hands out ports of a range round-robin, skipping ports held by objects or bound by anyone."""

    def __init__(self, ports: range) -> None:
        self.range = ports
        self.held: set[int] = set()
        self._next = ports.start

    def claim(self, port: int) -> int:
        """Take a port the user (or an earlier run) fixed; 409 when it is in use."""
        if port in self.held or not is_free(port):
            raise Conflict(f"port {port} is already in use on this machine")
        self.held.add(port)
        return port

    def take(self) -> int:
        for _ in range(len(self.range)):
            port = self._next
            self._next = port + 1 if port + 1 < self.range.stop else self.range.start
            if port not in self.held and is_free(port, strict=True):  # a new port: the safest kind
                self.held.add(port)
                return port
        raise Conflict(f"no free port left in this daemon's range {self.range.start}-{self.range.stop - 1}")

    def release(self, ports: list[int]) -> None:
        self.held.difference_update(ports)
