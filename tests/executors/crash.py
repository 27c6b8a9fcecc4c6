"""An Executor that cannot start: its constructor raises."""

from jina import Executor


class Crash(Executor):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        raise RuntimeError("deliberate crash at start-up")
