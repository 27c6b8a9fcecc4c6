"""`jinad <command>`: client commands for people at a terminal (the daemon is plain `jinad`)."""

from __future__ import annotations

COMMANDS = ("workspace", "flow", "pod", "pea", "ls", "get", "logs", "rm", "restart", "status")


def main(argv: list[str]) -> int:
    raise SystemExit("jinad: client commands are not built yet")
