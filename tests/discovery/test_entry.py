"""Entries: parsing and printing addresses, memberships, range patterns."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muster.discovery import (
    Change,
    Entries,
    Entry,
    InvalidEntryError,
    expand_pattern,
    parse_patterns,
)

ports = st.integers(min_value=1, max_value=65535)
ipv4_hosts = st.ip_addresses(v=4).map(str)
ipv6_hosts = st.ip_addresses(v=6).map(str)
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
hostnames = st.lists(_label, min_size=1, max_size=4).map(".".join)


@given(host=ipv4_hosts | hostnames, port=ports)
def test_ipv4_and_hostname_entries_survive_print_and_parse(
    host: str, port: int
) -> None:
    entry = Entry(host, port)

    assert Entry.parse(str(entry)) == entry
    assert str(entry) == f"{host}:{port}"


@given(host=ipv6_hosts, port=ports)
def test_ipv6_entries_print_bracketed_and_parse_back(host: str, port: int) -> None:
    entry = Entry(host, port)

    assert str(entry) == f"[{host}]:{port}"
    assert Entry.parse(str(entry)) == entry


@given(
    prefix=st.from_regex(r"[a-z0-9.]{0,10}", fullmatch=True),
    start=st.integers(min_value=0, max_value=300),
    stop=st.integers(min_value=0, max_value=300),
)
def test_a_range_expands_to_one_address_per_number(
    prefix: str, start: int, stop: int
) -> None:
    addresses = expand_pattern(f"{prefix}[{start}:{stop}]:2375")

    assert len(addresses) == max(0, stop - start + 1)
    assert addresses == [f"{prefix}{n}:2375" for n in range(start, stop + 1)]


def test_parse_reads_host_and_port() -> None:
    assert Entry.parse("10.0.0.1:2375") == Entry("10.0.0.1", 2375)


def test_parse_strips_brackets_from_ipv6_hosts() -> None:
    entry = Entry.parse("[2001:db8::2]:2375")

    assert entry.host == "2001:db8::2"
    assert ipaddress.ip_address(entry.host).version == 6


@pytest.mark.parametrize(
    ("address", "hint"),
    [
        ("10.0.0.1", "missing a port"),
        ("10.0.0.1:", "no valid port"),
        ("10.0.0.1:http", "no valid port"),
        ("10.0.0.1:0", "out of range"),
        ("10.0.0.1:65536", "out of range"),
        (":2375", "empty host"),
        ("2001:db8::2:2375", "IPv6 without brackets"),
        ("[2001:db8::2]", "missing a port"),
        (" 10.0.0.1:2375", "not host:port"),
        ("", "not host:port"),
        ("a b:2375", "not host:port"),
        ("host/path:2375", "not host:port"),
    ],
)
def test_parse_rejects_a_bad_address_naming_it(address: str, hint: str) -> None:
    with pytest.raises(InvalidEntryError, match=hint) as caught:
        Entry.parse(address)

    assert repr(address) in str(caught.value)


def test_entry_rejects_a_port_out_of_range() -> None:
    with pytest.raises(InvalidEntryError, match="out of range"):
        Entry("10.0.0.1", 70000)


def test_entry_is_a_frozen_value() -> None:
    entry = Entry("a", 1)

    with pytest.raises(AttributeError):
        entry.port = 2  # type: ignore[misc]
    assert hash(entry) == hash(Entry("a", 1))


def test_entries_keep_the_order_first_seen_and_drop_duplicates() -> None:
    entries = Entries.parse(["b:1", "a:1", "b:1"])

    assert entries.addresses() == ["b:1", "a:1"]
    assert len(entries) == 2


def test_entries_parse_skips_empty_strings() -> None:
    assert Entries.parse(["", "a:1", ""]).addresses() == ["a:1"]


def test_entries_equal_whatever_the_order() -> None:
    first = Entries.parse(["a:1", "b:1"])
    second = Entries.parse(["b:1", "a:1"])

    assert first == second
    assert hash(first) == hash(second)
    assert first != Entries.parse(["a:1"])


def test_entries_diff_names_who_joined_and_who_left() -> None:
    older = Entries.parse(["a:1", "b:1"])
    newer = Entries.parse(["b:1", "c:1"])

    change = older.diff(newer)

    assert change == Change(
        added=Entries.parse(["c:1"]), removed=Entries.parse(["a:1"])
    )


def test_entries_support_membership_indexing_and_slicing() -> None:
    entries = Entries.parse(["a:1", "b:1", "c:1"])

    assert Entry("b", 1) in entries
    assert "b:1" not in entries
    assert entries[0] == Entry("a", 1)
    assert entries[1:].addresses() == ["b:1", "c:1"]
    assert repr(entries) == "Entries(['a:1', 'b:1', 'c:1'])"


def test_expand_pattern_expands_the_host_part() -> None:
    assert expand_pattern("10.0.0.[10:12]:2375") == [
        "10.0.0.10:2375",
        "10.0.0.11:2375",
        "10.0.0.12:2375",
    ]


def test_expand_pattern_expands_the_port_part() -> None:
    assert expand_pattern("192.168.1.2:[2:4]375") == [
        "192.168.1.2:2375",
        "192.168.1.2:3375",
        "192.168.1.2:4375",
    ]


def test_expand_pattern_leaves_ipv6_literals_alone() -> None:
    assert expand_pattern("[2001:db8::2]:2375") == ["[2001:db8::2]:2375"]


def test_expand_pattern_gives_nothing_for_a_backwards_range() -> None:
    assert expand_pattern("10.0.0.[5:3]:2375") == []


def test_parse_patterns_expands_and_reads_every_pattern() -> None:
    entries = parse_patterns([" 10.0.0.[1:2]:2375 ", "[::1]:2375"])

    assert entries.addresses() == ["10.0.0.1:2375", "10.0.0.2:2375", "[::1]:2375"]
