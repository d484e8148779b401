"""The join loop, driven by a scripted clock instead of real sleeps."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator

import pytest

from muster.discovery import Backend, BackendUnavailableError, Entry
from muster.discovery.backend import WatchEvent
from muster.discovery.heartbeat import FIRST_RETRY_SECONDS, Heartbeat
from muster.discovery.memory import MemoryBackend, MemoryCluster
from muster.logs import event_fields

NODE = Entry.parse("10.0.0.1:2375")


class ScriptedClock:
    """Records every pause the loop asks for and stops it after ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pauses: list[float] = []
        self.heartbeat: Heartbeat | None = None

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        if len(self.pauses) >= self.limit and self.heartbeat is not None:
            self.heartbeat.stop()
        await asyncio.sleep(0)


class FlakyBackend(Backend):
    """Fails the first ``failures`` registrations, then accepts them all."""

    def __init__(self, failures: int, *, can_leave: bool = True) -> None:
        super().__init__("flaky")
        self.failures_left = failures
        self.can_leave = can_leave
        self.registered: list[Entry] = []
        self.left: list[Entry] = []

    @classmethod
    def from_url(cls, scheme: str, rest: str, **kwargs: object) -> FlakyBackend:
        raise NotImplementedError

    @property
    def supports_register(self) -> bool:
        return True

    async def register(self, entry: Entry) -> None:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise BackendUnavailableError("store is down")
        self.registered.append(entry)

    async def deregister(self, entry: Entry) -> None:
        if not self.can_leave:
            await super().deregister(entry)
        self.left.append(entry)

    async def observe(self) -> AsyncGenerator[WatchEvent, None]:
        raise NotImplementedError
        yield  # pragma: no cover


def make(backend: Backend, clock: ScriptedClock, **kwargs: float) -> Heartbeat:
    heart = Heartbeat(
        backend,
        NODE,
        heartbeat_seconds=kwargs.get("heartbeat_seconds", 60.0),
        delay_seconds=kwargs.get("delay_seconds", 0.0),
        sleep=clock.sleep,
        rng=random.Random(7),
    )
    clock.heartbeat = heart
    return heart


async def test_registers_once_every_heartbeat() -> None:
    clock = ScriptedClock(limit=3)
    backend = FlakyBackend(failures=0)

    await make(backend, clock).run()

    assert backend.registered == [NODE, NODE, NODE]
    assert clock.pauses == [60.0, 60.0, 60.0]


async def test_failure_is_retried_sooner_with_growing_capped_backoff() -> None:
    clock = ScriptedClock(limit=8)
    backend = FlakyBackend(failures=6)

    await make(backend, clock, heartbeat_seconds=4.0).run()

    retries = clock.pauses[:6]
    ceilings = [min(FIRST_RETRY_SECONDS * 2**n, 4.0) for n in range(6)]
    for pause, ceiling in zip(retries, ceilings, strict=True):
        assert ceiling / 2 <= pause <= ceiling
    assert clock.pauses[6:] == [4.0, 4.0]
    assert backend.registered == [NODE, NODE]


async def test_each_failed_attempt_is_logged_once_as_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="muster.discovery.heartbeat")
    clock = ScriptedClock(limit=4)

    await make(FlakyBackend(failures=3), clock).run()

    failures = [r for r in caplog.records if r.getMessage() == "node.register_failed"]
    assert [event_fields(r)["attempt"] for r in failures] == [1, 2, 3]
    assert all(r.levelno == logging.WARNING for r in failures)
    assert event_fields(failures[0])["node"] == "10.0.0.1:2375"
    recovered = [r for r in caplog.records if r.getMessage() == "node.registered"]
    assert event_fields(recovered[0])["attempt"] == 4


async def test_start_is_delayed_by_a_random_time_below_delay() -> None:
    clock = ScriptedClock(limit=2)
    backend = FlakyBackend(failures=0)

    await make(backend, clock, delay_seconds=30.0).run()

    assert 0 <= clock.pauses[0] < 30.0
    assert clock.pauses[1] == 60.0
    assert backend.registered == [NODE]


async def test_stop_leaves_the_cluster() -> None:
    backend = FlakyBackend(failures=0)

    await make(backend, ScriptedClock(limit=1)).run()

    assert backend.left == [NODE]


async def test_leave_on_a_backend_that_cannot_is_skipped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="muster.discovery.heartbeat")
    backend = FlakyBackend(failures=0, can_leave=False)

    await make(backend, ScriptedClock(limit=1)).run()

    assert backend.left == []
    assert "node.leave_skipped" in [r.getMessage() for r in caplog.records]


async def test_stop_interrupts_a_long_pause_at_once() -> None:
    cluster = MemoryCluster()
    backend = MemoryBackend("stop-now", cluster=cluster)
    heart = Heartbeat(backend, NODE, heartbeat_seconds=3600.0)

    task = asyncio.create_task(heart.run())
    await cluster.wait_for_change(timeout_seconds=5)
    assert NODE in cluster.members()
    heart.stop()
    await asyncio.wait_for(task, timeout=5)

    assert NODE not in cluster.members()
    assert heart.registrations == 1


def test_rejects_a_negative_delay() -> None:
    with pytest.raises(ValueError, match="-1"):
        Heartbeat(FlakyBackend(0), NODE, heartbeat_seconds=1.0, delay_seconds=-1.0)
