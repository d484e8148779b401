"""Discovery URLs: every form, the scheme registry, entry points and options."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from importlib.metadata import EntryPoint, EntryPoints
from pathlib import Path
from typing import Any, Self

import pytest

from muster.discovery import (
    Backend,
    Entries,
    InvalidOptionError,
    InvalidURLError,
    UnsupportedSchemeError,
    WatchEvent,
    create_backend,
    known_schemes,
    parse_discovery_url,
    parse_options,
    register_scheme,
    registry,
)
from muster.discovery.file import FileBackend
from muster.discovery.memory import MemoryBackend
from muster.discovery.nodes import NodesBackend


class ThirdPartyBackend(Backend):
    """A backend another package would ship, keeping the rest of its URL."""

    known_options = frozenset({"region"})

    def __init__(self, rest: str, *, scheme: str, options: Mapping[str, str]) -> None:
        super().__init__(scheme, options=options)
        self.rest = rest

    @classmethod
    def from_url(
        cls,
        scheme: str,
        rest: str,
        *,
        heartbeat_seconds: float,
        ttl_seconds: float,
        options: Mapping[str, str],
    ) -> Self:
        return cls(rest, scheme=scheme, options=options)

    async def observe(self) -> AsyncGenerator[WatchEvent, None]:
        yield Entries()


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Schemes registered by one test stay out of the others."""
    monkeypatch.setattr(registry, "_added", {})


@pytest.fixture
def third_party_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend an installed package declares the ``thirdparty`` scheme."""
    declared = EntryPoints(
        [
            EntryPoint(
                name="thirdparty",
                value=f"{__name__}:ThirdPartyBackend",
                group=registry.ENTRY_POINT_GROUP,
            )
        ]
    )

    def fake_entry_points(**params: Any) -> EntryPoints:
        return declared.select(**params)

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("10.0.0.1:2375,10.0.0.2:2375", ("nodes", "10.0.0.1:2375,10.0.0.2:2375")),
        ("nodes://10.0.0.1:2375", ("nodes", "10.0.0.1:2375")),
        ("file:///etc/swarm/nodes", ("file", "/etc/swarm/nodes")),
        ("file://relative/nodes", ("file", "relative/nodes")),
        ("memory://lab", ("memory", "lab")),
        ("token://abc", ("token", "abc")),
    ],
)
def test_parse_discovery_url_splits_scheme_and_rest(
    url: str, expected: tuple[str, str]
) -> None:
    assert parse_discovery_url(url) == expected


@pytest.mark.parametrize("url", ["", "   "])
def test_an_empty_url_is_rejected(url: str) -> None:
    with pytest.raises(InvalidURLError, match="empty"):
        create_backend(url)


def test_a_bare_list_makes_a_nodes_backend() -> None:
    backend = create_backend("10.0.0.1:2375,10.0.0.[2:3]:2375")

    assert isinstance(backend, NodesBackend)
    assert backend.entries.addresses() == [
        "10.0.0.1:2375",
        "10.0.0.2:2375",
        "10.0.0.3:2375",
    ]


def test_a_nodes_url_makes_a_nodes_backend() -> None:
    backend = create_backend("nodes://[::1]:2375")

    assert isinstance(backend, NodesBackend)
    assert backend.entries.addresses() == ["[::1]:2375"]


def test_a_file_url_makes_a_file_backend_for_the_absolute_path() -> None:
    backend = create_backend("file:///etc/swarm/nodes", heartbeat_seconds=5)

    assert isinstance(backend, FileBackend)
    assert backend.path == Path("/etc/swarm/nodes")
    assert backend.heartbeat_seconds == 5


def test_a_file_url_without_a_leading_slash_names_a_relative_path() -> None:
    backend = create_backend("file://conf/nodes")

    assert isinstance(backend, FileBackend)
    assert backend.path == Path("conf/nodes")


def test_a_memory_url_makes_a_memory_backend_named_by_the_rest() -> None:
    backend = create_backend("memory://registry-test", ttl_seconds=7)

    assert isinstance(backend, MemoryBackend)
    assert backend.name == "registry-test"
    assert backend.ttl_seconds == 7


def test_an_unknown_scheme_is_rejected_listing_the_known_ones() -> None:
    with pytest.raises(UnsupportedSchemeError, match="not supported") as caught:
        create_backend("carrier-pigeon://coop")

    message = str(caught.value)
    assert "'carrier-pigeon'" in message
    assert "file, memory, nodes" in message


def test_known_schemes_are_sorted_and_include_the_builtins() -> None:
    schemes = known_schemes()

    assert schemes == sorted(schemes)
    assert {"file", "memory", "nodes", "token"} <= set(schemes)


def test_register_scheme_serves_a_new_scheme() -> None:
    register_scheme("custom", ThirdPartyBackend)

    backend = create_backend("custom://anything/at/all")

    assert isinstance(backend, ThirdPartyBackend)
    assert backend.rest == "anything/at/all"
    assert "custom" in known_schemes()


def test_register_scheme_overrides_a_builtin() -> None:
    register_scheme("nodes", ThirdPartyBackend)

    assert isinstance(create_backend("nodes://x"), ThirdPartyBackend)


@pytest.mark.parametrize("scheme", ["", "custom://"])
def test_register_scheme_wants_a_bare_name(scheme: str) -> None:
    with pytest.raises(InvalidURLError, match="bare name"):
        register_scheme(scheme, ThirdPartyBackend)


@pytest.mark.usefixtures("third_party_entry_point")
def test_an_entry_point_adds_a_scheme() -> None:
    backend = create_backend("thirdparty://eu-west/cluster", options={"region": "eu"})

    assert isinstance(backend, ThirdPartyBackend)
    assert backend.rest == "eu-west/cluster"
    assert backend.options == {"region": "eu"}
    assert "thirdparty" in known_schemes()


def test_an_entry_point_that_is_not_a_backend_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    declared = EntryPoints(
        [
            EntryPoint(
                name="broken",
                value="pathlib:Path",
                group=registry.ENTRY_POINT_GROUP,
            )
        ]
    )

    def fake_entry_points(**params: Any) -> EntryPoints:
        return declared.select(**params)

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)

    with pytest.raises(UnsupportedSchemeError, match="is not a Backend"):
        create_backend("broken://x")


def test_parse_options_reads_key_value_pairs() -> None:
    options = parse_options(["kv.path=a/b", "kv.cacertfile=/ca.pem"])

    assert options == {"kv.path": "a/b", "kv.cacertfile": "/ca.pem"}


def test_parse_options_keeps_equals_signs_in_the_value() -> None:
    assert parse_options(["query=a=b"]) == {"query": "a=b"}


def test_parse_options_lets_a_later_key_win() -> None:
    assert parse_options(["kv.path=a", "kv.path=b"]) == {"kv.path": "b"}


@pytest.mark.parametrize("item", ["kv.path", "=value"])
def test_parse_options_rejects_an_item_without_a_key_naming_it(item: str) -> None:
    with pytest.raises(InvalidOptionError, match="key=value") as caught:
        parse_options([item])

    assert repr(item) in str(caught.value)


def test_an_option_the_backend_does_not_know_is_rejected() -> None:
    with pytest.raises(InvalidOptionError, match=r"'kv\.path'.*nodes://.*none"):
        create_backend("nodes://10.0.0.1:2375", options={"kv.path": "x"})


def test_a_file_backend_accepts_no_options() -> None:
    with pytest.raises(InvalidOptionError, match="file://"):
        create_backend("file:///tmp/nodes", options={"kv.path": "x"})
