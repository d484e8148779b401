"""``consul://``: nodes held by Consul sessions, followed with blocking queries.

The URL is ``consul://HOST[:PORT][,HOST[:PORT]...]/PREFIX``, port 8500 by
default. A node is the key ``PREFIX/docker/swarm/nodes/HOST:PORT`` (``kv.path``
replaces the middle part) whose value is the address, acquired by a session
with a TTL and ``Behavior: delete``: the layout classic Swarm writes, so Swarm
and muster nodes on one Consul list each other. With ``kv.cacertfile``,
``kv.certfile`` and ``kv.keyfile`` muster speaks https, trusts that CA and
presents that client certificate. With several addresses it moves to the next
one when one cannot be reached.

How long a node stays listed
----------------------------
Consul does not expire keys; it invalidates sessions that are not renewed, and
then deletes the keys they hold. Its documentation says an expired session may
live on for up to twice its TTL, and its servers do wait that long. So muster,
like Swarm, asks for a session TTL of **half of --ttl**, and renews the session
every heartbeat:

- a node that stops without leaving is gone at most ``--ttl`` after its last
  heartbeat, provided ``--ttl`` is at least 20s;
- Consul refuses session TTLs under its ``session_ttl_min`` (10s unless the
  Consul servers are configured otherwise) and over 24h; muster then uses the
  nearest TTL Consul names as allowed. With Consul's defaults a ``--ttl`` under
  20s keeps a dead node listed for up to 20s, and a ``--ttl`` over 48h for 48h;
- a node that leaves (``muster join`` stopped by SIGINT or SIGTERM) is gone at
  once: its key is deleted and its session destroyed;
- a node whose session was lost (the node was cut off from Consul for longer
  than ``--ttl``) creates a new one and is listed again at its next heartbeat.

A watcher hears of every change as soon as Consul commits it: each read waits
on the server until the node keys change (``?index=N&wait=30s``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import warnings
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

import aiohttp
import consul
import consul.aio
from consul.callback import CB

from muster.durations import format_duration, parse_duration
from muster.errors import (
    BackendError,
    BackendResponseError,
    BackendUnavailableError,
    InvalidDurationError,
)

from .backend import WatchEvent
from .entry import Entries, Entry
from .kv import KVBackend, KVTarget

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_PORT = 8500
#: How long one blocking read may wait on the server before it answers anyway.
WAIT_SECONDS = 30.0
#: Ceiling for every other request; a heartbeat should not stall on a dead agent.
REQUEST_SECONDS = 10.0
#: First pause after a failed read; it doubles up to the heartbeat, with full
#: jitter, so watchers that lost Consul together do not return in step.
FIRST_RETRY_SECONDS = 0.5
#: The longest session TTL Consul accepts. Its shortest is the servers'
#: session_ttl_min, 10s unless configured: muster learns it from a refusal.
MAX_SESSION_TTL_SECONDS = 86400.0
#: Consul holds back a key freed by a lost session for the session's lock-delay
#: (15s by default); a node that re-registers must not wait that long.
LOCK_DELAY = "1ms"

# Consul's refusal names the range it allows: "... must be between [10s=24h0m0s]".
_TTL_RANGE = re.compile(r"Invalid Session TTL.*must be between \[([^=\]]+)=([^\]]+)\]")
_UNREACHABLE = (aiohttp.ClientError, TimeoutError, consul.Timeout)
# What py-consul raises for an answer it cannot use, or fails on while decoding it.
_REFUSED = (consul.ConsulException, ValueError, TypeError, KeyError, AttributeError)

_Operation = Callable[[Any], Awaitable[_T]]


def session_ttl_seconds(ttl_seconds: float, minimum: float, maximum: float) -> float:
    """The session TTL for a node TTL: half of it, held within Consul's range."""
    return min(max(ttl_seconds / 2, minimum), maximum)


