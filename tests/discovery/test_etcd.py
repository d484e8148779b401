"""The etcd backend, v3 (gRPC) and v2 (HTTP), against a real etcd 3.4.

Goal: nodes registered through muster appear in every watch, stay while they
heartbeat, vanish when they stop (within the TTL, in etcd's whole seconds) or
leave (at once); a watch outlives the store going away and coming back, moves to
another endpoint when one is down, resyncs when etcd forgets history; and the
keys are laid out exactly as classic Swarm writes and reads them.

Most tests share one etcd started with ``--enable-v2`` (it serves both APIs), each
under its own prefix; tests that stop the store get an etcd of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aetcd
import aiohttp
import pytest

from muster.discovery import (
    BackendError,
    BackendResponseError,
    BackendUnavailableError,
    Entries,
    Entry,
    InvalidOptionError,
    InvalidURLError,
    Watch,
    WatchEvent,
    create_backend,
    fetch_membership,
)
from muster.discovery.etcd import EtcdBackend
from muster.discovery.etcd_common import NodeValues, whole_seconds
from muster.discovery.heartbeat import Heartbeat
from muster.logs import event_fields
from tests.stores import free_ports
from tests.stores.etcd import EtcdServer
from tests.support import run_muster

APIS = ["v3", "v2"]
NODE_A = Entry.parse("10.0.0.1:2375")
NODE_B = Entry.parse("10.0.0.2:2375")
HEARTBEAT_SECONDS = 0.5
TTL_SECONDS = 1.0

# --------------------------------------------------------------------------------
# URL and options: no store needed.


def test_url_names_the_stores_and_the_node_folder() -> None:
    backend = create_backend("etcd://10.0.0.5:4001,[2001:db8::5]:4002/cluster1")

    assert isinstance(backend, EtcdBackend)
    assert [str(e) for e in backend.target.endpoints] == [
        "10.0.0.5:4001",
        "[2001:db8::5]:4002",
    ]
    assert backend.node_key(NODE_A) == "/cluster1/docker/swarm/nodes/10.0.0.1:2375"
    assert backend.api == "v3"


def test_a_store_without_a_port_uses_etcds_client_port() -> None:
    backend = create_backend("etcd://etcd.example/p")

    assert isinstance(backend, EtcdBackend)
    assert backend.target.endpoints == (Entry("etcd.example", 2379),)


def test_kv_path_moves_the_node_folder() -> None:
    backend = create_backend("etcd://h:1/p", options={"kv.path": "/my/nodes/"})

    assert isinstance(backend, EtcdBackend)
    assert backend.node_key(NODE_A) == "/p/my/nodes/10.0.0.1:2375"


@pytest.mark.parametrize("value", ["v4", "V2", "", "2"])
def test_api_option_takes_only_v2_or_v3_and_names_the_bad_value(value: str) -> None:
    with pytest.raises(InvalidOptionError, match=f"etcd.api='{value}'"):
        create_backend("etcd://h:1/p", options={"etcd.api": value})


def test_unknown_option_is_rejected_naming_the_accepted_ones() -> None:
    with pytest.raises(InvalidOptionError, match=r"etcd\.timeout.*etcd\.api"):
        create_backend("etcd://h:1/p", options={"etcd.timeout": "5"})


@pytest.mark.parametrize("url", ["etcd:///prefix", "etcd://", "etcd://h:99999/p"])
def test_url_without_a_usable_store_is_rejected(url: str) -> None:
    with pytest.raises(InvalidURLError):
        create_backend(url)


def test_tls_needs_all_three_kv_files(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(InvalidOptionError, match=r"kv\.certfile, kv\.keyfile"):
        create_backend("etcd://h:1/p", options={"kv.cacertfile": str(ca)})


def test_ttl_goes_to_etcd_in_whole_seconds_rounded_up() -> None:
    assert [whole_seconds(t) for t in (0.2, 1.0, 1.5, 180.0)] == [1, 1, 2, 180]


def test_keys_nested_below_the_node_folder_are_not_nodes() -> None:
    values = NodeValues("/p/nodes")
    values.put("/p/nodes/10.0.0.1:2375", "10.0.0.1:2375")
    values.put("/p/nodes/sub/10.0.0.2:2375", "10.0.0.2:2375")
    values.put("/p/nodesX/10.0.0.3:2375", "10.0.0.3:2375")

    assert values.membership() == Entries([NODE_A])
    values.remove("/p")
    assert values.membership() == Entries()


# --------------------------------------------------------------------------------
# Against a real etcd.


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    """One etcd serving both APIs, shared by the tests that leave it running."""
    server = EtcdServer(v2=True)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def own_etcd() -> Iterator[EtcdServer]:
    """An etcd for one test, not started: tests that stop the store use it."""
    server = EtcdServer(v2=True)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=APIS)
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def open_backend(
    server: EtcdServer,
    api: str,
    prefix: str,
    *,
    url: str | None = None,
    ttl_seconds: float = TTL_SECONDS,
    tls: bool = True,
) -> EtcdBackend:
    options = dict(item.split("=", 1) for item in server.tls_options()) if tls else {}
    if api == "v2":
        options["etcd.api"] = "v2"
    backend = create_backend(
        url or server.url(prefix),
        heartbeat_seconds=HEARTBEAT_SECONDS,
        ttl_seconds=ttl_seconds,
        options=options,
    )
    assert isinstance(backend, EtcdBackend)
    return backend


async def watch_until(
    watch: AsyncIterator[WatchEvent], expected: set[Entry], within_seconds: float = 5.0
) -> list[WatchEvent]:
    """Read ``watch`` until it yields exactly ``expected``; return all it yielded."""
    seen: list[WatchEvent] = []
    try:
        async with asyncio.timeout(within_seconds):
            async for event in watch:
                seen.append(event)
                if isinstance(event, Entries) and set(event) == expected:
                    return seen
    except TimeoutError:
        pass
    raise AssertionError(f"no membership {sorted(map(str, expected))}; saw {seen}")


@contextlib.asynccontextmanager
async def recording(watch: Watch) -> AsyncIterator[list[WatchEvent]]:
    """Collect what ``watch`` yields, in the background, until the block ends."""
    events: list[WatchEvent] = []

    async def pump() -> None:
        async for event in watch:
            events.append(event)

    task = asyncio.create_task(pump())
    try:
        yield events
    finally:
        await watch.stop()
        await task


def swarm_put(server: EtcdServer, key: str, value: str, ttl_seconds: int) -> int:
    """Write a key as Swarm 1.2.9's libkv etcd (v2) client does; return the status."""
    body = urllib.parse.urlencode({"ttl": str(ttl_seconds), "value": value})
    status, _, _ = server.v2_request(
        "PUT",
        "/v2/keys" + urllib.parse.quote(key, safe="/:"),
        body=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    return status


def swarm_create_folder(server: EtcdServer, folder: str) -> None:
    """Create the node folder as Swarm does before its first watch."""
    server.v2_request(
        "PUT",
        "/v2/keys" + folder + "?dir=true",
        body=b"",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


def swarm_list(server: EtcdServer, folder: str) -> list[str]:
    """Read the node folder as Swarm's libkv ``List`` does: the children's values."""
    status, _, body = server.v2_request(
        "GET", "/v2/keys" + folder + "?quorum=true&recursive=true&sorted=true"
    )
    assert status == 200, body
    return [node.get("value", "") for node in json.loads(body)["node"]["nodes"]]


async def raw_put(server: EtcdServer, api: str, key: str, value: str) -> None:
    """Write a plain key (no TTL) in the API under test, behind muster's back."""
    if api == "v3":
        await asyncio.to_thread(server.etcdctl, "put", key, value)
    else:
        await asyncio.to_thread(swarm_put, server, key, value, 60)


async def raw_delete(server: EtcdServer, api: str, key: str) -> None:
    if api == "v3":
        await asyncio.to_thread(server.etcdctl, "del", key)
    else:
        await asyncio.to_thread(
            server.v2_request, "DELETE", "/v2/keys" + urllib.parse.quote(key, "/:")
        )


@pytest.mark.integration
async def test_registered_node_is_seen_by_a_watch(
    etcd: EtcdServer, api: str, prefix: str
) -> None:
    async with (
        open_backend(etcd, api, prefix) as node,
        open_backend(etcd, api, prefix) as manager,
        manager.watch() as watch,
    ):
        assert await anext(watch) == Entries()
        await node.register(NODE_A)
        await watch_until(watch, {NODE_A})


@pytest.mark.integration
async def test_refreshed_node_outlives_its_ttl(
    etcd: EtcdServer, api: str, prefix: str
) -> None:
    """Re-registering every 0.3 s keeps a 1 s node through 2.5 s, not one blink."""
    async with (
        open_backend(etcd, api, prefix) as node,
        open_backend(etcd, api, prefix) as manager,
        manager.watch() as watch,
        recording(watch) as events,
    ):
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            await node.register(NODE_A)
            await asyncio.sleep(0.3)

    # The watch may start before or after the first registration; once it has
    # seen the node it must say nothing more.
    assert events in ([Entries(), Entries([NODE_A])], [Entries([NODE_A])])


@pytest.mark.integration
async def test_node_that_stops_refreshing_leaves_after_its_ttl(
    etcd: EtcdServer, api: str, prefix: str
) -> None:
    """A 1 s node goes 1 to 1.5 s after its last refresh: etcd keeps TTLs in whole
    seconds and looks for expired ones every 500 ms."""
    async with (
        open_backend(etcd, api, prefix) as node,
        open_backend(etcd, api, prefix) as manager,
        manager.watch() as watch,
    ):
        await anext(watch)
        registered_at = time.monotonic()
        await node.register(NODE_A)
        await watch_until(watch, {NODE_A})
        await watch_until(watch, set(), within_seconds=5)
        lived = time.monotonic() - registered_at

    assert TTL_SECONDS <= lived <= TTL_SECONDS + etcd.expiry_slack_seconds


@pytest.mark.integration
async def test_deregister_removes_the_node_at_once(
    etcd: EtcdServer, api: str, prefix: str
) -> None:
    async with (
        open_backend(etcd, api, prefix, ttl_seconds=30) as node,
        open_backend(etcd, api, prefix) as manager,
        manager.watch() as watch,
    ):
        await node.register(NODE_A)
        await watch_until(watch, {NODE_A})
        left_at = time.monotonic()
        await node.deregister(NODE_A)
        await watch_until(watch, set(), within_seconds=2)

    assert time.monotonic() - left_at < 0.5


@pytest.mark.integration
async def test_watch_sees_joins_and_leaves_in_turn(
    etcd: EtcdServer, api: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muster.discovery.etcd")
    async with (
        open_backend(etcd, api, prefix, ttl_seconds=30) as node_a,
        open_backend(etcd, api, prefix, ttl_seconds=30) as node_b,
        open_backend(etcd, api, prefix) as manager,
        manager.watch() as watch,
    ):
        await watch_until(watch, set())
        await node_a.register(NODE_A)
        await watch_until(watch, {NODE_A})
        await node_b.register(NODE_B)
        await watch_until(watch, {NODE_A, NODE_B})
        await node_a.deregister(NODE_A)
        await watch_until(watch, {NODE_B})
        await node_b.deregister(NODE_B)
        await watch_until(watch, set())

    sizes = [
        event_fields(r)["nodes"] for r in caplog.records if r.msg == "etcd.membership"
    ]
    assert sizes == [0, 1, 2, 1, 0]


@pytest.mark.integration
async def test_value_that_is_not_an_address_is_reported_naming_its_key(
    etcd: EtcdServer, api: str, prefix: str
) -> None:
    bad_key = f"/{prefix}/docker/swarm/nodes/junk"
    async with (
        open_backend(etcd, api, prefix) as manager,
        manager.watch() as watch,
    ):
        await watch_until(watch, set())
        await raw_put(etcd, api, bad_key, "not-an-address")
        error = await asyncio.wait_for(anext(watch), 5)
        await raw_delete(etcd, api, bad_key)
        await manager.register(NODE_A)
        await watch_until(watch, {NODE_A})

    assert isinstance(error, BackendResponseError)
    assert bad_key in str(error)
    assert "not-an-address" in str(error)


@pytest.mark.integration
async def test_stopped_store_fails_register_and_watch_with_muster_errors(
    own_etcd: EtcdServer, api: str, prefix: str
) -> None:
    """Every client error is mapped: nothing from aetcd, grpc or aiohttp leaks."""
    own_etcd.start()
    async with (
        open_backend(own_etcd, api, prefix) as node,
        node.watch() as watch,
    ):
        await node.register(NODE_A)
        await watch_until(watch, {NODE_A})
        await asyncio.to_thread(own_etcd.stop)

        with pytest.raises(BackendUnavailableError, match=own_etcd.address) as caught:
            await node.register(NODE_A)
        event = await asyncio.wait_for(anext(watch), 5)
        with pytest.raises(BackendUnavailableError):
            await node.deregister(NODE_A)

    assert caught.value.__cause__ is not None
    assert isinstance(event, BackendUnavailableError)


@pytest.mark.integration
async def test_watch_survives_a_store_restart(
    own_etcd: EtcdServer, api: str, prefix: str
) -> None:
    """The backend reports the outage, then the membership again once etcd is back.

    This reads the backend's own events: the :class:`Watch` wrapper would drop the
    membership after the outage, being the same as the one before it.
    """
    own_etcd.start()
    async with (
        open_backend(own_etcd, api, prefix, ttl_seconds=3) as node,
        open_backend(own_etcd, api, prefix, ttl_seconds=30) as late_node,
        open_backend(own_etcd, api, prefix) as manager,
        contextlib.aclosing(manager.observe()) as events,
    ):
        heartbeat = Heartbeat(node, NODE_A, heartbeat_seconds=HEARTBEAT_SECONDS)
        beating = asyncio.create_task(heartbeat.run())
        try:
            await watch_until(events, {NODE_A})
            await asyncio.to_thread(own_etcd.stop)
            outage = await asyncio.wait_for(anext(events), 5)
            await asyncio.to_thread(own_etcd.start)
            back_at = time.monotonic()
            seen = await watch_until(events, {NODE_A})
            recovered_in = time.monotonic() - back_at
            await late_node.register(NODE_B)
            await watch_until(events, {NODE_A, NODE_B})
        finally:
            heartbeat.stop()
            await asyncio.wait_for(beating, 10)

    assert isinstance(outage, BackendUnavailableError)
    assert all(isinstance(event, BackendError) for event in seen[:-1])
    assert recovered_in < 2 * HEARTBEAT_SECONDS + 1


@pytest.mark.integration
async def test_node_and_watch_started_before_the_store_reach_it_once_up(
    own_etcd: EtcdServer, api: str, prefix: str
) -> None:
    async with (
        open_backend(own_etcd, api, prefix, ttl_seconds=3) as node,
        open_backend(own_etcd, api, prefix) as manager,
        manager.watch() as watch,
    ):
        heartbeat = Heartbeat(node, NODE_A, heartbeat_seconds=HEARTBEAT_SECONDS)
        beating = asyncio.create_task(heartbeat.run(leave=False))
        try:
            first = await asyncio.wait_for(anext(watch), 5)
            await asyncio.to_thread(own_etcd.start)
            await watch_until(watch, {NODE_A}, within_seconds=5)
        finally:
            heartbeat.stop()
            await asyncio.wait_for(beating, 10)

    assert isinstance(first, BackendUnavailableError)
    assert heartbeat.failures >= 1


@pytest.mark.integration
async def test_a_down_endpoint_fails_over_to_the_next(
    etcd: EtcdServer, api: str, prefix: str
) -> None:
    (dead_port,) = free_ports(1)
    url = f"etcd://127.0.0.1:{dead_port},{etcd.address}/{prefix}"
    async with (
        open_backend(etcd, api, prefix, url=url) as node,
        open_backend(etcd, api, prefix, url=url) as manager,
        manager.watch() as watch,
    ):
        await node.register(NODE_A)
        first = await asyncio.wait_for(anext(watch), 5)
        await node.register(NODE_A)
        membership = await fetch_membership(manager, 5)

    assert first == Entries([NODE_A])
    assert membership == Entries([NODE_A])


@pytest.mark.integration
async def test_v3_reads_a_node_in_swarms_layout_and_writes_its_own_so(
    etcd: EtcdServer, prefix: str
) -> None:
    folder = f"/{prefix}/docker/swarm/nodes"
    await asyncio.to_thread(
        etcd.etcdctl, "put", f"{folder}/10.0.0.7:2375", "10.0.0.7:2375"
    )
    async with open_backend(etcd, "v3", prefix) as node:
        await node.register(NODE_A)
        membership = await fetch_membership(node, 5)
    stored = await asyncio.to_thread(etcd.etcdctl, "get", "--prefix", folder + "/")

    assert membership == Entries.parse(["10.0.0.1:2375", "10.0.0.7:2375"])
    assert stored.split() == [
        f"{folder}/10.0.0.1:2375",
        "10.0.0.1:2375",
        f"{folder}/10.0.0.7:2375",
        "10.0.0.7:2375",
    ]


@pytest.mark.integration
async def test_v2_reads_a_node_written_as_swarm_writes_it(
    etcd: EtcdServer, prefix: str
) -> None:
    folder = f"/{prefix}/docker/swarm/nodes"
    swarm_create_folder(etcd, folder)
    assert swarm_put(etcd, f"{folder}/10.0.0.9:2375", "10.0.0.9:2375", 20) == 201
    # A folder nested in the node folder is not a node, for Swarm nor for muster.
    swarm_create_folder(etcd, f"{folder}/nested")
    swarm_put(etcd, f"{folder}/nested/10.0.0.8:2375", "10.0.0.8:2375", 20)

    async with open_backend(etcd, "v2", prefix) as manager:
        membership = await fetch_membership(manager, 5)

    assert membership == Entries.parse(["10.0.0.9:2375"])


@pytest.mark.integration
async def test_v2_node_reads_as_swarm_reads_it(etcd: EtcdServer, prefix: str) -> None:
    folder = f"/{prefix}/docker/swarm/nodes"
    async with open_backend(etcd, "v2", prefix, ttl_seconds=20) as node:
        await node.register(Entry.parse("[2001:db8::2]:2375"))
        await node.register(Entry.parse("[2001:db8::2]:2375"))
    status, _, body = etcd.v2_request("GET", f"/v2/keys{folder}/%5B2001:db8::2%5D:2375")
    stored = json.loads(body)["node"]

    assert swarm_list(etcd, folder) == ["[2001:db8::2]:2375"]
    assert status == 200
    assert stored["key"] == f"{folder}/[2001:db8::2]:2375"
    assert 15 <= stored["ttl"] <= 20


@pytest.mark.integration
async def test_v2_swarm_node_and_muster_node_are_listed_together(
    etcd: EtcdServer, prefix: str
) -> None:
    folder = f"/{prefix}/docker/swarm/nodes"
    swarm_create_folder(etcd, folder)
    swarm_put(etcd, f"{folder}/10.0.0.9:2375", "10.0.0.9:2375", 20)
    async with open_backend(etcd, "v2", prefix, ttl_seconds=20) as node:
        await node.register(NODE_A)

    listed = await asyncio.to_thread(
        run_muster,
        "list",
        "--timeout",
        "5s",
        "--discovery-opt",
        "etcd.api=v2",
        etcd.url(prefix),
    )

    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.split()) == ["10.0.0.1:2375", "10.0.0.9:2375"]
    assert sorted(swarm_list(etcd, folder)) == ["10.0.0.1:2375", "10.0.0.9:2375"]


@pytest.mark.integration
async def test_v3_watch_resyncs_after_compaction_past_its_revision(
    etcd: EtcdServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The watch, held at its first membership, resumes from a compacted revision."""
    caplog.set_level(logging.INFO, logger="muster.discovery.etcd")
    folder = f"/{prefix}/docker/swarm/nodes"
    async with (
        open_backend(etcd, "v3", prefix, ttl_seconds=30) as node,
        open_backend(etcd, "v3", prefix) as manager,
        manager.watch() as watch,
        aetcd.Client("127.0.0.1", etcd.port) as store,
    ):
        assert await anext(watch) == Entries()
        await node.register(NODE_A)
        await store.put(f"{folder}/10.0.0.3:2375".encode(), b"10.0.0.3:2375")
        await store.delete(f"{folder}/10.0.0.3:2375".encode())
        put = await store.put(f"/{prefix}/elsewhere".encode(), b"x")
        await store.compact(put.header.revision)

        seen = await watch_until(watch, {NODE_A})

    assert seen == [Entries([NODE_A])]
    assert any(r.msg == "etcd.watch_resync" for r in caplog.records)


@pytest.mark.integration
async def test_v2_watch_resyncs_when_etcd_cleared_its_event_index(
    etcd: EtcdServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """etcd v2 keeps 1000 events; a watch that fell further behind reads afresh."""
    caplog.set_level(logging.INFO, logger="muster.discovery.etcd_v2")
    async with (
        open_backend(etcd, "v2", prefix, ttl_seconds=30) as node,
        open_backend(etcd, "v2", prefix) as manager,
        manager.watch() as watch,
        aiohttp.ClientSession() as session,
    ):
        assert await anext(watch) == Entries()
        await node.register(NODE_A)
        for n in range(1010):
            url = f"{etcd.client_url}/v2/keys/{prefix}-churn"
            async with session.put(url, data={"value": str(n)}) as response:
                assert response.status in (200, 201)

        seen = await watch_until(watch, {NODE_A})

    assert seen == [Entries([NODE_A])]
    assert any(r.msg == "etcd.watch_resync" for r in caplog.records)


@pytest.mark.integration
async def test_v3_lease_lost_behind_our_back_is_granted_again(
    etcd: EtcdServer, prefix: str
) -> None:
    key = f"/{prefix}/docker/swarm/nodes/{NODE_A}".encode()
    async with (
        open_backend(etcd, "v3", prefix, ttl_seconds=30) as node,
        aetcd.Client("127.0.0.1", etcd.port) as store,
    ):
        await node.register(NODE_A)
        first = await store.get(key)
        await store.revoke_lease(first.lease)
        assert await store.get(key) is None

        await node.register(NODE_A)
        second = await store.get(key)

    assert second is not None
    assert second.value == str(NODE_A).encode()
    assert second.lease not in (0, first.lease)


@pytest.mark.integration
async def test_v3_key_deleted_while_its_lease_lives_is_put_back(
    etcd: EtcdServer, prefix: str
) -> None:
    key = f"/{prefix}/docker/swarm/nodes/{NODE_A}".encode()
    async with (
        open_backend(etcd, "v3", prefix, ttl_seconds=30) as node,
        aetcd.Client("127.0.0.1", etcd.port) as store,
    ):
        await node.register(NODE_A)
        lease = (await store.get(key)).lease
        await store.delete(key)

        await node.register(NODE_A)
        again = await store.get(key)

    assert again is not None
    assert again.lease == lease


# --------------------------------------------------------------------------------
# TLS with client certificates.


@pytest.fixture(scope="module")
def tls_etcd() -> Iterator[EtcdServer]:
    """etcd serving both APIs over https only, demanding a client certificate."""
    server = EtcdServer(v2=True, tls=True)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.mark.integration
async def test_tls_store_works_with_the_kv_files(
    tls_etcd: EtcdServer, api: str, prefix: str
) -> None:
    async with (
        open_backend(tls_etcd, api, prefix) as node,
        node.watch() as watch,
    ):
        await node.register(NODE_A)
        await watch_until(watch, {NODE_A})


@pytest.mark.integration
async def test_tls_store_without_the_kv_files_fails_fast_naming_tls(
    tls_etcd: EtcdServer, api: str, prefix: str
) -> None:
    started = time.monotonic()
    async with (
        open_backend(tls_etcd, api, prefix, tls=False) as node,
        node.watch() as watch,
    ):
        with pytest.raises(BackendError, match="TLS") as caught:
            await node.register(NODE_A)
        event = await asyncio.wait_for(anext(watch), 5)

    assert isinstance(event, BackendError)
    assert "kv.cacertfile" in str(caught.value)
    assert "kv.cacertfile" in str(event)
    assert time.monotonic() - started < 5
