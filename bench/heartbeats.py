"""How many heartbeats a second one ``muster serve`` takes, over loopback.

Starts the service as a subprocess on a fresh data directory, creates one cluster,
then sends registrations of distinct nodes from several client connections at once
and reports the rate, first for new nodes (joins) then for refreshes (heartbeats).

    .venv/bin/python bench/heartbeats.py [--requests 20000] [--concurrency 64]

Bounded: at most --requests requests per phase and --seconds seconds in all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import ServiceProcess

# Room for every node the benchmark sends, and no log line per join.
SERVE_ARGS = ("--max-nodes", "1000000", "--log-level", "warning")


async def phase(
    session: aiohttp.ClientSession,
    url: str,
    requests: int,
    concurrency: int,
    deadline: float,
) -> tuple[int, float]:
    """Send ``requests`` registrations; return how many got a 200, and the time."""
    counter = iter(range(requests))
    answered = 0
    statuses: dict[int, int] = {}

    async def worker() -> None:
        nonlocal answered
        for n in counter:
            if time.monotonic() > deadline:
                return
            address = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}:2375"
            async with session.post(url, data=address.encode()) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
                answered += response.status == 200

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if answered < requests:
        print(f"  answers by status: {statuses}")
    return answered, time.perf_counter() - started


async def main(requests: int, concurrency: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    with (
        tempfile.TemporaryDirectory() as folder,
        ServiceProcess(Path(folder), extra_args=SERVE_ARGS) as service,
    ):
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.post(f"{service.base_url}/clusters") as response:
                token = await response.text()
            url = f"{service.base_url}/clusters/{token}?ttl=600"

            print(
                f"machine: {platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}, {platform.platform()}"
            )
            print(f"command: {' '.join(sys.argv)}")
            for name in ("join", "refresh"):
                done, elapsed = await phase(
                    session, url, requests, concurrency, deadline
                )
                print(
                    f"{name:8} {done:7d} requests in {elapsed:6.2f} s: "
                    f"{done / elapsed:8.0f} per second"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=120.0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.requests, arguments.concurrency, arguments.seconds))
