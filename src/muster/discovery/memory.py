"""``memory://NAME``: clusters kept in this process, for embedding and for tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import ClassVar, Self

from .backend import Backend, WatchEvent
from .entry import Entries, Entry

Clock = Callable[[], float]


class MemoryCluster:
    """One named cluster held in memory: entries with an expiry time each."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._expires_at: dict[Entry, float] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        #: Counts joins and leaves, so a watcher can tell it missed one.
        self.version = 0

    def register(self, entry: Entry, ttl_seconds: float) -> None:
        """Add ``entry`` or push its expiry ``ttl_seconds`` from now."""
        joined = entry not in self.members()
        self._expires_at[entry] = self.clock() + ttl_seconds
        if joined:
            self._notify()

    def deregister(self, entry: Entry) -> None:
        """Remove ``entry`` at once."""
        if self._expires_at.pop(entry, None) is not None:
            self._notify()

    def members(self) -> Entries:
        """Return the entries whose TTL has not run out."""
        now = self.clock()
        return Entries(e for e, expiry in self._expires_at.items() if expiry > now)

    def next_expiry(self) -> float | None:
        """Return when the next live entry expires, on the cluster's clock."""
        now = self.clock()
        upcoming = [expiry for expiry in self._expires_at.values() if expiry > now]
        return min(upcoming, default=None)

    async def wait_for_change(
        self, timeout_seconds: float | None, *, seen_version: int | None = None
    ) -> None:
        """Wait until an entry joins or leaves, or the timeout passes.

        With ``seen_version``, return at once if a change came after that version.
        """
        if seen_version is not None and seen_version != self.version:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout_seconds)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)

    def _notify(self) -> None:
        self.version += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


class MemoryBackend(Backend):
    """Nodes register into a cluster shared by every backend of the same name."""

    clusters: ClassVar[dict[str, MemoryCluster]] = {}

    def __init__(
        self,
        name: str = "default",
        *,
        cluster: MemoryCluster | None = None,
        scheme: str = "memory",
        heartbeat_seconds: float = 60.0,
        ttl_seconds: float = 180.0,
        options: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            scheme,
            heartbeat_seconds=heartbeat_seconds,
            ttl_seconds=ttl_seconds,
            options=options,
        )
        if cluster is None:
            cluster = self.clusters.setdefault(name, MemoryCluster())
        self.name = name
        self.cluster = cluster

    @classmethod
    def from_url(
        cls,
        scheme: str,
        rest: str,
        *,
        heartbeat_seconds: float,
        ttl_seconds: float,
        options: Mapping[str, str],
    ) -> Self:
        return cls(
            rest or "default",
            scheme=scheme,
            heartbeat_seconds=heartbeat_seconds,
            ttl_seconds=ttl_seconds,
            options=options,
        )

    @property
    def supports_register(self) -> bool:
        return True

    async def register(self, entry: Entry) -> None:
        self.cluster.register(entry, self.ttl_seconds)

    async def deregister(self, entry: Entry) -> None:
        self.cluster.deregister(entry)

    async def observe(self) -> AsyncGenerator[WatchEvent, None]:
        while True:
            # Note the version and the next expiry together with the membership:
            # the reader may come back only after a join, a leave or that expiry,
            # and each must still wake us then.
            version = self.cluster.version
            expiry = self.cluster.next_expiry()
            yield self.cluster.members()

            # Wake for a join or leave, and at the next expiry, whichever is first.
            timeout = (
                None if expiry is None else max(0.0, expiry - self.cluster.clock())
            )
            await self.cluster.wait_for_change(timeout, seen_version=version)
