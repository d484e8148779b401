"""``muster serve`` as a real process: restarts, HTTPS for Swarm, bad command lines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import TLSFiles
from tests.support import ServiceProcess, free_port, http, run_muster

pytestmark = pytest.mark.integration

JSON = {"Content-Type": "application/json"}

# What classic Swarm 1.2.9's Go client sends to the hosted token service, done
# with the standard library and a context that trusts only the default CA store,
# which SSL_CERT_FILE points at the test CA.
SWARM_CLIENT = textwrap.dedent(
    """
    import http.client, json, ssl, sys

    host, port = sys.argv[1], int(sys.argv[2])
    context = ssl.create_default_context()
    context.set_alpn_protocols(["h2", "http/1.1"])  # Go offers h2 first
    go = {"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}

    def call(method, path, body, headers):
        conn = http.client.HTTPSConnection(host, port, context=context, timeout=10)
        conn.request(method, path, body=body, headers=headers)
        alpn = conn.sock.selected_alpn_protocol()
        response = conn.getresponse()
        answer = (response.status, response.getheader("Content-Type"),
                  response.read().decode(), alpn)
        conn.close()
        return answer

    created = call("POST", "/v1/clusters", None, {**go, "Content-Type": ""})
    token = created[2]
    joined = call("POST", f"/v1/clusters/{token}?ttl=180", b"10.0.0.1:2375",
                  {**go, "Content-Type": "application/json"})
    listed = call("GET", f"/v1/clusters/{token}", None, go)
    print(json.dumps({"created": created, "joined": joined, "listed": listed}))
    """
)


def create_cluster(service: ServiceProcess) -> str:
    status, _, body = http("POST", f"{service.base_url}/clusters", b"")
    assert status == 200
    return body.decode()


def members(service: ServiceProcess, token: str) -> list[str]:
    status, _, body = http("GET", f"{service.base_url}/clusters/{token}")
    assert status == 200, body
    listed = json.loads(body)
    assert isinstance(listed, list)
    return listed


def assert_one_error_line(
    result: subprocess.CompletedProcess[str], *words: str
) -> None:
    """A refused start: non-zero exit and one line on stderr naming ``words``."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("muster: ")
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_starts_and_stops_cleanly(tmp_path: Path, sig: int) -> None:
    """The service answers once it listens, and a signal stops it with status 0."""
    service = ServiceProcess(tmp_path / "data").start()
    process = service.process
    assert process is not None

    status, _, body = http("GET", f"http://{service.address}/health")
    _, err = service.stop(sig)

    assert status == 200
    assert json.loads(body)["status"] == "ok"
    assert process.returncode == 0
    assert f"event=service.started url=http://{service.address}" in err
    assert "event=service.stopped" in err
    assert "Traceback" not in err
    assert (tmp_path / "data" / "muster.db").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_restart_loses_no_cluster_and_no_live_node(tmp_path: Path, sig: int) -> None:
    """A registration answered 200 survives even a kill right after the answer."""
    service = ServiceProcess(tmp_path / "data").start()
    token = create_cluster(service)
    empty = create_cluster(service)
    http("POST", f"{service.base_url}/clusters/{token}?ttl=300", b"10.0.0.1:1", JSON)
    status, _, _ = http(
        "POST", f"{service.base_url}/clusters/{token}?ttl=300", b"10.0.0.2:1", JSON
    )
    assert status == 200
    service.stop(sig)

    service.start()
    try:
        assert members(service, token) == ["10.0.0.1:1", "10.0.0.2:1"]
        assert members(service, empty) == []
    finally:
        service.stop()


def test_https_serves_swarm_go_client(tmp_path: Path, tls_files: TLSFiles) -> None:
    """A client trusting the CA via SSL_CERT_FILE speaks to it exactly as Swarm does."""
    cert, key, ca_file = tls_files.server_cert, tls_files.server_key, tls_files.ca_cert
    with ServiceProcess(tmp_path / "data", tls=(cert, key)) as service:
        script = tmp_path / "swarm_client.py"
        script.write_text(SWARM_CLIENT)
        env = {**os.environ, "SSL_CERT_FILE": str(ca_file)}
        env.pop("SSL_CERT_DIR", None)
        result = subprocess.run(
            [sys.executable, str(script), "127.0.0.1", str(service.port)],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )

    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    status, content_type, token, alpn = answers["created"]
    assert (status, alpn) == (200, "http/1.1")
    assert content_type.startswith("text/plain")
    assert len(token) == 32
    assert answers["joined"][0] == 200
    status, content_type, body, _ = answers["listed"]
    assert status == 200
    assert content_type.startswith("application/json")
    assert json.loads(body) == ["10.0.0.1:2375"]


def test_logs_never_contain_a_full_token(tmp_path: Path) -> None:
    """Every event, down to each heartbeat at debug level, masks the token."""
    service = ServiceProcess(tmp_path / "data", extra_args=["--log-level", "debug"])
    service.start()
    token = create_cluster(service)
    url = f"{service.base_url}/clusters/{token}"
    for _ in range(2):
        http("POST", url, b"10.0.0.1:1", JSON)
    http("GET", f"{url}?index=0")
    http("GET", f"{url}/nodes")
    http("PUT", url)
    http("DELETE", f"{url}/10.0.0.1:1")
    http("DELETE", url)
    _, err = service.stop()

    assert "event=node.refreshed" in err
    assert f"cluster={token[:6]}" in err
    assert token not in err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-H", "unix:///tmp/muster.sock"], ["unix:///tmp/muster.sock", "tcp://"]),
        (["-H", "tcp://127.0.0.1"], ["tcp://127.0.0.1", "port"]),
        (["-H", "tcp://::1:7733"], ["tcp://::1:7733", "[::1]:7733"]),
        (["--tlscert", "cert.pem"], ["--tlscert", "--tlskey"]),
        (["--max-ttl", "forever"], ["forever"]),
    ],
)
def test_bad_command_line_is_one_clear_error(
    tmp_path: Path, args: list[str], words: list[str]
) -> None:
    result = run_muster("serve", "--data-dir", str(tmp_path / "data"), *args)

    assert_one_error_line(result, *words)
    assert not (tmp_path / "data").exists()


