"""The contract's enumerated words, each defined once: object states and their groups, restart
policies, protocols and workspace states. The OpenAPI document, the CLI's choices and the
dashboard (which reads the document) are derived from these.

Each is a str-valued enum, so a member is its word wherever a string goes (JSON, f-strings,
comparisons with what a record or a request holds).
"""

from __future__ import annotations

import enum


class Word(str, enum.Enum):
    """A str enum whose str() and format() are its value on every Python (3.10 included)."""

    __str__ = str.__str__
    __format__ = str.__format__

    @classmethod
    def values(cls) -> list[str]:
        return [member.value for member in cls]


class State(Word):
    """A Flow's, Pod's or Pea's state, in the contract's order (see objects.py for transitions)."""

    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    EXITED = "exited"


# A process of it may run (and counts toward max_running_objects).
LIVE = frozenset({State.STARTING, State.READY, State.STOPPING})
# No process, and none coming unless asked (or a restart policy takes it back).
TERMINAL = frozenset(State) - LIVE
# Up or on its way up: what a Flow that uses it as a remote part can still count on.
UP = frozenset({State.STARTING, State.READY})


class RemoteState(Word):
    """What a Flow's part on another daemon may be besides the state of its Pod there."""

    UNREACHABLE = "unreachable"  # its daemon does not answer
    MISSING = "missing"  # its daemon has no such Pod any more


class RestartPolicy(Word):
    NO = "no"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


class Protocol(Word):
    GRPC = "grpc"
    HTTP = "http"
    WEBSOCKET = "websocket"


class WorkspaceState(Word):
    READY = "ready"
    INSTALLING = "installing"  # its requirements go into an environment
    FAILED = "failed"
