"""The token service's HTTP API, wire-compatible with classic Swarm's under ``/v1``.

Swarm 1.2.9 only ever creates a cluster, registers ``host:port`` with a TTL, reads
the member list and deletes a cluster. muster adds what its users asked for: a
graceful leave, per-node details, and long-polling (``?index=N&wait=30s``) so that
a watcher hears of a change at once instead of a heartbeat later.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from aiohttp import web

from muster import __version__
from muster.durations import parse_duration
from muster.errors import InvalidDurationError, InvalidEntryError
from muster.logs import mask_token

from .openapi import openapi_document
from .store import (
    ClusterFullError,
    StorageError,
    Store,
    StoreError,
    UnknownClusterError,
    UnknownNodeError,
)

logger = logging.getLogger(__name__)

#: Response header carrying the cluster's membership version.
INDEX_HEADER = "X-Muster-Index"
#: The TTL a registration gets when it names none, as in Swarm's ``--ttl`` default.
DEFAULT_TTL_SECONDS = 180
#: The largest registration body accepted; an address needs a few dozen bytes.
MAX_BODY_BYTES = 1024
#: How long a long-poll waits when it names an index but no wait.
DEFAULT_WAIT_SECONDS = 60.0
#: Longer waits are shortened to this, below common proxy idle timeouts.
MAX_WAIT_SECONDS = 600.0

_TOKEN = re.compile(r"[0-9a-f]{32}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ServiceSettings(Protocol):
    """The part of the service configuration the API needs."""

    @property
    def max_ttl_seconds(self) -> int: ...


class ApiError(Exception):
    """A request the API refuses, with the status and message to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# How the store's refusals travel over the wire.
_STATUS_OF: list[tuple[type[Exception], int]] = [
    (UnknownClusterError, 404),
    (UnknownNodeError, 404),
    (ClusterFullError, 409),
    (InvalidEntryError, 400),
    (StorageError, 503),
]


