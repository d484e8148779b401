"""Pieces the commands share: Swarm's flags, their checks, and how errors print."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from muster.discovery import Backend, create_backend, parse_options
from muster.durations import parse_duration
from muster.errors import DiscoveryError

F = TypeVar("F", bound=Callable[..., Any])


def discovery_argument(command: F) -> F:
    """The DISCOVERY argument, falling back on ``SWARM_DISCOVERY`` as Swarm does."""
    return click.argument(
        "discovery", required=False, envvar="SWARM_DISCOVERY", metavar="DISCOVERY"
    )(command)


def discovery_opt_option(command: F) -> F:
    """The repeatable ``--discovery-opt key=value`` flag."""
    return click.option(
        "--discovery-opt",
        "discovery_opts",
        multiple=True,
        metavar="KEY=VALUE",
        help="Backend option, repeatable (token.cacertfile=FILE, kv.path=...).",
    )(command)


def require_discovery(discovery: str | None, command: str) -> str:
    """Return the discovery URL, or fail the way Swarm does when there is none."""
    if not discovery:
        raise click.ClickException(
            f"discovery required to {command} a cluster. "
            f"See 'muster {command.split()[0]} --help'."
        )
    return discovery


def duration_flag(value: str, flag: str) -> float:
    """Read a Go-style duration given to ``flag``."""
    try:
        return parse_duration(value)
    except DiscoveryError as exc:
        raise click.ClickException(f"invalid {flag}: {exc}") from None


def open_backend(
    discovery: str,
    *,
    heartbeat_seconds: float,
    ttl_seconds: float,
    discovery_opts: Sequence[str],
) -> Backend:
    """Make the backend for a discovery URL, turning its errors into one line."""
    try:
        options = parse_options(discovery_opts)
        return create_backend(
            discovery,
            heartbeat_seconds=heartbeat_seconds,
            ttl_seconds=ttl_seconds,
            options=options,
        )
    except DiscoveryError as exc:
        raise click.ClickException(str(exc)) from None
