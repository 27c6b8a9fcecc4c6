"""Ticker: print `rate` timestamped lines a second for `seconds` seconds.

Each line is `TK <n> <time.time() just before the write>` padded to 100 bytes, written with one
unbuffered write as `print()` would be; the pace follows a schedule (no drift), and a late tick is
written at once. Ends with `ticker done`. Runs two ways:
- as a Jina Executor (`Ticker`) run by jinad, from a thread once the go-file exists (so
  subscribers can connect first);
- as a plain script, `python ticker.py RATE SECONDS`, for a peer supervisor (supervisord).
"""

import os
import sys
import threading
import time

LINE_BYTES = 100


def tick(rate: float, seconds: float) -> None:
    out = sys.stdout
    began = time.monotonic()
    for n in range(int(rate * seconds)):
        delay = began + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        line = f"TK {n} {time.time():.6f} "
        out.write(line + "x" * (LINE_BYTES - 1 - len(line)) + "\n")
        out.flush()
    out.write("ticker done\n")
    out.flush()


def wait_for(go_file: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while go_file and not os.path.exists(go_file) and time.monotonic() < deadline:
        time.sleep(0.005)


if __name__ == "__main__":  # plain script: ticker.py RATE SECONDS [GO_FILE]
    wait_for(sys.argv[3] if len(sys.argv) > 3 else "", 600.0)
    tick(float(sys.argv[1]), float(sys.argv[2]))
    sys.exit(0)

from jina import Executor, requests  # noqa: E402  (only when Jina loads this file as an Executor)


class Ticker(Executor):
    def __init__(self, rate: float = 1000, seconds: float = 10, go_file: str = "", go_timeout_s: float = 600.0, **kwargs):
        super().__init__(**kwargs)
        threading.Thread(target=self._run, args=(rate, seconds, go_file, go_timeout_s), daemon=True).start()

    @staticmethod
    def _run(rate: float, seconds: float, go_file: str, go_timeout_s: float) -> None:
        wait_for(go_file, go_timeout_s)
        tick(rate, seconds)

    @requests
    def noop(self, **kwargs):
        return None
