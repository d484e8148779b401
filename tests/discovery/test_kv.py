"""URL and option rules shared by the etcd, ZooKeeper and Consul backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from muster.discovery import Entry, InvalidOptionError, InvalidURLError
from muster.discovery.kv import DEFAULT_PATH, parse_kv_target


def test_addresses_prefix_and_default_path() -> None:
    target = parse_kv_target(
        "etcd", "10.0.0.1:2379,10.0.0.2:4001/swarm", {}, default_port=2379
    )

    assert target.endpoints == (
        Entry.parse("10.0.0.1:2379"),
        Entry.parse("10.0.0.2:4001"),
    )
    assert target.prefix == "swarm"
    assert target.path == DEFAULT_PATH == "docker/swarm/nodes"
    assert target.directory == "swarm/docker/swarm/nodes"
    assert target.tls is None


def test_node_key_is_the_directory_then_the_address() -> None:
    target = parse_kv_target("zk", "h:2181/p", {}, default_port=2181)

    assert target.node_key(Entry.parse("[2001:db8::2]:2375")) == (
        "p/docker/swarm/nodes/[2001:db8::2]:2375"
    )


def test_a_store_address_without_port_gets_the_store_default() -> None:
    target = parse_kv_target("consul", "consul.local,[::1]", {}, default_port=8500)

    assert [str(e) for e in target.endpoints] == ["consul.local:8500", "[::1]:8500"]
    assert target.directory == DEFAULT_PATH


def test_kv_path_replaces_the_default_and_loses_its_slashes() -> None:
    target = parse_kv_target(
        "etcd", "h/pre/", {"kv.path": "/my/nodes/"}, default_port=1
    )

    assert target.directory == "pre/my/nodes"


def test_empty_kv_path_is_refused() -> None:
    with pytest.raises(InvalidOptionError, match=r"kv\.path is empty"):
        parse_kv_target("etcd", "h", {"kv.path": "/"}, default_port=1)


@pytest.mark.parametrize("rest", ["", "/prefix", ",/prefix"])
def test_url_without_store_is_refused(rest: str) -> None:
    with pytest.raises(InvalidURLError, match="names no store"):
        parse_kv_target("etcd", rest, {}, default_port=2379)


def test_bad_store_address_is_named() -> None:
    with pytest.raises(InvalidURLError, match="'h:99999'"):
        parse_kv_target("etcd", "h:99999/p", {}, default_port=2379)


def test_tls_needs_all_three_files(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")

    with pytest.raises(InvalidOptionError, match=r"missing: kv\.certfile, kv\.keyfile"):
        parse_kv_target("etcd", "h", {"kv.cacertfile": str(ca)}, default_port=1)


def test_tls_file_that_does_not_exist_is_named(tmp_path: Path) -> None:
    options = {
        "kv.cacertfile": str(tmp_path / "nope.pem"),
        "kv.certfile": str(tmp_path / "c.pem"),
        "kv.keyfile": str(tmp_path / "k.pem"),
    }

    with pytest.raises(InvalidOptionError, match=r"kv\.cacertfile .*nope\.pem"):
        parse_kv_target("etcd", "h", options, default_port=1)


def test_tls_files_are_kept(tmp_path: Path) -> None:
    names = ("kv.cacertfile", "kv.certfile", "kv.keyfile")
    options = {}
    for name in names:
        (tmp_path / name).write_text(name)
        options[name] = str(tmp_path / name)

    target = parse_kv_target("etcd", "h", options, default_port=1)

    assert target.tls is not None
    assert target.tls.read() == (b"kv.cacertfile", b"kv.certfile", b"kv.keyfile")
