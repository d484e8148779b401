"""A real single-member etcd (Debian's ``/usr/bin/etcd``, 3.4) for the tests.

It runs on two free loopback ports (clients, peers) with its data and log in one
folder. Raft runs at twice etcd's default pace (50 ms heartbeat, 500 ms election
timeout) so that it starts in a fraction of a second and grants leases of 1 s: the
minimum lease is 1.5 election timeouts, rounded up to a whole second, so with the
defaults it would be 2 s.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import trustme

from tests.stores import ManagedProcess, StoreServer, free_ports, scratch_dir

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"


class TLSMaterial(Protocol):
    """The five files an etcd with client-certificate auth and its clients need."""

    @property
    def ca_cert(self) -> Path: ...
    @property
    def server_cert(self) -> Path: ...
    @property
    def server_key(self) -> Path: ...
    @property
    def client_cert(self) -> Path: ...
    @property
    def client_key(self) -> Path: ...


@dataclass(frozen=True)
class EtcdTLS:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def generate(cls, folder: Path) -> EtcdTLS:
        """Make a fresh CA and both certificates in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "::1", "localhost")
        client = ca.issue_cert("muster-client")
        files = cls(
            folder / "ca.pem",
            folder / "server.pem",
            folder / "server.key",
            folder / "client.pem",
            folder / "client.key",
        )
        ca.cert_pem.write_to_path(str(files.ca_cert))
        server.cert_chain_pems[0].write_to_path(str(files.server_cert))
        for blob in server.cert_chain_pems[1:]:
            blob.write_to_path(str(files.server_cert), append=True)
        server.private_key_pem.write_to_path(str(files.server_key))
        client.cert_chain_pems[0].write_to_path(str(files.client_cert))
        client.private_key_pem.write_to_path(str(files.client_key))
        return files


class EtcdServer:
    """etcd on loopback for one test module or scenario; a :class:`StoreServer`.

    With ``v2`` it also serves etcd's v2 keys API (``--enable-v2``) and its
    discovery options make muster speak v2; the v3 API is served either way. With
    ``tls`` (a :class:`TLSMaterial`, or True to make one in the data folder) it
    serves https only and demands a client certificate.
    """

    #: Leases of the TTL rounded up to a second; etcd's lessor looks for expired
    #: ones every 500 ms (measured: a 1 s lease went in 1.02 s, a 2 s one in 2.52 s).
    expiry_slack_seconds = 1.0

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        v2: bool = False,
        tls: TLSMaterial | bool | None = None,
    ) -> None:
        self.folder = data_dir if data_dir is not None else scratch_dir("etcd")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.v2 = v2
        if tls is True:
            tls = EtcdTLS.generate(self.folder / "tls")
        self.tls: TLSMaterial | None = tls or None
        self.name = "etcd-v2" if v2 else "etcd"
        if self.tls is not None:
            self.name += "-tls"
        self.port, self.peer_port = free_ports(2)
        self.process = ManagedProcess(
            self._command(), ready_port=self.port, log_path=self.folder / "etcd.log"
        )

    @property
    def scheme(self) -> str:
        """``https`` with TLS, else ``http``."""
        return "https" if self.tls is not None else "http"

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` of the client port."""
        return f"127.0.0.1:{self.port}"

    @property
    def client_url(self) -> str:
        """The base URL of the client port (the v2 API and ``/health`` live here)."""
        return f"{self.scheme}://{self.address}"

    def _command(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        command = [
            ETCD,
            "--name=muster-test",
            f"--data-dir={self.folder / 'data'}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=muster-test={peer}",
            "--heartbeat-interval=50",
            "--election-timeout=500",
            "--logger=zap",
            "--log-outputs=stderr",
            "--log-level=warn",
        ]
        if self.v2:
            command.append("--enable-v2")
        if self.tls is not None:
            command += [
                f"--cert-file={self.tls.server_cert}",
                f"--key-file={self.tls.server_key}",
                f"--trusted-ca-file={self.tls.ca_cert}",
                "--client-cert-auth",
            ]
        return command

    def url(self, prefix: str) -> str:
        """``etcd://127.0.0.1:PORT/prefix``."""
        return f"etcd://{self.address}/{prefix}"

    def tls_options(self) -> list[str]:
        """The ``kv.*`` options that let a client in, or none without TLS."""
        if self.tls is None:
            return []
        return [
            f"kv.cacertfile={self.tls.ca_cert}",
            f"kv.certfile={self.tls.client_cert}",
            f"kv.keyfile={self.tls.client_key}",
        ]

    def discovery_opts(self) -> list[str]:
        """``etcd.api=v2`` in v2 mode, and the ``kv.*`` files with TLS."""
        return (["etcd.api=v2"] if self.v2 else []) + self.tls_options()

    def options(self) -> dict[str, str]:
        """:meth:`discovery_opts` as the mapping ``create_backend`` takes."""
        return dict(item.split("=", 1) for item in self.discovery_opts())

    @property
    def running(self) -> bool:
        """Whether the etcd process is alive."""
        process = self.process.process
        return process is not None and process.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start etcd (again, same ports and data) and wait until it is healthy."""
        if self.running:
            return
        deadline = time.monotonic() + timeout
        self.process.start(timeout=timeout)
        while not self._healthy():
            if time.monotonic() > deadline or not self.running:
                log = (self.folder / "etcd.log").read_text()[-3000:]
                self.stop()
                raise RuntimeError(f"etcd did not become healthy:\n{log}")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"{self.client_url}/health", timeout=2, context=self.ssl_context()
            ) as response:
                return bool(json.load(response).get("health") == "true")
        except (OSError, ValueError):
            return False

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting the CA and showing the client certificate."""
        if self.tls is None:
            return None
        context = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        context.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        return context

    def stop(self) -> None:
        """Stop etcd; its data stays for the next :meth:`start`."""
        self.process.stop()

    def close(self) -> None:
        """Stop etcd and remove its folder."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def etcdctl(self, *args: str) -> str:
        """Run ``etcdctl`` (v3 API) against this etcd and return what it printed."""
        command = [ETCDCTL, f"--endpoints={self.client_url}", "--command-timeout=5s"]
        if self.tls is not None:
            command += [
                f"--cacert={self.tls.ca_cert}",
                f"--cert={self.tls.client_cert}",
                f"--key={self.tls.client_key}",
            ]
        result = subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            timeout=15,
            env={**os.environ, "ETCDCTL_API": "3"},
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def v2_request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one raw request to the v2 API, e.g. ``PUT /v2/keys/x?dir=true``."""
        request = urllib.request.Request(
            f"{self.client_url}{path}", data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(
                request, timeout=10, context=self.ssl_context()
            ) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()


def _as_store_server(server: EtcdServer) -> StoreServer:
    """Have the type checker hold :class:`EtcdServer` to the scenarios' protocol."""
    return server
