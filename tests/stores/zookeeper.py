"""ZooKeeper 3.8, standalone, in the foreground, as the tests' own subprocess.

The server runs straight from Debian's jars (``QuorumPeerMain`` with our own
``zoo.cfg``), with no admin server and a 500 ms tick so that sessions may be as
short as one second. Its data stays in its folder across a stop and a start, as
do the sessions recorded there: a client that comes back in time keeps its
session and its ephemeral nodes, as with a real restart.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Protocol

from cryptography.hazmat.primitives import serialization

from tests.stores import ManagedProcess, free_ports, scratch_dir

# Debian's zookeeper.jar names its dependencies in its manifest; these are the
# ones it leaves out: a logging backend, and what Netty's TLS handler needs.
_JARS = [
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/slf4j-simple.jar",
    "/usr/share/java/netty-codec.jar",
    "/usr/share/java/netty-resolver.jar",
    "/usr/share/java/netty-transport-native-unix-common.jar",
]
# A small heap and the quick JIT tier: the server starts in well under a second
# and stays light on a shared machine.
_JVM_FLAGS = [
    "-Xmx128m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
]

#: The tick, in milliseconds; sessions are checked for expiry once a tick.
TICK_MS = 500
MIN_SESSION_MS = 2 * TICK_MS
MAX_SESSION_MS = 20 * TICK_MS


class ServerTLS(Protocol):
    """The files for a TLS client port: a CA, and a certificate and key it signed.

    The suite's ``tls_files`` fixture is one. Clients present the same
    certificate: it is good for client authentication too.
    """

    @property
    def ca_cert(self) -> Path: ...
    @property
    def server_cert(self) -> Path: ...
    @property
    def server_key(self) -> Path: ...


class ZooKeeperServer:
    """A standalone ZooKeeper 3.8 on free loopback ports, data in one folder.

    With ``tls``, :meth:`url` names a TLS port (Netty, a PEM key store, client
    certificates required); the plain port stays open for the readiness check.
    """

    name = "zk"
    #: A session expires at the first tick after its timeout, counted from the
    #: client's last ping (kazoo pings every third of the timeout): a killed node
    #: goes between TTL - TTL/3 and TTL + one tick (500 ms) after its death, and
    #: watchers hear of it within milliseconds. One second leaves room for a
    #: busy machine.
    expiry_slack_seconds = 1.0

    def __init__(
        self, data_dir: Path | None = None, *, tls: ServerTLS | None = None
    ) -> None:
        self.data_dir = data_dir or scratch_dir("zk")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port, self.secure_port = free_ports(2)
        self.tls = tls
        if tls is not None:
            self.name = "zk-tls"
        config = self.data_dir / "zoo.cfg"
        config.write_text(self._config())
        self._process = ManagedProcess(
            [
                "java",
                *_JVM_FLAGS,
                "-cp",
                ":".join(_JARS),
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                str(config),
            ],
            ready_port=self.port,
            log_path=self.data_dir / "zookeeper.log",
            cwd=self.data_dir,
        )

    @property
    def client_port(self) -> int:
        """The port clients connect to: the TLS one when there is one."""
        return self.secure_port if self.tls else self.port

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` of the client port."""
        return f"127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        """Whether the server process is up."""
        process = self._process.process
        return process is not None and process.poll() is None

    def url(self, prefix: str) -> str:
        """The ``zk://`` discovery URL of this server with ``prefix``."""
        return f"zk://{self.address}/{prefix}"

    def discovery_opts(self) -> list[str]:
        """``--discovery-opt`` values: the TLS files, if the server wants TLS."""
        if self.tls is None:
            return []
        return [
            f"kv.cacertfile={self.tls.ca_cert}",
            f"kv.certfile={self.tls.server_cert}",
            f"kv.keyfile={self.tls.server_key}",
        ]

    def options(self) -> dict[str, str]:
        """:meth:`discovery_opts` as the mapping ``create_backend`` takes."""
        return dict(opt.split("=", 1) for opt in self.discovery_opts())

    def start(self) -> None:
        """Start the server (again) and wait until it serves requests."""
        if self.running:
            return
        self._process.start(timeout=60)
        self._wait_serving(timeout=30)

    def stop(self) -> None:
        """Stop the server; its data and sessions stay for the next start."""
        self._process.stop()

    def close(self) -> None:
        """Stop the server and remove its data folder."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def four_letter(self, word: str) -> str:
        """Send a four-letter command (``srvr``, ``ruok``) and return the answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(word.encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def __enter__(self) -> ZooKeeperServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_serving(self, timeout: float) -> None:
        # The port opens before the database is loaded; until then the server
        # turns clients away. `srvr` names the mode only once it serves.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if "Mode: standalone" in self.four_letter("srvr"):
                    # The TLS port is bound last.
                    socket.create_connection(("127.0.0.1", self.client_port), 1).close()
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"ZooKeeper on port {self.port} did not serve in time")

    def _config(self) -> str:
        lines = [
            f"tickTime={TICK_MS}",
            f"minSessionTimeout={MIN_SESSION_MS}",
            f"maxSessionTimeout={MAX_SESSION_MS}",
            f"dataDir={self.data_dir / 'data'}",
            "clientPortAddress=127.0.0.1",
            f"clientPort={self.port}",
            "admin.enableServer=false",
            "4lw.commands.whitelist=srvr,ruok,cons,stat",
            "maxClientCnxns=0",
            # Tests need no fsync, nor 64 MB of preallocated log per server.
            "forceSync=no",
            "preAllocSize=1024",
        ]
        if self.tls is not None:
            keystore = self.data_dir / "keystore.pem"
            keystore.write_bytes(_pem_keystore(self.tls))
            lines += [
                f"secureClientPort={self.secure_port}",
                "secureClientPortAddress=127.0.0.1",
                "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
                f"ssl.keyStore.location={keystore}",
                "ssl.keyStore.type=PEM",
                f"ssl.trustStore.location={self.tls.ca_cert}",
                "ssl.trustStore.type=PEM",
                "ssl.clientAuth=need",
            ]
        return "\n".join(lines) + "\n"


def _pem_keystore(tls: ServerTLS) -> bytes:
    """The key (as PKCS#8, the only form ZooKeeper reads) followed by the chain."""
    key = serialization.load_pem_private_key(tls.server_key.read_bytes(), None)
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pkcs8 + tls.server_cert.read_bytes()
