"""Turn a discovery URL into a backend, by the URL's scheme.

Built-in backends are imported only when their scheme is used. Other packages add
schemes through the ``muster.discovery.backends`` entry point group, each entry
naming a :class:`~muster.discovery.backend.Backend` subclass, or at run time
with :func:`register_scheme`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points

from muster.errors import InvalidOptionError, InvalidURLError, UnsupportedSchemeError

from .backend import Backend

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "muster.discovery.backends"

_BUILTIN: dict[str, str] = {
    "nodes": "muster.discovery.nodes:NodesBackend",
    "file": "muster.discovery.file:FileBackend",
    "token": "muster.discovery.token:TokenBackend",
    "token+http": "muster.discovery.token:TokenBackend",
    "token+https": "muster.discovery.token:TokenBackend",
    "memory": "muster.discovery.memory:MemoryBackend",
    "etcd": "muster.discovery.etcd:EtcdBackend",
    "zk": "muster.discovery.zookeeper:ZooKeeperBackend",
    "consul": "muster.discovery.consul:ConsulBackend",
}
_added: dict[str, type[Backend]] = {}


def register_scheme(scheme: str, backend: type[Backend]) -> None:
    """Serve ``scheme://`` URLs with ``backend`` in this process."""
    if not scheme or "://" in scheme:
        raise InvalidURLError(f"cannot register scheme {scheme!r}: give a bare name")
    _added[scheme] = backend


def known_schemes() -> list[str]:
    """Return every scheme a discovery URL may use, sorted."""
    names = set(_BUILTIN) | set(_added)
    names.update(point.name for point in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def parse_discovery_url(url: str) -> tuple[str, str]:
    """Split a discovery URL into its scheme and the rest.

    A URL without ``://`` is a comma-separated list of addresses, served by ``nodes``.
    """
    if not url or not url.strip():
        raise InvalidURLError(
            "the discovery URL is empty: give one such as token://TOKEN"
        )

    scheme, sep, rest = url.partition("://")
    if not sep:
        return "nodes", url
    return scheme, rest


def _load(scheme: str) -> type[Backend]:
    if scheme in _added:
        return _added[scheme]

    target = _BUILTIN.get(scheme)
    if target is None:
        for point in entry_points(group=ENTRY_POINT_GROUP, name=scheme):
            target = point.value
            break
    if target is None:
        raise UnsupportedSchemeError(
            f"discovery service not supported: {scheme!r}; "
            f"known schemes: {', '.join(known_schemes())}"
        )

    module_name, _, attribute = target.partition(":")
    loaded = getattr(importlib.import_module(module_name), attribute)
    if not (isinstance(loaded, type) and issubclass(loaded, Backend)):
        raise UnsupportedSchemeError(
            f"the backend registered for {scheme!r} ({target}) is not a Backend"
        )
    return loaded


def create_backend(
    url: str,
    *,
    heartbeat_seconds: float = 60.0,
    ttl_seconds: float = 180.0,
    options: Mapping[str, str] | None = None,
) -> Backend:
    """Make the backend a discovery URL names, checking its options."""
    scheme, rest = parse_discovery_url(url)
    backend_class = _load(scheme)

    logger.debug("backend.create", extra={"backend": scheme})
    return backend_class.from_url(
        scheme,
        rest,
        heartbeat_seconds=heartbeat_seconds,
        ttl_seconds=ttl_seconds,
        options=options or {},
    )


def parse_options(items: Iterable[str]) -> dict[str, str]:
    """Read ``key=value`` discovery options; a later key overrides an earlier one."""
    options: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidOptionError(
                f"invalid --discovery-opt {item!r}: write it as key=value"
            )
        options[key] = value
    return options
