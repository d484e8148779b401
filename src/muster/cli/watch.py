"""``muster watch``: print joins and leaves as they happen."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from datetime import UTC, datetime

import click

from muster.discovery import Backend, Entries

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
    "--heartbeat",
    default="60s",
    show_default=True,
    help="How often to look where the backend cannot push changes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@discovery_opt_option
def watch(
    discovery: str | None,
    heartbeat: str,
    as_json: bool,
    discovery_opts: tuple[str, ...],
) -> None:
    """Print who joins and who leaves the cluster, one line each, until stopped.

    The current members come first, as joins. Leaves are printed before joins, so
    a node that moved shows as leaving its old address, then joining its new one.
    Failures go to standard error and the watch goes on.
    """
    url = require_discovery(discovery, "watch")
    heartbeat_seconds = duration_flag(heartbeat, "--heartbeat")
    if heartbeat_seconds <= 0:
        raise click.ClickException("--heartbeat should be a positive number")

    backend = open_backend(
        url,
        heartbeat_seconds=heartbeat_seconds,
        ttl_seconds=0,
        discovery_opts=discovery_opts,
    )
    asyncio.run(_follow(backend, as_json))


async def _follow(backend: Backend, as_json: bool) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)

    previous = Entries()
    try:
        async with backend, backend.watch() as updates:
            async for event in updates:
                if isinstance(event, Entries):
                    change = previous.diff(event)
                    for entry in change.removed:
                        _emit("left", str(entry), as_json)
                    for entry in change.added:
                        _emit("joined", str(entry), as_json)
                    previous = event
                else:
                    _emit_error(str(event), as_json)
    except asyncio.CancelledError:
        return


def _emit(event: str, node: str, as_json: bool) -> None:
    if as_json:
        line = json.dumps({"event": event, "node": node, "time": _now()})
    else:
        line = f"{event} {node}"
    click.echo(line)
    sys.stdout.flush()


def _emit_error(message: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"event": "error", "error": message, "time": _now()}))
        sys.stdout.flush()
    else:
        click.echo(f"muster: watch: {message}", err=True)


def _now() -> str:
    moment = datetime.fromtimestamp(time.time(), UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
