"""Argument checks the modules share, so a bad size reads the same everywhere."""

from __future__ import annotations

import math
import operator
from numbers import Real
from typing import Any


def positive_int(n: Any, name: str) -> int:
    """n as an int if it is an integer >= 1 (a NumPy integer too, not a bool); otherwise a ValueError
    naming `name` and n."""
    try:
        k = None if isinstance(n, bool) else operator.index(n)
    except TypeError:
        k = None
    if k is None or k < 1:
        raise ValueError(f"{name} must be a positive int, got {n!r}")
    return k


def number(x: Any, name: str, low: float = 0.0, high: float = math.inf, high_open: bool = False) -> float:
    """x as a float, checked to lie in [low, high] (or [low, high) when high_open)."""
    if isinstance(x, bool) or not isinstance(x, Real):
        raise TypeError(f"{name} must be a number, not {type(x).__name__} {x!r:.40}")
    if not (low <= x < high if high_open else low <= x <= high):
        raise ValueError(f"{name} must be in [{low}, {high}{')' if high_open else ']'}, got {x!r}")
    return float(x)
