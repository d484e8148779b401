"""``muster serve``'s own checks of its command line, run in-process."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from muster.cli.serve import parse_listen_address, parse_max_ttl, serve


@pytest.fixture(autouse=True)
def keep_root_logger() -> Iterator[None]:
    """``serve`` configures logging for its process; undo that for the next tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("aiohttp.access").disabled = False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp://127.0.0.1:7733", ("127.0.0.1", 7733)),
        ("tcp://[::1]:8080", ("::1", 8080)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("tcp://localhost:1", ("localhost", 1)),
    ],
)
def test_listen_address_forms(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize(
    "text", ["http://127.0.0.1:80", "127.0.0.1", "tcp://:80", "::1:80", "h:0", ""]
)
def test_bad_listen_address_names_the_value(text: str) -> None:
    with pytest.raises(click.UsageError, match=f"-H '{text}'"):
        parse_listen_address(text)


@pytest.mark.parametrize(("text", "seconds"), [("24h", 86400), ("90s", 90), ("1s", 1)])
def test_max_ttl_is_a_go_duration(text: str, seconds: int) -> None:
    assert parse_max_ttl(text) == seconds


@pytest.mark.parametrize("text", ["500ms", "0", "-1h", "1d"])
def test_bad_max_ttl_is_refused(text: str) -> None:
    with pytest.raises(click.UsageError, match="--max-ttl"):
        parse_max_ttl(text)


def test_tls_needs_both_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        serve, ["--data-dir", str(tmp_path / "d"), "--tlskey", "key.pem"]
    )

    assert result.exit_code == 2
    assert "--tlskey was given alone" in result.output
    assert not (tmp_path / "d").exists()


def test_listen_address_comes_from_muster_host(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        serve, ["--data-dir", str(tmp_path)], env={"MUSTER_HOST": "nonsense"}
    )

    assert result.exit_code == 2
    assert "-H 'nonsense'" in result.output


def test_help_describes_the_options() -> None:
    result = CliRunner().invoke(serve, ["--help"])

    assert result.exit_code == 0
    for option in ("--host", "--data-dir", "--tlscert", "--max-ttl", "MUSTER_HOST"):
        assert option in result.output