def error_response(status: int, message: str) -> web.Response:
    """Return the one-line JSON body every error of the API carries."""
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    except (StoreError, InvalidEntryError) as exc:
        status = next((code for kind, code in _STATUS_OF if isinstance(exc, kind)), 400)
        return error_response(status, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _describe_http_error(request, exc)
    except Exception:
        route = request.match_info.route.resource
        logger.exception(
            "request.failed",
            # The route template, not the path: paths hold cluster tokens.
            extra={
                "method": request.method,
                "route": route.canonical if route else "?",
            },
        )
        return error_response(500, "internal error")


def _describe_http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    if exc.status == 404:
        message = (
            f"no such endpoint {request.method} {_safe_path(request)}: "
            "see /openapi.json for the API"
        )
    elif exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        message = (
            f"method {request.method} is not allowed on {_safe_path(request)}; "
            f"allowed: {allowed.replace(',', ', ')}"
        )
    else:
        message = exc.reason
    response = error_response(exc.status, message)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def _safe_path(request: web.Request) -> str:
    """The request path with anything that looks like a token shortened."""
    return _TOKEN.sub(lambda m: mask_token(m.group(0)), request.path)


def parse_token(text: str) -> str:
    """Return ``text`` if it is a cluster token, else raise a 400."""
    if not _TOKEN.fullmatch(text):
        raise ApiError(
            400,
            f"cluster token {mask_token(text)!r} ({len(text)} characters) is "
            "malformed: a token is 32 lowercase hex characters, as returned by "
            "POST /v1/clusters",
        )
    return text


def parse_ttl(text: str | None, max_ttl_seconds: int) -> int:
    """Read the ``ttl`` query parameter: whole seconds from 1 to the maximum."""
    if text is None:
        return DEFAULT_TTL_SECONDS
    if not text.isascii() or not text.isdigit():
        raise ApiError(
            400, f"ttl {text!r} is not a whole number of seconds: use e.g. ?ttl=180"
        )
    ttl = int(text)
    if not 1 <= ttl <= max_ttl_seconds:
        raise ApiError(
            400, f"ttl {ttl} is out of range: use 1 to {max_ttl_seconds} seconds"
        )
    return ttl


def parse_index(text: str | None) -> int | None:
    """Read the ``index`` query parameter: a membership version, or none."""
    if text is None:
        return None
    if not text.isascii() or not text.isdigit():
        raise ApiError(
            400,
            f"index {text!r} is not a whole number: pass the X-Muster-Index "
            "value of your last answer",
        )
    return int(text)


def parse_wait(text: str | None) -> float:
    """Read the ``wait`` query parameter: Go duration or seconds, at most 600s."""
    if text is None:
        return DEFAULT_WAIT_SECONDS
    try:
        seconds = float(int(text)) if text.isascii() and text.isdigit() else None
        if seconds is None:
            seconds = parse_duration(text)
    except InvalidDurationError as exc:
        raise ApiError(400, f"wait: {exc}") from exc
    if seconds < 0:
        raise ApiError(400, f"wait {text!r} is negative: use e.g. ?wait=30s")
    return min(seconds, MAX_WAIT_SECONDS)


async def read_address(request: web.Request) -> str:
    """Read the node address from a registration body.

    Swarm sends the bare ``host:port`` labelled ``application/json``; a JSON string
    is accepted too. Surrounding whitespace (a trailing newline from curl) is ignored.
    """
    too_large = ApiError(
        413,
        f"request body is larger than {MAX_BODY_BYTES} bytes: "
        "send only the node's host:port",
    )
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large

    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ApiError(
            400, "request body is not UTF-8 text: send the node's host:port"
        ) from None
    if text.startswith('"'):
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError:
            decoded = None
        if not isinstance(decoded, str):
            raise ApiError(
                400, f"request body {text!r} is not a JSON string nor host:port"
            )
        text = decoded.strip()
    if not text:
        raise ApiError(
            400, "request body is empty: send the node's address as host:port"
        )
    return text


def format_time(timestamp: float) -> str:
    """Write a Unix time as RFC 3339 UTC with milliseconds."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Api:
    """The request handlers, bound to one store."""

    def __init__(self, store: Store, settings: ServiceSettings) -> None:
        self.store = store
        self.max_ttl_seconds = settings.max_ttl_seconds

    async def create_cluster(self, request: web.Request) -> web.Response:
        token = await self.store.create_cluster()
        return web.Response(text=token, content_type="text/plain")

    async def register(self, request: web.Request) -> web.Response:
        token = parse_token(request.match_info["token"])
        ttl_seconds = parse_ttl(request.query.get("ttl"), self.max_ttl_seconds)
        address = await read_address(request)

        index = await self.store.register(token, address, ttl_seconds)
        return web.Response(headers={INDEX_HEADER: str(index)})

    async def members(self, request: web.Request) -> web.Response:
        token = parse_token(request.match_info["token"])
        index = parse_index(request.query.get("index"))
        wait_seconds = parse_wait(request.query.get("wait"))

        if index is None:
            membership = self.store.membership(token)
        else:
            membership = await self.store.wait_for_change(token, index, wait_seconds)
        return web.json_response(
            list(membership.addresses), headers={INDEX_HEADER: str(membership.index)}
        )

    async def node_details(self, request: web.Request) -> web.Response:
        token = parse_token(request.match_info["token"])
        index, nodes = self.store.node_details(token)
        body = {
            "index": index,
            "nodes": [
                {
                    "addr": node.addr,
                    "last_seen": format_time(node.last_seen),
                    "expires_at": format_time(node.expires_at),
                    "ttl_seconds": node.ttl_seconds,
                }
                for node in nodes
            ],
        }
        return web.json_response(body, headers={INDEX_HEADER: str(index)})

    async def remove_node(self, request: web.Request) -> web.Response:
        token = parse_token(request.match_info["token"])
        # aiohttp decoded the path once; a client that encoded the brackets of
        # an IPv6 address twice still gets through.
        address = urllib.parse.unquote(request.match_info["addr"])

        index = await self.store.remove_node(token, address)
        return web.Response(status=204, headers={INDEX_HEADER: str(index)})

    async def delete_cluster(self, request: web.Request) -> web.Response:
        token = parse_token(request.match_info["token"])
        await self.store.delete_cluster(token)
        return web.Response(status=204)

    async def health(self, request: web.Request) -> web.Response:
        clusters, nodes = self.store.counts()
        body = {
            "status": "ok",
            "version": __version__,
            "clusters": clusters,
            "nodes": nodes,
        }
        return web.json_response(body)

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document(__version__))


def build_app(store: Store, settings: ServiceSettings) -> web.Application:
    """Make the aiohttp application serving the token API from ``store``."""
    api = _Api(store, settings)
    app = web.Application(middlewares=[_json_errors])
    router = app.router
    router.add_post("/v1/clusters", api.create_cluster)
    router.add_post("/v1/clusters/{token}", api.register)
    router.add_get("/v1/clusters/{token}", api.members)
    router.add_delete("/v1/clusters/{token}", api.delete_cluster)
    router.add_get("/v1/clusters/{token}/nodes", api.node_details)
    router.add_delete("/v1/clusters/{token}/{addr}", api.remove_node)
    router.add_get("/health", api.health)
    router.add_get("/openapi.json", api.openapi)

    async def release_waiters(app: web.Application) -> None:
        # Long-polls answer now rather than hold the shutdown for up to 600s.
        store.release_waiters()

    app.on_shutdown.append(release_waiters)
    return app
