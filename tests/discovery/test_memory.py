"""``memory://``: clusters held in this process."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from muster.discovery import Entries, Entry, create_backend
from muster.discovery.memory import MemoryBackend, MemoryCluster

A = Entry("10.0.0.1", 2375)
B = Entry("10.0.0.2", 2375)

_names = itertools.count()


@pytest.fixture
def name() -> str:
    """A cluster name no other test uses: clusters are shared process-wide."""
    return f"test-memory-{next(_names)}"


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_members_are_registered_entries_within_their_ttl() -> None:
    clock = FakeClock()
    cluster = MemoryCluster(clock)
    cluster.register(A, ttl_seconds=10)
    cluster.register(B, ttl_seconds=20)

    clock.now += 15

    assert cluster.members() == Entries([B])
    assert cluster.next_expiry() == 1020.0


def test_registering_again_pushes_the_expiry_back() -> None:
    clock = FakeClock()
    cluster = MemoryCluster(clock)
    cluster.register(A, ttl_seconds=10)
    clock.now += 8

    cluster.register(A, ttl_seconds=10)
    clock.now += 8

    assert cluster.members() == Entries([A])


def test_next_expiry_is_none_for_an_empty_cluster() -> None:
    assert MemoryCluster(FakeClock()).next_expiry() is None


def test_backends_of_the_same_name_share_a_cluster(name: str) -> None:
    first = create_backend(f"memory://{name}")
    second = create_backend(f"memory://{name}")
    other = create_backend(f"memory://{name}-other")

    assert isinstance(first, MemoryBackend)
    assert isinstance(second, MemoryBackend)
    assert isinstance(other, MemoryBackend)
    assert first.cluster is second.cluster
    assert first.cluster is not other.cluster


def test_a_memory_url_without_a_name_uses_the_default_cluster() -> None:
    backend = create_backend("memory://")

    assert isinstance(backend, MemoryBackend)
    assert backend.name == "default"


async def test_a_watch_sees_joins_and_leaves(name: str) -> None:
    backend = MemoryBackend(name, cluster=MemoryCluster(FakeClock()))

    async with backend.watch() as watch:
        assert await anext(watch) == Entries()
        await backend.register(A)
        assert await anext(watch) == Entries([A])
        await backend.register(B)
        assert await anext(watch) == Entries([A, B])
        await backend.deregister(A)
        assert await anext(watch) == Entries([B])


async def test_a_join_while_the_reader_is_busy_is_not_lost() -> None:
    backend = MemoryBackend(cluster=MemoryCluster(FakeClock()), ttl_seconds=60)
    watch = backend.watch()
    assert await anext(watch) == Entries()

    await backend.register(A)  # nobody waits inside the watch at this moment

    assert await asyncio.wait_for(anext(watch), timeout=1) == Entries([A])
    await watch.stop()


async def test_an_expiry_while_the_reader_is_busy_is_not_lost() -> None:
    clock = FakeClock()
    backend = MemoryBackend(cluster=MemoryCluster(clock), ttl_seconds=10)
    await backend.register(A)
    watch = backend.watch()
    assert await anext(watch) == Entries([A])

    clock.now += 11  # the TTL runs out before the reader comes back

    assert await asyncio.wait_for(anext(watch), timeout=1) == Entries()
    await watch.stop()


async def test_refreshing_a_member_does_not_wake_the_watch() -> None:
    backend = MemoryBackend(cluster=MemoryCluster(FakeClock()), ttl_seconds=60)
    await backend.register(A)

    async with backend.watch() as watch:
        assert await anext(watch) == Entries([A])
        await backend.register(A)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(watch), timeout=0.05)


async def test_memory_backends_support_registering() -> None:
    backend = MemoryBackend(cluster=MemoryCluster())

    assert backend.supports_register
