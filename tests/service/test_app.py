"""The token service's HTTP API, exercised through aiohttp's test server."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from muster.service import app as app_module
from muster.service.server import ServiceConfig
from muster.service.store import Store

from .conftest import FakeClock

Client = TestClient[Any, Any]
INDEX = "X-Muster-Index"
UNKNOWN = "0123456789abcdef" * 2


@pytest.fixture
async def client(store: Store) -> AsyncIterator[Client]:
    config = ServiceConfig(data_dir=Path("unused"), max_ttl_seconds=3600)
    async with TestClient(TestServer(app_module.build_app(store, config))) as client:
        yield client


@pytest.fixture
async def token(client: Client) -> str:
    response = await client.post("/v1/clusters", headers={"Content-Type": ""})
    return await response.text()


async def register(
    client: Client, token: str, address: str = "10.0.0.1:2375", query: str = ""
) -> ClientResponse:
    """Register the way Swarm 1.2.9 does: a bare address labelled as JSON."""
    return await client.post(
        f"/v1/clusters/{token}{query}",
        data=address.encode(),
        headers={"Content-Type": "application/json"},
    )


async def assert_error(response: ClientResponse, status: int, *words: str) -> str:
    """Check an error answer: its status and a one-line JSON naming ``words``."""
    assert response.status == status
    assert response.content_type == "application/json"
    text = await response.text()
    assert "\n" not in text
    message = (await response.json())["error"]
    assert isinstance(message, str)
    for word in words:
        assert word in message
    return message


def snapshot(store: Store) -> object:
    """Everything the store holds, to show a refused request changed nothing."""
    clusters = sorted(store._clusters)
    return store.counts(), [store.node_details(token) for token in clusters]


async def test_create_answers_a_bare_token_as_text(client: Client) -> None:
    response = await client.post("/v1/clusters", headers={"Content-Type": ""})

    assert response.status == 200
    assert response.content_type == "text/plain"
    assert re.fullmatch(r"[0-9a-f]{32}", await response.text())


async def test_swarm_registration_then_list(client: Client, token: str) -> None:
    response = await register(client, token, query="?ttl=180")
    assert response.status == 200
    assert await response.read() == b""
    assert response.headers[INDEX] == "1"

    listed = await client.get(f"/v1/clusters/{token}")

    assert listed.status == 200
    assert listed.content_type == "application/json"
    assert await listed.json() == ["10.0.0.1:2375"]
    assert listed.headers[INDEX] == "1"


@pytest.mark.parametrize(
    "body", ['"10.0.0.1:2375"', "10.0.0.1:2375\n", ' "10.0.0.1:2375"\r\n']
)
async def test_json_string_and_padded_bodies_are_accepted(
    client: Client, token: str, body: str
) -> None:
    response = await register(client, token, body)

    assert response.status == 200
    assert await (await client.get(f"/v1/clusters/{token}")).json() == ["10.0.0.1:2375"]


async def test_list_is_sorted_with_ipv6_in_brackets(client: Client, token: str) -> None:
    for address in ("10.0.0.2:1", "[2001:db8::2]:2375", "10.0.0.1:1"):
        await register(client, token, address)

    listed = await client.get(f"/v1/clusters/{token}")

    assert await listed.json() == ["10.0.0.1:1", "10.0.0.2:1", "[2001:db8::2]:2375"]


async def test_refresh_keeps_the_index(client: Client, token: str) -> None:
    await register(client, token)
    response = await register(client, token)

    assert response.headers[INDEX] == "1"


async def test_node_details_show_times_and_ttl(
    client: Client, token: str, clock: FakeClock
) -> None:
    clock.advance(0.123)
    await register(client, token, "10.0.0.2:1", "?ttl=60")
    await register(client, token, "10.0.0.1:1")

    response = await client.get(f"/v1/clusters/{token}/nodes")

    assert response.status == 200
    assert await response.json() == {
        "index": 2,
        "nodes": [
            {
                "addr": "10.0.0.1:1",
                "last_seen": "2026-12-03T18:00:00.123Z",
                "expires_at": "2026-12-03T18:03:00.123Z",
                "ttl_seconds": 180,
            },
            {
                "addr": "10.0.0.2:1",
                "last_seen": "2026-12-03T18:00:00.123Z",
                "expires_at": "2026-12-03T18:01:00.123Z",
                "ttl_seconds": 60,
            },
        ],
    }


async def test_node_is_gone_from_answers_when_its_ttl_runs_out(
    client: Client, token: str, clock: FakeClock
) -> None:
    await register(client, token, query="?ttl=5")

    clock.advance(5)
    listed = await client.get(f"/v1/clusters/{token}")

    assert await listed.json() == []
    assert listed.headers[INDEX] == "2"


@pytest.mark.parametrize(
    "address", ["[2001:db8::2]:2375", "%5B2001%3Adb8%3A%3A2%5D%3A2375"]
)
async def test_delete_node_removes_it_at_once(
    client: Client, token: str, address: str
) -> None:
    await register(client, token, "[2001:db8::2]:2375")
    await register(client, token, "10.0.0.1:1")

    response = await client.delete(f"/v1/clusters/{token}/{address}")

    assert response.status == 204
    assert await (await client.get(f"/v1/clusters/{token}")).json() == ["10.0.0.1:1"]


async def test_delete_unregistered_node_is_404(
    client: Client, token: str, store: Store
) -> None:
    await register(client, token)
    before = snapshot(store)

    response = await client.delete(f"/v1/clusters/{token}/10.0.0.9:1")

    await assert_error(response, 404, "10.0.0.9:1", "not registered")
    assert snapshot(store) == before


async def test_delete_cluster(client: Client, token: str) -> None:
    await register(client, token)

    response = await client.delete(f"/v1/clusters/{token}")

    assert response.status == 204
    await assert_error(await client.get(f"/v1/clusters/{token}"), 404)
    await assert_error(await client.delete(f"/v1/clusters/{token}"), 404)


async def test_health_and_openapi(client: Client, token: str) -> None:
    health = await client.get("/health")
    document = await (await client.get("/openapi.json")).json()

    assert (await health.json())["status"] == "ok"
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) >= {
        "/v1/clusters",
        "/v1/clusters/{token}",
        "/v1/clusters/{token}/nodes",
        "/v1/clusters/{token}/{addr}",
        "/health",
    }


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("?ttl=0", ["ttl 0", "1 to 3600"]),
        ("?ttl=3601", ["ttl 3601"]),
        ("?ttl=-5", ["'-5'"]),
        ("?ttl=1.5", ["'1.5'"]),
        ("?ttl=abc", ["'abc'", "?ttl=180"]),
    ],
)
async def test_bad_ttl_is_400_and_changes_nothing(
    client: Client, token: str, store: Store, query: str, words: list[str]
) -> None:
    before = snapshot(store)

    response = await register(client, token, query=query)

    await assert_error(response, 400, *words)
    assert snapshot(store) == before


@pytest.mark.parametrize(
    "body", ["10.0.0.1", "10.0.0.1:99999", "2001:db8::2:1", "", '"unterminated', "[]"]
)
async def test_bad_address_is_400_and_changes_nothing(
    client: Client, token: str, store: Store, body: str
) -> None:
    before = snapshot(store)

    response = await register(client, token, body)

    message = await assert_error(response, 400)
    assert body.strip('"') in message
    assert snapshot(store) == before


async def test_large_body_is_413_and_changes_nothing(
    client: Client, token: str, store: Store
) -> None:
    before = snapshot(store)

    response = await register(client, token, "a" * 1025)

    await assert_error(response, 413, "1024 bytes")
    assert snapshot(store) == before


async def test_full_cluster_is_409_and_changes_nothing(
    client: Client, token: str, store: Store
) -> None:
    for n in range(3):
        await register(client, token, f"10.0.0.{n}:1")
    before = snapshot(store)

    response = await register(client, token, "10.0.0.9:1")

    await assert_error(response, 409, "3 nodes", "--max-nodes")
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("POST", ""),
        ("GET", ""),
        ("GET", "/nodes"),
        ("DELETE", ""),
        ("DELETE", "/10.0.0.1:1"),
    ],
)
async def test_malformed_and_unknown_tokens(
    client: Client, token: str, store: Store, method: str, suffix: str
) -> None:
    await register(client, token)
    before = snapshot(store)
    body = b"10.0.0.1:1"

    malformed = await client.request(
        method, f"/v1/clusters/{token.upper()}{suffix}", data=body
    )
    unknown = await client.request(method, f"/v1/clusters/{UNKNOWN}{suffix}", data=body)

    await assert_error(malformed, 400, "malformed", "32 lowercase hex")
    message = await assert_error(unknown, 404, "no cluster", UNKNOWN[:6])
    assert UNKNOWN not in message
    assert snapshot(store) == before


async def test_unknown_route_is_json_404(client: Client) -> None:
    await assert_error(await client.get("/v2/clusters"), 404, "/v2/clusters")


async def test_wrong_method_is_json_405(client: Client, token: str) -> None:
    response = await client.put(f"/v1/clusters/{token}")

    await assert_error(response, 405, "PUT", "POST")
    assert "POST" in response.headers["Allow"]


async def test_unexpected_failure_is_json_500_and_logged(
    client: Client,
    token: str,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explode(token: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(store, "membership", explode)

    response = await client.get(f"/v1/clusters/{token}")

    assert await assert_error(response, 500) == "internal error"
    [record] = [r for r in caplog.records if r.getMessage() == "request.failed"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert token not in str(vars(record))


# -- long-polling -------------------------------------------------------------


async def poll(client: Client, token: str, query: str) -> asyncio.Task[ClientResponse]:
    """Start a long-poll and give it time to reach the server and wait there."""
    task = asyncio.create_task(client.get(f"/v1/clusters/{token}{query}"))
    await asyncio.sleep(0.05)
    assert not task.done()
    return task


async def answered(request: Awaitable[ClientResponse]) -> tuple[list[str], str]:
    """Wait (briefly) for a poll's answer; return its members and index."""
    response = await asyncio.wait_for(request, 2)
    assert response.status == 200
    return await response.json(), response.headers[INDEX]


