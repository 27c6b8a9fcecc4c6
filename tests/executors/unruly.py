"""Executors that make stopping hard: one leaves an escaped grandchild, one ignores signals."""

import signal
import subprocess
import sys

from jina import Executor, requests


class Forker(Executor):
    """Starts a grandchild in a session of its own, as a daemonizing tool would."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
        print(f"forker grandchild {child.pid}", flush=True)

    @requests
    def noop(self, **kwargs):
        return None


class Stubborn(Executor):
    """Ignores SIGTERM and SIGINT: only SIGKILL ends it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("stubborn ignores SIGTERM and SIGINT", flush=True)

    @requests
    def noop(self, **kwargs):
        return None


class Quitter(Executor):
    """Serves for a moment, then exits with code 3, every time it is started."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        import os
        import threading

        threading.Timer(1.0, os._exit, args=(3,)).start()

    @requests
    def noop(self, **kwargs):
        return None


class Deserter(Executor):
    """Leaves a grandchild in a session of its own (keeping the markers), then exits with code 3."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        import os
        import threading

        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
        print(f"deserter grandchild {child.pid}", flush=True)
        threading.Timer(1.0, os._exit, args=(3,)).start()

    @requests
    def noop(self, **kwargs):
        return None


class Saboteur(Executor):
    """Logs an error at its first request with documents (not the empty one of an HTTP gateway's
    /dry_run), then kills its own process (a part of its Flow)."""

    @requests
    def sabotage(self, docs, **kwargs):
        import os
        import signal

        if not docs:
            return docs

        self.logger.error("the disk under /data is gone")
        os.kill(os.getpid(), signal.SIGKILL)
