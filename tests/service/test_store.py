"""The token service store: exact expiry, versions, group commit and durability."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from muster.errors import InvalidEntryError
from muster.logs import event_fields
from muster.service import database
from muster.service import store as store_module
from muster.service.store import (
    ClusterFullError,
    StorageError,
    Store,
    UnknownClusterError,
    UnknownNodeError,
)

from .conftest import FakeClock

EPSILON = 0.001


def rows(data_dir: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the database with a connection of its own, as a restart would."""
    with sqlite3.connect(data_dir / "muster.db") as db:
        return db.execute(sql).fetchall()


async def test_new_cluster_has_a_hex_token_and_no_members(store: Store) -> None:
    token = await store.create_cluster()

    assert len(token) == 32
    assert int(token, 16) >= 0
    assert token == token.lower()
    assert store.membership(token).addresses == ()
    assert store.membership(token).index == 0


async def test_node_is_alive_until_its_ttl_runs_out_exactly(
    store: Store, clock: FakeClock
) -> None:
    token = await store.create_cluster()
    await store.register(token, "10.0.0.1:2375", 180)

    clock.advance(180 - EPSILON)
    assert store.membership(token).addresses == ("10.0.0.1:2375",)

    clock.advance(EPSILON)
    assert store.membership(token).addresses == ()


async def test_expire_due_removes_only_due_nodes(
    store: Store, clock: FakeClock
) -> None:
    token = await store.create_cluster()
    await store.register(token, "10.0.0.1:1", 10)
    await store.register(token, "10.0.0.2:1", 20)

    clock.advance(10)
    assert store.expire_due() == 1
    assert store.expire_due() == 0
    assert store.membership(token).addresses == ("10.0.0.2:1",)


async def test_version_grows_on_join_leave_and_expiry_but_not_refresh(
    store: Store, clock: FakeClock
) -> None:
    token = await store.create_cluster()

    assert await store.register(token, "10.0.0.1:1", 10) == 1
    assert await store.register(token, "10.0.0.2:1", 10) == 2
    assert await store.register(token, "10.0.0.1:1", 10) == 2  # refresh
    assert await store.remove_node(token, "10.0.0.2:1") == 3
    clock.advance(10)
    store.expire_due()

    assert store.membership(token).index == 4


async def test_refresh_pushes_expiry_later(store: Store, clock: FakeClock) -> None:
    token = await store.create_cluster()
    await store.register(token, "10.0.0.1:1", 10)

    clock.advance(9)
    await store.register(token, "10.0.0.1:1", 10)
    clock.advance(9)

    assert store.expire_due() == 0
    assert store.membership(token).addresses == ("10.0.0.1:1",)
    clock.advance(1)
    assert store.membership(token).addresses == ()


async def test_refresh_with_a_shorter_ttl_expires_at_the_shorter_time(
    store: Store, clock: FakeClock
) -> None:
    token = await store.create_cluster()
    await store.register(token, "10.0.0.1:1", 1000)
    await store.register(token, "10.0.0.1:1", 5)

    clock.advance(5)

    assert store.expire_due() == 1


async def test_refreshes_do_not_grow_the_expiry_heap(
    store: Store, clock: FakeClock
) -> None:
    token = await store.create_cluster()
    for _ in range(50):
        await store.register(token, "10.0.0.1:1", 30)
        clock.advance(1)

    assert store.scheduled_expiries == 1


async def test_concurrent_heartbeats_share_few_commits(store: Store) -> None:
    token = await store.create_cluster()
    await store.register(token, "10.0.0.1:1", 30)
    before = store.commit_count

    await asyncio.gather(*(store.register(token, "10.0.0.1:1", 30) for _ in range(200)))

    assert store.commit_count - before <= 2


async def test_every_change_sharing_a_commit_is_written(
    store: Store, tmp_path: Path
) -> None:
    token = await store.create_cluster()
    addresses = [f"10.0.0.{n}:1" for n in range(3)]

    await asyncio.gather(*(store.register(token, a, 30) for a in addresses))
    await store.remove_node(token, addresses[0])

    saved = rows(tmp_path / "data", "SELECT addr FROM nodes ORDER BY addr")
    assert saved == [(a,) for a in addresses[1:]]
    assert rows(tmp_path / "data", "SELECT version FROM clusters") == [(4,)]


