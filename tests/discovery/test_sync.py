"""SyncBackend: a backend driven from plain threads."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Self

import pytest

from muster.discovery import (
    Backend,
    BackendUnavailableError,
    Entries,
    Entry,
    SyncBackend,
    UnsupportedOperationError,
    WatchEvent,
    WatchTimeoutError,
)
from muster.discovery.memory import MemoryBackend, MemoryCluster

pytestmark = [pytest.mark.timeout(20), pytest.mark.filterwarnings("error")]

A = Entry("10.0.0.1", 2375)
B = Entry("10.0.0.2", 2375)
_names = itertools.count()


class SilentBackend(Backend):
    """Never reports a membership; fails registrations with a given error."""

    def __init__(self, failure: Exception | None = None) -> None:
        super().__init__("silent")
        self.failure = failure or BackendUnavailableError("store down")
        self.released = False
        self.watch_closed = threading.Event()

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
        return cls()

    async def register(self, entry: Entry) -> None:
        raise self.failure

    async def observe(self) -> AsyncGenerator[WatchEvent, None]:
        try:
            await asyncio.get_running_loop().create_future()
            yield Entries()  # pragma: no cover - never reached
        finally:
            self.watch_closed.set()

    async def aclose(self) -> None:
        self.released = True


def sync_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("muster-sync-")]


@pytest.fixture
def memory() -> SyncBackend:
    """A facade over a fresh in-memory cluster; closed by the test."""
    return SyncBackend.from_url(f"memory://sync-test-{next(_names)}", ttl_seconds=60)


def test_register_then_membership_lists_the_entry(memory: SyncBackend) -> None:
    with memory:
        memory.register(A)
        memory.register(B)
        memory.deregister(A)

        assert memory.membership(timeout_seconds=5) == Entries([B])


def test_from_url_builds_the_named_backend_with_its_settings() -> None:
    with SyncBackend.from_url(
        "memory://sync-settings", heartbeat_seconds=5, ttl_seconds=15
    ) as facade:
        assert isinstance(facade.backend, MemoryBackend)
        assert facade.backend.heartbeat_seconds == 5
        assert facade.backend.ttl_seconds == 15


def test_an_error_raised_on_the_loop_is_raised_unchanged_in_the_caller() -> None:
    backend = SilentBackend()

    with (
        SyncBackend(backend) as facade,
        pytest.raises(BackendUnavailableError) as caught,
    ):
        facade.register(A)

    assert caught.value is backend.failure


def test_an_unsupported_operation_is_raised_in_the_caller() -> None:
    with SyncBackend.from_url("nodes://a:1") as facade:
        with pytest.raises(UnsupportedOperationError, match="nodes://"):
            facade.register(A)
        assert facade.membership(timeout_seconds=5) == Entries([Entry("a", 1)])


def test_membership_times_out_when_nothing_arrives() -> None:
    with (
        SyncBackend(SilentBackend()) as facade,
        pytest.raises(WatchTimeoutError, match=r"^Timed out$"),
    ):
        facade.membership(timeout_seconds=0.05)


def test_a_watch_yields_the_membership_then_each_change(memory: SyncBackend) -> None:
    with memory, memory.watch() as watch:
        first = next(watch)
        memory.register(A)
        second = next(watch)

    assert first == Entries()
    assert second == Entries([A])


def test_a_watch_yields_failures_as_items(tmp_path: Path) -> None:
    path = tmp_path / "nodes"

    with SyncBackend.from_url(f"file://{path}") as facade, facade.watch() as watch:
        failure = next(watch)
        path.write_text("a:1\n")
        recovered = next(watch)

    assert isinstance(failure, BackendUnavailableError)
    assert recovered == Entries([Entry("a", 1)])


def test_next_event_times_out_without_losing_what_comes_later(
    memory: SyncBackend,
) -> None:
    with memory, memory.watch() as watch:
        assert watch.next_event(timeout_seconds=5) == Entries()
        with pytest.raises(TimeoutError):
            watch.next_event(timeout_seconds=0.05)
        memory.register(A)

        assert watch.next_event(timeout_seconds=5) == Entries([A])


def test_stop_from_another_thread_ends_a_blocked_iteration(
    memory: SyncBackend,
) -> None:
    seen: list[WatchEvent] = []
    with memory:
        watch = memory.watch()
        first_seen = threading.Event()

        def follow() -> None:
            for event in watch:
                seen.append(event)
                first_seen.set()

        reader = threading.Thread(target=follow)
        reader.start()
        assert first_seen.wait(5)

        watch.stop()
        reader.join(5)

    assert not reader.is_alive()
    assert seen == [Entries()]
    assert watch.next_event() is None


def test_close_stops_watches_releases_the_backend_and_ends_the_thread() -> None:
    backend = SilentBackend()
    facade = SyncBackend(backend)
    watch = facade.watch()
    with pytest.raises(TimeoutError):
        watch.next_event(timeout_seconds=0.05)

    facade.close()

    assert backend.watch_closed.is_set()
    assert backend.released
    assert watch.next_event() is None
    assert sync_threads() == []


def test_a_closed_facade_refuses_calls_and_closes_twice_quietly(
    memory: SyncBackend,
) -> None:
    memory.close()
    memory.close()

    with pytest.raises(RuntimeError, match="closed"):
        memory.register(A)
    with pytest.raises(RuntimeError, match="closed"):
        memory.watch()


def test_the_loop_thread_is_a_daemon() -> None:
    with SyncBackend(MemoryBackend(cluster=MemoryCluster())):
        threads = sync_threads()

        assert len(threads) == 1
        assert threads[0].daemon
