"""What the key/value backends (etcd, ZooKeeper, Consul) share.

A URL names the store's addresses and an optional prefix:
``etcd://10.0.0.1:2379,10.0.0.2:2379/prefix``. Nodes live under
``<prefix>/<kv.path>/<host:port>`` with the address as the value, ``kv.path``
defaulting to ``docker/swarm/nodes``: the layout classic Swarm uses, so Swarm and
muster nodes registered on one store see each other.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

from muster.errors import InvalidEntryError, InvalidOptionError, InvalidURLError

from .backend import Backend
from .entry import Entry

#: Where nodes live under the prefix unless ``kv.path`` says otherwise (Swarm's).
DEFAULT_PATH = "docker/swarm/nodes"
#: The options every key/value backend accepts.
KV_OPTIONS = frozenset({"kv.path", "kv.cacertfile", "kv.certfile", "kv.keyfile"})
_TLS_OPTIONS = ("kv.cacertfile", "kv.certfile", "kv.keyfile")


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """The three files a key/value store connection over TLS needs."""

    cacertfile: str
    certfile: str
    keyfile: str

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context trusting ``cacertfile`` and presenting the cert."""
        context = ssl.create_default_context(cafile=self.cacertfile)
        context.load_cert_chain(self.certfile, self.keyfile)
        return context

    def read(self) -> tuple[bytes, bytes, bytes]:
        """Return the CA, certificate and key files' bytes, in that order."""
        return (
            Path(self.cacertfile).read_bytes(),
            Path(self.certfile).read_bytes(),
            Path(self.keyfile).read_bytes(),
        )


@dataclass(frozen=True, slots=True)
class KVTarget:
    """Where a key/value backend keeps its nodes, read from its URL and options."""

    endpoints: tuple[Entry, ...]
    prefix: str
    path: str
    tls: TLSFiles | None

    @property
    def directory(self) -> str:
        """The key under which every node lives, without leading or trailing ``/``."""
        return "/".join(part for part in (self.prefix, self.path) if part)

    def node_key(self, entry: Entry) -> str:
        """The key of one node: the directory, then the node's address."""
        return f"{self.directory}/{entry}"


def parse_kv_target(
    scheme: str, rest: str, options: Mapping[str, str], *, default_port: int
) -> KVTarget:
    """Read ``HOST[:PORT],HOST[:PORT]/prefix`` and the ``kv.*`` options."""
    hosts, _, prefix = rest.partition("/")
    endpoints: list[Entry] = []
    for host in hosts.split(","):
        host = host.strip()
        if not host:
            continue
        has_port = host.rsplit("]", 1)[-1].count(":") == 1 or (
            not host.startswith("[") and host.count(":") == 1
        )
        try:
            endpoints.append(
                Entry.parse(host if has_port else f"{host}:{default_port}")
            )
        except InvalidEntryError as exc:
            raise InvalidURLError(
                f"bad store address {host!r} in {scheme}://{rest}: {exc}"
            ) from None
    if not endpoints:
        raise InvalidURLError(
            f"{scheme}://{rest} names no store: write {scheme}://HOST:PORT[,HOST:PORT]/PREFIX"
        )

    path = options.get("kv.path", DEFAULT_PATH).strip("/")
    if not path:
        raise InvalidOptionError(
            "kv.path is empty: leave it out for docker/swarm/nodes"
        )
    return KVTarget(tuple(endpoints), prefix.strip("/"), path, _tls_files(options))


def _tls_files(options: Mapping[str, str]) -> TLSFiles | None:
    given = [name for name in _TLS_OPTIONS if options.get(name)]
    if not given:
        return None
    if len(given) != len(_TLS_OPTIONS):
        missing = ", ".join(name for name in _TLS_OPTIONS if name not in given)
        raise InvalidOptionError(
            "TLS to the store needs kv.cacertfile, kv.certfile and kv.keyfile "
            f"together; missing: {missing}"
        )
    for name in _TLS_OPTIONS:
        if not Path(options[name]).is_file():
            raise InvalidOptionError(f"{name} {options[name]!r} is not a readable file")
    return TLSFiles(
        options["kv.cacertfile"], options["kv.certfile"], options["kv.keyfile"]
    )


class KVBackend(Backend):
    """A backend whose nodes are keys in a key/value store, under one directory."""

    known_options = KV_OPTIONS
    #: The port a store address without one is given.
    default_port: ClassVar[int]

    def __init__(
        self,
        target: KVTarget,
        *,
        scheme: str,
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
        self.target = target

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
        target = parse_kv_target(scheme, rest, options, default_port=cls.default_port)
        return cls(
            target,
            scheme=scheme,
            heartbeat_seconds=heartbeat_seconds,
            ttl_seconds=ttl_seconds,
            options=options,
        )

    @property
    def supports_register(self) -> bool:
        return True
