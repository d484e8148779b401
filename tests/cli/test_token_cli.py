"""create, join, list and watch against a real ``muster serve``, all as subprocesses.

Goal: a cluster comes alive through the command line alone; nodes that stop leave
at once, nodes that die leave when their TTL runs out, watchers hear of both, and
a restart of the service loses nothing.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import TLSFiles
from tests.support import (
    LineReader,
    MusterProcess,
    ServiceProcess,
    http,
    run_muster,
    start_muster,
    stop,
    wait_for,
)

pytestmark = pytest.mark.integration


def create(
    service: ServiceProcess, *extra: str, env: dict[str, str] | None = None
) -> str:
    result = run_muster("create", "--service", service.base_url, *extra, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def members(url: str, *extra: str) -> list[str]:
    result = run_muster("list", "--timeout", "5s", *extra, url)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def join(url: str, address: str, *extra: str) -> MusterProcess:
    return start_muster(
        "join", "--advertise", address, "--heartbeat", "1s", "--ttl", "2s", *extra, url
    )


def test_create_prints_the_token_alone(service: ServiceProcess) -> None:
    out = create(service)

    assert re.fullmatch(r"[0-9a-f]{32}\n", out)


def test_create_url_prints_a_discovery_url_that_join_accepts(
    service: ServiceProcess,
) -> None:
    url = create(service, "--url").strip()
    assert url.startswith(f"token+http://{service.address}/v1/")

    node = join(url, "10.1.0.1:2375")
    try:
        assert wait_for(lambda: members(url) == ["10.1.0.1:2375"], 20)
    finally:
        stop(node)


def test_create_reads_the_service_from_the_environment(service: ServiceProcess) -> None:
    result = run_muster("create", env={"MUSTER_SERVICE": service.base_url})

    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"[0-9a-f]{32}", result.stdout.strip())


def test_join_then_list_then_stop_leaves_at_once(service: ServiceProcess) -> None:
    url = service.discovery_url(create(service).strip())
    first = join(url, "10.0.0.1:2375")
    second = join(url, "[2001:db8::2]:2375")
    try:
        assert wait_for(lambda: len(members(url)) == 2, 20)
        assert sorted(members(url)) == ["10.0.0.1:2375", "[2001:db8::2]:2375"]

        _, err = stop(second, signal.SIGTERM)
        # The process left the cluster before it exited: no wait for the TTL.
        assert members(url) == ["10.0.0.1:2375"]
        assert "node.left" in err
    finally:
        stop(first, signal.SIGINT)
    assert members(url) == []


def test_killed_join_is_gone_when_its_ttl_runs_out(service: ServiceProcess) -> None:
    token = create(service).strip()
    url = service.discovery_url(token)
    node = join(url, "10.0.0.9:2375")
    assert wait_for(lambda: members(url) == ["10.0.0.9:2375"], 20)

    node.kill()
    node.wait()
    killed_at = time.time()
    _, _, body = http("GET", f"{service.base_url}/clusters/{token}/nodes")
    detail = json.loads(body)

    # The service states when the node expires; it must be gone by then, plus 1 s.
    (entry,) = detail["nodes"]
    assert entry["ttl_seconds"] == 2
    assert wait_for(lambda: members(url) == [], (killed_at + 3.0) - time.time())


def test_watch_hears_of_a_join_and_a_leave_without_polling(
    service: ServiceProcess,
) -> None:
    token = create(service).strip()
    base = f"{service.base_url}/clusters/{token}"
    # A 60 s heartbeat: only the service's long-poll can deliver news in time.
    watcher = start_muster(
        "watch",
        "--json",
        "--heartbeat",
        "60s",
        service.discovery_url(token),
        live_stdout=True,
    )
    lines = LineReader(watcher)
    try:
        http("POST", f"{base}?ttl=60", b"10.0.0.4:2375")
        first = json.loads(lines.next(timeout=20))  # the watcher is now waiting

        registered = time.monotonic()
        http("POST", f"{base}?ttl=60", b"10.0.0.5:2375")
        joined = json.loads(lines.next(timeout=20))
        join_latency = time.monotonic() - registered

        node = join(service.discovery_url(token), "10.0.0.6:2375")
        assert json.loads(lines.next(timeout=20))["node"] == "10.0.0.6:2375"
        stop(node, signal.SIGTERM)
        left = json.loads(lines.next(timeout=20))
    finally:
        stop(watcher)

    assert (first["event"], first["node"]) == ("joined", "10.0.0.4:2375")
    assert (joined["event"], joined["node"]) == ("joined", "10.0.0.5:2375")
    assert (left["event"], left["node"]) == ("left", "10.0.0.6:2375")
    # The one timing bound in the suite, because it is the feature: a watcher
    # hears of a join within a second of it, where polling would take 60 s.
    assert join_latency < 1.0, join_latency


def test_join_started_before_the_service_registers_once_it_is_up(
    tmp_path: Path,
) -> None:
    service = ServiceProcess(tmp_path / "data").start()
    url = service.discovery_url(create(service).strip())
    service.stop()

    node = join(url, "10.0.0.8:2375")
    try:
        time.sleep(1.5)  # let it fail a few times against the closed port
        assert node.poll() is None
        service.start()
        assert wait_for(lambda: members(url) == ["10.0.0.8:2375"], 20)
    finally:
        _, err = stop(node)
        service.stop()

    assert "event=node.register_failed" in err
    assert "attempt=1" in err


def test_watch_prints_plain_lines_and_starts_with_current_members(
    service: ServiceProcess,
) -> None:
    token = create(service).strip()
    base = f"{service.base_url}/clusters/{token}"
    http("POST", f"{base}?ttl=60", b"10.0.0.7:2375")
    watcher = start_muster("watch", service.discovery_url(token), live_stdout=True)
    lines = LineReader(watcher)
    try:
        first = lines.next(timeout=10)
        http("DELETE", f"{base}/10.0.0.7:2375")
        second = lines.next(timeout=10)
    finally:
        stop(watcher)

    assert first == "joined 10.0.0.7:2375"
    assert second == "left 10.0.0.7:2375"


def test_service_restart_loses_no_cluster_and_no_live_node(tmp_path: Path) -> None:
    service = ServiceProcess(tmp_path / "data").start()
    port = service.port
    url = service.discovery_url(create(service).strip())
    node = start_muster(
        "join", "--advertise", "10.0.0.3:2375", "--heartbeat", "1s", "--ttl", "30s", url
    )
    try:
        assert wait_for(lambda: members(url) == ["10.0.0.3:2375"], 20)
        service.stop(signal.SIGKILL)
        service = ServiceProcess(tmp_path / "data", port=port).start()
        assert members(url) == ["10.0.0.3:2375"]
    finally:
        stop(node)
        service.stop()


def test_list_over_https_trusts_the_ca_named_by_ssl_cert_file(
    tls_service: ServiceProcess, tls_files: TLSFiles
) -> None:
    env = {"SSL_CERT_FILE": str(tls_files.ca_cert)}
    token = run_muster(
        "create", "--service", tls_service.base_url, env=env
    ).stdout.strip()
    # Swarm's own URL form: token://HOST:PORT/PATH/TOKEN means https.
    url = f"token://{tls_service.address}/v1/{token}"
    status, _, _ = http(
        "POST",
        f"{tls_service.base_url}/clusters/{token}?ttl=60",
        b"10.0.0.4:2375",
        cafile=tls_files.ca_cert,
    )

    result = run_muster("list", url, env=env)

    assert status == 200
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["10.0.0.4:2375"]


def test_list_over_https_fails_clearly_without_the_ca(
    tls_service: ServiceProcess,
) -> None:
    url = f"token://{tls_service.address}/v1/0123456789abcdef0123456789abcdef"

    result = run_muster("list", "--timeout", "5s", url)

    assert result.returncode == 1
    assert "certificate" in result.stderr.lower()
    assert len(result.stderr.strip().splitlines()) == 1


def test_list_over_https_trusts_a_ca_given_as_an_option(
    tls_service: ServiceProcess, tls_files: TLSFiles
) -> None:
    token = run_muster(
        "create", "--service", tls_service.base_url, "--cacert", str(tls_files.ca_cert)
    ).stdout.strip()
    url = f"token+https://{tls_service.address}/v1/{token}"

    result = run_muster(
        "list", "--discovery-opt", f"token.cacertfile={tls_files.ca_cert}", url
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_list_of_unknown_token_says_so(service: ServiceProcess) -> None:
    url = service.discovery_url("ffffffffffffffffffffffffffffffff")

    result = run_muster("list", url)

    assert result.returncode == 1
    assert "muster create" in result.stderr
    assert "ffffffffffffffffffffffffffffffff" not in result.stderr
