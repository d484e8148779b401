"""The token service's clusters: answered from memory, made durable in SQLite.

Memory is authoritative for every answer. Each change marks the node or cluster it
touched as dirty; one writer task takes everything dirty at once and writes it in a
single transaction on a worker thread (group commit), so a heartbeat costs a dict
update rather than a disk sync. A request that changed something answers only after
the commit that holds its change, so a 200 means the change survives a crash.
Writes are state-based: the writer stores what memory holds when it takes the batch,
which makes many refreshes of one node collapse into one row write.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from muster.discovery.entry import Entry
from muster.errors import DiscoveryError
from muster.logs import mask_token

from .database import FILE_NAME, Batch, NodeRow, open_database, write_batch

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

# The expiry timer never sleeps longer than this, so that a wall clock stepped
# forward (NTP) delays waking long-pollers by at most this much; reads stay exact.
_TIMER_CAP_SECONDS = 1.0
# After a failed commit, wait before retrying so a full disk is not hammered.
_RETRY_SECONDS = 1.0


class StoreError(DiscoveryError):
    """A change the token service cannot make; nothing was changed."""


class UnknownClusterError(StoreError):
    """No cluster has this token."""


class UnknownNodeError(StoreError):
    """The node is not registered in the cluster."""


class ClusterFullError(StoreError):
    """The cluster already holds as many nodes as the service allows."""


class StorageError(StoreError):
    """The database could not be opened or written."""


@dataclass(frozen=True, slots=True)
class Membership:
    """A cluster's members, printed as ``host:port`` and sorted, at one version."""

    index: int
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What the service knows about one registered node."""

    addr: str
    last_seen: float
    expires_at: float
    ttl_seconds: int


class _Node:
    # Mutable on purpose: a refresh updates three fields in place, allocating nothing.
    __slots__ = ("addr", "expires_at", "heap_at", "last_seen", "token", "ttl_seconds")

    def __init__(self, token: str, addr: str, now: float, ttl_seconds: int) -> None:
        self.token = token
        self.addr = addr
        self.last_seen = now
        self.ttl_seconds = ttl_seconds
        self.expires_at = now + ttl_seconds
        # When this node's one entry in the expiry heap falls due (<= expires_at).
        self.heap_at = self.expires_at

    def row(self) -> NodeRow:
        return (
            self.token,
            self.addr,
            self.last_seen,
            self.expires_at,
            self.ttl_seconds,
        )


class _Cluster:
    __slots__ = ("_addresses", "changed", "created_at", "nodes", "token", "version")

    def __init__(self, token: str, created_at: float, version: int) -> None:
        self.token = token
        self.created_at = created_at
        self.version = version
        self.nodes: dict[str, _Node] = {}
        self.changed: asyncio.Event | None = None  # made only when someone waits
        self._addresses: tuple[str, ...] | None = None

    def bump(self) -> None:
        """Record a membership change and wake whoever waits for one."""
        self.version += 1
        self._addresses = None
        self.wake()

    def wake(self) -> None:
        if self.changed is not None:
            self.changed.set()
            self.changed = None

    def addresses(self) -> tuple[str, ...]:
        # Pollers far outnumber changes, so the sorted list is kept per version.
        if self._addresses is None:
            self._addresses = tuple(sorted(self.nodes))
        return self._addresses


class Store:
    """Clusters of the token service, kept in memory and persisted to SQLite."""

    def __init__(
        self, db_path: Path, *, now: Clock = time.time, max_nodes: int = 10000
    ) -> None:
        if max_nodes < 1:
            raise ValueError(f"max_nodes must be at least 1, not {max_nodes}")
        self.db_path = db_path
        self.max_nodes = max_nodes
        self._now = now
        self._clusters: dict[str, _Cluster] = {}
        self._heap: list[tuple[float, str, str]] = []
        self._dirty_nodes: set[_Node] = set()
        self._dirty_clusters: set[str] = set()
        # One future per request awaiting the next commit; plain futures rather
        # than a shared one under asyncio.shield, which costs more per heartbeat.
        self._awaiting: list[asyncio.Future[None]] = []
        self._commits = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="muster-store")
        self._db: sqlite3.Connection | None = None
        self._wake_writer = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    async def open(
        cls, data_dir: Path, *, now: Clock = time.time, max_nodes: int = 10000
    ) -> Store:
        """Load the store kept in ``data_dir`` (made if missing) and start writing."""
        store = cls(data_dir / FILE_NAME, now=now, max_nodes=max_nodes)
        await store._start()
        return store

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            self._db, clusters, nodes = await loop.run_in_executor(
                self._executor, open_database, self.db_path
            )
        except (OSError, sqlite3.Error) as exc:
            self._executor.shutdown(wait=False)
            raise StorageError(
                f"cannot open the database {self.db_path}: {exc}; "
                "check that the data directory exists and is writable"
            ) from exc

        for token, created_at, version in clusters:
            self._clusters[token] = _Cluster(token, created_at, version)
        now = self._now()
        dropped = 0
        for token, addr, last_seen, expires_at, ttl_seconds in nodes:
            cluster = self._clusters.get(token)
            if cluster is None:
                continue
            node = _Node(token, addr, last_seen, ttl_seconds)
            node.expires_at = node.heap_at = expires_at
            if expires_at <= now:
                # It expired while the service was down: the members changed.
                cluster.bump()
                self._dirty_clusters.add(token)
                self._dirty_nodes.add(node)
                dropped += 1
                continue
            cluster.nodes[addr] = node
            self._heap.append((expires_at, token, addr))
        heapq.heapify(self._heap)

        self._writer = asyncio.create_task(self._write_forever())
        self._wake_writer.set()
        self._schedule_timer()
        # DEBUG: the service reports these counts when it starts listening, and a
        # start that fails (port in use) should print nothing but its error.
        logger.debug(
            "store.opened",
            extra={
                "path": str(self.db_path),
                "clusters": len(self._clusters),
                "nodes": len(self._heap),
                "expired_while_down": dropped,
            },
        )

    async def close(self) -> None:
        """Write everything pending, release long-pollers and close the database."""
        if self._writer is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.release_waiters()
        try:
            await self.flush()
        except StorageError:
            logger.warning("store.closed_unsaved", extra={"path": str(self.db_path)})
        self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)
        self._writer = None
        if self._db is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    # -- reads -----------------------------------------------------------------

    @property
    def commit_count(self) -> int:
        """How many transactions the writer has committed since the store opened."""
        return self._commits

    @property
    def scheduled_expiries(self) -> int:
        """How many entries the expiry heap holds (about one per live node)."""
        return len(self._heap)

    def counts(self) -> tuple[int, int]:
        """Return the number of clusters and of live nodes."""
        self.expire_due()
        return len(self._clusters), sum(len(c.nodes) for c in self._clusters.values())

    def membership(self, token: str) -> Membership:
        """Return the live members of a cluster."""
        self.expire_due()
        cluster = self._cluster(token)
        return Membership(cluster.version, cluster.addresses())

    def node_details(self, token: str) -> tuple[int, list[NodeInfo]]:
        """Return a cluster's version and its live nodes, sorted by address."""
        self.expire_due()
        cluster = self._cluster(token)
        nodes = [
            NodeInfo(n.addr, n.last_seen, n.expires_at, n.ttl_seconds)
            for n in cluster.nodes.values()
        ]
        nodes.sort(key=lambda info: info.addr)
        return cluster.version, nodes

    async def wait_for_change(
        self, token: str, index: int, timeout_seconds: float
    ) -> Membership:
        """Return the membership once its version differs from ``index``.

        Returns the unchanged membership when ``timeout_seconds`` pass first, and
        raises :class:`UnknownClusterError` if the cluster is deleted meanwhile.
        """
        current = self.membership(token)
        if current.index != index or timeout_seconds <= 0:
            return current

        cluster = self._clusters[token]
        if cluster.changed is None:
            cluster.changed = asyncio.Event()
        changed = cluster.changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout_seconds)
        return self.membership(token)

    def release_waiters(self) -> None:
        """Wake every long-poller so it answers now (used when shutting down)."""
        for cluster in self._clusters.values():
            cluster.wake()

    # -- changes ---------------------------------------------------------------

    async def create_cluster(self) -> str:
        """Make a new empty cluster and return its token once it is durable."""
        token = secrets.token_hex(16)
        while token in self._clusters:  # 128 random bits: a repeat is theoretical
            token = secrets.token_hex(16)

        self._clusters[token] = _Cluster(token, self._now(), 0)
        self._dirty_clusters.add(token)
        logger.info("cluster.created", extra={"cluster": mask_token(token)})

        await self._committed()
        return token

    async def register(self, token: str, address: str, ttl_seconds: int) -> int:
        """Add or refresh a node for ``ttl_seconds``; return the cluster's version.

        Raises:
            UnknownClusterError: no cluster has this token.
            InvalidEntryError: ``address`` is not ``host:port``.
            ClusterFullError: the node is new and the cluster holds ``max_nodes``.
        """
        self.expire_due()
        cluster = self._cluster(token)
        now = self._now()

        # Hot path: a refresh sends the address exactly as stored, so one dict
        # lookup finds it without parsing.
        node = cluster.nodes.get(address)
        if node is None:
            address = str(Entry.parse(address))
            node = cluster.nodes.get(address)

        if node is not None:
            node.last_seen = now
            node.ttl_seconds = ttl_seconds
            node.expires_at = now + ttl_seconds
            if node.expires_at < node.heap_at:
                # A shorter TTL than before: its heap entry would fire too late.
                self._push_expiry(node)
            if logger.isEnabledFor(logging.DEBUG):
                extra = {"cluster": mask_token(token), "node": address}
                logger.debug("node.refreshed", extra=extra)
        else:
            if len(cluster.nodes) >= self.max_nodes:
                raise ClusterFullError(
                    f"cluster {mask_token(token)} already has {self.max_nodes} "
                    "nodes, the most this service allows: remove nodes that left, "
                    "or restart the service with a larger --max-nodes"
                )
            node = _Node(token, address, now, ttl_seconds)
            cluster.nodes[address] = node
            cluster.bump()
            self._dirty_clusters.add(token)
            self._push_expiry(node)
            logger.info(
                "node.joined",
                extra={
                    "cluster": mask_token(token),
                    "node": address,
                    "ttl_seconds": ttl_seconds,
                },
            )

        self._dirty_nodes.add(node)
        index = cluster.version
        await self._committed()
        return index

    async def remove_node(self, token: str, address: str) -> int:
        """Remove one node at once (a graceful leave); return the new version."""
        self.expire_due()
        cluster = self._cluster(token)
        address = str(Entry.parse(address))
        node = cluster.nodes.pop(address, None)
        if node is None:
            raise UnknownNodeError(
                f"node {address} is not registered in cluster {mask_token(token)}: "
                "it may have left or expired already"
            )

        cluster.bump()
        self._dirty_clusters.add(token)
        self._dirty_nodes.add(node)
        logger.info("node.left", extra={"cluster": mask_token(token), "node": address})

        index = cluster.version
        await self._committed()
        return index

    async def delete_cluster(self, token: str) -> None:
        """Remove a cluster and all its nodes."""
        cluster = self._cluster(token)
        del self._clusters[token]
        cluster.wake()
        self._dirty_clusters.add(token)
        logger.info("cluster.deleted", extra={"cluster": mask_token(token)})
        await self._committed()

    def expire_due(self) -> int:
        """Remove every node whose TTL has run out; return how many there were."""
        heap = self._heap
        if not heap:
            return 0
        now = self._now()
        if heap[0][0] > now:
            return 0

        expired = 0
        while heap and heap[0][0] <= now:
            due, token, addr = heapq.heappop(heap)
            cluster = self._clusters.get(token)
            node = cluster.nodes.get(addr) if cluster is not None else None
            if cluster is None or node is None or node.heap_at != due:
                continue  # stale: the node left, or was replaced by a newer one
            if node.expires_at > now:
                self._push_expiry(node)  # refreshed since: wait for its real expiry
                continue
            del cluster.nodes[addr]
            cluster.bump()
            self._dirty_clusters.add(token)
            self._dirty_nodes.add(node)
            logger.info(
                "node.expired", extra={"cluster": mask_token(token), "node": addr}
            )
            expired += 1

        if expired:
            self._wake_writer.set()
        return expired

    async def flush(self) -> None:
        """Wait until every change made so far is committed to disk."""
        await self._committed()

    # -- internals -------------------------------------------------------------

    def _cluster(self, token: str) -> _Cluster:
        cluster = self._clusters.get(token)
        if cluster is None:
            raise UnknownClusterError(
                f"no cluster has token {mask_token(token)}: check the token, "
                "or create a cluster with POST /v1/clusters"
            )
        return cluster

    def _push_expiry(self, node: _Node) -> None:
        node.heap_at = node.expires_at
        entry = (node.expires_at, node.token, node.addr)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._schedule_timer()

    def _schedule_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._heap or self._writer is None:
            return
        delay = min(max(self._heap[0][0] - self._now(), 0.0), _TIMER_CAP_SECONDS)
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self.expire_due()
        except Exception:
            logger.exception("store.expiry_failed")
        self._schedule_timer()

    def _committed(self) -> Awaitable[None]:
        """Return an awaitable that finishes when the next commit is done."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._awaiting.append(waiter)
        self._wake_writer.set()
        return waiter

    def _take_batch(self, nodes: set[_Node], clusters: set[str]) -> Batch:
        batch = Batch()
        for token in clusters:
            cluster = self._clusters.get(token)
            if cluster is None:
                batch.gone_clusters.append((token,))
            else:
                batch.clusters.append((token, cluster.created_at, cluster.version))
        for node in nodes:
            cluster = self._clusters.get(node.token)
            if cluster is None:
                continue  # deleting the cluster deletes its rows
            current = cluster.nodes.get(node.addr)
            if current is None:
                batch.gone_nodes.append((node.token, node.addr))
            else:
                batch.nodes.append(current.row())
        return batch

    async def _write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            nodes, clusters = self._dirty_nodes, self._dirty_clusters
            self._dirty_nodes, self._dirty_clusters = set(), set()
            awaiting, self._awaiting = self._awaiting, []
            batch = self._take_batch(nodes, clusters)

            try:
                if batch.size:
                    await loop.run_in_executor(
                        self._executor, write_batch, self._db, batch
                    )
                    self._commits += 1
            except (OSError, sqlite3.Error) as exc:
                logger.exception("store.write_failed", extra={"rows": batch.size})
                # Memory still holds the truth: mark it dirty again to retry.
                self._dirty_nodes |= nodes
                self._dirty_clusters |= clusters
                error = StorageError(f"could not save the change to disk: {exc}")
                for waiter in awaiting:
                    if not waiter.done():  # done: its request was cancelled
                        waiter.set_exception(error)
                await asyncio.sleep(_RETRY_SECONDS)
                self._wake_writer.set()
                continue

            for waiter in awaiting:
                if not waiter.done():
                    waiter.set_result(None)
