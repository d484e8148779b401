"""Fixtures shared across the suite."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.support import ServiceProcess


@dataclass(frozen=True)
class TLSFiles:
    """A private CA and a server certificate it signed for loopback names."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """Certificates for serving https on 127.0.0.1, ::1 and localhost."""
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "::1", "localhost")
    files = TLSFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    ca.cert_pem.write_to_path(str(files.ca_cert))
    server.private_key_pem.write_to_path(str(files.server_key))
    # The chain (leaf then CA-issued intermediates) goes in the certificate file.
    with files.server_cert.open("wb") as out:
        for blob in server.cert_chain_pems:
            out.write(blob.bytes())
    return files


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    """A ``muster serve`` subprocess over http on a free loopback port."""
    with ServiceProcess(tmp_path / "data") as running:
        yield running


@pytest.fixture
def tls_service(tmp_path: Path, tls_files: TLSFiles) -> Iterator[ServiceProcess]:
    """A ``muster serve`` subprocess over https, its certificate signed by a test CA."""
    tls = (tls_files.server_cert, tls_files.server_key)
    with ServiceProcess(tmp_path / "data", tls=tls) as running:
        yield running
