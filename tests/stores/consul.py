"""The Consul stand-in (tests/stores/consul_standin.py) as a store the tests start."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from types import TracebackType

from . import ManagedProcess, free_ports, scratch_dir

_REPO = Path(__file__).resolve().parents[2]


class ConsulStandIn:
    """A Consul stand-in on a free loopback port, its state under ``data_dir``.

    Its minimum session TTL is short (``min_session_ttl``, 500ms by default, where
    Consul's is 10s) so that tests can use TTLs of a second or two: the backend
    then asks for half the TTL, and a dead node is gone exactly ``--ttl`` after its
    last heartbeat. With ``tls`` (certificate, key, CA) it serves https and
    requires client certificates signed by the CA, as Consul's ``verify_incoming``.
    """

    name = "consul"
    #: The stand-in invalidates a session exactly twice its TTL after its last
    #: renewal, that is at ``--ttl``; this covers the watch noticing it under load.
    expiry_slack_seconds = 1.0

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        min_session_ttl: str = "500ms",
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        self.data_dir = data_dir or scratch_dir("consul")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_ports(1)[0]
        self.tls = tls
        command = [
            sys.executable,
            "-m",
            "tests.stores.consul_standin",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--min-session-ttl",
            min_session_ttl,
        ]
        if tls is not None:
            cert, key, ca = tls
            command += ["--cert-file", str(cert), "--key-file", str(key)]
            command += ["--ca-file", str(ca)]
        self._process = ManagedProcess(
            command,
            ready_port=self.port,
            log_path=self.data_dir / "standin.log",
            env={"PYTHONPATH": str(_REPO)},
            cwd=_REPO,
        )

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        """The base of its HTTP API, ``http(s)://127.0.0.1:PORT/v1``."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.address}/v1"

    @property
    def running(self) -> bool:
        """Whether the stand-in process is up."""
        process = self._process.process
        return process is not None and process.poll() is None

    def url(self, prefix: str) -> str:
        return f"consul://{self.address}/{prefix.strip('/')}"

    def discovery_opts(self) -> list[str]:
        return []

    def start(self) -> None:
        if not self.running:
            self._process.start(timeout=30)

    def stop(self) -> None:
        self._process.stop()

    def close(self) -> None:
        """Stop the stand-in and remove its data folder."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> ConsulStandIn:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