async def test_poll_with_an_old_index_answers_at_once(
    client: Client, token: str
) -> None:
    await register(client, token)

    request = client.get(f"/v1/clusters/{token}?index=0&wait=10m")

    assert await answered(request) == (["10.0.0.1:2375"], "1")


async def test_poll_wakes_on_join(client: Client, token: str) -> None:
    task = await poll(client, token, "?index=0&wait=1h")

    await register(client, token)

    assert await answered(task) == (["10.0.0.1:2375"], "1")


async def test_poll_wakes_on_node_delete(client: Client, token: str) -> None:
    await register(client, token)
    task = await poll(client, token, "?index=1&wait=30")

    await client.delete(f"/v1/clusters/{token}/10.0.0.1:2375")

    assert await answered(task) == ([], "2")


async def test_poll_wakes_on_expiry(
    client: Client, token: str, store: Store, clock: FakeClock
) -> None:
    await register(client, token, query="?ttl=5")
    task = await poll(client, token, "?index=1")

    clock.advance(5)
    store.expire_due()

    assert await answered(task) == ([], "2")


async def test_poll_times_out_with_the_same_index(client: Client, token: str) -> None:
    await register(client, token)

    request = client.get(f"/v1/clusters/{token}?index=1&wait=50ms")

    assert await answered(request) == (["10.0.0.1:2375"], "1")


