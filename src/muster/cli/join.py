"""``muster join``: keep this node registered until stopped, then leave."""

from __future__ import annotations

import asyncio
import signal

import click

from muster.discovery import Entry
from muster.discovery.heartbeat import Heartbeat
from muster.errors import InvalidEntryError
from muster.logs import configure_logging

from .common import (
    discovery_argument,
    discovery_opt_option,
    duration_flag,
    open_backend,
    require_discovery,
)


@click.command()
@discovery_argument
@click.option(
    "--advertise",
    "--addr",
    "advertise",
    envvar="SWARM_ADVERTISE",
    metavar="HOST:PORT",
    help="Address managers reach this node at (env SWARM_ADVERTISE).",
)
@click.option(
    "--heartbeat", default="60s", show_default=True, help="Time between registrations."
)
@click.option(
    "--ttl", default="180s", show_default=True, help="How long a registration lives."
)
@click.option(
    "--delay",
    default="0s",
    show_default=True,
    help="Wait a random time in [0, delay) first, to spread out a fleet.",
)
@discovery_opt_option
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    help="debug, info, warning or error.",
)
def join(
    discovery: str | None,
    advertise: str | None,
    heartbeat: str,
    ttl: str,
    delay: str,
    discovery_opts: tuple[str, ...],
    log_level: str,
) -> None:
    """Register this node in the cluster every heartbeat until stopped.

    On SIGINT or SIGTERM the node leaves at once where the backend allows it.
    DISCOVERY is a discovery URL, or the SWARM_DISCOVERY environment variable.
    """
    url = require_discovery(discovery, "join")
    if not advertise:
        raise click.ClickException("missing mandatory --advertise flag")
    try:
        entry = Entry.parse(advertise)
    except InvalidEntryError as exc:
        raise click.ClickException(
            f"--advertise should be of the form ip:port or hostname:port ({exc})"
        ) from None

    delay_seconds = duration_flag(delay, "--delay")
    if delay_seconds < 0:
        raise click.ClickException("--delay should not be a negative number")
    heartbeat_seconds = duration_flag(heartbeat, "--heartbeat")
    if heartbeat_seconds < 1:
        raise click.ClickException("--heartbeat should be at least one second")
    ttl_seconds = duration_flag(ttl, "--ttl")
    if ttl_seconds <= heartbeat_seconds:
        raise click.ClickException(
            "--ttl must be strictly superior to the heartbeat value"
        )

    backend = open_backend(
        url,
        heartbeat_seconds=heartbeat_seconds,
        ttl_seconds=ttl_seconds,
        discovery_opts=discovery_opts,
    )
    if not backend.supports_register:
        raise click.ClickException(
            f"the {backend.scheme}:// discovery backend does not support registering "
            "nodes; join through token://, memory:// or a key/value store"
        )

    configure_logging(log_level)
    heart = Heartbeat(
        backend, entry, heartbeat_seconds=heartbeat_seconds, delay_seconds=delay_seconds
    )
    asyncio.run(_run(heart))


async def _run(heart: Heartbeat) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, heart.stop)
    try:
        await heart.run()
    finally:
        await heart.backend.aclose()
