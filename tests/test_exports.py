"""``muster.discovery.__all__`` names exactly the public surface of the package."""

from __future__ import annotations

import types

import muster.discovery


def public_names() -> set[str]:
    """Names the package defines or re-exports, leaving out its submodules."""
    return {
        name
        for name, value in vars(muster.discovery).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


def test_every_name_in_all_exists() -> None:
    missing = [
        name for name in muster.discovery.__all__ if not hasattr(muster.discovery, name)
    ]

    assert missing == []


def test_every_public_name_is_in_all() -> None:
    assert public_names() - set(muster.discovery.__all__) == set()


def test_all_lists_each_name_once() -> None:
    assert len(muster.discovery.__all__) == len(set(muster.discovery.__all__))