class ConsulBackend(KVBackend):
    """Nodes are keys held by Consul sessions; watchers use blocking queries."""

    default_port = DEFAULT_PORT

    def __init__(
        self,
        target: KVTarget,
        *,
        scheme: str = "consul",
        heartbeat_seconds: float = 60.0,
        ttl_seconds: float = 180.0,
        options: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            target,
            scheme=scheme,
            heartbeat_seconds=heartbeat_seconds,
            ttl_seconds=ttl_seconds,
            options=options,
        )
        self._clients: dict[int, Any] = {}
        self._current = 0
        self._session: str | None = None
        self._registered: set[Entry] = set()
        self._lock = asyncio.Lock()
        # Learnt from Consul when it refuses a TTL; until then, ask for ttl/2.
        self._ttl_range: tuple[float, float] = (0.001, MAX_SESSION_TTL_SECONDS)

    async def register(self, entry: Entry) -> None:
        key = self.target.node_key(entry)
        fields = {"node": str(entry), "backend": self.scheme}
        async with self._lock:
            session = self._session
            if session is not None and not await self._renew(session):
                logger.warning("consul.session_lost", extra=fields)
                session = None
            if session is None:
                session = self._session = await self._create_session(entry)

            acquired = await self._call(
                f"registering {entry}",
                lambda c: c.kv.put(key, str(entry), acquire=session),
            )
            self._registered.add(entry)

        if acquired is not True:
            # Another session holds the key, most likely this node's previous run
            # that was killed: the node is listed; we take the key over once that
            # session runs out.
            logger.warning("consul.key_held", extra={**fields, "key": key})
        else:
            logger.debug("consul.registered", extra=fields)

    async def deregister(self, entry: Entry) -> None:
        key = self.target.node_key(entry)
        async with self._lock:
            await self._call(f"removing {entry}", lambda c: c.kv.delete(key))
            self._registered.discard(entry)
            session = self._session
            if session is not None and not self._registered:
                self._session = None
                await self._call(
                    "destroying the session", lambda c: c.session.destroy(session)
                )

    async def observe(self) -> AsyncGenerator[WatchEvent, None]:
        fields = {"backend": self.scheme, "directory": self.target.directory}
        logger.info("consul.watch_started", extra=fields)
        index = 0
        delay = FIRST_RETRY_SECONDS
        try:
            while True:
                try:
                    new_index, pairs = await self._read_nodes(index)
                except BackendError as exc:
                    yield exc
                    await asyncio.sleep(random.uniform(0, delay))
                    delay = min(delay * 2, self.heartbeat_seconds)
                    index = 0  # start again from a fresh, non-blocking read
                    continue

                delay = FIRST_RETRY_SECONDS
                # Consul's rules for blocking queries: an index that went back (a
                # store rebuilt from scratch) means read afresh; an index of 0
                # would turn every later read into a busy, non-blocking one.
                index = 0 if new_index < index else max(new_index, 1)
                logger.debug("consul.read", extra={**fields, "index": new_index})
                yield self._parse_nodes(pairs)
        finally:
            logger.info("consul.watch_stopped", extra=fields)

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()

    async def _renew(self, session: str) -> bool:
        """Renew the session; False if Consul no longer knows it."""

        async def renew(client: Any) -> object:
            try:
                return await client.session.renew(session)
            except consul.NotFound:
                return None

        return await self._call("renewing the session", renew) is not None

    async def _create_session(self, entry: Entry) -> str:
        """Create this node's session, learning Consul's TTL range if it refuses."""
        for _ in range(2):
            low, high = self._ttl_range
            ttl = format_duration(session_ttl_seconds(self.ttl_seconds, low, high))
            body = json.dumps(
                {
                    "Name": f"muster {entry}",
                    "TTL": ttl,
                    "Behavior": "delete",
                    "LockDelay": LOCK_DELAY,
                }
            )
            try:
                session = await self._call("creating a session", _create(body))
            except BackendResponseError as exc:
                allowed = _allowed_ttl_range(str(exc))
                if allowed is None or allowed == self._ttl_range:
                    raise
                self._ttl_range = allowed
                logger.info(
                    "consul.session_ttl_limited",
                    extra={"low": format_duration(allowed[0]), "ttl": ttl},
                )
                continue
            if not isinstance(session, str) or not session:
                raise BackendResponseError(
                    f"Consul answered no session ID: {session!r}"
                )
            logger.info(
                "consul.session_created",
                extra={"node": str(entry), "session": session[:8], "session_ttl": ttl},
            )
            return session
        raise BackendResponseError("Consul refused every session TTL muster asked for")

    async def _read_nodes(self, index: int) -> tuple[int, list[tuple[str, object]]]:
        """Read every node key; with ``index``, wait until it moves past it."""
        prefix = self.target.directory + "/"
        # Consul may hold a read up to wait/16 longer than asked, to spread wake-ups.
        timeout = WAIT_SECONDS * 17 / 16 + REQUEST_SECONDS if index else REQUEST_SECONDS
        answer = await self._call(
            "reading the nodes",
            lambda c: c.kv.get(
                prefix,
                index=index or None,
                wait=f"{int(WAIT_SECONDS)}s",
                recurse=True,
                connections_timeout=timeout,
            ),
            timeout_seconds=timeout,
        )
        try:
            raw_index, items = answer
            new_index = int(raw_index)
            pairs = [(str(item["Key"]), item.get("Value")) for item in items or []]
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise BackendResponseError(
                f"Consul answered a read of {prefix} with something else than keys: "
                f"{str(answer)[:200]}"
            ) from exc
        return new_index, pairs

    def _parse_nodes(self, pairs: list[tuple[str, object]]) -> WatchEvent:
        addresses: list[str] = []
        for key, value in pairs:
            try:
                if value is None:
                    continue  # Swarm writes the value just after it takes the key
                if not isinstance(value, bytes):
                    raise ValueError(f"a value of type {type(value).__name__}")
                address = value.decode()
                Entry.parse(address)
            except ValueError as exc:
                return BackendResponseError(
                    f"Consul key {key!r} does not hold a host:port address: {exc}"
                )
            addresses.append(address)
        return Entries.parse(addresses)

    def _client(self, position: int) -> Any:
        client = self._clients.get(position)
        if client is None:
            endpoint = self.target.endpoints[position]
            tls = self.target.tls
            with warnings.catch_warnings():
                # py-consul still hands aiohttp its deprecated TLS arguments.
                warnings.filterwarnings(
                    "ignore",
                    r"(ssl_context|verify_ssl) is deprecated",
                    DeprecationWarning,
                )
                client = consul.aio.Consul(
                    # py-consul pastes the host into its URLs as it is given.
                    host=f"[{endpoint.host}]"
                    if ":" in endpoint.host
                    else endpoint.host,
                    port=endpoint.port,
                    scheme="https" if tls else "http",
                    verify=tls.cacertfile if tls else True,
                    cert=(tls.certfile, tls.keyfile) if tls else None,
                    connections_timeout=REQUEST_SECONDS,
                )
            self._clients[position] = client
        return client

    async def _call(
        self,
        doing: str,
        operation: _Operation[_T],
        *,
        timeout_seconds: float = REQUEST_SECONDS,
    ) -> _T:
        """Run ``operation`` on a client, moving to the next address when one is down.

        Every failure of the client leaves here as a muster error.
        """
        count = len(self.target.endpoints)
        failures: list[str] = []
        last: BaseException | None = None
        for step in range(count):
            position = (self._current + step) % count
            endpoint = self.target.endpoints[position]
            try:
                async with asyncio.timeout(timeout_seconds):
                    result = await operation(self._client(position))
            except _UNREACHABLE as exc:
                failures.append(f"{endpoint}: {_describe(exc)}")
                last = exc
                continue
            except _REFUSED as exc:
                raise BackendResponseError(
                    f"Consul at {endpoint} refused {doing}: {_describe(exc)}",
                    status=_status(exc),
                ) from exc
            if position != self._current:
                logger.warning(
                    "consul.failover",
                    extra={"endpoint": str(endpoint), "failed": "; ".join(failures)},
                )
                self._current = position
            return result
        raise BackendUnavailableError(
            f"cannot reach Consul ({doing}): {'; '.join(failures)}"
        ) from last


def _create(body: str) -> _Operation[object]:
    """The request that creates a session.

    py-consul's ``session.create`` refuses TTLs under 10s itself, but a Consul
    whose ``session_ttl_min`` is lower accepts them; the server is the judge.
    """

    def create(client: Any) -> Awaitable[object]:
        return cast(
            Awaitable[object],
            client.http.put(
                CB.json(is_id=True),
                "/v1/session/create",
                data=body,
                headers=client.prepare_headers(),
            ),
        )

    return create


def _allowed_ttl_range(message: str) -> tuple[float, float] | None:
    """Read the TTL range out of Consul's refusal of a session TTL."""
    match = _TTL_RANGE.search(message)
    if match is None:
        return None
    try:
        return parse_duration(match.group(1)), parse_duration(match.group(2))
    except InvalidDurationError:
        return None


def _status(exc: BaseException) -> int | None:
    # py-consul puts the status first in its messages: "500 Invalid session ...".
    head = str(exc).split(" ", 1)[0]
    return int(head) if head.isdigit() else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | consul.Timeout):
        return "no answer in time"
    return str(exc).strip() or type(exc).__name__
