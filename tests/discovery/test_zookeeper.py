"""``zk://``: the ZooKeeper backend against a real ZooKeeper 3.8.

Goal: a node is an ephemeral znode that lives exactly as long as its session,
which the TTL sets; watchers follow the directory's children and their values,
through disconnections, restarts and session expiry, in the layout classic
Swarm's libkv reads and writes. The store is never mocked: each test talks to a
ZooKeeper started by the tests (tests/stores/zookeeper.py), with a 500 ms tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError
from kazoo.security import make_acl

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
)
from muster.discovery.heartbeat import Heartbeat
from muster.discovery.zookeeper import WATCH_SESSION_SECONDS, ZooKeeperBackend
from muster.logs import event_fields
from tests.conftest import TLSFiles
from tests.stores import free_ports
from tests.stores.zookeeper import TICK_MS, ZooKeeperServer
from tests.support import start_muster, stop

integration = pytest.mark.integration

NODE_A = Entry.parse("10.0.0.1:2375")
NODE_B = Entry.parse("10.0.0.2:2375")


# -- URL and options -----------------------------------------------------------


def make(
    url: str,
    *,
    heartbeat_seconds: float = 60.0,
    ttl_seconds: float = 180.0,
    options: dict[str, str] | None = None,
) -> ZooKeeperBackend:
    backend = create_backend(
        url,
        heartbeat_seconds=heartbeat_seconds,
        ttl_seconds=ttl_seconds,
        options=options,
    )
    assert isinstance(backend, ZooKeeperBackend)
    return backend


def test_url_names_every_host_and_the_swarm_directory() -> None:
    backend = make("zk://10.0.0.5:2181,zk2,[2001:db8::7]:2182/cluster")

    assert backend.hosts == "10.0.0.5:2181,zk2:2181,[2001:db8::7]:2182"
    assert backend.directory == "/cluster/docker/swarm/nodes"
    assert backend.node_path(NODE_A) == "/cluster/docker/swarm/nodes/10.0.0.1:2375"


def test_kv_path_option_moves_the_directory() -> None:
    backend = make("zk://zk1/p", options={"kv.path": "/fleet/members/"})

    assert backend.directory == "/p/fleet/members"


def test_session_timeout_is_the_ttl_and_watchers_ask_for_ten_seconds() -> None:
    assert make("zk://zk1/p", ttl_seconds=7.5).session.session_seconds == 7.5
    watcher = make("zk://zk1/p", ttl_seconds=0)
    assert watcher.session.session_seconds == WATCH_SESSION_SECONDS


def test_waits_are_bounded_by_the_heartbeat() -> None:
    def waits(heartbeat_seconds: float) -> tuple[float, float]:
        session = make("zk://zk1/p", heartbeat_seconds=heartbeat_seconds).session
        return session.request_seconds, session.reconnect_seconds

    assert waits(4) == (2, 4)
    assert waits(0.1) == (1, 0.5)
    assert waits(60) == (10, 5)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("zk:///prefix", "names no store"),
        ("zk://zk1:notaport/p", "bad store address"),
        ("zk://zk1:70000/p", "bad store address"),
    ],
)
def test_url_without_a_usable_store_is_rejected(url: str, message: str) -> None:
    with pytest.raises(InvalidURLError, match=message):
        make(url)


def test_unknown_option_is_rejected() -> None:
    with pytest.raises(InvalidOptionError, match=r"token\.cacertfile"):
        make("zk://zk1/p", options={"token.cacertfile": "/tmp/ca.pem"})


def test_tls_needs_all_three_files(tls_files: TLSFiles) -> None:
    with pytest.raises(InvalidOptionError, match=r"kv\.keyfile"):
        make(
            "zk://zk1/p",
            options={
                "kv.cacertfile": str(tls_files.ca_cert),
                "kv.certfile": str(tls_files.server_cert),
            },
        )


def test_tls_files_that_are_not_pem_are_an_option_error(
    tmp_path: Path, tls_files: TLSFiles
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")

    with pytest.raises(InvalidOptionError, match="TLS files"):
        make(
            "zk://zk1/p",
            options={
                "kv.cacertfile": str(junk),
                "kv.certfile": str(tls_files.server_cert),
                "kv.keyfile": str(tls_files.server_key),
            },
        )


# -- fixtures and helpers ------------------------------------------------------


@pytest.fixture(scope="module")
def zk() -> Iterator[ZooKeeperServer]:
    """One server for the tests that leave it running; each uses its own prefix."""
    server = ZooKeeperServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def own_zk() -> Iterator[ZooKeeperServer]:
    """A server of the test's own, not started, for tests that stop and start it."""
    server = ZooKeeperServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def raw(zk: ZooKeeperServer) -> Iterator[KazooClient]:
    """A plain kazoo client on the shared server: the store seen from outside."""
    client = KazooClient(hosts=zk.address, timeout=5)
    client.start(timeout=10)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def directory(prefix: str) -> str:
    return f"/{prefix}/docker/swarm/nodes"


