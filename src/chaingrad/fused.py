"""Fused ops: sum, mean, dot, logsumexp, softmax, log_softmax, cross_entropy, batch_sum, batch_mean.

Each is one node however many inputs it has, with its local gradients in
closed form (cross_entropy's are softmax - onehot), so a neuron is one `dot`
node rather than a chain of `*` and `+`, and a loss over 27 classes one node
rather than a hundred. The exponentials are shifted by the inputs' maximum, so
logits of 1000 (or 1e16) are fine. Sums run left to right, the products of a
dot before its `start` (a neuron's bias), exactly as the compiled core runs them.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from typing import Any

from ._backend import Value, apply, record, twin
from .engine import Op, built_in
from .modes import NO_GRAD, mode
from .numerics import constant, div, exp, is_array, log, numpy

__all__ = [
    "batch_mean",
    "batch_sum",
    "cross_entropy",
    "dot",
    "log_softmax",
    "logsumexp",
    "mean",
    "softmax",
    "sum",
]

inf = float("inf")


# -- the arithmetic, on floats, batches and (for higher derivatives) Values --------


def total(xs: Sequence[Any]) -> Any:
    """x0 + x1 + ..., left to right (builtins.sum's rounding differs between Python versions)."""
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


def _is_batch(xs: Sequence[Any]) -> bool:
    return any(type(x) is not float for x in xs)


def _stacked(xs: Sequence[Any]) -> Any:
    np = numpy()
    return np.stack(np.broadcast_arrays(*xs))


def shift(xs: Sequence[Any], finite: bool = False) -> Any:
    """The largest x (per sample on a batch), by which every exp is shifted so that none overflows.

    As PyTorch, logsumexp (finite=True) shifts by 0 where the maximum is
    infinite, so logsumexp([inf, 1]) = inf; softmax shifts by the maximum
    itself, so an infinite logit makes it nan.
    """
    if _is_batch(xs):
        np = numpy()
        m = _stacked(xs).max(axis=0)
        return np.where(np.isfinite(m), m, 0.0) if finite else m
    m = xs[0]
    for x in xs[1:]:
        if x > m:
            m = x
    return m if not finite or -inf < m < inf else 0.0


def _softmax(xs: Sequence[Any]) -> list[Any]:
    """exp(x_i - m) / sum_j exp(x_j - m), from data."""
    m = shift(xs)
    e = [exp(x - m) for x in xs]
    t = total(e)
    return [div(ei, t) for ei in e]


def _softmax_of(xs: Sequence[Any]) -> list[Any]:
    """softmax of data, or of Values (as nodes, when a local gradient must itself be differentiable)."""
    return softmax(xs) if any(isinstance(x, Value) for x in xs) else _softmax(xs)


def _onehot(t: Any, j: int) -> Any:
    return (t == j) * 1.0  # per sample when t is a batch of class indices


def _pick(xs: Sequence[Any], t: Any) -> Any:
    return xs[t] if type(t) is int else numpy().choose(t, _stacked(xs))


# -- the ops: forward and local gradients, given the arguments' data (and out) -------


def _sum(xs: tuple[Any, ...], start: tuple[Any, ...]) -> Any:
    return total([*xs, *start])


def _dot(a: tuple[Any, ...], b: tuple[Any, ...], start: tuple[Any, ...]) -> Any:
    return total([*(x * y for x, y in zip(a, b)), *start])  # start, if any, added last


def _logsumexp(xs: tuple[Any, ...]) -> Any:
    m = shift(xs, finite=True)
    return m + log(total([exp(x - m) for x in xs]))


def _softmax_row(s: Sequence[Any], i: int) -> tuple[Any, ...]:
    # d s_i / d x_j = s_i (1[i = j] - s_j)
    return tuple(s[i] * ((i == j) - sj) for j, sj in enumerate(s))


def _log_softmax_row(s: Sequence[Any], i: int) -> tuple[Any, ...]:
    # d log s_i / d x_j = 1[i = j] - s_j
    return tuple((i == j) - sj for j, sj in enumerate(s))


def _cross_entropy_row(s: Sequence[Any], t: Any) -> tuple[Any, ...]:
    # d (-log s_t) / d x_j = s_j - 1[j = t]
    return tuple(sj - _onehot(t, j) for j, sj in enumerate(s))


def _batch_local(x: Any, mean: bool) -> tuple[Any]:
    """d/dx of the sum (1) or mean (1 / n) over x's samples, one entry per sample."""
    x = x.data if isinstance(x, Value) else x
    return (1.0,) if type(x) is float else (numpy().full(len(x), 1.0 / len(x) if mean else 1.0),)


def _ones(n: int, scale: Any = 1.0) -> tuple[Any, ...]:
    return (scale,) * n


# fmt: off
#                  name             forward       local gradients, given the arguments and out
SUM = Op(          "sum",           _sum,         lambda xs, start, out: _ones(len(xs) + len(start)))
MEAN = Op(         "mean",          lambda xs: div(total(xs), len(xs)),
                                                  lambda xs, out: _ones(len(xs), div(1.0, len(xs))))
DOT = Op(          "dot",           _dot,         lambda a, b, start, out: (*b, *a, *_ones(len(start))))
LOGSUMEXP = Op(    "logsumexp",     _logsumexp,   lambda xs, out: tuple(exp(x - out) for x in xs))
SOFTMAX = Op(      "softmax",       None,         lambda xs, i, out: _softmax_row(_softmax_of(xs), i))
LOG_SOFTMAX = Op(  "log_softmax",   None,         lambda xs, i, out: _log_softmax_row(_softmax_of(xs), i))
CROSS_ENTROPY = Op("cross_entropy", None,         lambda xs, t, out: _cross_entropy_row(_softmax_of(xs), t))
BATCH_SUM = Op(    "batch_sum",     lambda x: x if type(x) is float else float(x.sum()),
                                                  lambda x, out: _batch_local(x, mean=False))
BATCH_MEAN = Op(   "batch_mean",    lambda x: x if type(x) is float else float(x.mean()),
                                                  lambda x, out: _batch_local(x, mean=True))
# fmt: on
built_in(SUM, MEAN, DOT, LOGSUMEXP, SOFTMAX, LOG_SOFTMAX, CROSS_ENTROPY, BATCH_SUM, BATCH_MEAN)


# -- the functions a user calls: check the arguments, then make the node -------------


def checked_inputs(values: Any, name: str) -> tuple[Any, ...]:
    """A fused op's sequence of inputs, checked: Values, numbers or batches, at least one.

    `name` is the op's, for the error; layers.py checks affine's inputs with it too.
    """
    if isinstance(values, (Value, str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name}() takes a sequence of Values or numbers, not {type(values).__name__}")
    values = tuple(values)
    if not values:
        raise ValueError(f"{name}() of an empty sequence")
    if all(map(isinstance, values, itertools.repeat(Value))):  # the common case, checked in one pass
        return values
    for i, v in enumerate(values):
        if not isinstance(v, Value) and _number(v) is None:
            raise TypeError(f"{name}(): item {i} is {type(v).__name__} {v!r:.40}, not a Value or a number")
    return values


def _number(x: Any) -> Any:
    return None if isinstance(x, (list, tuple)) else constant(x)


def _start(start: Any, name: str) -> tuple[Any, ...]:
    """The optional last term as a sequence of one, or of none when it is the number 0 (nothing added)."""
    if type(start) in (int, float) and start == 0:
        return ()
    if not isinstance(start, Value) and _number(start) is None:
        raise TypeError(
            f"{name}() start must be a Value or a number, not {type(start).__name__} {start!r:.40}"
        )
    return (start,)


def sum(values: Sequence[Any], start: Any = 0.0) -> Value:  # noqa: A001 - as torch.sum
    """sum(values) + start, as one node."""
    return apply(SUM, checked_inputs(values, "sum"), _start(start, "sum"))


def mean(values: Sequence[Any]) -> Value:
    """The mean of values, as one node."""
    return apply(MEAN, checked_inputs(values, "mean"))


def dot(a: Sequence[Any], b: Sequence[Any], start: Any = 0.0) -> Value:
    """sum(a[i] * b[i]) + start, as one node; `start` is where a neuron's bias goes, added last."""
    a, b = checked_inputs(a, "dot"), checked_inputs(b, "dot")
    if len(a) != len(b):
        raise ValueError(f"dot(): the sequences differ in length ({len(a)} and {len(b)})")
    return apply(DOT, a, b, _start(start, "dot"))


def logsumexp(values: Sequence[Any]) -> Value:
    """log(sum(exp(values))), stable for large values, as one node."""
    return apply(LOGSUMEXP, checked_inputs(values, "logsumexp"))


def batch_datas(xs: tuple[Any, ...], name: str) -> list[Any]:
    """The data of each of xs (checked inputs), refused when two batches among them differ in size.

    `name` is the op's, for the error; layers.py reads affine's inputs with it too.
    """
    datas = [x.data if isinstance(x, Value) else _number(x) for x in xs]
    sizes = {len(d) for d in datas if is_array(d)}  # not an int someone assigned (p.data = 0)
    if len(sizes) > 1:
        raise ValueError(f"{name}(): batches of different sizes {sorted(sizes)} cannot be combined")
    return datas


def _quiet(datas: Sequence[Any]) -> Any:
    import contextlib

    return numpy().errstate(all="ignore") if _is_batch(datas) else contextlib.nullcontext()


def softmax(values: Sequence[Any]) -> list[Value]:
    """exp(x_i) / sum(exp(x)) for each i, stable; each output is one node."""
    xs = checked_inputs(values, "softmax")
    datas = batch_datas(xs, "softmax")
    with _quiet(datas):
        s = _softmax(datas)
        grads = not mode() & NO_GRAD
        return [record(SOFTMAX, si, (xs, i), _softmax_row(s, i) if grads else None) for i, si in enumerate(s)]


def log_softmax(values: Sequence[Any]) -> list[Value]:
    """x_i - logsumexp(x) for each i, stable; each output is one node."""
    xs = checked_inputs(values, "log_softmax")
    datas = batch_datas(xs, "log_softmax")
    with _quiet(datas):
        m = shift(datas)
        e = [exp(x - m) for x in datas]
        t = total(e)
        lse = log(t)
        s = [div(ei, t) for ei in e]
        grads = not mode() & NO_GRAD
        return [
            record(LOG_SOFTMAX, (x - m) - lse, (xs, i), _log_softmax_row(s, i) if grads else None)
            for i, x in enumerate(datas)
        ]


def cross_entropy(logits: Sequence[Any], target: Any) -> Value:
    """-log(softmax(logits)[target]), as one node whose local gradients are softmax - onehot.

    `target` is a class index, or on a batch a 1-D integer array of them.
    """
    xs = checked_inputs(logits, "cross_entropy")
    datas = batch_datas(xs, "cross_entropy")
    batch = next((len(d) for d in datas if is_array(d)), None)
    t = _class_index(target, len(xs), batch)
    with _quiet(datas):
        m = shift(datas)
        e = [exp(x - m) for x in datas]
        tot = total(e)
        out = log(tot) - (_pick(datas, t) - m)
        local = None if mode() & NO_GRAD else _cross_entropy_row([div(ei, tot) for ei in e], t)
        return record(CROSS_ENTROPY, out, (xs, t), local)


def _class_index(target: Any, n: int, batch: int | None) -> Any:
    """Check a class index (or a batch of them) against n classes."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(target, np.ndarray):
        if target.ndim != 1 or target.dtype.kind not in "iu":
            raise TypeError(
                f"cross_entropy(): a batch of targets must be a 1-D integer array, "
                f"got dtype {target.dtype} and shape {target.shape}"
            )
        if batch is not None and len(target) != batch:
            raise ValueError(f"cross_entropy(): {len(target)} targets for a batch of {batch} samples")
        bad = target[(target < 0) | (target >= n)]
        if len(bad):
            raise IndexError(f"cross_entropy(): target {bad[0]} is out of range for {n} classes")
        return target.astype(np.int64)
    is_int = isinstance(target, int) or (np is not None and isinstance(target, np.integer))
    if isinstance(target, bool) or not is_int:
        raise TypeError(
            f"cross_entropy(): target must be an int class index, not {type(target).__name__} {target!r:.40}"
        )
    if not 0 <= target < n:
        raise IndexError(f"cross_entropy(): target {target} is out of range for {n} classes (0..{n - 1})")
    return int(target)


def batch_sum(v: Value) -> Value:
    """The sum over a batch's samples (a number stays as it is)."""
    return apply(BATCH_SUM, _one_value(v, "batch_sum"))


def batch_mean(v: Value) -> Value:
    """The mean over a batch's samples (a number stays as it is)."""
    return apply(BATCH_MEAN, _one_value(v, "batch_mean"))


def _one_value(v: Any, name: str) -> Any:
    if isinstance(v, (list, tuple)):
        raise TypeError(
            f"{name}() takes one Value holding a batch, not a {type(v).__name__}; for a list, cg.{name[6:]}()"
        )
    return v


def is_batch(x: Any) -> bool:
    """Whether x is a Value holding a batch, or a batch itself."""
    return is_array(x.data if isinstance(x, Value) else x)


# Where the compiled core runs, it does these on single numbers itself, and comes back to the functions
# above for the rest (batches, constants among the inputs, bad arguments, a mode that is on).
sum = twin(SUM, sum)  # noqa: A001
mean, dot, logsumexp = twin(MEAN, mean), twin(DOT, dot), twin(LOGSUMEXP, logsumexp)
softmax, log_softmax = twin(SOFTMAX, softmax), twin(LOG_SOFTMAX, log_softmax)
cross_entropy = twin(CROSS_ENTROPY, cross_entropy)
