"""An Executor that floods stdout: `lines` numbered lines from a thread once it is built."""

import sys
import threading
import time

from jina import Executor, requests


class Chatty(Executor):
    def __init__(self, lines: int = 1000, start_delay: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        threading.Thread(target=self._chat, args=(lines, start_delay), daemon=True).start()

    @staticmethod
    def _chat(lines: int, start_delay: float) -> None:
        time.sleep(start_delay)  # let the port open first, so the test can subscribe
        began = time.monotonic()
        out = sys.stdout
        for i in range(lines):
            out.write(f"chatty {i:08d} " + "x" * 70 + "\n")
        out.write(f"chatty done {time.monotonic() - began:.3f}\n")
        out.flush()

    @requests
    def noop(self, **kwargs):
        return None
