"""Fixtures shared by the token service tests: a fake clock and an open store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from muster.service.store import Store

#: A fixed start time: 2026-12-03T18:00:00Z.
START = 1796320800.0


class FakeClock:
    """Wall-clock time that moves only when a test says so."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "data", now=clock, max_nodes=3)
    yield opened
    await opened.close()