async def next_event(source: Watch | AsyncGenerator[WatchEvent, None]) -> WatchEvent:
    return await asyncio.wait_for(anext(source), timeout=15)


async def until(
    source: Watch | AsyncGenerator[WatchEvent, None],
    wanted: Entries,
    seconds: float = 15,
) -> list[WatchEvent]:
    """Read events until the membership is ``wanted``; return every event read."""
    seen: list[WatchEvent] = []
    async with asyncio.timeout(seconds):
        while not (seen and seen[-1] == wanted):
            seen.append(await anext(source))
    return seen


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


async def register_soon(backend: ZooKeeperBackend, entry: Entry) -> None:
    """Register as a heartbeat would: again while the session is not back yet."""
    async with asyncio.timeout(15):
        while True:
            try:
                return await backend.register(entry)
            except BackendUnavailableError:
                await asyncio.sleep(0.1)


def owner(client: KazooClient, path: str) -> int | None:
    """The session owning an ephemeral znode, 0 for a persistent one, None if gone."""
    stat = client.exists(path)
    return None if stat is None else int(stat.ephemeralOwner)


# -- registering and watching ---------------------------------------------------


@integration
async def test_registered_node_is_seen_by_the_watch(
    zk: ZooKeeperServer, prefix: str
) -> None:
    async with make(zk.url(prefix), heartbeat_seconds=1, ttl_seconds=2) as backend:
        await backend.register(NODE_A)
        async with backend.watch() as watch:
            assert await next_event(watch) == Entries([NODE_A])


@integration
async def test_node_is_ephemeral_under_persistent_parents_holding_its_address(
    zk: ZooKeeperServer, raw: KazooClient, prefix: str
) -> None:
    async with make(zk.url(prefix), ttl_seconds=2) as backend:
        await backend.register(NODE_A)
        path = backend.node_path(NODE_A)

        value, stat = raw.get(path)
        assert value == b"10.0.0.1:2375"
        assert stat.ephemeralOwner != 0
        for parent in (f"/{prefix}", f"/{prefix}/docker", directory(prefix)):
            assert owner(raw, parent) == 0


@integration
async def test_register_again_keeps_the_same_node(
    zk: ZooKeeperServer, raw: KazooClient, prefix: str
) -> None:
    async with make(zk.url(prefix), ttl_seconds=2) as backend:
        await backend.register(NODE_A)
        first = raw.exists(backend.node_path(NODE_A))
        await backend.register(NODE_A)
        second = raw.exists(backend.node_path(NODE_A))

    assert first.czxid == second.czxid


@integration
async def test_heartbeats_keep_the_node_past_its_ttl(
    zk: ZooKeeperServer, raw: KazooClient, prefix: str
) -> None:
    """The shortest session the server grants (1 s) outlives 2.5 s of heartbeats."""
    async with make(zk.url(prefix), heartbeat_seconds=0.5, ttl_seconds=1) as backend:
        heart = Heartbeat(backend, NODE_A, heartbeat_seconds=0.5)
        task = asyncio.create_task(heart.run(leave=False))
        path = backend.node_path(NODE_A)
        try:
            await asyncio.sleep(0.5)
            first_owner = owner(raw, path)
            await asyncio.sleep(2.5)
            assert owner(raw, path) == first_owner
        finally:
            heart.stop()
            await task

    assert first_owner not in (None, 0)
    assert heart.registrations >= 4
    assert heart.failures == 0


