"""The interface every discovery backend implements, and the watch it hands out."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncGenerator, Mapping
from types import TracebackType
from typing import ClassVar, Self

from muster.errors import (
    BackendError,
    InvalidOptionError,
    UnsupportedOperationError,
    WatchTimeoutError,
)

from .entry import Entries, Entry

#: What a watch yields: a membership, or a failure it survived and will retry.
WatchEvent = Entries | BackendError


class Backend(abc.ABC):
    """A way to join a cluster and to follow who is in it.

    A backend is made from the rest of a discovery URL by :meth:`from_url`. Backends
    that cannot register nodes (a fixed list, a file) raise
    :class:`UnsupportedOperationError` from :meth:`register` and :meth:`deregister`.
    """

    #: The options this backend accepts; anything else is rejected when it is made.
    known_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        scheme: str,
        *,
        heartbeat_seconds: float = 60.0,
        ttl_seconds: float = 180.0,
        options: Mapping[str, str] | None = None,
    ) -> None:
        options = options or {}
        unknown = sorted(set(options) - self.known_options)
        if unknown:
            allowed = ", ".join(sorted(self.known_options)) or "none"
            raise InvalidOptionError(
                f"unknown discovery option {unknown[0]!r} for {scheme}://; "
                f"options it accepts: {allowed}"
            )
        self.scheme = scheme
        self.heartbeat_seconds = heartbeat_seconds
        self.ttl_seconds = ttl_seconds
        self.options = dict(options)

    @classmethod
    @abc.abstractmethod
    def from_url(
        cls,
        scheme: str,
        rest: str,
        *,
        heartbeat_seconds: float,
        ttl_seconds: float,
        options: Mapping[str, str],
    ) -> Self:
        """Make the backend for ``scheme://rest``."""

    @property
    def supports_register(self) -> bool:
        """Whether nodes can join through this backend."""
        return False

    async def register(self, entry: Entry) -> None:
        """Add or refresh ``entry`` for one TTL."""
        raise UnsupportedOperationError(self.scheme, "registering nodes")

    async def deregister(self, entry: Entry) -> None:
        """Remove ``entry`` at once: a graceful leave."""
        raise UnsupportedOperationError(self.scheme, "removing nodes")

    def watch(self) -> Watch:
        """Follow the membership: the whole of it first, then each change."""
        return Watch(self.observe())

    @abc.abstractmethod
    def observe(self) -> AsyncGenerator[WatchEvent, None]:
        """Yield what the backend holds each time it looks, and each failure.

        The same membership may come several times in a row; :class:`Watch`
        passes on only the changes. A failure is yielded, never raised, so that the
        watch goes on after it.
        """

    async def aclose(self) -> None:  # noqa: B027 - most backends hold nothing
        """Release connections the backend holds."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Watch:
    """An async iterator of membership changes and the failures met on the way.

    It yields the whole membership first, then a new one only when it differs from
    the last one yielded, or when it is the first after a failure (the sign that
    the backend is reachable again). A :class:`BackendError` comes as an item,
    not as a raised exception, so the watch outlives it; its type keeps a caller
    from mistaking it for a membership. Leave it with :meth:`stop`, or use it as
    an async context manager.
    """

    def __init__(self, source: AsyncGenerator[WatchEvent, None]) -> None:
        self._source = source
        self._last: Entries | None = None
        self._stopped = False
        # The task waiting inside the source, if any, so that stop() from another
        # task can interrupt it: an async generator cannot be closed while it runs.
        self._reader: asyncio.Task[object] | None = None
        self._interrupted = False
        self._reader_left = asyncio.Event()
        self._stop_done: asyncio.Event | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> WatchEvent:
        if self._stopped:
            raise StopAsyncIteration

        reader = self._reader = asyncio.current_task()
        try:
            async for event in self._source:
                if isinstance(event, Entries):
                    if event == self._last:
                        continue
                    self._last = event
                else:
                    # After a failure the next membership is passed on even if
                    # unchanged: it tells the caller the backend is back.
                    self._last = None
                return event
        except asyncio.CancelledError:
            # stop() cancelled us and nobody else did: the watch simply ended.
            if self._interrupted and reader is not None and reader.uncancel() == 0:
                raise StopAsyncIteration from None
            raise
        finally:
            self._reader = None
            self._reader_left.set()
        raise StopAsyncIteration

    async def stop(self) -> None:
        """End the watch and release what it holds.

        It may be called from another task while one waits for the next item;
        that task then sees the watch end.
        """
        self._stopped = True
        if self._stop_done is not None:
            # Another stop() is closing the source; closing it twice at once fails.
            await self._stop_done.wait()
            return

        self._stop_done = asyncio.Event()
        try:
            reader = self._reader
            if reader is not None and reader is not asyncio.current_task():
                self._interrupted = True
                self._reader_left.clear()
                reader.cancel()
                await self._reader_left.wait()
            await self._source.aclose()
        finally:
            self._stop_done.set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def fetch_membership(backend: Backend, timeout_seconds: float) -> Entries:
    """Return the current membership, raising the first failure met, as Swarm's
    ``list`` does."""
    async with backend.watch() as watch:
        try:
            async with asyncio.timeout(timeout_seconds):
                event = await anext(watch)
        except TimeoutError:
            raise WatchTimeoutError("Timed out") from None

    if isinstance(event, BackendError):
        raise event
    return event
