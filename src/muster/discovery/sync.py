"""Use a discovery backend from code that does not run asyncio.

:class:`SyncBackend` owns an event loop that runs in a daemon thread of its own.
Each call is handed to that loop and the calling thread waits for the outcome; an
error raised on the loop is raised again, the very same object, in the caller's
thread. A watch is read with a plain ``for`` loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

from .backend import Backend, Watch, WatchEvent, fetch_membership
from .entry import Entries, Entry
from .registry import create_backend

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class SyncBackend:
    """Register, deregister and watch through a backend without writing async code.

    Closing the facade stops its watches, closes the backend and ends the thread;
    use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._lock = threading.Lock()
        self._closed = False
        self._watches: set[SyncWatch] = set()
        self._loop = _LoopThread(f"muster-sync-{backend.scheme}")

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        heartbeat_seconds: float = 60.0,
        ttl_seconds: float = 180.0,
        options: Mapping[str, str] | None = None,
    ) -> Self:
        """Make the backend a discovery URL names and wrap it."""
        backend = create_backend(
            url,
            heartbeat_seconds=heartbeat_seconds,
            ttl_seconds=ttl_seconds,
            options=options,
        )
        return cls(backend)

    def register(self, entry: Entry) -> None:
        """Add or refresh ``entry`` for one TTL."""
        self._call(lambda: self.backend.register(entry))

    def deregister(self, entry: Entry) -> None:
        """Remove ``entry`` at once."""
        self._call(lambda: self.backend.deregister(entry))

    def membership(self, timeout_seconds: float) -> Entries:
        """Return the current members; raise the first failure, or "Timed out"."""
        return self._call(lambda: fetch_membership(self.backend, timeout_seconds))

    def watch(self) -> SyncWatch:
        """Follow the membership: the whole of it first, then each change."""
        with self._lock:
            self._check_open()
            watch = SyncWatch(self._loop, self.backend.watch(), self._forget)
            self._watches.add(watch)
        return watch

    def close(self) -> None:
        """Stop every watch, close the backend, and end the event loop's thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watches = list(self._watches)

        try:
            for watch in watches:
                watch.stop()
            self._loop.call(self.backend.aclose)
        finally:
            self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        self._check_open()
        return self._loop.call(make)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this SyncBackend is closed")

    def _forget(self, watch: SyncWatch) -> None:
        with self._lock:
            self._watches.discard(watch)


class SyncWatch:
    """A watch read from a plain thread: iterate it, then :meth:`stop` it.

    It yields what :class:`~muster.discovery.backend.Watch` yields: memberships,
    and :class:`~muster.errors.BackendError` items for failures it survived.
    """

    def __init__(
        self,
        loop: _LoopThread,
        watch: Watch,
        forget: Callable[[SyncWatch], None],
    ) -> None:
        self._loop = loop
        self._watch = watch
        self._forget = forget
        self._reading = threading.Lock()
        self._stopping = threading.Lock()
        self._stopped = False
        self._ended = False
        # A step of the watch that outlived a timeout; the next call waits for it
        # rather than starting another, so no event is lost or read twice.
        self._pending: concurrent.futures.Future[WatchEvent | None] | None = None

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> WatchEvent:
        event = self.next_event()
        if event is None:
            raise StopIteration
        return event

    def next_event(self, timeout_seconds: float | None = None) -> WatchEvent | None:
        """Wait for the next change or failure; return None once the watch ended.

        Raises:
            TimeoutError: nothing came within ``timeout_seconds``; the watch goes
                on and a later call still gets what comes next.
        """
        with self._reading:
            if self._ended:
                return None
            if self._pending is None:
                if self._stopped:
                    return None
                self._pending = self._loop.submit(self._pull)

            step = self._pending
            done, _ = concurrent.futures.wait([step], timeout_seconds)
            if not done:
                raise TimeoutError(f"no watch event within {timeout_seconds} seconds")

            self._pending = None
            try:
                event = step.result()
            except concurrent.futures.CancelledError:
                event = None  # the loop shut down under the step
            if event is None:
                self._ended = True
            return event

    def stop(self) -> None:
        """End the watch; a thread waiting in it sees it end."""
        with self._stopping:
            if self._stopped:
                return
            self._stopped = True
            try:
                self._loop.call(self._watch.stop)
            finally:
                self._forget(self)

    close = stop

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _pull(self) -> WatchEvent | None:
        # StopAsyncIteration cannot cross into the caller's thread as an ending,
        # so the end of the watch travels as None.
        try:
            return await anext(self._watch)
        except StopAsyncIteration:
            return None


class _LoopThread:
    """An event loop running in a daemon thread, with calls handed to it."""

    def __init__(self, name: str) -> None:
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        # A daemon thread, so a facade nobody closed cannot hold up interpreter exit.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._loop is None:
            raise RuntimeError("the SyncBackend event loop did not start")

    def submit(
        self, make: Callable[[], Coroutine[Any, Any, _T]]
    ) -> concurrent.futures.Future[_T]:
        """Start a coroutine on the loop and return a future of its outcome."""
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "a SyncBackend cannot be called from its own event loop: "
                "await the Backend there instead"
            )
        if self._loop is None or self._loop.is_closed():
            raise RuntimeError("this SyncBackend is closed")

        coroutine = make()
        try:
            return asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        except RuntimeError:
            coroutine.close()  # the loop closed meanwhile; no "never awaited" warning
            raise RuntimeError("this SyncBackend is closed") from None

    def call(self, make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        """Run a coroutine on the loop and wait for its result or its error."""
        future = self.submit(make)
        try:
            return future.result()
        except BaseException:
            # Interrupted (Ctrl-C) while waiting: do not leave the work running.
            future.cancel()
            raise

    def close(self) -> None:
        """End the loop, cancelling what still runs on it, and join the thread."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            # The loop may close between the check and the call; then it is done.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        try:
            # The runner cancels leftover tasks and closes async generators and
            # the default executor before it closes the loop.
            with asyncio.Runner() as runner:
                runner.run(self._serve())
        except BaseException:  # nobody joins this thread to hear of it otherwise
            logger.exception("sync.loop_failed")
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._ready.set()
        logger.debug("sync.loop.start", extra={"thread": self._thread.name})
        await self._stopping.wait()
        logger.debug("sync.loop.stop", extra={"thread": self._thread.name})