async def test_register_answers_only_once_the_change_is_on_disk(
    store: Store, tmp_path: Path
) -> None:
    token = await store.create_cluster()

    await store.register(token, "10.0.0.1:1", 30)

    assert rows(tmp_path / "data", "SELECT token, addr FROM nodes") == [
        (token, "10.0.0.1:1")
    ]


async def test_reopened_store_keeps_clusters_nodes_and_versions(
    tmp_path: Path, clock: FakeClock
) -> None:
    first = await Store.open(tmp_path, now=clock)
    token = await first.create_cluster()
    empty = await first.create_cluster()
    await first.register(token, "[2001:db8::2]:2375", 60)
    await first.register(token, "10.0.0.1:2375", 60)
    await first.close()

    clock.advance(59)
    second = await Store.open(tmp_path, now=clock)
    try:
        assert second.membership(token).addresses == (
            "10.0.0.1:2375",
            "[2001:db8::2]:2375",
        )
        assert second.membership(token).index == 2
        assert second.membership(empty).addresses == ()
        _, nodes = second.node_details(token)
        assert nodes[0].expires_at == clock.now + 1
        clock.advance(1)
        assert second.membership(token).addresses == ()
    finally:
        await second.close()


async def test_nodes_expired_while_down_are_dropped_at_load(
    tmp_path: Path, clock: FakeClock
) -> None:
    first = await Store.open(tmp_path, now=clock)
    token = await first.create_cluster()
    await first.register(token, "10.0.0.1:1", 10)
    await first.register(token, "10.0.0.2:1", 100)
    await first.close()

    clock.advance(50)
    second = await Store.open(tmp_path, now=clock)
    membership = second.membership(token)
    await second.close()
    third = await Store.open(tmp_path, now=clock)
    again = third.membership(token)
    await third.close()

    assert membership.addresses == ("10.0.0.2:1",)
    assert membership.index == 3
    assert again == membership
    assert rows(tmp_path, "SELECT addr FROM nodes") == [("10.0.0.2:1",)]


async def test_deleted_cluster_is_gone_now_and_after_reopen(
    tmp_path: Path, clock: FakeClock
) -> None:
    first = await Store.open(tmp_path, now=clock)
    token = await first.create_cluster()
    await first.register(token, "10.0.0.1:1", 10)
    await first.delete_cluster(token)

    with pytest.raises(UnknownClusterError):
        first.membership(token)
    with pytest.raises(UnknownClusterError):
        await first.delete_cluster(token)
    await first.close()
    second = await Store.open(tmp_path, now=clock)
    await second.close()

    with pytest.raises(UnknownClusterError):
        second.membership(token)
    assert rows(tmp_path, "SELECT * FROM nodes") == []


async def test_removing_an_unregistered_node_changes_nothing(store: Store) -> None:
    token = await store.create_cluster()
    await store.register(token, "10.0.0.1:1", 10)

    with pytest.raises(UnknownNodeError, match=r"10\.0\.0\.2:1"):
        await store.remove_node(token, "10.0.0.2:1")

    assert store.membership(token).index == 1


async def test_full_cluster_refuses_new_nodes_but_accepts_refreshes(
    store: Store,
) -> None:
    token = await store.create_cluster()
    for n in range(3):
        await store.register(token, f"10.0.0.{n}:1", 10)

    with pytest.raises(ClusterFullError):
        await store.register(token, "10.0.0.9:1", 10)
    assert await store.register(token, "10.0.0.0:1", 10) == 3

    assert len(store.membership(token).addresses) == 3


async def test_bad_address_is_refused_without_change(store: Store) -> None:
    token = await store.create_cluster()

    with pytest.raises(InvalidEntryError, match="no-port"):
        await store.register(token, "no-port", 10)

    assert store.membership(token).index == 0


async def test_address_is_stored_in_its_printed_form(store: Store) -> None:
    token = await store.create_cluster()
    await store.register(token, "[10.0.0.1]:80", 10)
    await store.register(token, "10.0.0.1:80", 10)

    assert store.membership(token).addresses == ("10.0.0.1:80",)
    assert store.membership(token).index == 1


async def test_unknown_token_is_refused(store: Store) -> None:
    with pytest.raises(UnknownClusterError):
        await store.register("0" * 32, "10.0.0.1:1", 10)


