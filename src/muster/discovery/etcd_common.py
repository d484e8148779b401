"""The plumbing under muster's two etcd clients.

Both the v3 client (gRPC) and the v2 one (HTTP) see the same thing: keys
``/<prefix>/<kv.path>/<host:port>`` each holding the address, which muster reads
back into a membership exactly as classic Swarm does (the values, not the keys).
Both follow them with the same retrying watch. The v3 client's gRPC connection,
which moves from a failed endpoint to the next, lives here too.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, Protocol, TypeVar

import aetcd
import aetcd.exceptions
import aetcd.rpc as rpc
import grpc  # type: ignore[import-untyped]  # grpcio ships no type information

from muster.errors import (
    BackendError,
    BackendResponseError,
    BackendUnavailableError,
    InvalidEntryError,
    InvalidOptionError,
)

from .backend import WatchEvent
from .entry import Entries, Entry
from .kv import KVTarget

logger = logging.getLogger(__name__)

#: etcd's client port when the URL gives none.
DEFAULT_PORT = 2379
#: Ceiling for one request to etcd; a heartbeat must not stall on a dead member.
REQUEST_SECONDS = 5.0
#: First pause after a failed watch; it doubles up to the heartbeat, with full
#: jitter, so that watchers that lost the store together do not return together.
FIRST_RETRY_SECONDS = 0.5
#: Said when a store muster talks to in plaintext hangs up or answers oddly: that
#: is what an etcd that wants TLS does.
TLS_HINT = (
    "if etcd serves TLS, pass kv.cacertfile, kv.certfile and kv.keyfile "
    "as --discovery-opt"
)
_TLS_WORDS = ("ssl", "tls", "certificate", "handshake")


def unreachable(endpoint: str, doing: str, detail: str, *, tls: bool) -> str:
    """Describe a failure to reach etcd, with a hint when TLS may be the cause."""
    message = f"cannot reach etcd at {endpoint} when {doing}: {detail}"
    lowered = detail.lower()
    if "refused" in lowered or "no answer in time" in lowered:
        # Nobody listens, or nobody answers: TLS has nothing to do with it.
        return message
    if not tls:
        return f"{message} ({TLS_HINT})"
    if any(word in lowered for word in _TLS_WORDS):
        return f"{message} (check kv.cacertfile, kv.certfile and kv.keyfile)"
    return message


class EtcdClient(Protocol):
    """What :class:`~muster.discovery.etcd.EtcdBackend` asks of one etcd API."""

    async def register(self, entry: Entry) -> None:
        """Write or refresh the node's key for one TTL."""
        ...

    async def deregister(self, entry: Entry) -> None:
        """Delete the node's key now."""
        ...

    def observe(self) -> AsyncGenerator[WatchEvent, None]:
        """Yield the membership, then again after each change, and each failure."""
        ...

    async def aclose(self) -> None:
        """Release connections held for registering."""
        ...


def whole_seconds(ttl_seconds: float) -> int:
    """The TTL etcd is given: whole seconds, rounded up so a node never dies early."""
    return max(1, math.ceil(ttl_seconds))


class NodeValues:
    """The values stored right under the node directory, and what they spell."""

    def __init__(self, directory_key: str) -> None:
        self.directory_key = directory_key.rstrip("/")
        self._values: dict[str, str] = {}

    def _child(self, key: str) -> str | None:
        head = self.directory_key + "/"
        if not key.startswith(head):
            return None
        name = key[len(head) :]
        # Deeper keys (nested folders some tools leave) are not nodes, as in Swarm.
        return name if name and "/" not in name else None

    def put(self, key: str, value: str) -> None:
        """Note that ``key`` now holds ``value``."""
        if self._child(key) is not None:
            self._values[key] = value

    def remove(self, key: str) -> None:
        """Note that ``key`` is gone; a removed ancestor folder takes every node."""
        if self.directory_key == key or self.directory_key.startswith(key + "/"):
            self._values.clear()
        else:
            self._values.pop(key, None)

    def replace(self, items: dict[str, str]) -> None:
        """Forget what was known and hold ``items`` instead."""
        self._values.clear()
        for key, value in items.items():
            self.put(key, value)

    def membership(self) -> Entries | BackendResponseError:
        """The entries the values name, or an error naming the first bad key."""
        entries: list[Entry] = []
        for key in sorted(self._values):
            value = self._values[key]
            if not value:
                continue
            try:
                entries.append(Entry.parse(value))
            except InvalidEntryError as exc:
                return BackendResponseError(
                    f"etcd key {key!r} holds {value!r}, which is not a node address: "
                    f"{exc}"
                )
        return Entries(entries)


async def follow_with_retries(
    session: Callable[[], AsyncGenerator[WatchEvent, None]],
    *,
    heartbeat_seconds: float,
    fields: dict[str, str],
) -> AsyncGenerator[WatchEvent, None]:
    """Run watch sessions one after another, yielding each one's failure.

    A session yields what it sees and raises :class:`BackendError` when it loses the
    store; the next one starts after a pause drawn from a capped, doubling range.
    """
    cap = max(heartbeat_seconds, 0.05)
    delay = min(FIRST_RETRY_SECONDS, cap)
    attempt = 0
    while True:
        failure: BackendError | None = None
        try:
            async with aclosing(session()) as events:
                async for event in events:
                    delay = min(FIRST_RETRY_SECONDS, cap)
                    attempt = 0
                    yield event
        except BackendError as exc:
            failure = exc

        # A session ends only when it lost the store; pause even if it said nothing,
        # so that a store hanging up at once cannot make this loop spin.
        attempt += 1
        if failure is not None:
            yield failure

        # Full jitter: anywhere in [0, delay), so a fleet spreads out on return.
        pause = random.uniform(0, delay)
        logger.debug(
            "etcd.watch_retry",
            extra={**fields, "attempt": attempt, "delay": round(pause, 3)},
        )
        await asyncio.sleep(pause)
        delay = min(delay * 2, cap)


