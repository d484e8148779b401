"""Swarm's command-line rules, checked by running the real ``muster`` command.

Each bad input must end the command with a non-zero status and exactly one line on
standard error that names the problem; never a traceback.
"""

from __future__ import annotations

import pytest

from tests.support import run_muster

pytestmark = pytest.mark.integration

URL = "token+http://127.0.0.1:9/v1/0123456789abcdef0123456789abcdef"


def fails_with(message: str, *args: str, env: dict[str, str] | None = None) -> str:
    result = run_muster(*args, env=env)
    lines = result.stderr.strip().splitlines()

    assert result.returncode != 0, result
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert message in lines[0], lines[0]
    return lines[0]


def test_join_needs_a_discovery() -> None:
    fails_with(
        "discovery required to join a cluster", "join", "--advertise", "10.0.0.1:1"
    )


def test_list_needs_a_discovery() -> None:
    fails_with("discovery required to list a cluster", "list")


def test_join_needs_advertise() -> None:
    fails_with("missing mandatory --advertise flag", "join", URL)


def test_discovery_comes_from_swarm_discovery() -> None:
    fails_with(
        "missing mandatory --advertise flag", "join", env={"SWARM_DISCOVERY": URL}
    )


def test_advertise_comes_from_swarm_advertise() -> None:
    fails_with(
        "--heartbeat should be at least one second",
        "join",
        "--heartbeat",
        "500ms",
        URL,
        env={"SWARM_ADVERTISE": "10.0.0.1:2375"},
    )


@pytest.mark.parametrize(
    "address", ["10.0.0.1", "10.0.0.1:0", "10.0.0.1:65536", "2001:db8::2:2375", "h:p"]
)
def test_advertise_must_be_host_and_port(address: str) -> None:
    line = fails_with(
        "--advertise should be of the form ip:port or hostname:port",
        "join",
        "--advertise",
        address,
        URL,
    )
    assert address in line


def test_addr_is_an_alias_of_advertise() -> None:
    fails_with(
        "--ttl must be strictly superior to the heartbeat value",
        "join",
        "--addr",
        "[2001:db8::2]:2375",
        "--ttl",
        "60s",
        URL,
    )


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--delay", "-1s", "--delay should not be a negative number"),
        ("--delay", "soon", 'invalid --delay: invalid duration "soon"'),
        ("--heartbeat", "10", 'invalid --heartbeat: missing unit in duration "10"'),
        ("--heartbeat", "999ms", "--heartbeat should be at least one second"),
        ("--ttl", "3x", 'invalid --ttl: unknown unit "x"'),
        ("--ttl", "1m", "--ttl must be strictly superior to the heartbeat value"),
    ],
)
def test_join_durations_follow_swarm_rules(flag: str, value: str, message: str) -> None:
    fails_with(message, "join", "--advertise", "10.0.0.1:2375", flag, value, URL)


def test_discovery_opt_needs_key_and_value() -> None:
    line = fails_with(
        "write it as key=value",
        "join",
        "--advertise",
        "10.0.0.1:2375",
        "--discovery-opt",
        "kv.path",
        URL,
    )
    assert "'kv.path'" in line


def test_unknown_scheme_lists_the_known_ones() -> None:
    line = fails_with("discovery service not supported", "list", "gopher://x")
    assert "token" in line
    assert "file" in line


def test_join_on_a_fixed_list_says_it_cannot_register() -> None:
    fails_with(
        "does not support registering nodes",
        "join",
        "--advertise",
        "10.0.0.1:2375",
        "nodes://10.0.0.1:2375",
    )


def test_bare_list_without_port_hints_at_a_scheme() -> None:
    line = fails_with("needs a scheme", "list", "10.0.0.1")
    assert "'10.0.0.1'" in line


@pytest.mark.parametrize("value", ["0s", "-5s"])
def test_list_timeout_must_be_positive(value: str) -> None:
    fails_with("--timeout should be a positive number", "list", "--timeout", value, URL)


def test_create_takes_no_arguments() -> None:
    fails_with("unexpected extra argument (extra)", "create", "extra")


def test_unknown_flag_is_one_line() -> None:
    fails_with("No such option '--bogus'", "list", "--bogus", URL)


def test_list_prints_a_fixed_list_with_ranges() -> None:
    result = run_muster("list", "nodes://10.0.0.[1:3]:2375,[2001:db8::2]:2375")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "10.0.0.1:2375",
        "10.0.0.2:2375",
        "10.0.0.3:2375",
        "[2001:db8::2]:2375",
    ]


def test_list_reads_a_bare_list_as_nodes() -> None:
    result = run_muster("list", "10.0.0.1:2375,10.0.0.2:[1:2]375")

    assert result.stdout.splitlines() == [
        "10.0.0.1:2375",
        "10.0.0.2:1375",
        "10.0.0.2:2375",
    ]


def test_list_of_unreachable_service_fails_in_one_line() -> None:
    fails_with("cannot reach the discovery service", "list", "--timeout", "5s", URL)


def test_every_command_has_help() -> None:
    for command in ("create", "join", "list", "watch", "serve"):
        result = run_muster(command, "--help")
        assert result.returncode == 0
        assert "Usage: muster " + command in result.stdout
