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
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        milliseconds = seconds * 1000
        if milliseconds >= 1:
            return f"{sign}{milliseconds:g}ms"
        return f"{sign}{seconds * 1e6:g}µs"

    hours, rest = divmod(seconds, 3600)
    minutes, rest = divmod(rest, 60)
    text = ""
    if hours:
        text += f"{int(hours)}h"
    if hours or minutes:
        text += f"{int(minutes)}m"
    text += f"{round(rest, 9):g}s"
    return sign + text