@integration
def test_node_of_a_killed_process_goes_when_its_session_times_out(
    zk: ZooKeeperServer, raw: KazooClient, prefix: str
) -> None:
    """A SIGKILLed join stops pinging; its 2 s session, and the node, then expire.

    The server checks sessions once a tick (500 ms here), from the last ping it
    had: the node goes between TTL - TTL/3 (kazoo pings every third of the
    session) and TTL + one tick after the kill.
    """
    path = f"{directory(prefix)}/10.9.0.1:2375"
    node = start_muster(
        "join", "--advertise", "10.9.0.1:2375", "--heartbeat", "1s", "--ttl", "2s",
        zk.url(prefix),
    )  # fmt: skip
    try:
        assert wait_for(lambda: raw.exists(path) is not None, 20), node.output()
    finally:
        node.kill()
        node.wait()
    killed_at = time.monotonic()

    assert wait_for(lambda: raw.exists(path) is None, 2.0 + TICK_MS / 1000 + 1.0)
    gone_after = time.monotonic() - killed_at
    assert gone_after >= 2.0 - 2.0 / 3 - 0.1, gone_after


@integration
async def test_deregister_removes_the_node_at_once(
    zk: ZooKeeperServer, raw: KazooClient, prefix: str
) -> None:
    async with make(zk.url(prefix), ttl_seconds=10) as backend:
        await backend.register(NODE_A)
        await backend.deregister(NODE_A)

        assert raw.exists(backend.node_path(NODE_A)) is None
        await asyncio.sleep(0.5)  # the node's watch must not bring it back
        assert raw.exists(backend.node_path(NODE_A)) is None
        await backend.deregister(NODE_A)  # already gone: still fine


@integration
async def test_a_node_deleted_behind_its_back_is_made_again_at_once(
    zk: ZooKeeperServer, raw: KazooClient, prefix: str
) -> None:
    async with make(zk.url(prefix), heartbeat_seconds=60, ttl_seconds=5) as backend:
        await backend.register(NODE_A)
        path = backend.node_path(NODE_A)
        raw.delete(path)

        back = await asyncio.to_thread(wait_for, lambda: raw.exists(path), 2.0)

    assert back, "no heartbeat runs: only the node's watch can bring it back"


@integration
async def test_a_node_held_by_an_older_session_is_taken_over_when_it_ends(
    zk: ZooKeeperServer, raw: KazooClient, prefix: str
) -> None:
    """A restarted process finds its node still held by its previous session;
    the node is its own again as soon as that session ends, not a heartbeat later."""
    old = KazooClient(hosts=zk.address, timeout=5)
    old.start(timeout=10)
    path = f"{directory(prefix)}/{NODE_A}"
    old.create(path, str(NODE_A).encode(), ephemeral=True, makepath=True)
    try:
        async with make(zk.url(prefix), heartbeat_seconds=60, ttl_seconds=5) as node:
            await node.register(NODE_A)
            old_session = old.client_id[0]
            assert owner(raw, path) == old_session
            old.stop()

            assert await asyncio.to_thread(
                wait_for, lambda: owner(raw, path) not in (None, old_session), 2.0
            )
            assert node.session.kazoo is not None
            assert node.session.kazoo.client_id is not None
            assert owner(raw, path) == node.session.kazoo.client_id[0]
    finally:
        old.stop()
        old.close()


@integration
async def test_closing_the_backend_ends_the_session_and_its_nodes(
    zk: ZooKeeperServer, raw: KazooClient, prefix: str
) -> None:
    backend = make(zk.url(prefix), ttl_seconds=10)
    await backend.register(NODE_A)
    await backend.aclose()

    assert raw.exists(backend.node_path(NODE_A)) is None


@integration
async def test_watch_sees_a_join_and_a_leave(zk: ZooKeeperServer, prefix: str) -> None:
    async with (
        make(zk.url(prefix), ttl_seconds=0) as watcher,
        make(zk.url(prefix), ttl_seconds=2) as node,
        watcher.watch() as watch,
    ):
        assert await next_event(watch) == Entries()
        await node.register(NODE_A)
        assert await next_event(watch) == Entries([NODE_A])
        await node.register(NODE_B)
        assert await next_event(watch) == Entries([NODE_A, NODE_B])
        await node.deregister(NODE_A)
        assert await next_event(watch) == Entries([NODE_B])


