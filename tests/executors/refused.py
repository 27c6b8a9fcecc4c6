"""An Executor Jina 3.34 refuses to load: its `__init__` takes no `**kwargs`. In a gRPC or
websocket Flow its gateway still binds its port for a moment while the Flow aborts."""

from jina import Executor, requests


class Refused(Executor):
    def __init__(self):
        super().__init__()

    @requests
    def noop(self, **kwargs):
        return None
