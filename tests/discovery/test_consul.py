"""The Consul backend against the Consul stand-in (tests/stores/consul_standin.py).

Goal: a node registered through ``consul://`` is a key held by a session, as
classic Swarm writes it; a watcher sees joins and leaves as Consul commits them;
a node that stops refreshing is gone within its TTL; and the backend rides out
a store that is down, restarted, reached over TLS or through a second address.

The stand-in runs with a 500ms minimum session TTL (Consul's is 10s) so that
TTLs of a second or two keep the module fast; it invalidates a session exactly
twice its TTL after its last renewal, Consul's documented worst case, which is
``--ttl`` after the node's last heartbeat.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer

from muster.discovery import (
    BackendError,
    BackendResponseError,
    BackendUnavailableError,
    Entries,
    Entry,
    InvalidOptionError,
    InvalidURLError,
    Watch,
    create_backend,
    fetch_membership,
)
from muster.discovery.consul import ConsulBackend, session_ttl_seconds
from muster.discovery.heartbeat import Heartbeat
from muster.logs import event_fields
from tests.stores import free_ports
from tests.stores.consul import ConsulStandIn

NODE = Entry.parse("10.0.0.1:2375")
OTHER = Entry.parse("[2001:db8::2]:2375")
#: Classic Swarm's libkv marks the values it writes with Consul's lock flag.
SWARM_LOCK_FLAG = "3304740253564472344"


# URL and options: no store needed.


def test_url_names_the_agents_and_the_prefix() -> None:
    backend = create_backend("consul://10.0.0.5,10.0.0.6:8501/swarm")

    assert isinstance(backend, ConsulBackend)
    assert [str(e) for e in backend.target.endpoints] == [
        "10.0.0.5:8500",
        "10.0.0.6:8501",
    ]
    assert backend.target.node_key(NODE) == "swarm/docker/swarm/nodes/10.0.0.1:2375"
    assert backend.supports_register


def test_kv_path_option_moves_the_nodes() -> None:
    backend = create_backend("consul://h/p", options={"kv.path": "my/nodes"})

    assert isinstance(backend, ConsulBackend)
    assert backend.target.directory == "p/my/nodes"


@pytest.mark.parametrize("url", ["consul://", "consul:///swarm", "consul://h:x/p"])
def test_url_without_a_usable_store_address_is_rejected(url: str) -> None:
    with pytest.raises(InvalidURLError):
        create_backend(url)


def test_option_of_another_backend_is_rejected() -> None:
    with pytest.raises(InvalidOptionError, match=r"token\.cacertfile"):
        create_backend("consul://h/p", options={"token.cacertfile": "/tmp/ca.pem"})


def test_tls_needs_all_three_files(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")

    with pytest.raises(InvalidOptionError, match=r"kv\.certfile, kv\.keyfile"):
        create_backend("consul://h/p", options={"kv.cacertfile": str(ca)})


@pytest.mark.parametrize(
    ("ttl", "low", "session_ttl"),
    [
        (180.0, 10.0, 90.0),  # Swarm's default --ttl: gone within 180 s
        (20.0, 10.0, 10.0),
        (12.0, 10.0, 10.0),  # Consul's minimum: gone within 20 s, not 12 s
        (2.0, 0.5, 1.0),
        (400_000.0, 10.0, 86400.0),  # Consul's maximum
    ],
)
def test_session_ttl_is_half_the_ttl_within_consuls_range(
    ttl: float, low: float, session_ttl: float
) -> None:
    assert session_ttl_seconds(ttl, low, 86400.0) == session_ttl


# Against a running stand-in shared by the tests below; each uses its own prefix.


@pytest.fixture(scope="module")
def standin() -> Iterator[ConsulStandIn]:
    store = ConsulStandIn(min_session_ttl="500ms")
    store.start()
    yield store
    store.close()


@pytest.fixture
def url(standin: ConsulStandIn) -> str:
    return standin.url(f"t{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def http(standin: ConsulStandIn) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(standin.http_url, session)


class Http:
    """Plain calls to the stand-in's HTTP API, as another Consul client makes them."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self.session = session

    async def call(
        self, method: str, path: str, data: bytes | str | None = None, **params: str
    ) -> tuple[int, Any]:
        async with self.session.request(
            method, f"{self.base_url}{path}", data=data, params=params
        ) as response:
            text = await response.text()
            if response.content_type == "application/json" and text:
                return response.status, await response.json()
            return response.status, text


