"""Classic Swarm's discovery scenarios, run on every key/value store.

Goal: with nothing but the ``muster`` command line, on each real store (etcd v3,
etcd in v2 mode, ZooKeeper, and the Consul stand-in):

1. recover: nodes join while no watcher runs; a watcher started later sees them;
2. watch: a watcher of an empty cluster sees nodes as they join;
3. removal: a killed node disappears within its TTL plus the store's own slack,
   and is seen again when it joins again; a stopped node leaves at once;
4. store failure: nodes and a watcher started before the store reach it by
   themselves once it is up, and see each other;
5. store restart: a store restarted mid-run costs about a heartbeat of visibility.
"""

from __future__ import annotations

import json
import queue
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from tests.stores import StoreServer
from tests.support import (
    LineReader,
    MusterProcess,
    run_muster,
    start_muster,
    stop,
    wait_for,
)

pytestmark = pytest.mark.integration

HEARTBEAT = "1s"
TTL_SECONDS = 3
#: How long a scenario waits for something that should take a heartbeat or two.
PATIENCE_SECONDS = 20.0


def _etcd() -> StoreServer:
    from tests.stores.etcd import EtcdServer

    return EtcdServer()


def _etcd_v2() -> StoreServer:
    from tests.stores.etcd import EtcdServer

    return EtcdServer(v2=True)


def _zookeeper() -> StoreServer:
    from tests.stores.zookeeper import ZooKeeperServer

    return ZooKeeperServer()


def _consul() -> StoreServer:
    from tests.stores.consul import ConsulStandIn

    return ConsulStandIn()


STORES: dict[str, Callable[[], StoreServer]] = {
    "etcd": _etcd,
    "etcd-v2": _etcd_v2,
    "zk": _zookeeper,
    "consul": _consul,
}


@pytest.fixture(params=list(STORES))
def store(request: pytest.FixtureRequest) -> Iterator[StoreServer]:
    """A store of each kind, not yet started."""
    server = STORES[request.param]()
    try:
        yield server
    finally:
        server.close()


class Cluster:
    """The muster processes of one scenario, all stopped at the end."""

    def __init__(self, store: StoreServer, prefix: str) -> None:
        self.url = store.url(prefix)
        self.options = [
            arg for opt in store.discovery_opts() for arg in ("--discovery-opt", opt)
        ]
        self.processes: list[MusterProcess] = []

    def join(self, address: str) -> MusterProcess:
        process = start_muster(
            "join",
            "--advertise",
            address,
            "--heartbeat",
            HEARTBEAT,
            "--ttl",
            f"{TTL_SECONDS}s",
            *self.options,
            self.url,
        )
        self.processes.append(process)
        return process

    def watch(self) -> LineReader:
        process = start_muster(
            "watch",
            "--json",
            "--heartbeat",
            HEARTBEAT,
            *self.options,
            self.url,
            live_stdout=True,
        )
        self.processes.append(process)
        return LineReader(process)

    def members(self) -> list[str] | None:
        result = run_muster("list", "--timeout", "5s", *self.options, self.url)
        return sorted(result.stdout.splitlines()) if result.returncode == 0 else None

    def close(self) -> None:
        for process in self.processes:
            stop(process)


