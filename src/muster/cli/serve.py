"""``muster serve``: run the hosted token discovery service."""

from __future__ import annotations

from pathlib import Path

import click

from muster.discovery.entry import Entry
from muster.durations import parse_duration
from muster.errors import DiscoveryError, InvalidDurationError, InvalidEntryError
from muster.logs import configure_logging

DEFAULT_LISTEN = "tcp://127.0.0.1:7733"


def parse_listen_address(text: str) -> tuple[str, int]:
    """Read ``-H``: ``tcp://HOST:PORT``, ``tcp://[IPv6]:PORT`` or ``HOST:PORT``."""
    address = text.removeprefix("tcp://")
    if "://" in address:
        raise click.UsageError(f"invalid -H {text!r}: only tcp:// is supported")
    try:
        entry = Entry.parse(address)
    except InvalidEntryError as exc:
        raise click.UsageError(f"invalid -H {text!r}: {exc}") from exc
    return entry.host, entry.port


def parse_max_ttl(text: str) -> int:
    """Read ``--max-ttl``: a Go duration of at least one second."""
    try:
        seconds = parse_duration(text)
    except InvalidDurationError as exc:
        raise click.UsageError(f"--max-ttl: {exc}") from exc
    if seconds < 1:
        raise click.UsageError(
            f"--max-ttl {text!r} is shorter than one second: use e.g. 24h"
        )
    return int(seconds)


@click.command()
@click.option(
    "-H",
    "--host",
    "listen",
    default=DEFAULT_LISTEN,
    show_default=True,
    envvar="MUSTER_HOST",
    metavar="tcp://HOST:PORT",
    help="Address to listen on; also HOST:PORT, or tcp://[::1]:PORT for IPv6. "
    "Env: MUSTER_HOST.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("muster-data"),
    show_default=True,
    envvar="MUSTER_DATA_DIR",
    help="Directory holding muster.db, made if missing. Env: MUSTER_DATA_DIR.",
)
@click.option(
    "--tlscert",
    type=click.Path(path_type=Path),
    help="PEM certificate (chain) to serve HTTPS with; needs --tlskey.",
)
@click.option(
    "--tlskey",
    type=click.Path(path_type=Path),
    help="PEM private key of --tlscert.",
)
@click.option(
    "--max-nodes",
    type=click.IntRange(min=1),
    default=10000,
    show_default=True,
    help="Most nodes one cluster may hold; more joins are refused with 409.",
)
@click.option(
    "--max-ttl",
    default="24h",
    show_default=True,
    metavar="DURATION",
    help="Longest TTL a node may register with, as a Go duration (e.g. 1h).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    help="Least severe events to log; debug shows every heartbeat.",
)
def serve(
    listen: str,
    data_dir: Path,
    tlscert: Path | None,
    tlskey: Path | None,
    max_nodes: int,
    max_ttl: str,
    log_level: str,
) -> None:
    """Run the token discovery service that nodes join and managers watch.

    It speaks classic Swarm's hosted token API under /v1, so both `swarm join
    token://...` and muster's token backend can use it. State is kept in
    DATA_DIR/muster.db and survives restarts. Stop it with Ctrl-C or SIGTERM.

    \b
    Example:
      muster serve -H tcp://0.0.0.0:7733 --data-dir /var/lib/muster
      curl -X POST http://127.0.0.1:7733/v1/clusters
    """
    # Imported here so that `muster --help` does not pay for aiohttp.
    from muster.service.server import ServiceConfig, run

    configure_logging(log_level.lower())
    host, port = parse_listen_address(listen)
    if (tlscert is None) != (tlskey is None):
        given = "--tlscert" if tlscert is not None else "--tlskey"
        raise click.UsageError(
            f"{given} was given alone: HTTPS needs both --tlscert and --tlskey"
        )

    config = ServiceConfig(
        host=host,
        port=port,
        data_dir=data_dir,
        tls_cert=tlscert,
        tls_key=tlskey,
        max_nodes=max_nodes,
        max_ttl_seconds=parse_max_ttl(max_ttl),
        log_level=log_level.lower(),
    )
    try:
        run(config)
    except DiscoveryError as exc:
        raise click.ClickException(str(exc)) from exc
