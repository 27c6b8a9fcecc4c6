"""Executors that push against `limits`: one allocates memory, one spins, one forks (bounded)."""

import os
import subprocess
import sys
import threading
import time

from jina import Executor, requests


def _later(seconds, work):
    threading.Thread(target=lambda: (time.sleep(seconds), work()), daemon=True).start()


class Hog(Executor):
    """Once serving, allocates `mib` MiB in 10 MiB steps, touching every page, then holds it."""

    def __init__(self, mib: int = 400, after_s: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.held = []

        def allocate():
            for step in range(mib // 10):
                self.held.append(bytearray(b"x" * (10 * 1024 * 1024)))
                print(f"hog holds {10 * (step + 1)} MiB", flush=True)
                time.sleep(0.02)
            print("hog holds all it asked for", flush=True)

        _later(after_s, allocate)

    @requests
    def noop(self, **kwargs):
        return None


class Spinner(Executor):
    """A busy loop in a process of its own (a thread would fight Jina's for the GIL)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        pid = os.fork()
        if pid == 0:
            while True:
                pass
        print(f"spinner {pid}", flush=True)

    @requests
    def noop(self, **kwargs):
        return None


BOMB = """
import os, sys, time
most, sleep_s = int(sys.argv[1]), float(sys.argv[2])
made = refused = 0
for _ in range(most):
    try:
        pid = os.fork()
    except OSError:
        refused += 1
        continue
    if pid == 0:
        time.sleep(sleep_s)
        os._exit(0)
    made += 1
print(f"forkbomb made {made} refused {refused}", flush=True)
time.sleep(sleep_s)
"""


class ForkBomb(Executor):
    """Once serving, starts a plain Python process (gRPC's fork handlers stay out of it) that
    forks up to `most` children which sleep `sleep_s` then exit: bounded, so a failed cap
    cannot take the machine. It prints how many forks the kernel refused."""

    def __init__(self, most: int = 200, sleep_s: float = 60.0, after_s: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        _later(after_s, lambda: subprocess.Popen([sys.executable, "-c", BOMB, str(most), str(sleep_s)]))

    @requests
    def noop(self, **kwargs):
        return None
