"""Cluster members as values: one ``host:port`` address, and a membership of them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, overload

from muster.errors import InvalidEntryError

# Swarm expands the first `[from:to]` group made of two integers; any other bracket
# group (an IPv6 literal such as `[2001:db8::2]`) is left alone.
_RANGE = re.compile(r"\[(\d+):(\d+)\]")
_PORT_HINT = "write it as host:port, e.g. 10.0.0.1:2375 or [2001:db8::2]:2375"


@dataclass(frozen=True, order=True, slots=True)
class Entry:
    """One member of a cluster: a host and a TCP port."""

    host: str
    port: int

    def __post_init__(self) -> None:
        if not self.host:
            raise InvalidEntryError(f"address {self} has an empty host: {_PORT_HINT}")
        if not 1 <= self.port <= 65535:
            raise InvalidEntryError(
                f"port {self.port} of {self.host!r} is out of range: "
                "a port is a number from 1 to 65535"
            )

    @classmethod
    def parse(cls, address: str) -> Entry:
        """Read ``host:port`` or ``[ipv6]:port``."""
        host, port_text = _split_host_port(address)
        if not port_text.isascii() or not port_text.isdigit():
            raise InvalidEntryError(
                f"address {address!r} has no valid port: {_PORT_HINT}"
            )

        port = int(port_text)
        if not 1 <= port <= 65535:
            raise InvalidEntryError(
                f"port {port_text} in address {address!r} is out of range: "
                "a port is a number from 1 to 65535"
            )
        return cls(host, port)

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def _split_host_port(address: str) -> tuple[str, str]:
    if address != address.strip() or not address:
        raise InvalidEntryError(f"address {address!r} is not host:port: {_PORT_HINT}")

    if address.startswith("["):
        end = address.find("]")
        if end == -1 or not address[end + 1 :].startswith(":"):
            raise InvalidEntryError(
                f"address {address!r} is missing a port: {_PORT_HINT}"
            )
        host, port = address[1:end], address[end + 2 :]
        if "[" in host or "]" in host:
            raise InvalidEntryError(
                f"address {address!r} is not host:port: {_PORT_HINT}"
            )
    else:
        host, sep, port = address.rpartition(":")
        if not sep:
            raise InvalidEntryError(
                f"address {address!r} is missing a port: {_PORT_HINT}"
            )
        if ":" in host:
            raise InvalidEntryError(
                f"address {address!r} looks like IPv6 without brackets: "
                f"write it as [{host}]:{port}"
            )
        if "[" in host or "]" in host:
            raise InvalidEntryError(
                f"address {address!r} is not host:port: {_PORT_HINT}"
            )

    if not host:
        raise InvalidEntryError(f"address {address!r} has an empty host: {_PORT_HINT}")
    if any(ch.isspace() or ch == "/" for ch in host):
        raise InvalidEntryError(f"address {address!r} is not host:port: {_PORT_HINT}")
    return host, port


class Change(NamedTuple):
    """What differs between two memberships."""

    added: Entries
    removed: Entries


class Entries:
    """A cluster membership: distinct entries, kept in the order first seen.

    Two memberships are equal when they hold the same entries, whatever the order:
    a watch reports a change of members, not a reshuffle of the same ones.
    """

    __slots__ = ("_items", "_set")

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._items: tuple[Entry, ...] = tuple(dict.fromkeys(entries))
        self._set = frozenset(self._items)

    @classmethod
    def parse(cls, addresses: Iterable[str]) -> Entries:
        """Read addresses, skipping empty strings as Swarm does."""
        return cls(Entry.parse(address) for address in addresses if address)

    def diff(self, newer: Entries) -> Change:
        """Return what joined and what left between ``self`` and ``newer``."""
        added = Entries(entry for entry in newer if entry not in self._set)
        removed = Entries(entry for entry in self if entry not in newer._set)
        return Change(added, removed)

    def addresses(self) -> list[str]:
        """Return every entry printed as ``host:port``."""
        return [str(entry) for entry in self._items]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._set

    @overload
    def __getitem__(self, index: int) -> Entry: ...
    @overload
    def __getitem__(self, index: slice) -> Entries: ...
    def __getitem__(self, index: int | slice) -> Entry | Entries:
        if isinstance(index, slice):
            return Entries(self._items[index])
        return self._items[index]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Entries):
            return NotImplemented
        return self._set == other._set

    def __hash__(self) -> int:
        return hash(self._set)

    def __repr__(self) -> str:
        return f"Entries({self.addresses()!r})"


def expand_pattern(pattern: str) -> list[str]:
    """Expand one ``[from:to]`` range in an address pattern, the way Swarm does.

    ``10.0.0.[10:12]:2375`` gives three addresses; a pattern with no range, or whose
    only bracket group is an IPv6 literal, is returned as it is. Every occurrence of
    the first range group is replaced by the same number.
    """
    match = _RANGE.search(pattern)
    if match is None:
        return [pattern]

    start, stop = int(match.group(1)), int(match.group(2))
    return [pattern.replace(match.group(0), str(n)) for n in range(start, stop + 1)]


def parse_patterns(patterns: Iterable[str]) -> Entries:
    """Expand each pattern and read the addresses it gives."""
    addresses: list[str] = []
    for pattern in patterns:
        addresses.extend(expand_pattern(pattern.strip()))
    return Entries.parse(addresses)
