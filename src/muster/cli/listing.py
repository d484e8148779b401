"""``muster list``: print the members of a cluster, one per line."""

from __future__ import annotations

import asyncio

import click

from muster.discovery import Backend, Entries, fetch_membership
from muster.errors import DiscoveryError

from .common import (
    discovery_argument,
    discovery_opt_option,
    duration_flag,
    open_backend,
    require_discovery,
)


@click.command(name="list")
@discovery_argument
@click.option(
    "--timeout", default="10s", show_default=True, help="Give up after this long."
)
@discovery_opt_option
def list_nodes(
    discovery: str | None, timeout: str, discovery_opts: tuple[str, ...]
) -> None:
    """Print the current members of a cluster, one host:port per line.

    Prints nothing for an empty cluster. DISCOVERY is a discovery URL, or the
    SWARM_DISCOVERY environment variable.
    """
    url = require_discovery(discovery, "list")
    timeout_seconds = duration_flag(timeout, "--timeout")
    if timeout_seconds <= 0:
        raise click.ClickException("--timeout should be a positive number")

    # Swarm uses the timeout as the heartbeat of a list: one poll is all it needs.
    backend = open_backend(
        url,
        heartbeat_seconds=timeout_seconds,
        ttl_seconds=0,
        discovery_opts=discovery_opts,
    )
    try:
        entries = asyncio.run(_fetch(backend, timeout_seconds))
    except DiscoveryError as exc:
        raise click.ClickException(str(exc)) from None

    for address in entries.addresses():
        click.echo(address)


async def _fetch(backend: Backend, timeout_seconds: float) -> Entries:
    async with backend:
        return await fetch_membership(backend, timeout_seconds)
