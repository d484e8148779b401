"""Helpers shared by tests that run muster as a real subprocess."""

from __future__ import annotations

import os
import queue
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

MUSTER = [sys.executable, "-m", "muster"]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port nobody listens on right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def run_muster(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one muster command to completion and return what it printed."""
    return subprocess.run(
        [*MUSTER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_environment(env),
        input=input_text,
        check=False,
    )


class MusterProcess(subprocess.Popen[str]):
    """A muster command in the background.

    Its output goes to temporary files rather than pipes, so a chatty process (a
    service logging every join) never stalls on a pipe nobody reads; with
    ``live_stdout`` its standard output stays a pipe, to be read line by line.
    """

    def __init__(self, args: list[str], env: dict[str, str], live_stdout: bool) -> None:
        self.out_file = tempfile.TemporaryFile("w+")  # noqa: SIM115 - lives with self
        self.err_file = tempfile.TemporaryFile("w+")  # noqa: SIM115
        super().__init__(
            args,
            stdout=subprocess.PIPE if live_stdout else self.out_file,
            stderr=self.err_file,
            text=True,
            env=env,
        )

    def output(self) -> tuple[str, str]:
        """Return what the process printed so far, on stdout and on stderr."""
        texts = []
        for pipe, file in ((self.stdout, self.out_file), (None, self.err_file)):
            if pipe is not None:
                texts.append(pipe.read() if self.poll() is not None else "")
                continue
            file.flush()
            file.seek(0)
            texts.append(file.read())
        return texts[0], texts[1]


def start_muster(
    *args: str, env: dict[str, str] | None = None, live_stdout: bool = False
) -> MusterProcess:
    """Start a long-running muster command (join, watch, serve) in the background."""
    return MusterProcess([*MUSTER, *args], _environment(env), live_stdout)


def stop(process: MusterProcess, sig: int = signal.SIGTERM) -> tuple[str, str]:
    """Send ``sig`` to a muster process, wait for it, and return its output."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return process.output()


def _environment(extra: dict[str, str] | None) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "MUSTER_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class ServiceProcess:
    """``muster serve`` running as a subprocess on a loopback port."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        tls: tuple[Path, Path] | None = None,
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port or free_port(host)
        self.tls = tls
        self.extra_args = list(extra_args)
        self.process: MusterProcess | None = None
        self.output = ("", "")

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/v1"

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def discovery_url(self, token: str) -> str:
        """Return the ``token+http(s)://`` URL muster's token backend reads."""
        scheme = "token+https" if self.tls else "token+http"
        return f"{scheme}://{self.address}/v1/{token}"

    def start(self, timeout: float = 20.0) -> ServiceProcess:
        host = f"[{self.host}]" if ":" in self.host else self.host
        args = [
            "serve",
            "-H",
            f"tcp://{host}:{self.port}",
            "--data-dir",
            str(self.data_dir),
        ]
        if self.tls:
            args += ["--tlscert", str(self.tls[0]), "--tlskey", str(self.tls[1])]
        self.process = start_muster(*args, *self.extra_args)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                out, err = self.process.output()
                raise RuntimeError(f"muster serve exited early:\n{out}\n{err}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"muster serve did not listen on {self.address} in time")

    def stop(self, sig: int = signal.SIGTERM) -> tuple[str, str]:
        if self.process is not None:
            self.output = stop(self.process, sig)
            self.process = None
        return self.output

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    cafile: Path | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Make one plain HTTP request; return status, headers and body, errors included."""
    request = urllib.request.Request(
        url, data=body, method=method, headers=headers or {}
    )
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        with urllib.request.urlopen(
            request, timeout=timeout, context=context
        ) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def wait_for(condition: Callable[[], object], seconds: float) -> bool:
    """Poll ``condition`` until it is true or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


class LineReader:
    """Collects a subprocess's stdout lines on a thread, so reads can time out."""

    def __init__(self, process: MusterProcess) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        threading.Thread(target=self._pump, args=(process.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def next(self, timeout: float) -> str:
        return self.lines.get(timeout=timeout)
