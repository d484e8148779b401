"""``nodes://``: a fixed list of addresses written in the URL."""

from __future__ import annotations

import asyncio

import pytest

from muster.discovery import (
    Entries,
    Entry,
    InvalidEntryError,
    UnsupportedOperationError,
    create_backend,
)
from muster.discovery.nodes import NodesBackend


def test_the_list_is_read_with_ranges_and_ipv6() -> None:
    backend = NodesBackend.from_url(
        "nodes",
        "10.0.0.[1:2]:2375,[2001:db8::2]:2375",
        heartbeat_seconds=60,
        ttl_seconds=180,
        options={},
    )

    assert backend.entries.addresses() == [
        "10.0.0.1:2375",
        "10.0.0.2:2375",
        "[2001:db8::2]:2375",
    ]


def test_empty_items_in_the_list_are_skipped() -> None:
    backend = create_backend("nodes://a:1,, b:2 ,")

    assert isinstance(backend, NodesBackend)
    assert backend.entries.addresses() == ["a:1", "b:2"]


@pytest.mark.parametrize("rest", ["", ",", "10.0.0.[5:1]:2375"])
def test_a_list_with_no_address_is_rejected(rest: str) -> None:
    with pytest.raises(InvalidEntryError, match="holds no address"):
        create_backend(f"nodes://{rest}")


def test_a_bad_address_hints_that_a_scheme_may_be_missing() -> None:
    with pytest.raises(InvalidEntryError, match="needs a scheme") as caught:
        create_backend("consul-server")

    assert "'consul-server'" in str(caught.value)


async def test_the_watch_yields_the_list_once_then_nothing() -> None:
    backend = create_backend("a:1,b:2")

    async with backend.watch() as watch:
        assert await anext(watch) == Entries.parse(["a:1", "b:2"])
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(watch), timeout=0.05)


async def test_nodes_cannot_join_or_leave() -> None:
    backend = create_backend("a:1")

    assert not backend.supports_register
    with pytest.raises(UnsupportedOperationError, match="nodes://"):
        await backend.register(Entry("c", 3))
    with pytest.raises(UnsupportedOperationError, match="nodes://"):
        await backend.deregister(Entry("a", 1))
