"""``muster create``: ask a token service for a new cluster token."""

from __future__ import annotations

import asyncio

import click

from muster.discovery.token import client_ssl_context, create_cluster
from muster.errors import DiscoveryError

#: Where ``muster serve`` listens by default.
DEFAULT_SERVICE = "http://127.0.0.1:7733/v1"


def discovery_url_for(service: str, token: str) -> str:
    """Return the discovery URL that joins ``token`` on ``service``.

    An https service gets Swarm's own ``token://HOST/PATH/TOKEN`` form, which classic
    Swarm can read too; a plain-http one needs muster's ``token+http://``.
    """
    scheme, _, rest = service.rstrip("/").partition("://")
    prefix = "token" if scheme == "https" else "token+http"
    return f"{prefix}://{rest}/{token}"


@click.command()
@click.option(
    "--service",
    envvar="MUSTER_SERVICE",
    default=DEFAULT_SERVICE,
    show_default=True,
    help="Base URL of the token service (env MUSTER_SERVICE).",
)
@click.option(
    "--cacert",
    type=click.Path(dir_okay=False),
    help="A CA certificate to trust for an https service with a private CA.",
)
@click.option(
    "--url",
    "print_url",
    is_flag=True,
    help="Print the whole discovery URL to pass to 'muster join', not the bare token.",
)
def create(service: str, cacert: str | None, print_url: bool) -> None:
    """Create a cluster and print its token.

    The token goes alone on standard output, so that TOKEN=$(muster create) works.
    """
    if not service.startswith(("http://", "https://")):
        raise click.ClickException(
            f"invalid --service {service!r}: give a URL such as {DEFAULT_SERVICE}"
        )

    try:
        context = None
        if service.startswith("https://"):
            options = {"token.cacertfile": cacert} if cacert else {}
            context = client_ssl_context(options, "token")
        token = asyncio.run(create_cluster(service, ssl_context=context))
    except DiscoveryError as exc:
        raise click.ClickException(str(exc)) from None

    click.echo(discovery_url_for(service, token) if print_url else token)
