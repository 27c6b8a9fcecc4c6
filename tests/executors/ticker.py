"""An Executor that prints `tick <n>` every millisecond, from a thread, `ticks` times, then `ticker done`."""

import threading
import time

from jina import Executor, requests


class Ticker(Executor):
    def __init__(self, ticks: int = 1000, interval: float = 0.001, **kwargs):
        super().__init__(**kwargs)
        threading.Thread(target=self._tick, args=(ticks, interval), daemon=True).start()

    @staticmethod
    def _tick(ticks: int, interval: float) -> None:
        began = time.monotonic()
        for i in range(ticks):
            print(f"tick {i}", flush=True)
            time.sleep(max(0.0, began + (i + 1) * interval - time.monotonic()))
        print("ticker done", flush=True)

    @requests
    def noop(self, **kwargs):
        return None