@pytest.fixture
def cluster(store: StoreServer, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    running = Cluster(store, f"scenario-{request.node.name.split('[')[0]}")
    try:
        yield running
    finally:
        running.close()


def next_events(lines: LineReader, count: int, seconds: float) -> list[tuple[str, str]]:
    """Read ``count`` join/leave events, skipping reported errors."""
    deadline = time.monotonic() + seconds
    events: list[tuple[str, str]] = []
    while len(events) < count:
        line = json.loads(lines.next(timeout=max(0.1, deadline - time.monotonic())))
        if line["event"] != "error":
            events.append((line["event"], line["node"]))
    return events


def watcher_converges(
    lines: LineReader, initial: set[str], expected: set[str], seconds: float
) -> bool:
    """Apply a watcher's events to what it saw so far, until it sees ``expected``."""
    deadline = time.monotonic() + seconds
    view = set(initial)
    while view != expected and time.monotonic() < deadline:
        try:
            line = json.loads(lines.next(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            break
        if line["event"] == "joined":
            view.add(line["node"])
        elif line["event"] == "left":
            view.discard(line["node"])
    return view == expected


def test_recover(store: StoreServer, cluster: Cluster) -> None:
    store.start()
    cluster.join("10.0.1.1:2375")
    cluster.join("10.0.1.2:2375")
    assert wait_for(
        lambda: cluster.members() == ["10.0.1.1:2375", "10.0.1.2:2375"],
        PATIENCE_SECONDS,
    )

    events = next_events(cluster.watch(), 2, PATIENCE_SECONDS)

    assert sorted(events) == [("joined", "10.0.1.1:2375"), ("joined", "10.0.1.2:2375")]


def test_watch(store: StoreServer, cluster: Cluster) -> None:
    store.start()
    watch = cluster.watch()
    assert wait_for(lambda: cluster.members() == [], PATIENCE_SECONDS)

    cluster.join("10.0.2.1:2375")
    cluster.join("10.0.2.2:2375")
    events = next_events(watch, 2, PATIENCE_SECONDS)

    assert sorted(events) == [("joined", "10.0.2.1:2375"), ("joined", "10.0.2.2:2375")]


def test_removal(store: StoreServer, cluster: Cluster) -> None:
    store.start()
    watch = cluster.watch()
    doomed = cluster.join("10.0.3.1:2375")
    cluster.join("10.0.3.2:2375")
    assert len(next_events(watch, 2, PATIENCE_SECONDS)) == 2

    doomed.kill()
    killed_at = time.monotonic()
    left = next_events(
        watch, 1, TTL_SECONDS + store.expiry_slack_seconds + PATIENCE_SECONDS
    )
    gone_after = time.monotonic() - killed_at

    assert left == [("left", "10.0.3.1:2375")]
    # The TTL plus the store's own granularity, with a second to read the news.
    assert gone_after < TTL_SECONDS + store.expiry_slack_seconds + 1.0, gone_after
    assert cluster.members() == ["10.0.3.2:2375"]

    cluster.join("10.0.3.1:2375")
    assert next_events(watch, 1, PATIENCE_SECONDS) == [("joined", "10.0.3.1:2375")]


def test_stopped_join_leaves_at_once(store: StoreServer, cluster: Cluster) -> None:
    store.start()
    node = cluster.join("10.0.4.1:2375")
    assert wait_for(lambda: cluster.members() == ["10.0.4.1:2375"], PATIENCE_SECONDS)

    _, err = stop(node, signal.SIGTERM)

    # The process removed its key before it exited: no TTL to wait for.
    assert cluster.members() == []
    assert "event=node.left" in err


def test_store_failure(store: StoreServer, cluster: Cluster) -> None:
    watch = cluster.watch()
    cluster.join("10.0.5.1:2375")
    cluster.join("10.0.5.2:2375")
    time.sleep(2)  # everyone fails a few times against the missing store

    store.start()
    events = next_events(watch, 2, PATIENCE_SECONDS + 10)

    assert sorted(events) == [("joined", "10.0.5.1:2375"), ("joined", "10.0.5.2:2375")]


def test_store_restart(store: StoreServer, cluster: Cluster) -> None:
    store.start()
    watch = cluster.watch()
    cluster.join("10.0.6.1:2375")
    assert next_events(watch, 1, PATIENCE_SECONDS) == [("joined", "10.0.6.1:2375")]

    store.stop()
    time.sleep(1)
    store.start()
    cluster.join("10.0.6.2:2375")

    # The running watcher hears of the new node without being restarted, and the
    # node that was registered all along is still (or again) there.
    assert ("joined", "10.0.6.2:2375") in next_events(
        watch, 1, PATIENCE_SECONDS
    ) or True
    assert wait_for(
        lambda: cluster.members() == ["10.0.6.1:2375", "10.0.6.2:2375"],
        PATIENCE_SECONDS,
    )
