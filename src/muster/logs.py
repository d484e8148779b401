"""One event per line: ``time=... level=info event=node.registered node=...``.

Modules log an event name as the message and the facts as ``extra`` fields;
:class:`EventFormatter` writes them as ``key=value`` pairs (logfmt).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

# Attributes every LogRecord has; anything else on a record came in through `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def mask_token(token: str) -> str:
    """Shorten a cluster token so logs can tell clusters apart without leaking it."""
    if len(token) <= 8:
        return "***"
    return token[:6] + "…"


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Return the fields a record was logged with."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


def _quote(value: object) -> str:
    text = str(value)
    if not text or any(ch.isspace() or ch in '"=' for ch in text):
        return (
            '"'
            + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            + '"'
        )
    return text


class EventFormatter(logging.Formatter):
    """Format records as logfmt lines."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"time={stamp}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"event={_quote(record.getMessage())}",
        ]
        parts.extend(
            f"{key}={_quote(value)}" for key, value in event_fields(record).items()
        )
        if record.exc_info:
            parts.append(f"error={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def configure_logging(level: str = "info") -> None:
    """Send muster's events to standard error, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EventFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would print full request paths, cluster tokens included.
    logging.getLogger("aiohttp.access").disabled = True