@integration
async def test_watch_creates_the_missing_directory_as_swarm_does(
    zk: ZooKeeperServer, raw: KazooClient, prefix: str
) -> None:
    async with make(zk.url(prefix), ttl_seconds=0) as backend, backend.watch() as w:
        assert await next_event(w) == Entries()

    assert owner(raw, directory(prefix)) == 0


@integration
async def test_watch_follows_a_burst_of_changes_to_the_last_one(
    zk: ZooKeeperServer, raw: KazooClient, prefix: str
) -> None:
    """Children deleted between a listing and their read are skipped, not errors."""
    base = directory(prefix)
    async with make(zk.url(prefix), ttl_seconds=0) as backend, backend.watch() as w:
        assert await next_event(w) == Entries()
        addresses = [f"10.1.0.{n}:2375" for n in range(1, 31)]
        pending = [
            raw.create_async(f"{base}/{a}", a.encode(), ephemeral=True)
            for a in addresses
        ]
        pending += [raw.delete_async(f"{base}/{a}") for a in addresses[::2]]
        for request in pending:
            request.get(timeout=10)

        events = await until(w, Entries.parse(addresses[1::2]))

    assert not [e for e in events if isinstance(e, BackendError)]


@integration
async def test_a_value_that_is_no_address_is_reported_by_key_and_the_watch_goes_on(
    zk: ZooKeeperServer, raw: KazooClient, prefix: str
) -> None:
    bad = f"{directory(prefix)}/junk"
    raw.create(bad, b"not-an-address", makepath=True)
    async with make(zk.url(prefix), ttl_seconds=0) as backend, backend.watch() as w:
        error = await next_event(w)
        raw.delete(bad)
        raw.create(f"{directory(prefix)}/10.0.0.1:2375", b"10.0.0.1:2375")
        assert await next_event(w) == Entries([NODE_A])

    assert isinstance(error, BackendResponseError)
    assert bad in str(error)


@integration
async def test_a_change_of_value_is_seen(
    zk: ZooKeeperServer, raw: KazooClient, prefix: str
) -> None:
    """Swarm reads values, not names: a value rewritten in place is a new member."""
    key = f"{directory(prefix)}/slot-1"
    raw.create(key, b"10.0.0.1:2375", makepath=True)
    async with make(zk.url(prefix), ttl_seconds=0) as backend, backend.watch() as w:
        assert await next_event(w) == Entries([NODE_A])
        raw.set(key, b"10.0.0.2:2375")
        assert await next_event(w) == Entries([NODE_B])


@integration
async def test_refused_write_is_a_response_error(
    zk: ZooKeeperServer, raw: KazooClient, prefix: str
) -> None:
    read_only = [make_acl("world", "anyone", read=True)]
    raw.ensure_path(f"/{prefix}/docker/swarm")
    raw.create(directory(prefix), b"", acl=read_only)

    async with make(zk.url(prefix), ttl_seconds=2) as backend:
        with pytest.raises(BackendResponseError, match="refused") as caught:
            await backend.register(NODE_A)

    assert "NoAuth" in repr(caught.value.__cause__)


# -- the store failing --------------------------------------------------------


@integration
async def test_a_stopped_store_is_unavailable_to_register_deregister_and_watch(
    own_zk: ZooKeeperServer, prefix: str
) -> None:
    """Every failure is a muster error, whatever kazoo raised underneath."""
    async with make(own_zk.url(prefix), heartbeat_seconds=1, ttl_seconds=2) as backend:
        with pytest.raises(BackendUnavailableError, match=own_zk.address):
            await backend.register(NODE_A)
        with pytest.raises(BackendUnavailableError):
            await backend.deregister(NODE_A)
        async with backend.watch() as watch:
            assert isinstance(await next_event(watch), BackendUnavailableError)

        # And once connected, a store that goes away mid-call.
        own_zk.start()
        await register_soon(backend, NODE_A)
        own_zk.stop()
        with pytest.raises(BackendUnavailableError):
            await backend.register(NODE_B)


