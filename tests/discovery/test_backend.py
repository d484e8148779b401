"""The Backend interface and its Watch, driven by a scripted backend."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Self

import pytest

from muster.discovery import (
    Backend,
    BackendResponseError,
    BackendUnavailableError,
    Entries,
    Entry,
    InvalidOptionError,
    UnsupportedOperationError,
    WatchEvent,
    WatchTimeoutError,
    fetch_membership,
)


def members(*addresses: str) -> Entries:
    return Entries.parse(addresses)


class ScriptedBackend(Backend):
    """Yields the events it was given, then waits until the watch is closed."""

    known_options = frozenset({"color"})

    def __init__(
        self,
        script: Sequence[WatchEvent] = (),
        *,
        ends: bool = False,
        options: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__("scripted", options=options)
        self.script = list(script)
        self.ends = ends
        self.started = False
        self.closed = False
        self.released = False

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
        return cls(options=options)

    async def observe(self) -> AsyncGenerator[WatchEvent, None]:
        self.started = True
        try:
            for event in self.script:
                yield event
            if not self.ends:
                await asyncio.get_running_loop().create_future()
        finally:
            self.closed = True

    async def aclose(self) -> None:
        self.released = True


async def collect(backend: Backend, count: int) -> list[WatchEvent]:
    events: list[WatchEvent] = []
    async with backend.watch() as watch:
        async for event in watch:
            events.append(event)
            if len(events) == count:
                break
    return events


async def test_watch_yields_the_first_membership() -> None:
    backend = ScriptedBackend([members("a:1")])

    assert await collect(backend, 1) == [members("a:1")]


async def test_watch_skips_a_membership_equal_to_the_last_one() -> None:
    backend = ScriptedBackend(
        [members("a:1", "b:1"), members("b:1", "a:1"), members("c:1")]
    )

    assert await collect(backend, 2) == [members("a:1", "b:1"), members("c:1")]


async def test_watch_passes_errors_through_as_items_and_goes_on() -> None:
    failure = BackendUnavailableError("store down")
    backend = ScriptedBackend([members("a:1"), failure, members("b:1")])

    events = await collect(backend, 3)

    assert events == [members("a:1"), failure, members("b:1")]
    assert events[1] is failure


async def test_watch_repeats_the_membership_once_after_an_error() -> None:
    failure = BackendUnavailableError("blip")
    script: list[WatchEvent] = [members("a:1"), failure, members("a:1"), members("a:1")]
    backend = ScriptedBackend(script, ends=True)

    events = [event async for event in backend.watch()]

    assert events == [members("a:1"), failure, members("a:1")]


async def test_watch_ends_when_its_source_ends() -> None:
    backend = ScriptedBackend([members("a:1")], ends=True)

    assert [event async for event in backend.watch()] == [members("a:1")]


async def test_stop_closes_the_source_and_ends_the_watch() -> None:
    backend = ScriptedBackend([members("a:1")])
    watch = backend.watch()
    await anext(watch)

    await watch.stop()

    assert backend.closed
    with pytest.raises(StopAsyncIteration):
        await anext(watch)


async def test_stop_from_another_task_ends_a_pending_read() -> None:
    backend = ScriptedBackend([members("a:1")])
    watch = backend.watch()
    await anext(watch)
    reader = asyncio.create_task(anext(watch))
    await asyncio.sleep(0)

    await watch.stop()

    with pytest.raises(StopAsyncIteration):
        await reader
    assert backend.closed
    assert not reader.cancelled()


async def test_stop_called_twice_at_once_closes_once() -> None:
    backend = ScriptedBackend([members("a:1")])
    watch = backend.watch()
    await anext(watch)
    reader = asyncio.create_task(anext(watch))
    await asyncio.sleep(0)

    await asyncio.gather(watch.stop(), watch.stop())

    with pytest.raises(StopAsyncIteration):
        await reader
    assert backend.closed


async def test_cancelling_a_reader_is_not_mistaken_for_a_stop() -> None:
    backend = ScriptedBackend([members("a:1")])
    watch = backend.watch()
    await anext(watch)
    reader = asyncio.create_task(anext(watch))
    await asyncio.sleep(0)

    reader.cancel()

    with pytest.raises(asyncio.CancelledError):
        await reader
    await watch.stop()


async def test_leaving_async_with_closes_the_source() -> None:
    backend = ScriptedBackend([members("a:1")])

    async with backend.watch() as watch:
        await anext(watch)

    assert backend.closed


async def test_break_and_garbage_collection_close_the_source() -> None:
    backend = ScriptedBackend([members("a:1"), members("b:1")])
    watch = backend.watch()
    async for _event in watch:
        break

    del watch
    gc.collect()
    for _ in range(5):  # the loop closes collected generators in a task of its own
        await asyncio.sleep(0)

    assert backend.closed


async def test_fetch_membership_returns_the_first_membership_and_closes() -> None:
    backend = ScriptedBackend([members("a:1"), members("b:1")])

    assert await fetch_membership(backend, timeout_seconds=5) == members("a:1")
    assert backend.closed


async def test_fetch_membership_raises_the_first_error() -> None:
    failure = BackendResponseError("bad body", status=500)
    backend = ScriptedBackend([failure, members("a:1")])

    with pytest.raises(BackendResponseError) as caught:
        await fetch_membership(backend, timeout_seconds=5)

    assert caught.value is failure
    assert backend.closed


async def test_fetch_membership_times_out_when_nothing_arrives() -> None:
    backend = ScriptedBackend([])

    with pytest.raises(WatchTimeoutError, match=r"^Timed out$"):
        await fetch_membership(backend, timeout_seconds=0.01)

    assert backend.closed


async def test_register_and_deregister_are_unsupported_by_default() -> None:
    backend = ScriptedBackend()

    with pytest.raises(UnsupportedOperationError, match="scripted://") as caught:
        await backend.register(Entry("a", 1))
    with pytest.raises(UnsupportedOperationError):
        await backend.deregister(Entry("a", 1))

    assert caught.value.scheme == "scripted"
    assert not backend.supports_register


def test_an_unknown_option_is_rejected_naming_the_accepted_ones() -> None:
    with pytest.raises(InvalidOptionError, match=r"'shape'.*color"):
        ScriptedBackend(options={"shape": "round"})


def test_a_known_option_is_kept() -> None:
    assert ScriptedBackend(options={"color": "red"}).options == {"color": "red"}


async def test_async_with_on_a_backend_releases_it() -> None:
    async with ScriptedBackend() as backend:
        pass

    assert backend.released
