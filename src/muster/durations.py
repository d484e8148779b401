"""Durations written the way Go's ``time.ParseDuration`` reads them.

Swarm's flags take durations such as ``500ms``, ``60s`` or ``1m30s``; muster accepts
the same spellings so that command lines can move between the two unchanged.
"""

from __future__ import annotations

import re

from muster.errors import InvalidDurationError

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # Go accepts the micro sign
    "μs": 1e-6,  # and the Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)([a-zµμ]+)")
_HINT = "write it like 500ms, 60s or 1m30s"
_NANOSECONDS_PER_SECOND = 1_000_000_000


def parse_duration(text: str) -> float:
    """Return the number of seconds in a Go-style duration string."""
    original = text
    sign = 1.0
    if text[:1] in ("-", "+"):
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise InvalidDurationError(f'invalid duration "{original}": {_HINT}')

    seconds = 0.0
    position = 0
    while position < len(text):
        match = _PART.match(text, position)
        if match is None:
            if re.fullmatch(r"\d+\.?\d*", text[position:]):
                raise InvalidDurationError(
                    f'missing unit in duration "{original}": {_HINT}'
                )
            raise InvalidDurationError(f'invalid duration "{original}": {_HINT}')
        number, unit = match.groups()
        if unit not in _UNIT_SECONDS:
            raise InvalidDurationError(
                f'unknown unit "{unit}" in duration "{original}": '
                "use ns, us, ms, s, m or h"
            )
        seconds += float(number) * _UNIT_SECONDS[unit]
        position = match.end()

    return sign * seconds


def format_duration(seconds: float) -> str:
    """Write a number of seconds the way Go prints a duration (``1m30s``)."""
    # Work in whole nanoseconds, as Go's time.Duration does: float arithmetic on
    # seconds would print 59.9999999999 as 60s and cut fractions to six digits.
    nanoseconds = round(seconds * 1e9)
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    nanoseconds = abs(nanoseconds)

    if nanoseconds < 1_000:
        return f"{sign}{nanoseconds}ns"
    if nanoseconds < 1_000_000:
        return f"{sign}{_with_fraction(nanoseconds, 1_000)}\u00b5s"
    if nanoseconds < _NANOSECONDS_PER_SECOND:
        return f"{sign}{_with_fraction(nanoseconds, 1_000_000)}ms"

    hours, rest = divmod(nanoseconds, 3600 * _NANOSECONDS_PER_SECOND)
    minutes, rest = divmod(rest, 60 * _NANOSECONDS_PER_SECOND)
    text = sign
    if hours:
        text += f"{hours}h"
    if hours or minutes:
        text += f"{minutes}m"
    return text + _with_fraction(rest, _NANOSECONDS_PER_SECOND) + "s"


def _with_fraction(value: int, unit: int) -> str:
    """Write ``value / unit`` exactly, without trailing zeros (``1.5``, ``2``)."""
    whole, part = divmod(value, unit)
    if not part:
        return str(whole)
    places = len(str(unit)) - 1
    return f"{whole}.{part:0{places}d}".rstrip("0")
