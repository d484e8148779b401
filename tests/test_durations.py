"""Durations in Go's syntax: parsing and printing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muster.durations import format_duration, parse_duration
from muster.errors import InvalidDurationError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("60s", 60.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("2us", 2e-6),
        ("2µs", 2e-6),
        ("300ns", 3e-7),
        ("-1m", -60.0),
        ("+5s", 5.0),
        ("1h1m1s1ms", 3661.001),
    ],
)
def test_parse_duration_reads_go_spellings(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("", "invalid duration"),
        ("-", "invalid duration"),
        ("60", "missing unit"),
        ("1m30", "missing unit"),
        ("5d", 'unknown unit "d"'),
        ("s", "invalid duration"),
        (" 5s", "invalid duration"),
        ("1.5.5s", "invalid duration"),
    ],
)
def test_parse_duration_rejects_bad_text_naming_it(text: str, hint: str) -> None:
    with pytest.raises(InvalidDurationError, match=hint) as caught:
        parse_duration(text)

    assert f'"{text}"' in str(caught.value)


def test_an_invalid_duration_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="500ms, 60s or 1m30s"):
        parse_duration("soon")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (60, "1m0s"),
        (90, "1m30s"),
        (3600, "1h0m0s"),
        (0.5, "500ms"),
        (1.5, "1.5s"),
        (0.0015, "1.5ms"),
        (1.5e-6, "1.5µs"),
        (5e-7, "500ns"),
        (-61.25, "-1m1.25s"),
        (1.2345678, "1.2345678s"),
        (59.9999999999, "1m0s"),
    ],
)
def test_format_duration_prints_like_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_whole_nanoseconds_survive_format_and_parse(nanoseconds: int) -> None:
    seconds = nanoseconds / 1e9

    assert parse_duration(format_duration(seconds)) == pytest.approx(
        seconds, rel=1e-12, abs=1e-12
    )
