"""``nodes://``: a fixed list of addresses, given in the URL itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from typing import Self

from muster.errors import InvalidEntryError

from .backend import Backend, WatchEvent
from .entry import Entries, parse_patterns


class NodesBackend(Backend):
    """A cluster whose members are written out in the discovery URL.

    ``nodes://10.0.0.1:2375,10.0.0.[2:4]:2375``, or the same list with no scheme at
    all. Nothing can join it: the list is the membership.
    """

    def __init__(
        self,
        entries: Entries,
        *,
        scheme: str = "nodes",
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
        self.entries = entries

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
        try:
            entries = parse_patterns(part for part in rest.split(",") if part.strip())
        except InvalidEntryError as exc:
            raise InvalidEntryError(
                f"{exc}; a discovery URL other than a list of addresses needs a "
                "scheme, such as token://, file:// or etcd://"
            ) from None
        if not entries:
            raise InvalidEntryError(
                f"the node list {rest!r} holds no address: give host:port,host:port"
            )
        return cls(
            entries,
            scheme=scheme,
            heartbeat_seconds=heartbeat_seconds,
            ttl_seconds=ttl_seconds,
            options=options,
        )

    async def observe(self) -> AsyncGenerator[WatchEvent, None]:
        yield self.entries
        # The list never changes: wait until the watch is stopped.
        await asyncio.get_running_loop().create_future()
