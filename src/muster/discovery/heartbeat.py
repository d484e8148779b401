"""Keep a node registered: register it every heartbeat until told to stop.

The TTL a node registers with outlives one heartbeat (Swarm insists on ttl >
heartbeat, 180 s against 60 s by default), so a single failed registration does
not make the node vanish; a failure is retried sooner than a heartbeat, backing off
with jitter so that a fleet that lost its store together does not return together.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from muster.errors import DiscoveryError, UnsupportedOperationError

from .backend import Backend
from .entry import Entry

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

#: First pause after a failed registration; doubles up to the heartbeat.
FIRST_RETRY_SECONDS = 0.5
#: How long a graceful leave may take before the node gives up on it.
LEAVE_TIMEOUT_SECONDS = 5.0


class Heartbeat:
    """Registers one entry on a backend every heartbeat, until :meth:`stop`."""

    def __init__(
        self,
        backend: Backend,
        entry: Entry,
        *,
        heartbeat_seconds: float,
        delay_seconds: float = 0.0,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if heartbeat_seconds <= 0:
            raise ValueError(
                f"heartbeat_seconds must be positive, not {heartbeat_seconds}"
            )
        if delay_seconds < 0:
            raise ValueError(f"delay_seconds must not be negative, not {delay_seconds}")
        self.backend = backend
        self.entry = entry
        self.heartbeat_seconds = heartbeat_seconds
        self.delay_seconds = delay_seconds
        self.registrations = 0
        self.failures = 0
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        """Ask the loop to end; :meth:`run` then leaves the cluster and returns."""
        self._stopped.set()

    async def run(self, *, leave: bool = True) -> None:
        """Register until stopped; then, with ``leave``, deregister where possible."""
        fields = {"node": str(self.entry), "backend": self.backend.scheme}
        if self.delay_seconds > 0:
            # Swarm's --delay: spread out a fleet that starts at the same moment.
            delay = self._rng.uniform(0, self.delay_seconds)
            logger.info("node.delay", extra={**fields, "delay": round(delay, 3)})
            await self._pause(delay)

        backoff = FIRST_RETRY_SECONDS
        attempt = 0
        while not self._stopped.is_set():
            attempt += 1
            try:
                await self.backend.register(self.entry)
            except DiscoveryError as exc:
                self.failures += 1
                pause = self._rng.uniform(backoff / 2, backoff)
                logger.warning(
                    "node.register_failed",
                    extra={
                        **fields,
                        "attempt": attempt,
                        "delay": round(pause, 3),
                        "error": str(exc),
                    },
                )
                backoff = min(backoff * 2, self.heartbeat_seconds)
            else:
                self.registrations += 1
                if self.registrations == 1 or attempt > 1:
                    logger.info("node.registered", extra={**fields, "attempt": attempt})
                else:
                    logger.debug(
                        "node.registered", extra={**fields, "attempt": attempt}
                    )
                attempt = 0
                backoff = FIRST_RETRY_SECONDS
                pause = self.heartbeat_seconds
            await self._pause(pause)

        if leave:
            await self._leave(fields)

    async def _leave(self, fields: dict[str, str]) -> None:
        try:
            async with asyncio.timeout(LEAVE_TIMEOUT_SECONDS):
                await self.backend.deregister(self.entry)
        except UnsupportedOperationError:
            logger.info("node.leave_skipped", extra={**fields, "reason": "unsupported"})
        except (DiscoveryError, TimeoutError) as exc:
            logger.warning(
                "node.leave_failed", extra={**fields, "error": str(exc) or "timed out"}
            )
        else:
            logger.info("node.left", extra=fields)

    async def _pause(self, seconds: float) -> None:
        """Sleep for ``seconds``, or less if :meth:`stop` is called meanwhile."""
        if self._stopped.is_set():
            return
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        stopper = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                task.cancel()
            await asyncio.gather(sleeper, stopper, return_exceptions=True)
