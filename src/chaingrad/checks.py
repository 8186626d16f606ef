"""Argument checks the modules share, so a bad size, number or gradient reads the same everywhere."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from numbers import Real
from typing import Any

from .numerics import constant, is_array


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


def given_local_gradients(local: Any, n: int) -> None:
    """A TypeError unless local, the third argument of Value(data, children, local_grads), is n numbers
    (a tuple, a list or a NumPy array of them)."""
    sequence = isinstance(local, (tuple, list)) or is_array(local)
    if not sequence or len(local) != n or None in map(constant, local):
        raise TypeError(
            "Value(data, children, op): op is the op's name, or one local gradient (a number) per child"
        )


def local_gradients(
    op: Any, local: Sequence[Any], args: Sequence[Any], out: Any, Value: type
) -> tuple[Any, ...]:
    """The local gradients op.local gave for args (out: the op's value), one kept for each argument that
    is a Value, each a float or a batch; a TypeError naming the op for a missing or a bad one."""
    _count(op, "local()", local, args, Value, "one per argument")
    return tuple(
        d if type(d) is float else gradient(op, d, a.data, out)
        for a, d in zip(args, local)
        if isinstance(a, Value)
    )


def rule_shares(op: Any, shares: Sequence[Any], args: Sequence[Any], Value: type) -> list[Any]:
    """The shares of a node's gradient that its op's rule gave, one per argument, kept for the arguments
    that are Values, as their grads take them (None: nothing), all checked before any is added; a
    TypeError naming the op for a missing or bad one."""
    _count(op, "its rule", shares, args, Value, "one per argument")
    return [
        d if type(d) is float or d is None else gradient(op, d, a.data)
        for a, d in zip(args, shares)
        if isinstance(a, Value)
    ]


def _count(
    op: Any, what: str, gradients: Sequence[Any], inputs: Sequence[Any], Value: type, per: str
) -> None:
    """A TypeError unless gradients is a sequence with a gradient for each input that is a Value and no
    more than one per input; arguments after the last Value, such as a class index, may have none."""
    if not isinstance(gradients, (tuple, list)) and not is_array(gradients):
        raise TypeError(
            f"op {str(op)!r}: {what} gave {type(gradients).__name__} {gradients!r:.40}; "
            f"give a tuple of gradients, {per}"
        )
    if len(gradients) > len(inputs):
        raise TypeError(
            f"op {str(op)!r}: {what} gave {len(gradients)} gradients for {len(inputs)} "
            f"input{'s' if len(inputs) != 1 else ''}; give {per}"
        )
    if len(gradients) < len(inputs):
        need = max((i + 1 for i, x in enumerate(inputs) if isinstance(x, Value)), default=0)
        if len(gradients) < need:
            many = "gradient" if len(gradients) == 1 else "gradients"
            raise TypeError(
                f"op {str(op)!r}: {what} gave {len(gradients)} {many} for {need} inputs; give {per}"
            )


def gradient(op: Any, d: Any, x: Any, out: Any = None) -> Any:
    """d, a gradient an op gave for an input whose data is x, as the input takes it: a float, or a batch
    (summed over its samples where x is a single number, the sum of its samples' shares). With out (the
    op's value), d is a local gradient: a batch of them for single numbers in and out is refused."""
    c = d if is_array(d) else constant(d)
    if c is None:
        raise TypeError(
            f"op {str(op)!r} gave {type(d).__name__} {d!r:.40} as a gradient; give a number or a batch"
        )
    if is_array(c) and type(x) is float:
        if out is None:
            return float(c.sum())
        if type(out) is float:
            raise TypeError(
                f"op {str(op)!r} gave a batch as the local gradient of single numbers; give a number"
            )
    return c
