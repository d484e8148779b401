"""The ``muster`` command group: create, join, list, watch, serve."""

from __future__ import annotations

import click

from muster import __version__

from .serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="muster")
def cli() -> None:
    """Cluster discovery for fleets of machines, compatible with classic Swarm.

    Nodes join a cluster by registering host:port every heartbeat with a TTL; a
    watcher learns who joined and who left.
    """


cli.add_command(serve)


def main() -> None:
    """Entry point of the ``muster`` console script."""
    cli(prog_name="muster")
