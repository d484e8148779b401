"""The service package re-exports exactly what ``__all__`` names."""

from __future__ import annotations

import muster.service


def test_every_name_in_all_exists() -> None:
    missing = [n for n in muster.service.__all__ if not hasattr(muster.service, n)]

    assert missing == []


def test_every_public_name_is_in_all() -> None:
    public = {
        name
        for name, value in vars(muster.service).items()
        if not name.startswith("_") and not isinstance(value, type(muster))
    }

    assert public == set(muster.service.__all__)
