"""etcd's v2 keys API over HTTP, the dialect classic Swarm speaks (``etcd.api=v2``).

No maintained Python client for the v2 API is left, and muster needs four calls
of it, so it makes them with aiohttp:

- register: ``PUT /v2/keys/<folder>/<addr>`` with ``value=<addr>&ttl=<n>``, as
  Swarm's libkv client does. Later heartbeats send ``refresh=true`` with the TTL
  alone: etcd then pushes the expiry without waking every watcher of the folder.
- deregister: ``DELETE`` the key.
- watch: ``GET <folder>?recursive=true`` and its ``X-Etcd-Index``, then long-polls
  ``?wait=true&recursive=true&waitIndex=<index+1>``, one event per answer. etcd
  keeps only its last 1000 events; once the index falls out of them (error 401,
  "event index cleared") the watch reads the folder afresh.

Swarm creates the folder with ``PUT <folder>?dir=true`` before watching it; muster
does not need it, reads a missing folder as an empty cluster, and skips any
folders nested inside it, as Swarm does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from muster.errors import (
    BackendError,
    BackendResponseError,
    BackendUnavailableError,
    InvalidOptionError,
)

from .backend import WatchEvent
from .entry import Entry
from .etcd_common import (
    REQUEST_SECONDS,
    TLS_HINT,
    NodeValues,
    follow_with_retries,
    unreachable,
    whole_seconds,
)
from .kv import KVTarget

logger = logging.getLogger(__name__)

#: How long one long-poll may wait for an event before it is asked again; etcd
#: itself never ends a quiet wait.
LONG_POLL_SECONDS = 30.0
#: etcd v2 ``errorCode`` values muster acts on.
KEY_NOT_FOUND = 100
EVENT_INDEX_CLEARED = 401

_WRITES = frozenset({"set", "create", "update", "compareAndSwap"})
_REMOVALS = frozenset({"delete", "expire", "compareAndDelete"})


@dataclass(frozen=True, slots=True)
class _Answer:
    """One HTTP answer from etcd, its JSON decoded when it is JSON."""

    endpoint: str
    status: int
    index: int | None
    body: Any
    text: str

    @property
    def error_code(self) -> int | None:
        code = self.body.get("errorCode") if isinstance(self.body, dict) else None
        return code if isinstance(code, int) else None


class _Http:
    """An aiohttp session to the store's endpoints, moving on when one fails."""

    def __init__(self, target: KVTarget, ssl_context: ssl.SSLContext | None) -> None:
        scheme = "https" if ssl_context is not None else "http"
        self._bases = [f"{scheme}://{endpoint}" for endpoint in target.endpoints]
        self._ssl = ssl_context
        self._index = 0
        self._session: aiohttp.ClientSession | None = None

    @property
    def endpoint(self) -> str:
        """The ``host:port`` being talked to now."""
        return self._bases[self._index].partition("://")[2]

    async def request(
        self,
        method: str,
        key: str,
        *,
        doing: str,
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        long_poll: bool = False,
    ) -> _Answer:
        """Send one request about ``key``, trying each endpoint once if need be."""
        for attempt in range(1, len(self._bases) + 1):
            endpoint = self.endpoint
            try:
                answer = await self._send(method, key, params, form, long_poll)
            except (aiohttp.ClientError, TimeoutError) as exc:
                error: BackendError = BackendUnavailableError(
                    unreachable(
                        endpoint, doing, _describe(exc), tls=self._ssl is not None
                    )
                )
                cause: BaseException | None = exc
            else:
                if answer.status < 500:
                    return answer
                # An etcd member without a leader answers 5xx: try another one.
                error = BackendUnavailableError(_refusal(answer, doing))
                cause = None

            self._index = (self._index + 1) % len(self._bases)
            if attempt == len(self._bases):
                raise error from cause
            logger.warning(
                "etcd.endpoint_failed",
                extra={
                    "endpoint": endpoint,
                    "next": self.endpoint,
                    "error": str(error),
                },
            )
        raise AssertionError("unreachable: the loop returns or raises")

    async def _send(
        self,
        method: str,
        key: str,
        params: Mapping[str, str] | None,
        form: Mapping[str, str] | None,
        long_poll: bool,
    ) -> _Answer:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        # Brackets of IPv6 addresses are escaped; etcd unescapes the whole path.
        url = URL(
            f"{self._bases[self._index]}/v2/keys{quote(key, safe='/:')}", encoded=True
        )
        timeout = (
            aiohttp.ClientTimeout(total=None, sock_connect=REQUEST_SECONDS)
            if long_poll
            else aiohttp.ClientTimeout(total=REQUEST_SECONDS)
        )
        async with self._session.request(
            method,
            url,
            params=params,
            data=form,
            ssl=self._ssl if self._ssl is not None else True,
            timeout=timeout,
        ) as response:
            text = await response.text()
            index = response.headers.get("X-Etcd-Index", "")
            return _Answer(
                self.endpoint,
                response.status,
                int(index) if index.isdigit() else None,
                _decode(text),
                text,
            )

    async def aclose(self) -> None:
        """Close the session, if one is open."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class EtcdV2Client:
    """Nodes as keys with a TTL, watched by long-poll, over etcd's v2 HTTP API."""

    def __init__(
        self, target: KVTarget, *, heartbeat_seconds: float, ttl_seconds: float
    ) -> None:
        self.target = target
        self.heartbeat_seconds = heartbeat_seconds
        self.ttl_seconds = ttl_seconds
        self.directory_key = "/" + target.directory
        self._ssl = _ssl_context(target)
        self._http = _Http(target, self._ssl)
        # Nodes whose key this client wrote; their heartbeats only refresh the TTL.
        self._written: set[Entry] = set()

    def _key(self, entry: Entry) -> str:
        return f"{self.directory_key}/{entry}"

    async def register(self, entry: Entry) -> None:
        key, ttl = self._key(entry), str(whole_seconds(self.ttl_seconds))
        doing = f"registering {entry}"
        fields = {"node": str(entry), "backend": "etcd"}
        if entry in self._written:
            answer = await self._http.request(
                "PUT",
                key,
                doing=doing,
                form={"ttl": ttl, "refresh": "true", "prevExist": "true"},
            )
            if answer.status == 200:
                logger.debug("etcd.node_refreshed", extra=fields)
                return
            if answer.error_code != KEY_NOT_FOUND:
                raise BackendResponseError(
                    _refusal(answer, doing), status=answer.status
                )

        # First time, or the key expired or was deleted: write it whole.
        answer = await self._http.request(
            "PUT", key, doing=doing, form={"value": str(entry), "ttl": ttl}
        )
        if answer.status not in (200, 201):
            raise BackendResponseError(_refusal(answer, doing), status=answer.status)
        self._written.add(entry)
        logger.info("etcd.node_registered", extra={**fields, "ttl": int(ttl)})

    async def deregister(self, entry: Entry) -> None:
        doing = f"removing {entry}"
        answer = await self._http.request("DELETE", self._key(entry), doing=doing)
        self._written.discard(entry)
        if answer.status != 200 and answer.error_code != KEY_NOT_FOUND:
            raise BackendResponseError(_refusal(answer, doing), status=answer.status)
        logger.debug("etcd.node_removed", extra={"node": str(entry), "backend": "etcd"})

    def observe(self) -> AsyncGenerator[WatchEvent, None]:
        return self._observe()

    async def _observe(self) -> AsyncGenerator[WatchEvent, None]:
        # Each watch has its own session, closed when the watch stops.
        http = _Http(self.target, self._ssl)
        values = NodeValues(self.directory_key)
        fields = {"backend": "etcd", "directory": self.directory_key}
        try:
            async with aclosing(
                follow_with_retries(
                    lambda: self._session(http, values),
                    heartbeat_seconds=self.heartbeat_seconds,
                    fields=fields,
                )
            ) as events:
                async for event in events:
                    yield event
        finally:
            await http.aclose()

    async def _session(
        self, http: _Http, values: NodeValues
    ) -> AsyncGenerator[WatchEvent, None]:
        """Read the folder, then apply each event, until the store is lost."""
        index = await self._read(http, values)
        yield values.membership()
        while True:
            answer = await self._wait(http, index + 1)
            if answer is None:
                continue
            if answer.error_code == EVENT_INDEX_CLEARED:
                logger.info(
                    "etcd.watch_resync",
                    extra={"backend": "etcd", "reason": "event index cleared"},
                )
                index = await self._read(http, values)
            elif answer.status == 200:
                index = _apply(answer, values)
            else:
                raise BackendResponseError(
                    _refusal(answer, "watching the nodes"), status=answer.status
                )
            yield values.membership()

    async def _read(self, http: _Http, values: NodeValues) -> int:
        """Load every node of the folder into ``values``; return the store's index."""
        doing = "reading the nodes"
        answer = await http.request(
            "GET", self.directory_key, doing=doing, params={"recursive": "true"}
        )
        if answer.status == 404 and answer.error_code == KEY_NOT_FOUND:
            values.replace({})
        elif answer.status == 200:
            values.replace(_children(answer))
        else:
            raise BackendResponseError(_refusal(answer, doing), status=answer.status)

        if answer.index is None:
            raise BackendResponseError(
                f"etcd at {answer.endpoint} sent no X-Etcd-Index when {doing}; "
                "is this etcd's v2 API?"
            )
        return answer.index

    async def _wait(self, http: _Http, wait_index: int) -> _Answer | None:
        """Long-poll for the next event from ``wait_index``; None if none came."""
        params = {"wait": "true", "recursive": "true", "waitIndex": str(wait_index)}
        try:
            async with asyncio.timeout(LONG_POLL_SECONDS):
                return await http.request(
                    "GET",
                    self.directory_key,
                    doing="watching the nodes",
                    params=params,
                    long_poll=True,
                )
        except TimeoutError:
            return None

    async def aclose(self) -> None:
        await self._http.aclose()


