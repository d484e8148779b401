"""Run the token service: open the store, serve HTTP(S), stop cleanly on a signal."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import ssl
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from muster.errors import DiscoveryError

from .app import build_app
from .store import Store

logger = logging.getLogger(__name__)

# Requests still running when a signal arrives get this long to finish; long-polls
# are released at once, so only writes waiting for their commit are left.
_SHUTDOWN_TIMEOUT_SECONDS = 5.0


class ServiceStartError(DiscoveryError):
    """The service could not start: bad TLS files, unusable port or data directory."""


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Everything ``muster serve`` needs to run."""

    host: str = "127.0.0.1"
    port: int = 7733
    data_dir: Path = Path("muster-data")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_nodes: int = 10000
    max_ttl_seconds: int = 86400
    log_level: str = "info"

    @property
    def url(self) -> str:
        """The base URL clients reach the service at."""
        scheme = "https" if self.tls_cert else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def make_ssl_context(config: ServiceConfig) -> ssl.SSLContext | None:
    """Return the server TLS context, or None to serve plain HTTP."""
    if config.tls_cert is None and config.tls_key is None:
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise ServiceStartError(
            "TLS needs both a certificate and its key: pass --tlscert and --tlskey"
        )

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except ssl.SSLError as exc:  # before OSError, which it derives from
        raise ServiceStartError(
            f"TLS certificate {config.tls_cert} and key {config.tls_key} are not a "
            "valid PEM certificate and its matching key"
        ) from exc
    except OSError as exc:
        raise ServiceStartError(
            f"cannot read TLS file {exc.filename or config.tls_cert}: "
            f"{exc.strerror or exc}"
        ) from exc
    # Go's client offers h2 first; aiohttp speaks only HTTP/1.1, so say so.
    context.set_alpn_protocols(["http/1.1"])
    return context


def run(config: ServiceConfig) -> None:
    """Serve the token API until SIGINT or SIGTERM, then flush and return.

    Raises:
        ServiceStartError: the TLS files, the port or the data directory are
            unusable; nothing was started.
    """
    ssl_context = make_ssl_context(config)
    _run_loop(_serve(config, ssl_context))


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is optional: it has no Windows build
        asyncio.run(main)
    else:
        uvloop.run(main)


async def _serve(config: ServiceConfig, ssl_context: ssl.SSLContext | None) -> None:
    _prepare_data_dir(config.data_dir)
    try:
        store = await Store.open(config.data_dir, max_nodes=config.max_nodes)
    except DiscoveryError as exc:
        raise ServiceStartError(str(exc)) from exc

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)

    # Abandoned long-polls are cancelled rather than held for up to 600s.
    runner = web.AppRunner(
        build_app(store, config),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_SECONDS,
    )
    try:
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as exc:
            raise ServiceStartError(_listen_error(config, exc)) from exc

        clusters, nodes = store.counts()
        logger.info(
            "service.started",
            extra={
                "url": config.url,
                "data_dir": str(config.data_dir),
                "clusters": clusters,
                "nodes": nodes,
            },
        )
        await stopping.wait()
        logger.info("service.stopping")
    finally:
        await runner.cleanup()
        await store.close()
    logger.info("service.stopped")


def _prepare_data_dir(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ServiceStartError(
            f"cannot use data directory {data_dir}: {exc.strerror or exc}; "
            "choose another with --data-dir"
        ) from exc
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise ServiceStartError(
            f"cannot write to data directory {data_dir}: permission denied; "
            "choose another with --data-dir"
        )


def _listen_error(config: ServiceConfig, exc: OSError) -> str:
    where = config.url.split("://", 1)[1]
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is already in use; stop the "
            "other server or pick another port with -H"
        )
    if exc.errno == errno.EACCES:
        return (
            f"cannot listen on {where}: permission denied; ports below 1024 "
            "need privileges, pick another with -H"
        )
    return f"cannot listen on {where}: {exc.strerror or exc}"