async def test_poll_on_deleted_cluster_is_404(client: Client, token: str) -> None:
    task = await poll(client, token, "?index=0&wait=30s")

    await client.delete(f"/v1/clusters/{token}")

    await assert_error(await asyncio.wait_for(task, 2), 404, "no cluster")


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("?index=x", ["index 'x'"]),
        ("?index=-1", ["index '-1'"]),
        ("?index=0&wait=soon", ['"soon"', "60s"]),
        ("?index=0&wait=-5s", ["'-5s'"]),
        ("?index=0&wait=10", []),  # valid: proves the others fail on their values
    ],
)
async def test_bad_poll_parameters_are_400(
    client: Client, token: str, query: str, words: list[str]
) -> None:
    await register(client, token)

    response = await client.get(f"/v1/clusters/{token}{query}")

    if words:
        await assert_error(response, 400, *words)
    else:
        assert response.status == 200


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(None, 60.0), ("0", 0.0), ("45", 45.0), ("1m30s", 90.0), ("2h", 600.0)],
)
def test_wait_defaults_to_60s_and_is_capped_at_600s(
    text: str | None, seconds: float
) -> None:
    assert app_module.parse_wait(text) == seconds


# -- logging --------------------------------------------------------------------


async def test_logs_never_hold_a_full_token(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    steps: list[Callable[[str], Awaitable[ClientResponse]]] = [
        lambda t: register(client, t),
        lambda t: register(client, t),
        lambda t: client.get(f"/v1/clusters/{t}?index=0"),
        lambda t: client.put(f"/v1/clusters/{t}"),
        lambda t: client.delete(f"/v1/clusters/{t}/10.0.0.1:2375"),
        lambda t: client.delete(f"/v1/clusters/{t}"),
    ]
    token = await (await client.post("/v1/clusters")).text()
    for step in steps:
        await step(token)

    # aiohttp's access log, which prints paths, is off in the real server; the
    # subprocess tests read that server's whole output.
    records = [r for r in caplog.records if r.name.startswith("muster.")]
    assert records
    for record in records:
        assert token not in record.getMessage()
        assert token not in str(vars(record))