def _apply(answer: _Answer, values: NodeValues) -> int:
    """Apply one watch event to ``values``; return the index it happened at."""
    body = answer.body
    node = body.get("node") if isinstance(body, dict) else None
    if not isinstance(node, dict) or not isinstance(node.get("key"), str):
        raise BackendResponseError(
            f"etcd at {answer.endpoint} sent a watch event muster cannot read: "
            f"{answer.text[:200]!r}"
        )
    modified = node.get("modifiedIndex")
    if not isinstance(modified, int):
        raise BackendResponseError(
            f"etcd at {answer.endpoint} sent an event without modifiedIndex"
        )

    action = body.get("action")
    if action in _WRITES and not node.get("dir"):
        values.put(node["key"], str(node.get("value", "")))
    elif action in _REMOVALS:
        values.remove(node["key"])
    return modified


def _children(answer: _Answer) -> dict[str, str]:
    """The keys and values right under the folder read; folders within are skipped."""
    body = answer.body
    node = body.get("node") if isinstance(body, dict) else None
    if not isinstance(node, dict):
        raise BackendResponseError(
            f"etcd at {answer.endpoint} answered a read with {answer.text[:200]!r}"
        )
    found: dict[str, str] = {}
    for child in node.get("nodes") or []:
        is_node = isinstance(child, dict) and isinstance(child.get("key"), str)
        if is_node and not child.get("dir"):
            found[child["key"]] = str(child.get("value", ""))
    return found


def _refusal(answer: _Answer, doing: str) -> str:
    """Describe an answer that is not what ``doing`` needed."""
    body = answer.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        detail = body["message"]
        if isinstance(body.get("cause"), str):
            detail += f" ({body['cause']})"
    else:
        detail = answer.text.strip()[:200] or "(empty body)"
    message = (
        f"etcd at {answer.endpoint} answered {answer.status} when {doing}: {detail}"
    )
    if answer.status == 400 and "HTTPS" in answer.text:
        # Go's TLS server answers a plaintext request with this one 400.
        message += f" ({TLS_HINT})"
    return message


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "no answer in time"
    return str(exc) or type(exc).__name__


def _ssl_context(target: KVTarget) -> ssl.SSLContext | None:
    if target.tls is None:
        return None
    try:
        return target.tls.client_context()
    except (OSError, ssl.SSLError) as exc:
        raise InvalidOptionError(f"cannot load the TLS files for etcd: {exc}") from exc
