"""``zk://h1:p,h2:p/prefix``: nodes as ephemeral znodes in ZooKeeper.

A node is the znode ``/<prefix>/<kv.path>/<host:port>`` holding its address, made
EPHEMERAL under persistent parents, as classic Swarm's libkv makes it. It lives as
long as the ZooKeeper session of the process that made it, so the TTL becomes the
session timeout: the server keeps the session, and the node, while the client
pings it (kazoo does, every third of the timeout), and drops both once the client
has been silent for that long. Each heartbeat checks the node is still there and
makes it again if not, leaving a watch on it; a node deleted meanwhile (by hand,
or held by an older session that has just ended) is made again at once, and so is
every node after a session expiry, as soon as a new session is up.

The server bounds every session timeout by its ``minSessionTimeout`` and
``maxSessionTimeout`` (by default 2 and 20 ``tickTime``, so 4 s and 40 s with the
stock 2 s tick), and the TTL a node asks for is clamped to that range: on a stock
server ``--ttl 180s`` gives a 40 s session and ``--ttl 2s`` a 4 s one. The server
looks for expired sessions once a tick, so a silent node goes between the
negotiated timeout and one tick after it. Watchers hold no node and ask for
:data:`WATCH_SESSION_SECONDS`.

A watch lists the directory's children and reads each child's value, arming a
watch on the list and on every value as it reads them, and reads again after each
notification: no change can fall between two reads unseen.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import ssl
from collections.abc import AsyncGenerator, Callable, Mapping

from kazoo.protocol.states import EventType, KazooState

from muster.errors import (
    BackendError,
    BackendResponseError,
    BackendUnavailableError,
    InvalidOptionError,
)

from .backend import WatchEvent
from .entry import Entries, Entry
from .kv import KVBackend, KVTarget
from .zksession import Pending, Watcher, ZooKeeperSession

logger = logging.getLogger(__name__)

#: ZooKeeper's client port.
DEFAULT_PORT = 2181
#: Session timeout of a backend that only watches (``muster list`` and ``watch``
#: give no TTL); libkv, which Swarm used, asked for 10 s.
WATCH_SESSION_SECONDS = 10.0
#: Longest wait for a session or an answer. Half the heartbeat when that is
#: shorter, so a heartbeat does not stall on a store that is away, and so that
#: ``muster list`` (whose heartbeat is its timeout) reports why it got nothing.
REQUEST_SECONDS = 10.0
MIN_REQUEST_SECONDS = 1.0
#: First pause of the watch after a failure; it doubles up to the heartbeat, with
#: jitter, so watchers that lost the store together do not return together.
FIRST_RETRY_SECONDS = 0.5
#: Cap on kazoo's reconnection backoff, which is otherwise the heartbeat: a store
#: that comes back is found within this long.
MAX_RECONNECT_SECONDS = 5.0


class ZooKeeperBackend(KVBackend):
    """Nodes are ephemeral znodes; watchers follow the directory's children."""

    default_port = DEFAULT_PORT

    def __init__(
        self,
        target: KVTarget,
        *,
        scheme: str = "zk",
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
        if target.tls is not None:
            try:
                target.tls.client_context()
            except (OSError, ssl.SSLError) as exc:
                raise InvalidOptionError(
                    f"cannot load the kv.* TLS files for {scheme}://: {exc}"
                ) from exc

        #: The session: kazoo fails over between the hosts by itself.
        self.session = ZooKeeperSession(
            ",".join(str(endpoint) for endpoint in target.endpoints),
            session_seconds=ttl_seconds if ttl_seconds > 0 else WATCH_SESSION_SECONDS,
            request_seconds=min(
                REQUEST_SECONDS, max(MIN_REQUEST_SECONDS, heartbeat_seconds / 2)
            ),
            reconnect_seconds=min(MAX_RECONNECT_SECONDS, max(heartbeat_seconds, 0.5)),
            tls=target.tls,
            on_state=self._state_changed,
        )
        self._session_lost = False
        self._registered: set[Entry] = set()
        self._wakers: set[Callable[[], None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def hosts(self) -> str:
        """The store addresses, as kazoo takes them."""
        return self.session.hosts

    @property
    def directory(self) -> str:
        """The znode every node lives under, with its leading ``/``."""
        return f"/{self.target.directory}"

    def node_path(self, entry: Entry) -> str:
        """The znode of one node."""
        return f"/{self.target.node_key(entry)}"

    async def register(self, entry: Entry) -> None:
        # Remembered first: a session lost during this call is then repaired as
        # soon as a new one is up, not a heartbeat later.
        self._registered.add(entry)
        created = await self._ensure_node(entry)
        fields = {"node": str(entry), "backend": self.scheme}
        if created:
            logger.info("zookeeper.node_created", extra=fields)
        else:
            logger.debug("zookeeper.node_present", extra=fields)

    async def deregister(self, entry: Entry) -> None:
        self._registered.discard(entry)
        client = await self.session.client()
        path = self.node_path(entry)
        await self.session.call(
            lambda: client.delete_async(path), f"removing {entry}", missing_ok=True
        )
        logger.info(
            "zookeeper.node_deleted", extra={"node": str(entry), "backend": self.scheme}
        )

    async def observe(self) -> AsyncGenerator[WatchEvent, None]:
        changed = asyncio.Event()
        wake = changed.set

        def on_watch(_event: object) -> None:
            # On kazoo's thread. One callable per watch: kazoo keeps it once per
            # znode, however often the watch is armed again.
            self.session.post(wake)

        self._wakers.add(wake)
        first_delay = min(FIRST_RETRY_SECONDS, self.heartbeat_seconds)
        delay = first_delay
        last: Entries | None = None
        try:
            while True:
                changed.clear()
                try:
                    values = await self._read_values(on_watch)
                except BackendError as exc:
                    yield exc
                    # A reconnection wakes us early: the resync need not wait.
                    await _wait(changed, random.uniform(delay / 2, delay))
                    delay = min(delay * 2, self.heartbeat_seconds)
                    continue

                delay = first_delay
                try:
                    entries = _parse_values(values)
                except BackendResponseError as exc:
                    # Reading again cannot cure a bad value; the watches armed by
                    # the read tell us when the directory changes.
                    yield exc
                    await changed.wait()
                    continue

                level = logging.INFO if entries != last else logging.DEBUG
                logger.log(
                    level,
                    "zookeeper.membership",
                    extra={"backend": self.scheme, "nodes": len(entries)},
                )
                last = entries
                yield entries

                await changed.wait()
                if not self.session.connected:
                    yield BackendUnavailableError(
                        f"lost the connection to ZooKeeper at {self.hosts}; "
                        "reconnecting"
                    )
        finally:
            self._wakers.discard(wake)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.session.close()

    def _state_changed(self, state: str) -> None:
        """React to the session's news, on the event loop."""
        if state == KazooState.LOST:
            # The session expired, and the server dropped its nodes with it.
            self._session_lost = True
        elif state == KazooState.CONNECTED:
            if self._session_lost and self._registered:
                self._register_again(self._registered)
            self._session_lost = False
        for wake in list(self._wakers):
            wake()

    def _node_watch(self, event: object) -> None:
        """On kazoo's thread: a node we registered was deleted (by its old session
        expiring, or by hand); make it again now rather than a heartbeat later."""
        if getattr(event, "type", None) == EventType.DELETED:
            path = str(getattr(event, "path", ""))
            self.session.post(lambda: self._node_deleted(path))

    def _node_deleted(self, path: str) -> None:
        lost = {entry for entry in self._registered if self.node_path(entry) == path}
        if lost:
            self._register_again(lost)

    def _register_again(self, entries: set[Entry]) -> None:
        task = asyncio.get_running_loop().create_task(self._recreate(set(entries)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recreate(self, entries: set[Entry]) -> None:
        for entry in entries & self._registered:
            fields = {"node": str(entry), "backend": self.scheme}
            try:
                created = await self._ensure_node(entry)
                if created and entry not in self._registered:
                    # Deregistered while we were making it again: undo that.
                    await self.deregister(entry)
                    continue
            except BackendError as exc:
                # The heartbeat tries again within a heartbeat.
                logger.warning(
                    "zookeeper.reregister_failed", extra={**fields, "error": str(exc)}
                )
            else:
                if created:
                    logger.info("zookeeper.node_reregistered", extra=fields)

    async def _ensure_node(self, entry: Entry) -> bool:
        """Create the node unless it exists; return whether it was created.

        The existence check leaves a watch on the node (once per node: kazoo
        and the server keep one per path), so that its deletion is repaired
        at once, even when the node found belongs to an older session.
        """
        client = await self.session.client()
        path = self.node_path(entry)
        doing = f"registering {entry}"

        def check() -> Pending:
            return client.exists_async(path, watch=self._node_watch)

        if await self.session.call(check, doing) is not None:
            return False

        value = str(entry).encode()
        created = await self.session.call(
            lambda: client.create_async(path, value, ephemeral=True, makepath=True),
            doing,
            exists_ok=True,
        )
        # The watch left by the check fired at our own create: leave a new one.
        await self.session.call(check, doing)
        return created is not None

    async def _read_values(self, on_watch: Watcher) -> dict[str, bytes]:
        """Read every child's value, arming a watch on the list and on each value."""
        client = await self.session.client()
        directory = self.directory
        doing = f"reading {directory}"
        # Swarm creates the directory before watching it; so do we.
        await self.session.call(lambda: client.ensure_path_async(directory), doing)
        names = await self.session.call(
            lambda: client.get_children_async(directory, watch=on_watch), doing
        )
        if not isinstance(names, list):
            raise BackendResponseError(f"ZooKeeper listed {directory} as {names!r}")

        paths = [f"{directory}/{name}" for name in names]
        # Sent together: ZooKeeper answers them in order, in one round trip.
        answers = await asyncio.gather(
            *(
                self.session.call(
                    functools.partial(client.get_async, path, watch=on_watch),
                    doing,
                    missing_ok=True,
                )
                for path in paths
            )
        )
        values: dict[str, bytes] = {}
        for path, answer in zip(paths, answers, strict=True):
            # A child deleted between the listing and its read is simply gone;
            # the children watch brings the next listing.
            if isinstance(answer, tuple) and isinstance(answer[0], bytes):
                values[path] = answer[0]
            elif answer is not None:
                raise BackendResponseError(f"ZooKeeper returned {answer!r} for {path}")
        return values


def _parse_values(values: Mapping[str, bytes]) -> Entries:
    """Read each value as an address, naming the znode of the first bad one."""
    entries: list[Entry] = []
    for path, raw in sorted(values.items()):
        try:
            address = raw.decode()
            if address:
                entries.append(Entry.parse(address))
        except ValueError as exc:  # UnicodeDecodeError and InvalidEntryError
            raise BackendResponseError(
                f"the ZooKeeper node {path} does not hold an address: {exc}"
            ) from exc
    return Entries(entries)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Wait for ``event``, at most ``seconds``."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
