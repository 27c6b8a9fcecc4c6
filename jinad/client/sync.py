"""A blocking twin of the async `Client`, for scripts and Jupyter notebooks.

    with SyncClient() as jd:        # the local daemon (or SyncClient(URL, token=...))
        ws = jd.upload("my_folder")
        pea = jd.create("pea", workspace_id=ws["id"], uses="Upper", py_modules=["upper.py"])
        for entry in jd.logs(pea["id"], follow=False):
            print(entry)

The async client runs on a private event loop in a daemon thread, so calls work the same
whether or not the calling thread already runs a loop (as a notebook does). A client that is
never closed is closed when it is collected or when Python exits, so its HTTP session does not
end in "Unclosed client session" warnings.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
import weakref
from typing import Any, Awaitable, Iterator, TypeVar

from .api import Client

T = TypeVar("T")


class SyncClient:
    """Every coroutine method of `Client` (status, upload, create, create_flow, list, get,
    restart, delete, ...) as a blocking call; `logs()` as a plain iterator."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 600.0, **tls: Any) -> None:
        """`tls`: Client's tls_ca, tls_cert, tls_key or ssl_context."""
        self._client = Client(url, token, timeout, **tls)  # no URL, no token: as `Client` finds them
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jinad-sync-client", daemon=True)
        self._thread.start()
        # Holds no reference to self, so an unclosed client can still be collected.
        self._closer = weakref.finalize(self, _shut_down, self._loop, self._thread, self._client)

    def __enter__(self) -> "SyncClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        """Client's coroutine methods as blocking calls, its plain attributes (url, token) as they
        are; private names and the session (bound to the private loop) are not handed out."""
        if name.startswith("_") or isinstance(found := inspect.getattr_static(self._client, name), property):
            raise AttributeError(f"SyncClient has no {name!r}")
        if not inspect.iscoroutinefunction(found):
            return found
        method = getattr(self._client, name)

        @functools.wraps(method)
        def blocking(*args: Any, **kwargs: Any) -> Any:
            return self._run(method(*args, **kwargs))

        return blocking

    def _run(self, coro: Awaitable[T]) -> T:
        """Run a coroutine on the private loop and wait for it; Ctrl-C cancels it."""
        if not self._closer.alive:
            coro.close()  # never awaited, and no warning that says so
            raise RuntimeError("this SyncClient is closed; make a new one")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def logs(self, object_id: str, **options: Any) -> Iterator[dict]:
        """`Client.logs` as a plain iterator; leaving the loop early closes the stream."""
        stream = self._client.logs(object_id, **options)
        try:
            while True:
                try:
                    yield self._run(anext(stream))
                except StopAsyncIteration:
                    return
        finally:
            if self._loop.is_running():
                # A step cancelled by Ctrl-C may still be unwinding the stream: it closes it itself.
                with contextlib.suppress(RuntimeError):
                    self._run(stream.aclose())

    def close(self) -> None:
        """Close the HTTP session, then stop and close the private loop (once)."""
        self._closer()


def _shut_down(loop: asyncio.AbstractEventLoop, thread: threading.Thread, client: Client) -> None:
    if threading.current_thread() is thread:  # collected on its own loop's thread: it cannot wait there
        loop.create_task(client.close()).add_done_callback(lambda _: loop.stop())
        return
    with contextlib.suppress(RuntimeError):  # the loop may already be gone at the interpreter's exit
        asyncio.run_coroutine_threadsafe(client.close(), loop).result()
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()
