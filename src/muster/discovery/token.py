"""``token://``: the hosted discovery service, classic Swarm's and ``muster serve``.

URL forms, as Swarm reads them, plus two explicit ones for a self-hosted service:

- ``token://TOKEN``: the service Docker Hub used to run;
- ``token://HOST[:PORT]/PATH/TOKEN``: ``https://HOST[:PORT]/PATH``;
- ``token+http://HOST:PORT/PATH/TOKEN`` and ``token+https://...``: the scheme given.

Against ``muster serve`` the watch long-polls (``?index=N&wait=...``) and hears of
a change within milliseconds; against a service that only speaks Swarm's API (its
answers carry no index) it polls once a heartbeat, as Swarm does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, Self
from urllib.parse import quote

import aiohttp

from muster.errors import (
    BackendError,
    BackendResponseError,
    BackendUnavailableError,
    ClusterNotFoundError,
    InvalidOptionError,
    InvalidURLError,
    UnsupportedOperationError,
)
from muster.logs import mask_token

from .backend import Backend, WatchEvent
from .entry import Entries, Entry

logger = logging.getLogger(__name__)

#: Where ``token://TOKEN`` points, as in classic Swarm. That service is gone; use
#: ``muster serve`` and a ``token+http://`` or ``token://HOST/PATH/TOKEN`` URL.
DEFAULT_SERVICE_URL = "https://discovery.hub.docker.com/v1"
#: The header ``muster serve`` puts the membership version in.
INDEX_HEADER = "X-Muster-Index"
#: How long one long-poll may wait on the server; well under its 600 s cap.
LONG_POLL_SECONDS = 30.0
#: Ceiling for one plain request; a heartbeat should not stall on a dead service.
REQUEST_SECONDS = 10.0
#: First pause after a failed poll; it doubles up to the heartbeat, with jitter, so
#: a fleet of watchers does not retry in step against a recovering service.
FIRST_RETRY_SECONDS = 0.5

_SCHEMES = {"token": "https", "token+https": "https", "token+http": "http"}


def split_token_url(scheme: str, rest: str) -> tuple[str, str]:
    """Return the service base URL and the token a ``token`` URL names."""
    if scheme not in _SCHEMES:
        raise InvalidURLError(f"{scheme}:// is not a token discovery URL")

    base, slash, token = rest.rpartition("/")
    if not slash:
        if scheme != "token":
            raise InvalidURLError(
                f"{scheme}://{rest} names no service: "
                f"write {scheme}://HOST:PORT/v1/TOKEN"
            )
        base_url = DEFAULT_SERVICE_URL
    else:
        if not base:
            raise InvalidURLError(f"{scheme}://{rest} has an empty service address")
        base_url = f"{_SCHEMES[scheme]}://{base}"

    if not token:
        raise InvalidURLError(f"token is empty in {scheme}://{rest}: put it last")
    return base_url, token


def client_ssl_context(options: Mapping[str, str], prefix: str) -> ssl.SSLContext:
    """Build the TLS context for talking to a service, from ``PREFIX.*`` options.

    The system's trusted roots (and ``SSL_CERT_FILE``) always count; a
    ``PREFIX.cacertfile`` adds a private CA; ``PREFIX.certfile`` and
    ``PREFIX.keyfile`` together present a client certificate.
    """
    context = ssl.create_default_context()
    cafile = options.get(f"{prefix}.cacertfile")
    certfile = options.get(f"{prefix}.certfile")
    keyfile = options.get(f"{prefix}.keyfile")
    if (certfile is None) != (keyfile is None):
        raise InvalidOptionError(
            f"{prefix}.certfile and {prefix}.keyfile go together: give both or neither"
        )

    if cafile:
        _load_tls(context.load_verify_locations, f"{prefix}.cacertfile", cafile)
    if certfile and keyfile:
        _load_tls(
            lambda path: context.load_cert_chain(path, keyfile),
            f"{prefix}.certfile/{prefix}.keyfile",
            certfile,
        )
    return context


def _load_tls(load: Callable[[str], object], option: str, path: str) -> None:
    try:
        load(path)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise InvalidOptionError(f"cannot load {option} {path!r}: {reason}") from exc


async def create_cluster(
    service_url: str, *, ssl_context: ssl.SSLContext | None = None
) -> str:
    """Ask a token service for a new cluster and return its token."""
    url = f"{service_url.rstrip('/')}/clusters"
    timeout = aiohttp.ClientTimeout(total=REQUEST_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with session.post(url, ssl=_ssl_arg(url, ssl_context)) as response:
                text = await response.text()
                if response.status != 200:
                    raise BackendResponseError(
                        f"{url} answered {response.status}: {_error_text(text)}",
                        status=response.status,
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BackendUnavailableError(
                f"cannot reach the discovery service at {url}: {_describe(exc)}"
            ) from exc

    token = text.strip()
    if not token or "/" in token or any(ch.isspace() for ch in token):
        raise BackendResponseError(
            f"{url} answered with no usable token: {text[:80]!r}"
        )
    return token


class TokenBackend(Backend):
    """Nodes register with a hosted token service; watchers read it back."""

    known_options = frozenset({"token.cacertfile", "token.certfile", "token.keyfile"})

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        scheme: str = "token",
        heartbeat_seconds: float = 60.0,
        ttl_seconds: float = 180.0,
        options: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            scheme,
            heartbeat_seconds=heartbeat_seconds,
            ttl_seconds=ttl_seconds,
            options=options,
        )
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._ssl = (
            client_ssl_context(self.options, "token")
            if self.base_url.startswith("https:")
            else None
        )
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_url(
        cls,
        scheme: str,
        rest: str,
        *,
        heartbeat_seconds: float,
        ttl_seconds: float,
        options: Mapping[str, str],
    ) -> Self:
        base_url, token = split_token_url(scheme, rest)
        return cls(
            base_url,
            token,
            scheme=scheme,
            heartbeat_seconds=heartbeat_seconds,
            ttl_seconds=ttl_seconds,
            options=options,
        )

    @property
    def cluster_url(self) -> str:
        """The cluster's URL on the service."""
        return f"{self.base_url}/clusters/{self.token}"

    @property
    def _shown_url(self) -> str:
        # Messages and logs name the service but never the whole token.
        return f"{self.base_url}/clusters/{mask_token(self.token)}"

    @property
    def supports_register(self) -> bool:
        return True

    async def register(self, entry: Entry) -> None:
        # Swarm sends the bare address labelled as JSON; the service expects that.
        ttl = max(1, int(self.ttl_seconds))
        status, _, text = await self._request(
            "POST",
            self.cluster_url,
            params={"ttl": str(ttl)},
            data=str(entry).encode(),
            headers={"Content-Type": "application/json"},
        )
        if status >= 300:
            raise self._response_error(status, text, f"registering {entry}")

    async def deregister(self, entry: Entry) -> None:
        url = f"{self.cluster_url}/{quote(str(entry), safe=':[]')}"
        status, _, text = await self._request("DELETE", url)
        if status == 404 and _muster_error(text) is not None:
            # The node is not there (it expired, or the cluster is gone): done.
            return
        if status in (404, 405, 501):
            # A service that speaks only Swarm's API has no such route.
            raise UnsupportedOperationError(self.scheme, "removing one node at once")
        if status >= 300:
            raise self._response_error(status, text, f"removing {entry}")

    async def fetch(
        self, index: str | None = None, wait_seconds: float = LONG_POLL_SECONDS
    ) -> tuple[Entries, str | None]:
        """Read the membership; with ``index``, wait until it moves past it.

        Returns the membership and the service's index, or ``None`` for a service
        that does not offer one.
        """
        params: dict[str, str] = {}
        timeout = REQUEST_SECONDS
        if index is not None:
            params = {"index": index, "wait": f"{int(wait_seconds)}s"}
            timeout += wait_seconds

        status, headers, text = await self._request(
            "GET", self.cluster_url, params=params, timeout_seconds=timeout
        )
        if status != 200:
            raise self._response_error(status, text, "reading the membership")
        return self._parse_membership(text), headers.get(INDEX_HEADER)

    async def observe(self) -> AsyncGenerator[WatchEvent, None]:
        index: str | None = None
        delay = FIRST_RETRY_SECONDS
        while True:
            try:
                entries, index = await self.fetch(index)
            except BackendError as exc:
                yield exc
                # Full jitter on a capped exponential backoff.
                await asyncio.sleep(random.uniform(0, delay))
                delay = min(delay * 2, self.heartbeat_seconds)
                index = None
                continue

            delay = FIRST_RETRY_SECONDS
            yield entries
            if index is None:
                # A Swarm-only service: poll once a heartbeat, as Swarm does.
                logger.debug("token.poll", extra={"cluster": mask_token(self.token)})
                await asyncio.sleep(self.heartbeat_seconds)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_seconds: float = REQUEST_SECONDS,
    ) -> tuple[int, Mapping[str, str], str]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                ssl=_ssl_arg(url, self._ssl),
                timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            ) as response:
                return response.status, response.headers, await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BackendUnavailableError(
                f"cannot reach the discovery service at {self._shown_url}: "
                f"{_describe(exc)}"
            ) from exc

    def _response_error(self, status: int, text: str, doing: str) -> BackendError:
        if status == 404:
            return ClusterNotFoundError(
                f"no cluster {mask_token(self.token)} at {self.base_url} "
                f"({doing}): create one with 'muster create'",
                status=status,
            )
        detail = _error_text(text)
        return BackendResponseError(
            f"the discovery service answered {status} when {doing}: {detail}",
            status=status,
        )

    def _parse_membership(self, text: str) -> Entries:
        try:
            addresses: Any = json.loads(text)
        except ValueError:
            addresses = None
        if not isinstance(addresses, list) or not all(
            isinstance(address, str) for address in addresses
        ):
            raise BackendResponseError(
                f"{self._shown_url} did not answer with a JSON list of addresses: "
                f"{text[:80]!r}"
            )
        try:
            return Entries.parse(addresses)
        except ValueError as exc:
            raise BackendResponseError(
                f"{self._shown_url} listed a bad address: {exc}"
            ) from exc


def _ssl_arg(url: str, context: ssl.SSLContext | None) -> ssl.SSLContext | bool:
    if url.startswith("https:"):
        return context if context is not None else ssl.create_default_context()
    return True


def _muster_error(body: str) -> str | None:
    """Return the message of muster's one-line ``{"error": ...}`` body, if it is one."""
    try:
        decoded: Any = json.loads(body)
    except ValueError:
        return None
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), str):
        return str(decoded["error"])
    return None


def _error_text(body: str) -> str:
    """Pull the message out of an error body, or show the body itself."""
    return _muster_error(body) or body.strip()[:200] or "(empty body)"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__