_T = TypeVar("_T")
# Everything aetcd and grpc raise at us; translated to muster errors right here.
CLIENT_ERRORS = (
    aetcd.exceptions.ClientError,
    rpc.RpcError,
    rpc.BaseError,
    TimeoutError,
)
_UNREACHABLE_CODES = {rpc.StatusCode.UNAVAILABLE, rpc.StatusCode.DEADLINE_EXCEEDED}
_CHANNEL_OPTIONS = {
    # Ping a quiet watch so a store that vanished without closing the connection
    # is noticed; etcd refuses pings more often than every 5 s by default.
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.http2.max_pings_without_data": 0,
}


class _TLSClient(aetcd.Client):  # type: ignore[misc]  # aetcd ships no types
    """An aetcd client over TLS.

    aetcd 1.0 always opens a plaintext channel in ``connect()``; etcd started with
    ``--cert-file`` and ``--client-cert-auth`` needs a secure one that shows our
    certificate. This builds the same stubs over such a channel and nothing more.
    """

    def __init__(self, host: str, port: int, credentials: Any) -> None:
        super().__init__(host, port, timeout=REQUEST_SECONDS, options=_CHANNEL_OPTIONS)
        self._credentials = credentials

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        self.channel = rpc.secure_channel(
            f"{self._host}:{self._port}",
            self._credentials,
            options=list(self._options.items()),
        )
        self.kvstub = rpc.KVStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._connected.set()


def status_code(exc: BaseException) -> Any:
    """The gRPC status behind an error, if there is one."""
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, rpc.AioRpcError):
            return candidate.code()
    return None


class GrpcConnection:
    """One aetcd client at a time; a failed endpoint is dropped for the next one.

    A dropped client is closed, so that coming back to an endpoint starts a fresh
    channel rather than one waiting out gRPC's reconnect backoff (up to 2 minutes).
    Callers that share a connection must not use it concurrently: closing a
    channel cancels every call on it.
    """

    def __init__(self, target: KVTarget, credentials: Any) -> None:
        self.target = target
        self._credentials = credentials
        self._index = 0
        self._client: Any = None

    @property
    def endpoint(self) -> str:
        """The ``host:port`` being talked to now."""
        return str(self.target.endpoints[self._index])

    async def client(self) -> Any:
        """The current endpoint's client, connected."""
        if self._client is None:
            endpoint = self.target.endpoints[self._index]
            host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
            if self._credentials is None:
                self._client = aetcd.Client(
                    host,
                    endpoint.port,
                    timeout=REQUEST_SECONDS,
                    options=_CHANNEL_OPTIONS,
                )
            else:
                self._client = _TLSClient(host, endpoint.port, self._credentials)
        await self._client.connect()
        return self._client

    async def drop(self) -> None:
        """Close the current client and move on to the next endpoint."""
        client, self._client = self._client, None
        self._index = (self._index + 1) % len(self.target.endpoints)
        if client is not None:
            await client.close()

    def translate(self, exc: BaseException, doing: str) -> BackendError:
        """The muster error for a client error met while ``doing`` something."""
        code = status_code(exc)
        detail = (
            exc.details() if isinstance(exc, rpc.AioRpcError) else str(exc)
        ) or type(exc).__name__
        if code in _UNREACHABLE_CODES or isinstance(
            exc,
            TimeoutError
            | aetcd.exceptions.ConnectionFailedError
            | aetcd.exceptions.ConnectionTimeoutError,
        ):
            return BackendUnavailableError(
                unreachable(
                    self.endpoint, doing, detail, tls=self.target.tls is not None
                )
            )
        return BackendResponseError(f"etcd at {self.endpoint} failed {doing}: {detail}")

    async def run(self, doing: str, operation: Callable[[Any], Awaitable[_T]]) -> _T:
        """Run ``operation`` on a client, trying each endpoint once if need be."""
        for attempt in range(1, len(self.target.endpoints) + 1):
            endpoint = self.endpoint
            try:
                return await operation(await self.client())
            except CLIENT_ERRORS as exc:
                error = self.translate(exc, doing)
                if not isinstance(error, BackendUnavailableError):
                    raise error from exc
                await self.drop()
                if attempt == len(self.target.endpoints):
                    raise error from exc
                logger.warning(
                    "etcd.endpoint_failed",
                    extra={
                        "endpoint": endpoint,
                        "next": self.endpoint,
                        "error": str(error),
                    },
                )
        raise AssertionError("unreachable: the loop returns or raises")

    async def aclose(self) -> None:
        """Close the client, if one is open."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def grpc_credentials(target: KVTarget) -> Any:
    """gRPC channel credentials from the ``kv.*`` files, or None for plaintext."""
    if target.tls is None:
        return None
    try:
        ca, cert, key = target.tls.read()
    except OSError as exc:
        raise InvalidOptionError(
            f"cannot read the TLS files for etcd: {exc.strerror}: {exc.filename}"
        ) from exc
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