@pytest.fixture
def entry() -> Entry:
    """An address no other test registers, so its session can be told apart."""
    return Entry(f"n{uuid.uuid4().hex[:8]}.test", 2375)


def prefix_of(url: str) -> str:
    return url.rpartition("/")[2]


async def next_entries(watch: Watch, seconds: float = 10.0) -> Entries:
    """The next membership the watch yields, skipping failures."""
    async with asyncio.timeout(seconds):
        async for event in watch:
            if isinstance(event, Entries):
                return event
    raise AssertionError("the watch ended")


async def wait_for_entries(
    watch: Watch, expected: list[Entry], seconds: float = 10.0
) -> float:
    """Wait until the watch yields ``expected``; return when it did."""
    async with asyncio.timeout(seconds):
        while await next_entries(watch, seconds) != Entries(expected):
            pass
    return time.monotonic()


def consul_events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "muster.discovery.consul"
    ]


@pytest.mark.integration
async def test_registered_node_is_seen_by_a_watch(url: str) -> None:
    async with (
        create_backend(url, ttl_seconds=30) as node,
        create_backend(url) as watcher,
        watcher.watch() as watch,
    ):
        first = await next_entries(watch)
        await node.register(NODE)
        second = await next_entries(watch)

    assert (first, second) == (Entries(), Entries([NODE]))


@pytest.mark.integration
async def test_refreshing_keeps_a_node_listed_past_its_ttl(
    url: str, http: Http, entry: Entry
) -> None:
    async with create_backend(url, heartbeat_seconds=0.25, ttl_seconds=1) as node:
        for _ in range(10):  # 2.5 s: two and a half TTLs
            await node.register(entry)
            await asyncio.sleep(0.25)
        listed = await fetch_membership(node, 5)
        _, sessions = await http.call("GET", "/session/list")

    assert listed == Entries([entry])
    # One session, renewed every time: refreshing does not pile sessions up.
    assert [s["Name"] for s in sessions].count(f"muster {entry}") == 1


@pytest.mark.integration
async def test_node_that_stops_refreshing_is_gone_when_its_ttl_runs_out(
    url: str,
) -> None:
    # --ttl 1s asks for a 500ms session, which Consul drops after at most 1 s.
    async with (
        create_backend(url, ttl_seconds=1) as node,
        create_backend(url) as watcher,
        watcher.watch() as watch,
    ):
        asked = time.monotonic()
        await node.register(NODE)
        await wait_for_entries(watch, [NODE])
        gone_at = await wait_for_entries(watch, [], seconds=5)

    # The session is made after `asked`, so it cannot be gone before 1 s; the
    # stand-in's timer fires to the millisecond, the rest is the watch noticing.
    assert 1.0 <= gone_at - asked < 2.0


@pytest.mark.integration
async def test_deregister_removes_the_node_at_once_and_ends_its_session(
    url: str, http: Http, entry: Entry
) -> None:
    async with (
        create_backend(url, ttl_seconds=60) as node,
        create_backend(url) as watcher,
        watcher.watch() as watch,
    ):
        await node.register(entry)
        await wait_for_entries(watch, [entry])
        asked = time.monotonic()
        await node.deregister(entry)
        gone_at = await wait_for_entries(watch, [])
        _, sessions = await http.call("GET", "/session/list")

    assert gone_at - asked < 1.0
    assert f"muster {entry}" not in [s["Name"] for s in sessions]


@pytest.mark.integration
async def test_watch_sees_joins_and_leaves_as_they_happen(url: str) -> None:
    async with (
        create_backend(url, ttl_seconds=60) as first,
        create_backend(url, ttl_seconds=60) as second,
        create_backend(url) as watcher,
        watcher.watch() as watch,
    ):
        await wait_for_entries(watch, [])
        await first.register(NODE)
        await wait_for_entries(watch, [NODE])
        await second.register(OTHER)
        await wait_for_entries(watch, [NODE, OTHER])
        await first.deregister(NODE)
        await wait_for_entries(watch, [OTHER])
        await second.deregister(OTHER)
        await wait_for_entries(watch, [])