@integration
async def test_node_and_watch_started_before_the_store_reach_it_once_it_is_up(
    own_zk: ZooKeeperServer, prefix: str
) -> None:
    url = own_zk.url(prefix)
    async with (
        make(url, heartbeat_seconds=1, ttl_seconds=2) as node,
        make(url, heartbeat_seconds=1, ttl_seconds=0) as watcher,
        watcher.watch() as watch,
    ):
        heart = Heartbeat(node, NODE_A, heartbeat_seconds=1)
        task = asyncio.create_task(heart.run(leave=False))
        try:
            assert isinstance(await next_event(watch), BackendUnavailableError)
            own_zk.start()
            events = await until(watch, Entries([NODE_A]))
        finally:
            heart.stop()
            await task

    assert heart.failures >= 1
    assert Entries([NODE_A]) in events


@integration
async def test_watch_reports_the_store_going_away_then_resyncs_when_it_is_back(
    own_zk: ZooKeeperServer, prefix: str
) -> None:
    own_zk.start()
    url = own_zk.url(prefix)
    async with (
        make(url, heartbeat_seconds=1, ttl_seconds=5) as node,
        make(url, heartbeat_seconds=1, ttl_seconds=0) as watcher,
    ):
        await node.register(NODE_A)
        events = watcher.observe()
        try:
            assert await next_event(events) == Entries([NODE_A])
            own_zk.stop()
            assert isinstance(await next_event(events), BackendUnavailableError)
            own_zk.start()
            # A fresh read after the restart: the node's session survived it.
            seen = await until(events, Entries([NODE_A]))
            await register_soon(node, NODE_B)
            await until(events, Entries([NODE_A, NODE_B]))
        finally:
            await events.aclose()

    assert all(isinstance(e, BackendUnavailableError) for e in seen[:-1])


@integration
async def test_a_store_restart_keeps_the_node_without_a_heartbeat(
    own_zk: ZooKeeperServer, prefix: str
) -> None:
    """Sessions are stored with the data: a client back in time keeps its nodes."""
    own_zk.start()
    async with make(own_zk.url(prefix), heartbeat_seconds=1, ttl_seconds=5) as node:
        await node.register(NODE_A)
        own_zk.stop()
        own_zk.start()

        client = KazooClient(hosts=own_zk.address)
        client.start(timeout=10)
        try:
            path = node.node_path(NODE_A)
            assert wait_for(lambda: client.exists(path) is not None, 1.0)
        finally:
            client.stop()
            client.close()


