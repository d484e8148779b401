"""The ``muster`` command group: create, join, list, watch, serve."""

from __future__ import annotations

import sys

import click

from muster import __version__

from .create import create
from .join import join
from .listing import list_nodes
from .serve import serve
from .watch import watch


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="muster")
def cli() -> None:
    """Cluster discovery for fleets of machines, compatible with classic Swarm.

    Nodes join a cluster by registering host:port every heartbeat with a TTL; a
    watcher learns who joined and who left.

    \b
    Discovery URLs:
      token+http://HOST:PORT/v1/TOKEN   a muster serve over http
      token://HOST:PORT/v1/TOKEN        the same over https (Swarm's form)
      file:///path/to/file              one host:port a line
      nodes://10.0.0.[1:3]:2375,...     a fixed list (the scheme may be left out)
      memory://NAME                     in this process only
    """


for command in (create, join, list_nodes, watch, serve):
    cli.add_command(command)


def main() -> None:
    """Entry point of the ``muster`` console script: one line per failure."""
    try:
        code = cli.main(prog_name="muster", standalone_mode=False)
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"muster: {exc.format_message()}{where}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"muster: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
