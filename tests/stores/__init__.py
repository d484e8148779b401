"""Real key/value stores (and the Consul stand-in) started by the tests themselves.

Each store runs as a subprocess on a free loopback port with its data in a
temporary folder, and can be stopped and started again on the same port and data,
for the store-failure scenarios.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol


class StoreServer(Protocol):
    """What the cross-backend scenarios need from a running store."""

    #: Short name shown in test ids: "etcd", "etcd-v2", "zk", "consul".
    name: str
    #: How much longer than the TTL the store may take to drop a dead node.
    expiry_slack_seconds: float

    def url(self, prefix: str) -> str:
        """The discovery URL of this store with ``prefix``."""
        ...

    def discovery_opts(self) -> list[str]:
        """``--discovery-opt`` values the backend needs for this store."""
        ...

    def start(self) -> None:
        """Start the store (again), on the same port and data; wait until it serves."""
        ...

    def stop(self) -> None:
        """Stop the store; its data stays for the next start."""
        ...

    def close(self) -> None:
        """Stop the store and remove its data."""
        ...


class ManagedProcess:
    """A server subprocess logging to a file, which can be stopped and restarted."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        ready_port: int,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.command = list(command)
        self.ready_port = ready_port
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the process and wait until its port accepts connections."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text()[-3000:]
                raise RuntimeError(f"{self.command[0]} exited early:\n{tail}")
            try:
                with socket.create_connection(("127.0.0.1", self.ready_port), 0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"{self.command[0]} did not listen on {self.ready_port} in time"
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (and anything it started) and wait for it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def scratch_dir(prefix: str) -> Path:
    """A fresh temporary folder for a store's data."""
    return Path(tempfile.mkdtemp(prefix=f"muster-{prefix}-"))
