"""``etcd://HOST:PORT[,HOST:PORT]/PREFIX``: nodes are etcd keys that expire.

Each node is the key ``/<prefix>/<kv.path>/<host:port>`` (with a leading ``/``, as
etcd's v2 API and classic Swarm write it) holding its address. The watch reads the
values back, so keys written by other tools in this layout count too.

- v3 (the default) talks gRPC through aetcd: the key lives under a lease of the TTL,
  kept alive every heartbeat; the watch follows the prefix's revisions.
- ``--discovery-opt etcd.api=v2`` talks etcd's v2 keys API over HTTP, the one
  classic Swarm uses, so Swarm and muster nodes can share one etcd started with
  ``--enable-v2``; see :mod:`muster.discovery.etcd_v2`.

etcd keeps TTLs in whole seconds: a TTL is rounded up, and a lease never runs
shorter than etcd's minimum (1.5 election timeouts, rounded up to a second: 2 s with
etcd's default timing), whatever was asked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import aetcd
import aetcd.exceptions
import aetcd.rpc as rpc
import aetcd.utils

from muster.errors import (
    BackendResponseError,
    BackendUnavailableError,
    InvalidOptionError,
)

from .backend import WatchEvent
from .entry import Entries, Entry
from .etcd_common import (
    CLIENT_ERRORS,
    DEFAULT_PORT,
    EtcdClient,
    GrpcConnection,
    NodeValues,
    follow_with_retries,
    grpc_credentials,
    status_code,
    whole_seconds,
)
from .etcd_v2 import EtcdV2Client
from .kv import KV_OPTIONS, KVBackend, KVTarget

logger = logging.getLogger(__name__)

#: Picks etcd's API: ``v3`` (gRPC, the default) or ``v2`` (HTTP, classic Swarm's).
API_OPTION = "etcd.api"
API_VERSIONS = ("v3", "v2")


class EtcdBackend(KVBackend):
    """Nodes register as etcd keys with a TTL; the watch follows their folder."""

    known_options = KV_OPTIONS | {API_OPTION}
    default_port = DEFAULT_PORT

    def __init__(
        self,
        target: KVTarget,
        *,
        scheme: str = "etcd",
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
        api = self.options.get(API_OPTION, "v3")
        if api not in API_VERSIONS:
            raise InvalidOptionError(
                f"{API_OPTION}={api!r} is not an etcd API muster speaks: use v3 "
                "(the default) or v2 (etcd's v2 keys, as classic Swarm uses)"
            )
        self.api = api
        self._client: EtcdClient
        if api == "v2":
            self._client = EtcdV2Client(
                target, heartbeat_seconds=heartbeat_seconds, ttl_seconds=ttl_seconds
            )
        else:
            self._client = EtcdV3Client(
                target, heartbeat_seconds=heartbeat_seconds, ttl_seconds=ttl_seconds
            )

    def node_key(self, entry: Entry) -> str:
        """The etcd key ``entry`` is stored under: ``/<prefix>/<kv.path>/<entry>``."""
        return "/" + self.target.node_key(entry)

    async def register(self, entry: Entry) -> None:
        await self._client.register(entry)

    async def deregister(self, entry: Entry) -> None:
        await self._client.deregister(entry)

    async def observe(self) -> AsyncGenerator[WatchEvent, None]:
        fields = {"backend": self.scheme, "api": self.api}
        logger.info("etcd.watch_started", extra=fields)
        last: Entries | None = None
        try:
            async with aclosing(self._client.observe()) as events:
                async for event in events:
                    if isinstance(event, Entries) and event != last:
                        logger.info(
                            "etcd.membership", extra={**fields, "nodes": len(event)}
                        )
                        last = event
                    yield event
        finally:
            logger.info("etcd.watch_stopped", extra=fields)

    async def aclose(self) -> None:
        """Release the connection used to register; each watch closes its own."""
        await self._client.aclose()


@dataclass
class _Cursor:
    """Where one watch stands: the values it holds and the revision they are at."""

    values: NodeValues
    #: The store revision ``values`` reflect.
    revision: int = 0
    #: Whether ``values`` must be read afresh before following changes.
    stale: bool = True


class _HistoryGone(Exception):
    """etcd no longer has the revisions the watch would resume from."""


class EtcdV3Client:
    """Nodes as keys under leases, watched by revision, over etcd's v3 gRPC API."""

    def __init__(
        self, target: KVTarget, *, heartbeat_seconds: float, ttl_seconds: float
    ) -> None:
        self.target = target
        self.heartbeat_seconds = heartbeat_seconds
        self.ttl_seconds = ttl_seconds
        self.directory_key = "/" + target.directory
        self._credentials = grpc_credentials(target)
        self._connection = GrpcConnection(target, self._credentials)
        # Register and deregister take turns: a failure closes the shared channel,
        # which would cancel a call another task had running on it.
        self._lock = asyncio.Lock()
        self._leases: dict[Entry, int] = {}

    def _key(self, entry: Entry) -> bytes:
        return f"{self.directory_key}/{entry}".encode()

    async def register(self, entry: Entry) -> None:
        key, value = self._key(entry), str(entry).encode()
        fields = {"node": str(entry), "backend": "etcd"}
        async with self._lock:
            lease_id = self._leases.get(entry)
            if lease_id is not None and await self._refresh(lease_id, entry):
                # The lease lives; put the key back only if someone deleted it.
                await self._connection.run(
                    f"registering {entry}",
                    lambda c: c.transaction(
                        compare=[c.transactions.version(key) == 0],
                        success=[c.transactions.put(key, value, lease=lease_id)],
                        failure=[],
                    ),
                )
                logger.debug("etcd.node_refreshed", extra=fields)
                return

            ttl = whole_seconds(self.ttl_seconds)
            lease = await self._connection.run(
                f"granting a lease for {entry}", lambda c: c.lease(ttl)
            )
            new_id, granted = int(lease.id), int(lease.ttl)
            await self._connection.run(
                f"registering {entry}", lambda c: c.put(key, value, lease=new_id)
            )
            self._leases[entry] = new_id
            logger.info("etcd.node_registered", extra={**fields, "ttl": granted})

    async def _refresh(self, lease_id: int, entry: Entry) -> bool:
        """Keep a lease alive; False if etcd no longer has it (expired, or lost)."""
        reply = await self._connection.run(
            f"refreshing the lease of {entry}", lambda c: c.refresh_lease(lease_id)
        )
        return reply is not None and int(reply.TTL) > 0

    async def deregister(self, entry: Entry) -> None:
        key = self._key(entry)
        async with self._lock:
            await self._connection.run(f"removing {entry}", lambda c: c.delete(key))
            lease_id = self._leases.pop(entry, None)
            if lease_id is not None:
                await self._connection.run(
                    f"revoking the lease of {entry}", lambda c: _revoke(c, lease_id)
                )
        logger.debug("etcd.node_removed", extra={"node": str(entry), "backend": "etcd"})

    def observe(self) -> AsyncGenerator[WatchEvent, None]:
        return self._observe()

    async def _observe(self) -> AsyncGenerator[WatchEvent, None]:
        # Each watch has its own channel: a failing register drops the shared one.
        connection = GrpcConnection(self.target, self._credentials)
        cursor = _Cursor(NodeValues(self.directory_key))
        fields = {"backend": "etcd", "directory": self.directory_key}
        try:
            async with aclosing(
                follow_with_retries(
                    lambda: self._session(connection, cursor),
                    heartbeat_seconds=self.heartbeat_seconds,
                    fields=fields,
                )
            ) as events:
                async for event in events:
                    yield event
        finally:
            await connection.aclose()

    async def _session(
        self, connection: GrpcConnection, cursor: _Cursor
    ) -> AsyncGenerator[WatchEvent, None]:
        """Read the nodes if need be, then follow changes until the store is lost.

        A session after a lost connection goes on from the last revision seen, and
        says the membership again once etcd has taken the watch back, so that the
        reader learns the outage is over; changes made meanwhile follow at once.
        """
        prefix = (self.directory_key + "/").encode()
        resumed = not cursor.stale
        while True:
            if cursor.stale:
                snapshot = await connection.run(
                    "reading the nodes", lambda c: c.get_prefix(prefix)
                )
                cursor.values.replace(
                    {_text(kv.key): _text(kv.value) for kv in snapshot}
                )
                cursor.revision = int(snapshot.header.revision)
                cursor.stale = False
                yield cursor.values.membership()

            try:
                async for event in self._follow(connection, cursor, prefix, resumed):
                    yield event
            except _HistoryGone as exc:
                # Compacted, or a store that started over: what we hold is stale.
                logger.info(
                    "etcd.watch_resync",
                    extra={"backend": "etcd", "reason": str(exc)},
                )
                cursor.stale = True
                resumed = False

    async def _follow(
        self, connection: GrpcConnection, cursor: _Cursor, prefix: bytes, resumed: bool
    ) -> AsyncGenerator[WatchEvent, None]:
        """Stream the prefix's changes after ``cursor.revision``, batch by batch.

        With ``resumed``, yield the membership held as soon as etcd accepts the watch.
        """
        start = cursor.revision + 1
        create = rpc.WatchRequest(
            create_request=rpc.WatchCreateRequest(
                key=prefix,
                range_end=aetcd.utils.prefix_range_end(prefix),
                start_revision=start,
            )
        )
        done = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield create
            await done.wait()

        # aetcd's own watch hands out events one by one and hides the response
        # headers; its generated stub gives whole batches, revisions included.
        call: Any = None
        try:
            client = await connection.client()
            call = rpc.WatchStub(client.channel).Watch(
                requests(), metadata=client.metadata
            )
            async for response in call:
                if response.compact_revision:
                    raise _HistoryGone(
                        f"revisions before {response.compact_revision} were compacted"
                    )
                if response.canceled:
                    raise BackendResponseError(
                        f"etcd at {connection.endpoint} cancelled the watch: "
                        f"{response.cancel_reason or 'no reason given'}"
                    )
                if response.created:
                    if int(response.header.revision) < cursor.revision:
                        raise _HistoryGone("the store's revision went backwards")
                    if resumed:
                        yield cursor.values.membership()
                    continue
                cursor.revision = _apply(response, cursor)
                yield cursor.values.membership()
            raise BackendUnavailableError(
                f"etcd at {connection.endpoint} ended the watch"
            )
        except CLIENT_ERRORS as exc:
            error = connection.translate(exc, "watching the nodes")
            await connection.drop()
            raise error from exc
        finally:
            done.set()
            if call is not None:
                call.cancel()

    async def aclose(self) -> None:
        async with self._lock:
            await self._connection.aclose()


def _apply(response: Any, cursor: _Cursor) -> int:
    """Apply one watch batch to the cursor's values; return the revision reached."""
    if not response.events:
        # A progress notice: everything up to the header's revision was sent.
        return max(cursor.revision, int(response.header.revision))

    # Not the header's revision: a catch-up batch may stop short of it.
    revision = cursor.revision
    for event in response.events:
        key = _text(event.kv.key)
        if event.type == rpc.Event.DELETE:
            cursor.values.remove(key)
        else:
            cursor.values.put(key, _text(event.kv.value))
        revision = max(revision, int(event.kv.mod_revision))
    return revision


async def _revoke(client: Any, lease_id: int) -> None:
    try:
        await client.revoke_lease(lease_id)
    except aetcd.exceptions.ClientError as exc:
        # Already expired or revoked: the key went with it, which is what we want.
        if status_code(exc) != rpc.StatusCode.NOT_FOUND:
            raise


def _text(raw: bytes) -> str:
    # A key or value that is not UTF-8 still gets named in the error it causes.
    return raw.decode("utf-8", errors="replace")
