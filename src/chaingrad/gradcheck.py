"""Finite-difference checking: compare backward's gradients with central differences."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ._backend import Value
from .checks import number
from .modes import enable_grad, no_grad
from .numerics import is_array

__all__ = ["GradcheckError", "gradcheck"]


class GradcheckError(AssertionError):
    """backward's gradient and the finite-difference estimate disagree."""


def _scalar_output(f: Callable[..., Any], inputs: Sequence[Value]) -> Value:
    out = f(*inputs)
    if not isinstance(out, Value):
        raise TypeError(f"gradcheck: f must return a Value, got {type(out).__name__}")
    if type(out.data) is not float:
        raise ValueError("gradcheck: f must return a single number; reduce a batch with cg.batch_mean")
    return out


def _numeric(f: Callable[..., Any], inputs: Sequence[Value], eps: float) -> list[Any]:
    """Central differences (f(x + eps) - f(x - eps)) / 2 eps, one input entry at a time."""
    grads = []
    with no_grad():
        for x in inputs:
            if type(x.data) is float:
                grads.append(_central(f, inputs, lambda v, x=x: setattr(x, "data", v), x.data, eps))
            else:  # a batch: perturb one sample at a time
                g = x.data.copy()
                for k in range(len(g)):
                    g[k] = _central(f, inputs, lambda v, x=x, k=k: x.data.__setitem__(k, v), x.data[k], eps)
                grads.append(g)
    return grads


def _central(
    f: Callable[..., Any], inputs: Sequence[Value], put: Callable[[Any], None], x0: Any, eps: float
) -> Any:
    """(f(x0 + eps) - f(x0 - eps)) / 2 eps, where put(x) sets the entry; x0 is put back even if f raises."""
    try:
        put(x0 + eps)
        hi = f(*inputs).data
        put(x0 - eps)
        lo = f(*inputs).data
    finally:
        put(x0)
    return (hi - lo) / (2 * eps)


def _entries(g: Any, x: Value) -> list[float]:
    """g as a flat list with one entry per number in x (a batch's untouched grad is 0.0)."""
    if type(x.data) is float:
        return [float(g)]
    return [float(g)] * len(x.data) if type(g) is float else [float(v) for v in g]


def gradcheck(
    f: Callable[..., Value],
    inputs: Sequence[Value],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> bool:
    """True if backward's gradients of f(*inputs) match central differences; else raise.

    Each entry must satisfy |analytic - numeric| <= atol + rtol * |numeric|.
    The inputs' data and grads are left as they were.
    """
    if isinstance(inputs, Value):
        raise TypeError("gradcheck: inputs must be a list of Values, e.g. [x, w], not one Value")
    inputs = list(inputs)
    if not inputs:
        raise ValueError("gradcheck: no inputs to check; pass the Values to differentiate f by")
    for i, x in enumerate(inputs):
        if not isinstance(x, Value):
            raise TypeError(f"gradcheck: input {i} is {type(x).__name__}, not a Value")
        if type(x.data) is not float and not is_array(x.data):
            raise TypeError(
                f"gradcheck: input {i} holds {type(x.data).__name__} {x.data!r:.40}; give it a float"
            )
    eps, atol, rtol = (
        number(v, f"gradcheck: {k}") for k, v in (("eps", eps), ("atol", atol), ("rtol", rtol))
    )
    if not 0 < eps < math.inf:
        raise ValueError(f"gradcheck: eps must be a positive finite step, got {eps!r}")
    saved = [x.grad for x in inputs]
    try:
        for x in inputs:
            x.grad = 0.0
        with enable_grad():  # the analytic side needs the graph even inside no_grad
            _scalar_output(f, inputs).backward()
        analytic = [_entries(x.grad, x) for x in inputs]
    finally:
        for x, g in zip(inputs, saved):
            x.grad = g
    numeric = _numeric(f, inputs, eps)

    rows, ok = [], True
    for i, (x, a, n) in enumerate(zip(inputs, analytic, numeric)):
        for k, (av, nv) in enumerate(zip(a, _entries(n, x))):
            good = abs(av - nv) <= atol + rtol * abs(nv)
            ok &= good
            name = x.label or f"input {i}"
            if type(x.data) is not float:
                name += f"[{k}]"
            rows.append((name, av, nv, good))
    if ok:
        return True
    width = max(len(r[0]) for r in rows)
    lines = [f"{'input':<{width}}  {'analytic':>14}  {'numeric':>14}  {'':4}"]
    for name, av, nv, good in rows:
        lines.append(f"{name:<{width}}  {av:>14.8g}  {nv:>14.8g}  {'' if good else 'MISMATCH'}")
    raise GradcheckError(
        f"gradcheck: backward and finite differences disagree "
        f"(eps={eps}, atol={atol}, rtol={rtol}):\n" + "\n".join(lines)
    )
