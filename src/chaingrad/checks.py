"""Argument checks the modules share, so a bad size reads the same everywhere."""

from __future__ import annotations

from typing import Any


def positive_int(n: Any, name: str) -> int:
    """n if it is an int >= 1 (not a bool); otherwise a ValueError naming `name` and n."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive int, got {n!r}")
    return n