def test_unusable_tls_files_are_one_clear_error(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate\n")
    key.write_text("not a key\n")
    port = str(free_port())

    garbage = run_muster(
        "serve", "-H", f"127.0.0.1:{port}", "--tlscert", str(cert), "--tlskey", str(key)
    )
    missing = run_muster(
        "serve",
        "-H",
        f"127.0.0.1:{port}",
        "--tlscert",
        str(tmp_path / "absent.pem"),
        "--tlskey",
        str(key),
    )

    assert_one_error_line(garbage, str(cert), "not a valid PEM")
    assert_one_error_line(missing, "absent.pem")


def test_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run_muster(
            "serve", "-H", f"tcp://127.0.0.1:{port}", "--data-dir", str(tmp_path)
        )

    assert_one_error_line(result, f"127.0.0.1:{port}", "already in use")


def test_data_dir_that_is_a_file_is_one_clear_error(tmp_path: Path) -> None:
    occupied = tmp_path / "file"
    occupied.write_text("")

    result = run_muster(
        "serve", "-H", f"127.0.0.1:{free_port()}", "--data-dir", str(occupied)
    )

    assert_one_error_line(result, str(occupied))


def test_serves_on_ipv6_loopback(tmp_path: Path) -> None:
    """-H tcp://[::1]:PORT listens on IPv6 and logs a bracketed URL."""
    service = ServiceProcess(tmp_path / "data", host="::1").start()
    token = create_cluster(service)
    _, err = service.stop()

    assert len(token) == 32
    assert f"url=http://[::1]:{service.port}" in err


def test_shutdown_answers_a_waiting_long_poll(tmp_path: Path) -> None:
    """A poll waiting ten minutes gets its answer at once when the service stops."""
    service = ServiceProcess(tmp_path / "data").start()
    process = service.process
    token = create_cluster(service)
    poller = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, urllib.request; "
            "r = urllib.request.urlopen(sys.argv[1], timeout=30); "
            "print(r.status, r.headers['X-Muster-Index'], r.read().decode())",
            f"{service.base_url}/clusters/{token}?index=0&wait=10m",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    with pytest.raises(subprocess.TimeoutExpired):
        poller.wait(timeout=1)  # it is waiting, as asked

    service.stop()
    out, _ = poller.communicate(timeout=5)

    assert out.split() == ["200", "0", "[]"]
    assert process is not None
    assert process.returncode == 0