async def test_long_poll_answers_at_once_when_index_differs(store: Store) -> None:
    token = await store.create_cluster()
    await store.register(token, "10.0.0.1:1", 10)

    membership = await store.wait_for_change(token, 0, 30)

    assert membership.index == 1


async def test_long_poll_wakes_when_a_node_joins(store: Store) -> None:
    token = await store.create_cluster()
    waiter = asyncio.create_task(store.wait_for_change(token, 0, 30))
    await asyncio.sleep(0)

    await store.register(token, "10.0.0.1:1", 10)

    membership = await asyncio.wait_for(waiter, 1)
    assert membership.addresses == ("10.0.0.1:1",)


async def test_long_poll_wakes_when_a_node_expires(
    store: Store, clock: FakeClock
) -> None:
    token = await store.create_cluster()
    await store.register(token, "10.0.0.1:1", 10)
    waiter = asyncio.create_task(store.wait_for_change(token, 1, 30))
    await asyncio.sleep(0)

    clock.advance(10)
    store.expire_due()

    membership = await asyncio.wait_for(waiter, 1)
    assert membership == store_module.Membership(2, ())


async def test_long_poll_times_out_with_the_same_index(store: Store) -> None:
    token = await store.create_cluster()

    membership = await store.wait_for_change(token, 0, 0.01)

    assert membership.index == 0


async def test_long_poll_fails_when_the_cluster_is_deleted(store: Store) -> None:
    token = await store.create_cluster()
    waiter = asyncio.create_task(store.wait_for_change(token, 0, 30))
    await asyncio.sleep(0)

    await store.delete_cluster(token)

    with pytest.raises(UnknownClusterError):
        await asyncio.wait_for(waiter, 1)


async def test_failed_commit_is_reported_and_retried(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await store.create_cluster()
    real_write = database.write_batch
    calls = []

    def fail_once(db: sqlite3.Connection | None, batch: database.Batch) -> None:
        calls.append(batch)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        real_write(db, batch)

    monkeypatch.setattr(store_module, "write_batch", fail_once)
    monkeypatch.setattr(store_module, "_RETRY_SECONDS", 0.0)

    with pytest.raises(StorageError, match="disk I/O error"):
        await store.register(token, "10.0.0.1:1", 10)
    await store.flush()

    assert rows(tmp_path / "data", "SELECT addr FROM nodes") == [("10.0.0.1:1",)]


async def test_membership_changes_are_logged_without_the_token(
    store: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="muster.service.store")
    token = await store.create_cluster()
    await store.register(token, "10.0.0.1:1", 10)
    await store.register(token, "10.0.0.1:1", 10)
    await store.remove_node(token, "10.0.0.1:1")
    await store.register(token, "10.0.0.2:1", 10)
    clock.advance(10)
    store.expire_due()
    await store.delete_cluster(token)

    events = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert events == [
        ("INFO", "cluster.created"),
        ("INFO", "node.joined"),
        ("DEBUG", "node.refreshed"),
        ("INFO", "node.left"),
        ("INFO", "node.joined"),
        ("INFO", "node.expired"),
        ("INFO", "cluster.deleted"),
    ]
    for record in caplog.records:
        assert token not in str(event_fields(record))
        assert event_fields(record)["cluster"] == token[:6] + "…"


async def test_background_timer_expires_nodes_and_wakes_pollers(
    store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody calls expire_due here: the store's own timer must notice."""
    monkeypatch.setattr(store_module, "_TIMER_CAP_SECONDS", 0.01)
    token = await store.create_cluster()
    await store.register(token, "10.0.0.1:1", 10)
    waiter = asyncio.create_task(store.wait_for_change(token, 1, 30))

    clock.advance(10)

    membership = await asyncio.wait_for(waiter, 1)
    assert membership.addresses == ()


async def test_a_cancelled_request_does_not_disturb_the_others(store: Store) -> None:
    """A client hanging up mid-commit must not fail the requests sharing that commit."""
    token = await store.create_cluster()
    gone = asyncio.create_task(store.register(token, "10.0.0.1:1", 10))
    kept = asyncio.create_task(store.register(token, "10.0.0.2:1", 10))
    await asyncio.sleep(0)

    gone.cancel()

    assert await asyncio.wait_for(kept, 1) == 2
    await store.flush()
    assert store.membership(token).addresses == ("10.0.0.1:1", "10.0.0.2:1")