@integration
async def test_an_expired_session_registers_the_node_again_by_itself(
    zk: ZooKeeperServer,
    raw: KazooClient,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A second client takes over the session and closes it: a true server-side
    expiry. No heartbeat runs; the backend re-creates the node on its new session."""
    caplog.set_level(logging.INFO, logger="muster.discovery")
    async with make(zk.url(prefix), heartbeat_seconds=60, ttl_seconds=2) as backend:
        await backend.register(NODE_A)
        path = backend.node_path(NODE_A)
        old_owner = owner(raw, path)

        client = backend.session.kazoo
        assert client is not None
        for _ in range(3):
            session = client.client_id
            if session is None:
                await asyncio.sleep(0.1)
                continue
            thief = KazooClient(hosts=zk.address, client_id=session, timeout=2)
            thief.start(timeout=10)
            thief.stop()
            thief.close()
            if await asyncio.to_thread(
                wait_for, lambda: owner(raw, path) not in (None, old_owner), 5
            ):
                break

        new_owner = owner(raw, path)
        assert new_owner not in (None, old_owner)
        assert client.client_id is not None
        assert new_owner == client.client_id[0]

    events = {(r.getMessage(), r.levelno): event_fields(r) for r in caplog.records}
    assert ("zookeeper.session_lost", logging.WARNING) in events
    assert events[("zookeeper.node_reregistered", logging.INFO)]["node"] == str(NODE_A)


@integration
async def test_fails_over_to_the_second_address_when_the_first_is_down(
    zk: ZooKeeperServer, prefix: str
) -> None:
    (dead,) = free_ports(1)
    url = f"zk://127.0.0.1:{dead},{zk.address}/{prefix}"
    for _ in range(3):  # kazoo shuffles the hosts: try a few orders
        async with make(url, heartbeat_seconds=1, ttl_seconds=2) as backend:
            await backend.register(NODE_A)
            async with backend.watch() as watch:
                assert await next_event(watch) == Entries([NODE_A])


# -- classic Swarm's layout --------------------------------------------------


def swarm_put(client: KazooClient, key: str, value: bytes) -> None:
    """Write a key as Swarm 1.2.9's libkv does with a TTL: each missing part of
    the path persistent and empty, the last one ephemeral and empty, then its
    value set."""
    parts = key.strip("/").split("/")
    for depth in range(1, len(parts) + 1):
        path = "/" + "/".join(parts[:depth])
        with contextlib.suppress(NodeExistsError):
            client.create(path, b"", ephemeral=depth == len(parts))
    client.set("/" + key.strip("/"), value)


def swarm_list(client: KazooClient, key: str) -> list[str]:
    """Read the members as Swarm's libkv does: the children, then each one's value."""
    base = "/" + key.strip("/")
    children = client.get_children(base)
    return [client.get(f"{base}/{child}")[0].decode() for child in children]


@integration
async def test_a_node_written_by_swarm_is_listed_with_a_muster_node(
    zk: ZooKeeperServer, prefix: str
) -> None:
    swarm = KazooClient(hosts=zk.address, timeout=5)
    swarm.start(timeout=10)
    try:
        swarm_put(swarm, f"{prefix}/docker/swarm/nodes/10.0.0.2:2375", b"10.0.0.2:2375")
        async with make(zk.url(prefix), ttl_seconds=2) as backend:
            await backend.register(NODE_A)
            async with backend.watch() as watch:
                assert await next_event(watch) == Entries([NODE_A, NODE_B])

                swarm.stop()  # Swarm's node goes with its session
                assert await next_event(watch) == Entries([NODE_A])
    finally:
        swarm.stop()
        swarm.close()


@integration
async def test_a_muster_node_reads_as_swarm_reads_it(
    zk: ZooKeeperServer, raw: KazooClient, prefix: str
) -> None:
    async with make(zk.url(prefix), ttl_seconds=2) as backend:
        await backend.register(NODE_A)
        await backend.register(Entry.parse("[2001:db8::2]:2375"))

        listed = swarm_list(raw, f"{prefix}/docker/swarm/nodes")

    assert sorted(listed) == ["10.0.0.1:2375", "[2001:db8::2]:2375"]


# -- TLS ---------------------------------------------------------------------


@pytest.fixture
def tls_zk(tls_files: TLSFiles) -> Iterator[ZooKeeperServer]:
    server = ZooKeeperServer(tls=tls_files)
    try:
        server.start()
        yield server
    finally:
        server.close()


@integration
async def test_registers_and_watches_over_tls_with_a_client_certificate(
    tls_zk: ZooKeeperServer, prefix: str
) -> None:
    options = tls_zk.options()
    async with make(tls_zk.url(prefix), ttl_seconds=2, options=options) as backend:
        await backend.register(NODE_A)
        async with backend.watch() as watch:
            assert await next_event(watch) == Entries([NODE_A])

    assert "Authenticated Id" in (tls_zk.data_dir / "zookeeper.log").read_text()


@integration
async def test_a_plain_client_cannot_reach_a_tls_only_store(
    tls_zk: ZooKeeperServer, prefix: str
) -> None:
    async with make(tls_zk.url(prefix), heartbeat_seconds=1, ttl_seconds=2) as backend:
        with pytest.raises(BackendUnavailableError):
            await backend.register(NODE_A)


@integration
def test_join_then_list_through_the_command_line(
    zk: ZooKeeperServer, prefix: str
) -> None:
    from tests.support import run_muster

    node = start_muster(
        "join", "--advertise", "10.7.0.1:2375", "--heartbeat", "1s", "--ttl", "2s",
        zk.url(prefix),
    )  # fmt: skip
    try:

        def listed() -> list[str]:
            result = run_muster("list", "--timeout", "5s", zk.url(prefix))
            return result.stdout.splitlines()

        assert wait_for(lambda: listed() == ["10.7.0.1:2375"], 20)
    finally:
        _, err = stop(node, signal.SIGTERM)

    assert "node.left" in err
    assert listed() == []