@pytest.mark.integration
async def test_value_that_is_not_an_address_is_reported_and_the_watch_goes_on(
    url: str, http: Http
) -> None:
    directory = f"{prefix_of(url)}/docker/swarm/nodes"
    await http.call("PUT", f"/kv/{directory}/junk", "not an address")

    async with create_backend(url) as watcher, watcher.watch() as watch:
        error = await anext(watch)
        await http.call("DELETE", f"/kv/{directory}/junk")
        await http.call("PUT", f"/kv/{directory}/{NODE}", str(NODE))
        recovered = await next_entries(watch)

    assert isinstance(error, BackendResponseError)
    assert f"{directory}/junk" in str(error)
    assert recovered == Entries([NODE])


@pytest.mark.integration
async def test_lost_session_is_replaced_at_the_next_heartbeat(
    url: str, http: Http, entry: Entry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muster.discovery.consul")
    async with (
        create_backend(url, ttl_seconds=60) as node,
        create_backend(url) as watcher,
        watcher.watch() as watch,
    ):
        await node.register(entry)
        await wait_for_entries(watch, [entry])
        _, sessions = await http.call("GET", "/session/list")
        (lost,) = [s["ID"] for s in sessions if s["Name"] == f"muster {entry}"]
        await http.call("PUT", f"/session/destroy/{lost}")
        await wait_for_entries(watch, [])

        await node.register(entry)
        back = await next_entries(watch)

    assert back == Entries([entry])
    assert consul_events(caplog).count("consul.session_created") == 2
    assert "consul.session_lost" in consul_events(caplog)


@pytest.mark.integration
async def test_key_held_by_another_session_still_lists_the_node(
    url: str, http: Http, caplog: pytest.LogCaptureFixture
) -> None:
    # A node killed and restarted at once finds its old session holding its key.
    caplog.set_level(logging.INFO, logger="muster.discovery.consul")
    key = f"{prefix_of(url)}/docker/swarm/nodes/{NODE}"
    _, created = await http.call("PUT", "/session/create", '{"LockDelay": "1ms"}')
    await http.call("PUT", f"/kv/{key}", str(NODE), acquire=created["ID"])

    async with create_backend(url, ttl_seconds=60) as node:
        await node.register(NODE)
        listed = await fetch_membership(node, 5)
        await http.call("PUT", f"/session/destroy/{created['ID']}")
        await node.register(NODE)  # the old session is gone: the key is ours now
        _, (entry,) = await http.call("GET", f"/kv/{key}")

    assert listed == Entries([NODE])
    assert "consul.key_held" in consul_events(caplog)
    assert entry["Session"] != created["ID"]


@pytest.mark.integration
async def test_session_ttl_under_the_servers_minimum_is_raised_to_it(
    url: str, http: Http, entry: Entry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muster.discovery.consul")
    # --ttl 400ms would ask for 200ms; the stand-in allows no less than 500ms.
    async with create_backend(url, ttl_seconds=0.4) as node:
        await node.register(entry)
        _, sessions = await http.call("GET", "/session/list")

    (session,) = [s for s in sessions if s["Name"] == f"muster {entry}"]
    assert session["TTL"] == "500ms"
    (limited,) = [
        r for r in caplog.records if r.getMessage() == "consul.session_ttl_limited"
    ]
    assert event_fields(limited)["low"] == "500ms"


# Classic Swarm 1.2.9 and muster on one Consul.


async def swarm_register(http: Http, directory: str, address: str) -> str:
    """Register ``address`` the way Swarm 1.2.9's libkv Consul store does.

    Swarm looks for the session holding the key; finding none, it creates one
    (TTL half of --ttl, delete behaviour, a 1ms lock-delay), takes the key with
    it (no value yet), renews the session, then writes the value with libkv's
    lock flag. It returns the session.
    """
    key = f"{directory}/{address}"
    status, _ = await http.call("GET", f"/kv/{key}")
    assert status == 404
    _, created = await http.call(
        "PUT",
        "/session/create",
        '{"LockDelay":"1ms","Behavior":"delete","TTL":"1m30s"}',
    )
    session = str(created["ID"])
    await http.call("PUT", f"/kv/{key}", acquire=session)
    await http.call("PUT", f"/session/renew/{session}")
    await http.call("PUT", f"/kv/{key}", address, flags=SWARM_LOCK_FLAG)
    return session


async def swarm_list(http: Http, directory: str) -> list[str]:
    """Read the nodes the way Swarm's watch does: the values under the directory."""
    status, pairs = await http.call("GET", f"/kv/{directory}", recurse="")
    if status == 404:
        return []
    return sorted(
        base64.b64decode(p["Value"]).decode()
        for p in pairs
        if p["Key"] != directory and p["Value"]
    )


@pytest.mark.integration
async def test_node_written_as_swarm_writes_it_is_listed_beside_a_muster_node(
    url: str, http: Http
) -> None:
    directory = f"{prefix_of(url)}/docker/swarm/nodes"
    async with create_backend(url, ttl_seconds=60) as node:
        await swarm_register(http, directory, "10.0.0.9:2375")
        await node.register(NODE)
        listed = await fetch_membership(node, 5)

    assert listed == Entries.parse(["10.0.0.9:2375", str(NODE)])


@pytest.mark.integration
async def test_muster_node_reads_as_swarm_reads_it(url: str, http: Http) -> None:
    directory = f"{prefix_of(url)}/docker/swarm/nodes"
    async with create_backend(url, ttl_seconds=60) as node:
        await node.register(OTHER)
        await swarm_register(http, directory, "10.0.0.9:2375")
        seen_by_swarm = await swarm_list(http, directory)
        _, (pair,) = await http.call("GET", f"/kv/{directory}/{OTHER}")
        _, (session,) = await http.call("GET", f"/session/info/{pair['Session']}")

    assert seen_by_swarm == sorted(["10.0.0.9:2375", str(OTHER)])
    assert base64.b64decode(pair["Value"]).decode() == str(OTHER)
    assert (session["Behavior"], session["TTL"]) == ("delete", "30s")


# The store going away, coming back, moving, and speaking TLS.


@pytest.fixture
def own_standin() -> Iterator[ConsulStandIn]:
    """A stand-in of the test's own, not started, that it may stop and start."""
    store = ConsulStandIn(min_session_ttl="500ms")
    yield store
    store.close()


@pytest.mark.integration
async def test_failures_while_the_store_is_down_are_muster_errors(
    own_standin: ConsulStandIn,
) -> None:
    own_standin.start()
    own_standin.stop()
    url = own_standin.url("down")

    async with create_backend(url) as backend, backend.watch() as watch:
        with pytest.raises(BackendUnavailableError) as registering:
            await backend.register(NODE)
        with pytest.raises(BackendUnavailableError):
            await backend.deregister(NODE)
        event = await anext(watch)

    assert isinstance(registering.value.__cause__, aiohttp.ClientError)
    assert isinstance(event, BackendUnavailableError)
    assert own_standin.address in str(event)


@pytest.fixture
async def broken_consul() -> AsyncIterator[str]:
    """An HTTP server that answers every Consul call with an error or nonsense."""

    async def nonsense(request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.Response(text="<html>proxy error</html>")
        return web.Response(status=500, text="rpc error: no cluster leader")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", nonsense)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"consul://127.0.0.1:{server.port}/broken"
    finally:
        await server.close()


@pytest.mark.integration
async def test_answers_muster_cannot_use_are_response_errors(
    broken_consul: str,
) -> None:
    async with create_backend(broken_consul) as backend, backend.watch() as watch:
        with pytest.raises(BackendResponseError, match="no cluster leader") as caught:
            await backend.register(NODE)
        event = await anext(watch)

    assert caught.value.status == 500
    assert isinstance(event, BackendResponseError)


@pytest.mark.integration
async def test_an_ipv6_agent_address_is_reached() -> None:
    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=404, headers={"X-Consul-Index": "7"})

    app = web.Application()
    app.router.add_get("/v1/kv/{key:.*}", empty)
    server = TestServer(app, host="::1")
    await server.start_server()
    try:
        async with create_backend(f"consul://[::1]:{server.port}/p") as backend:
            listed = await fetch_membership(backend, 5)
    finally:
        await server.close()

    assert listed == Entries()


@pytest.mark.integration
async def test_node_and_watch_started_before_the_store_reach_it_once_it_is_up(
    own_standin: ConsulStandIn,
) -> None:
    url = own_standin.url("late")
    async with (
        create_backend(url, heartbeat_seconds=0.3, ttl_seconds=2) as node,
        create_backend(url, heartbeat_seconds=0.3) as watcher,
        watcher.watch() as watch,
    ):
        heartbeat = Heartbeat(node, NODE, heartbeat_seconds=0.3)
        beating = asyncio.create_task(heartbeat.run(leave=False))
        try:
            early = await anext(watch)
            own_standin.start()
            await wait_for_entries(watch, [NODE])
        finally:
            heartbeat.stop()
            await beating

    assert isinstance(early, BackendUnavailableError)
    assert heartbeat.failures > 0


@pytest.mark.integration
async def test_watch_survives_a_store_restart_and_loses_no_live_node(
    own_standin: ConsulStandIn,
) -> None:
    own_standin.start()
    url = own_standin.url("restart")
    async with (
        create_backend(url, heartbeat_seconds=0.3, ttl_seconds=2) as node,
        create_backend(url, heartbeat_seconds=0.3) as watcher,
        watcher.watch() as watch,
    ):
        heartbeat = Heartbeat(node, NODE, heartbeat_seconds=0.3)
        beating = asyncio.create_task(heartbeat.run(leave=False))
        try:
            await wait_for_entries(watch, [NODE])
            own_standin.stop()
            async with asyncio.timeout(10):
                failure = await anext(watch)
            own_standin.start()
            # The watch passes on changes only: show it is back with a join.
            await node.register(OTHER)
            joined = await next_entries(watch)
        finally:
            heartbeat.stop()
            await beating

    assert isinstance(failure, BackendError)
    assert joined == Entries([NODE, OTHER])


@pytest.mark.integration
async def test_second_address_is_used_when_the_first_is_down(
    standin: ConsulStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="muster.discovery.consul")
    (dead,) = free_ports(1)
    url = f"consul://127.0.0.1:{dead},{standin.address}/f{uuid.uuid4().hex[:8]}"

    async with (
        create_backend(url, ttl_seconds=30) as node,
        create_backend(url) as watcher,
        watcher.watch() as watch,
    ):
        await node.register(NODE)
        seen = await next_entries(watch)

    assert seen == Entries([NODE])
    (failover, *_) = [r for r in caplog.records if r.getMessage() == "consul.failover"]
    assert event_fields(failover)["endpoint"] == standin.address
    assert f"127.0.0.1:{dead}" in event_fields(failover)["failed"]


@pytest.fixture(scope="module")
def tls_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A stand-in over https that requires client certificates of a private CA."""
    folder = tmp_path_factory.mktemp("consul-tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("muster-client")
    files = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key")}
    files |= {n: folder / f"{n}.pem" for n in ("client-cert", "client-key")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    trustme.CA().cert_pem.write_to_path(str(folder / "other-ca.pem"))
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    client.cert_chain_pems[0].write_to_path(str(files["client-cert"]))
    client.private_key_pem.write_to_path(str(files["client-key"]))

    store = ConsulStandIn(tls=(files["cert"], files["key"], files["ca"]))
    store.start()
    yield {
        "url": store.url("tls"),
        "kv.cacertfile": str(files["ca"]),
        "kv.certfile": str(files["client-cert"]),
        "kv.keyfile": str(files["client-key"]),
        "other-ca": str(folder / "other-ca.pem"),
    }
    store.close()


@pytest.mark.integration
async def test_tls_options_reach_consul_over_https_with_a_client_certificate(
    tls_standin: dict[str, str],
) -> None:
    options = {k: v for k, v in tls_standin.items() if k.startswith("kv.")}
    async with (
        create_backend(tls_standin["url"], ttl_seconds=30, options=options) as node,
        create_backend(tls_standin["url"], options=options) as watcher,
        watcher.watch() as watch,
    ):
        await node.register(NODE)
        seen = await next_entries(watch)
        await node.deregister(NODE)

    assert seen == Entries([NODE])


@pytest.mark.integration
async def test_store_certificate_from_another_ca_fails_as_unavailable(
    tls_standin: dict[str, str],
) -> None:
    options = {k: v for k, v in tls_standin.items() if k.startswith("kv.")}
    options["kv.cacertfile"] = tls_standin["other-ca"]
    async with create_backend(tls_standin["url"], options=options) as backend:
        with pytest.raises(BackendUnavailableError, match="certificate"):
            await backend.register(NODE)
