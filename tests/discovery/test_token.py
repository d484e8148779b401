"""The token backend: URL rules, and its client against stand-in services.

The scenarios against the real ``muster serve`` live in tests/cli/test_token_cli.py;
here a minimal Swarm-only service (no index header, no long-poll) checks the client's
own logic: the fallback to polling and the handling of nonsense answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from muster.discovery import (
    BackendResponseError,
    BackendUnavailableError,
    ClusterNotFoundError,
    Entries,
    Entry,
    InvalidOptionError,
    InvalidURLError,
    UnsupportedOperationError,
    create_backend,
)
from muster.discovery.token import DEFAULT_SERVICE_URL, TokenBackend, split_token_url

TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("url", "base", "token"),
    [
        (f"token://{TOKEN}", DEFAULT_SERVICE_URL, TOKEN),
        (
            f"token://disco.example:8443/v1/{TOKEN}",
            "https://disco.example:8443/v1",
            TOKEN,
        ),
        (f"token://disco.example/{TOKEN}", "https://disco.example", TOKEN),
        (f"token+http://127.0.0.1:7733/v1/{TOKEN}", "http://127.0.0.1:7733/v1", TOKEN),
        (f"token+https://[::1]:7733/v1/{TOKEN}", "https://[::1]:7733/v1", TOKEN),
    ],
)
def test_url_names_the_service_and_the_token(url: str, base: str, token: str) -> None:
    backend = create_backend(url)

    assert isinstance(backend, TokenBackend)
    assert (backend.base_url, backend.token) == (base, token)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("token://", "token is empty"),
        ("token://host:1/v1/", "token is empty"),
        (f"token+http://{TOKEN}", "names no service"),
        (f"token+https:///{TOKEN}", "empty service address"),
    ],
)
def test_unusable_token_url_is_rejected_with_a_hint(url: str, message: str) -> None:
    with pytest.raises(InvalidURLError, match=message):
        create_backend(url)


def test_split_refuses_other_schemes() -> None:
    with pytest.raises(InvalidURLError):
        split_token_url("etcd", "h:1/x")


def test_client_certificate_needs_both_halves() -> None:
    with pytest.raises(InvalidOptionError, match="give both or neither"):
        create_backend(f"token://h/{TOKEN}", options={"token.certfile": "/tmp/c.pem"})


def test_missing_ca_file_is_named() -> None:
    with pytest.raises(InvalidOptionError, match=r"/nonexistent/ca\.pem"):
        create_backend(
            f"token://h/{TOKEN}", options={"token.cacertfile": "/nonexistent/ca.pem"}
        )


def test_unknown_option_is_rejected() -> None:
    with pytest.raises(InvalidOptionError, match=r"kv\.path"):
        create_backend(f"token://h/{TOKEN}", options={"kv.path": "x"})


class SwarmOnlyService:
    """Speaks only classic Swarm's token API; counts the GETs it answers."""

    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.gets = 0
        self.body: str | None = None
        self.status = 200
        self.requests: list[web.Request] = []
        app = web.Application()
        app.router.add_get("/v1/clusters/{token}", self.get)
        app.router.add_post("/v1/clusters/{token}", self.post)
        self.app = app

    async def get(self, request: web.Request) -> web.Response:
        self.gets += 1
        self.requests.append(request)
        if self.body is not None:
            return web.Response(text=self.body, status=self.status)
        return web.json_response(self.addresses, status=self.status)

    async def post(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        self.addresses.append(await request.text())
        return web.Response()


@pytest.fixture
async def swarm_only() -> AsyncIterator[tuple[SwarmOnlyService, str]]:
    service = SwarmOnlyService()
    server = TestServer(service.app, host="127.0.0.1")
    await server.start_server()
    try:
        yield service, f"token+http://127.0.0.1:{server.port}/v1/{TOKEN}"
    finally:
        await server.close()


async def test_register_sends_what_swarm_sends(
    swarm_only: tuple[SwarmOnlyService, str],
) -> None:
    service, url = swarm_only
    async with create_backend(url, ttl_seconds=90) as backend:
        await backend.register(Entry.parse("[2001:db8::2]:2375"))

    request = service.requests[-1]
    assert request.query["ttl"] == "90"
    assert request.content_type == "application/json"
    assert service.addresses == ["[2001:db8::2]:2375"]


async def test_watch_falls_back_to_polling_once_a_heartbeat(
    swarm_only: tuple[SwarmOnlyService, str],
) -> None:
    service, url = swarm_only
    service.addresses = ["10.0.0.1:2375"]
    async with (
        create_backend(url, heartbeat_seconds=0.2) as backend,
        backend.watch() as watch,
    ):
        first = await anext(watch)
        service.addresses.append("10.0.0.2:2375")
        second = await asyncio.wait_for(anext(watch), timeout=10)

    assert first == Entries.parse(["10.0.0.1:2375"])
    assert second == Entries.parse(["10.0.0.1:2375", "10.0.0.2:2375"])
    assert all("index" not in r.query for r in service.requests)


async def test_watch_reports_a_body_that_is_not_a_list_and_goes_on(
    swarm_only: tuple[SwarmOnlyService, str],
) -> None:
    service, url = swarm_only
    service.body = json.dumps({"nodes": []})
    async with (
        create_backend(url, heartbeat_seconds=0.1) as backend,
        backend.watch() as watch,
    ):
        error = await anext(watch)
        service.body = None
        service.addresses = ["10.0.0.3:2375"]
        recovered = await asyncio.wait_for(anext(watch), timeout=10)

    assert isinstance(error, BackendResponseError)
    assert "JSON list" in str(error)
    assert recovered == Entries.parse(["10.0.0.3:2375"])


async def test_a_listed_bad_address_is_a_response_error(
    swarm_only: tuple[SwarmOnlyService, str],
) -> None:
    service, url = swarm_only
    service.addresses = ["no-port-here"]
    async with create_backend(url) as backend, backend.watch() as watch:
        error = await anext(watch)

    assert isinstance(error, BackendResponseError)
    assert "no-port-here" in str(error)


async def test_unknown_token_is_cluster_not_found(
    swarm_only: tuple[SwarmOnlyService, str],
) -> None:
    service, url = swarm_only
    service.status = 404
    async with create_backend(url) as backend, backend.watch() as watch:
        error = await anext(watch)

    assert isinstance(error, ClusterNotFoundError)
    assert TOKEN not in str(error)


async def test_graceful_leave_against_a_swarm_only_service_is_unsupported(
    swarm_only: tuple[SwarmOnlyService, str],
) -> None:
    _, url = swarm_only
    async with create_backend(url) as backend:
        with pytest.raises(UnsupportedOperationError):
            await backend.deregister(Entry.parse("10.0.0.1:2375"))


async def test_unreachable_service_is_reported_without_the_token() -> None:
    url = f"token+http://127.0.0.1:9/v1/{TOKEN}"
    async with create_backend(url) as backend:
        with pytest.raises(BackendUnavailableError) as caught:
            await backend.register(Entry.parse("10.0.0.1:2375"))

    assert "127.0.0.1:9" in str(caught.value)
    assert TOKEN not in str(caught.value)
