"""One ZooKeeper session, driven from asyncio through kazoo.

kazoo runs its connection and its callbacks on threads of its own. Here every
answer, every watch notification and every change of connection state is handed
to the event loop with ``call_soon_threadsafe``; nothing blocks inside kazoo's
callbacks (its documentation forbids it for listeners). Every error kazoo raises
is translated into a muster error before it leaves this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from kazoo.client import KazooClient
from kazoo.exceptions import (
    ConnectionDropped,
    ConnectionLoss,
    KazooException,
    NodeExistsError,
    NoNodeError,
    OperationTimeoutError,
    RequestTimeoutError,
    SessionExpiredError,
    SessionMovedError,
    ThrottledOpError,
    ZookeeperStoppedError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KazooState
from kazoo.retry import KazooRetry

from muster.errors import BackendResponseError, BackendUnavailableError

from .kv import TLSFiles

logger = logging.getLogger(__name__)

#: First pause before kazoo reconnects; it doubles, with jitter, up to a cap.
FIRST_RECONNECT_SECONDS = 0.1
#: kazoo multiplies each pause by a random factor in [1 - j, 1 + j].
RECONNECT_JITTER = 0.5

# Errors that say "not now": the server is gone or slow, or the session is being
# re-established. Any other kazoo error is an answer muster cannot use.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    ConnectionLoss,
    ConnectionDropped,
    SessionExpiredError,  # and its subclass ConnectionClosedError
    SessionMovedError,
    OperationTimeoutError,
    RequestTimeoutError,
    ThrottledOpError,
    ZookeeperStoppedError,
    KazooTimeoutError,
    OSError,
    TimeoutError,
)


#: What kazoo calls when a watched znode changes, with kazoo's event.
Watcher = Callable[[object], None]


class Answer(Protocol):
    """A kazoo answer that is ready: ``get`` returns its value or raises."""

    def get(self, block: bool = ...) -> object: ...


class Pending(Protocol):
    """A kazoo request in flight (kazoo's ``IAsyncResult``)."""

    def rawlink(self, callback: Callable[[Answer], None]) -> None: ...


class KazooRequests(Protocol):
    """The part of kazoo's client that muster uses, typed."""

    @property
    def client_id(self) -> tuple[int, bytes] | None: ...
    def exists_async(self, path: str, watch: Watcher | None = None) -> Pending: ...
    def get_async(self, path: str, watch: Watcher | None = None) -> Pending: ...
    def get_children_async(
        self, path: str, watch: Watcher | None = None
    ) -> Pending: ...
    def create_async(
        self,
        path: str,
        value: bytes = b"",
        *,
        ephemeral: bool = False,
        makepath: bool = False,
    ) -> Pending: ...
    def delete_async(self, path: str) -> Pending: ...
    def ensure_path_async(self, path: str) -> Pending: ...


class _KazooLog(logging.LoggerAdapter[logging.Logger]):
    """The logger handed to kazoo: its lines become ``zookeeper.client`` events.

    kazoo logs every connection attempt, in prose; our own events already say
    when the session comes and goes, so its lines below ERROR go to DEBUG. Its
    last warning is kept: it says why no session can be had (refused, TLS).
    """

    def __init__(self, hosts: str) -> None:
        super().__init__(logger, {"hosts": hosts})
        self.last_warning: str | None = None

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        text = str(msg) % args if args else str(msg)
        if level == logging.WARNING:
            self.last_warning = text
        quiet = level if level >= logging.ERROR else min(level, logging.DEBUG)
        if self.logger.isEnabledFor(quiet):
            self.logger.log(
                quiet,
                "zookeeper.client",
                extra={**(self.extra or {}), "detail": text},
                exc_info=kwargs.get("exc_info"),
            )


#: Starts one kazoo request, e.g. ``lambda: client.exists_async(path)``.
Request = Callable[[], Pending]
#: Told of each change of connection state, on the event loop: ``"CONNECTED"``,
#: ``"SUSPENDED"`` (disconnected, session alive) or ``"LOST"`` (session gone).
StateListener = Callable[[str], None]


class ZooKeeperSession:
    """A kazoo client that connects in the background and keeps reconnecting.

    It is started by the first :meth:`client` call, on the running event loop,
    and serves that loop only. Once started it never gives up: a store that is
    down is reached within ``reconnect_seconds`` of coming back.
    """

    def __init__(
        self,
        hosts: str,
        *,
        session_seconds: float,
        request_seconds: float,
        reconnect_seconds: float,
        tls: TLSFiles | None = None,
        on_state: StateListener | None = None,
    ) -> None:
        self.hosts = hosts
        self.session_seconds = session_seconds
        self.request_seconds = request_seconds
        self.reconnect_seconds = reconnect_seconds
        self.tls = tls
        self._on_state = on_state
        self._kazoo_log = _KazooLog(hosts)
        self._kazoo: KazooClient | None = None
        self._listener: Callable[[str], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()

    @property
    def connected(self) -> bool:
        """Whether the session is connected, as far as the event loop knows."""
        return self._connected.is_set()

    @property
    def kazoo(self) -> KazooRequests | None:
        """The kazoo client, once started."""
        return self._kazoo

    def post(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the event loop; safe from any thread."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
            loop.call_soon_threadsafe(callback)

    async def client(self) -> KazooRequests:
        """Return the client once it is connected, waiting up to a request's time."""
        kazoo: KazooRequests = self._start()
        if self._connected.is_set():
            return kazoo
        try:
            async with asyncio.timeout(self.request_seconds):
                await self._connected.wait()
        except TimeoutError as exc:
            reason = self._kazoo_log.last_warning
            raise BackendUnavailableError(
                f"cannot reach ZooKeeper at {self.hosts}: "
                f"no session within {self.request_seconds:g} s"
                + (f" ({reason})" if reason else "")
            ) from exc
        return kazoo

    async def call(
        self,
        start: Request,
        doing: str,
        *,
        missing_ok: bool = False,
        exists_ok: bool = False,
    ) -> object:
        """Send one request and wait for its answer on the event loop.

        Returns None for a missing node (with ``missing_ok``) or an existing one
        (with ``exists_ok``); every other kazoo error becomes a muster error.
        """
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[object] = loop.create_future()

        def settle(result: Answer) -> None:
            if answer.done():
                return  # we stopped waiting for it
            try:
                answer.set_result(result.get(block=False))
            except Exception as exc:
                answer.set_exception(exc)

        def on_answer(result: Answer) -> None:
            self.post(lambda: settle(result))

        try:
            async with asyncio.timeout(self.request_seconds):
                start().rawlink(on_answer)
                return await answer
        except NoNodeError as exc:
            if missing_ok:
                return None
            raise BackendResponseError(
                f"ZooKeeper at {self.hosts} has no node for {doing}"
            ) from exc
        except NodeExistsError as exc:
            if exists_ok:
                return None
            raise BackendResponseError(
                f"ZooKeeper at {self.hosts} already has the node for {doing}"
            ) from exc
        except _UNAVAILABLE as exc:
            raise BackendUnavailableError(
                f"ZooKeeper at {self.hosts} did not answer when {doing}: "
                f"{_describe(exc)}"
            ) from exc
        except KazooException as exc:
            raise BackendResponseError(
                f"ZooKeeper at {self.hosts} refused {doing}: {_describe(exc)}"
            ) from exc

    async def close(self) -> None:
        """End the session (the server drops its ephemeral nodes at once)."""
        kazoo, self._kazoo = self._kazoo, None
        self._connected.clear()
        if kazoo is None:
            return
        kazoo.remove_listener(self._listener)
        await asyncio.to_thread(_stop, kazoo)
        logger.info("zookeeper.closed", extra={"hosts": self.hosts})

    def _start(self) -> KazooClient:
        if self._kazoo is not None:
            return self._kazoo

        self._loop = asyncio.get_running_loop()
        tls = self.tls
        reconnect = KazooRetry(
            max_tries=-1,
            delay=FIRST_RECONNECT_SECONDS,
            backoff=2,
            max_jitter=RECONNECT_JITTER,
            # kazoo applies the jitter after the cap; keep the jittered pause
            # within reconnect_seconds.
            max_delay=self.reconnect_seconds / (1 + RECONNECT_JITTER),
        )
        kazoo = KazooClient(
            hosts=self.hosts,
            timeout=self.session_seconds,
            connection_retry=reconnect,
            use_ssl=tls is not None,
            ca=tls.cacertfile if tls else None,
            certfile=tls.certfile if tls else None,
            keyfile=tls.keyfile if tls else None,
            verify_certs=True,
            check_hostname=tls is not None,
            logger=self._kazoo_log,
        )

        def forward(state: str) -> None:
            # On kazoo's connection thread: hand over and return at once.
            self.post(lambda: self._state_changed(kazoo, state))

        self._listener = forward
        kazoo.add_listener(forward)
        self._kazoo = kazoo
        kazoo.start_async()
        logger.info(
            "zookeeper.connecting",
            extra={"hosts": self.hosts, "session_seconds": self.session_seconds},
        )
        return kazoo

    def _state_changed(self, kazoo: KazooClient, state: str) -> None:
        if kazoo is not self._kazoo:
            return  # news from a client closed meanwhile
        fields = {"hosts": self.hosts}
        if state == KazooState.CONNECTED:
            self._connected.set()
            self._kazoo_log.last_warning = None
            logger.info("zookeeper.connected", extra=fields)
        elif state == KazooState.SUSPENDED:
            self._connected.clear()
            logger.warning("zookeeper.disconnected", extra=fields)
        else:
            self._connected.clear()
            logger.warning("zookeeper.session_lost", extra=fields)
        if self._on_state is not None:
            self._on_state(state)


def _stop(kazoo: KazooClient) -> None:
    try:
        kazoo.stop()
    finally:
        kazoo.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__
