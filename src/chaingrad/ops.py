"""The op table: every op's forward value and local gradients, side by side.

An op is two formulas. `forward(*args)` computes the value from the inputs'
data; `local(*args, out)` gives d(out)/d(arg) for every argument. The engine
stores the local gradients on the node and one generic loop applies the chain
rule. Built-in ops and user-defined ops use this same mechanism (`Op`).

The formulas are written with plain arithmetic and the functions below
(`exp`, `log`, `div`, ...), which accept a float, a batch (a 1-D NumPy array)
or a Value. So the same formula gives float local gradients in the forward
pass and Value local gradients for `backward(create_graph=True)`.
"""

from __future__ import annotations

import builtins
import itertools
import math
import operator
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .engine import (
    _VALUES_ONLY,
    Value,
    _data,
    _data_of,
    _output,
    _quiet,
    _unary,
    accumulate,
    apply,
    as_args,
    check_batches,
    is_grad_enabled,
    node,
    numpy,
    record,
)

inf, nan = math.inf, math.nan


# ---------------------------------------------------------------------------
# Elementary functions: IEEE-754 results for floats (never a math-module
# exception), elementwise for batches, graph-building for Values.
# ---------------------------------------------------------------------------


def _elsewise(x: Any, name: str) -> Any:
    """The non-float cases of an elementary function: Value, int, or batch."""
    if isinstance(x, Value):
        return getattr(x, name)()
    if isinstance(x, (int, float)):
        return _SCALAR[name](float(x))
    _check_batch(x, name)
    with numpy().errstate(all="ignore"):  # IEEE results as for floats, without warnings
        return _BATCH[name](x)


def _check_batch(x: Any, name: str) -> None:
    np = sys.modules.get("numpy")
    if np is None or not isinstance(x, np.ndarray) or x.dtype.kind not in "biuf":
        raise TypeError(
            f"{name}() takes a number, a NumPy batch or a Value, not {type(x).__name__} {x!r:.40}"
        )


def _elsewise2(
    x: Any, y: Any, scalar: Callable[[float, float], Any], value_op: Callable, batch: Callable
) -> Any:
    """The non-float cases of a two-argument function: Values, ints, or batches."""
    if isinstance(x, Value) or isinstance(y, Value):
        return value_op(x, y)
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        return scalar(float(x), float(y))
    for v in (x, y):
        if not isinstance(v, (int, float)):
            _check_batch(v, scalar.__name__)
    with numpy().errstate(all="ignore"):
        return batch(x, y)


def _batch_power(x: Any, y: Any) -> Any:
    # NumPy gives nan for (-inf) ** y with y not an integer; C's pow (and PyTorch) gives
    # +-inf for y > 0 and +-0 for y < 0, negative only for odd integers y.
    np = numpy()
    out = np.power(x, y)
    x, y = np.broadcast_arrays(x, y)
    fix = np.isneginf(x) & (y != 0) & ~np.isnan(y)
    if fix.any():
        odd = (np.mod(y, 2) == 1) & (np.floor(y) == y)
        out = np.where(fix, np.where(y > 0, np.where(odd, -np.inf, np.inf), np.where(odd, -0.0, 0.0)), out)
    return out


def exp(x: Any) -> Any:
    """e ** x; inf on overflow."""
    if type(x) is float:
        try:
            return math.exp(x)
        except OverflowError:
            return inf
    return _elsewise(x, "exp")


def log(x: Any) -> Any:
    """Natural logarithm; log(0) = -inf, log(x < 0) = nan."""
    if type(x) is float:
        if x > 0:
            return math.log(x)
        return -inf if x == 0 else nan
    return _elsewise(x, "log")


def tanh(x: Any) -> Any:
    """Hyperbolic tangent, exact at large |x|."""
    if type(x) is float:
        return math.tanh(x)
    return _elsewise(x, "tanh")


def sigmoid(x: Any) -> Any:
    """1 / (1 + e ** -x), computed so that no exp overflows."""
    if type(x) is float:
        if x >= 0:
            return 1.0 / (1.0 + math.exp(-x))
        e = math.exp(x)
        return e / (1.0 + e)
    return _elsewise(x, "sigmoid")


def relu(x: Any) -> Any:
    """max(x, 0), passing nan through as PyTorch does."""
    if type(x) is float:
        return 0.0 if x <= 0 else x
    return _elsewise(x, "relu")


def sqrt(x: Any) -> Any:
    """Square root; sqrt(x < 0) = nan."""
    if type(x) is float:
        return math.sqrt(x) if x >= 0 else nan
    return _elsewise(x, "sqrt")


def div(x: Any, y: Any) -> Any:
    """x / y with IEEE-754 division by zero (+-inf, or nan for 0/0)."""
    if type(x) is float and type(y) is float:
        try:
            return x / y
        except ZeroDivisionError:
            if x != x or x == 0:
                return nan
            return math.copysign(inf, x) * math.copysign(1.0, y)
    return _elsewise2(x, y, div, operator.truediv, lambda a, b: numpy().divide(a, b))


def power(x: Any, y: Any) -> Any:
    """x ** y as C's pow: 0 ** -1 = inf, (-8) ** (1/3) = nan, overflow = inf."""
    if type(x) is float and type(y) is float:
        try:
            return math.pow(x, y)
        except OverflowError:
            odd = y.is_integer() and y % 2 == 1
            return -inf if x < 0 and odd else inf
        except ValueError:
            if x == 0:  # a negative power of zero
                odd = y.is_integer() and y % 2 == 1
                return math.copysign(inf, x) if odd else inf
            return nan  # a negative base to a non-integer power
    return _elsewise2(x, y, power, operator.pow, _batch_power)


def _batch_sigmoid(x: Any) -> Any:
    np = numpy()
    e = np.exp(-np.abs(x))  # <= 1, so no overflow on either side
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


_SCALAR = {"exp": exp, "log": log, "tanh": tanh, "sigmoid": sigmoid, "relu": relu, "sqrt": sqrt}
_BATCH: dict[str, Callable[[Any], Any]] = {
    "exp": lambda x: numpy().exp(x),
    "log": lambda x: numpy().log(x),
    "tanh": lambda x: numpy().tanh(x),
    "sigmoid": _batch_sigmoid,
    "relu": lambda x: numpy().where(x <= 0, 0.0, x),
    "sqrt": lambda x: numpy().sqrt(x),
}


def _sign(x: Any) -> Any:
    # As PyTorch's sgn: 0 at 0 and at nan. Comparisons keep it a constant.
    return (x > 0) * 1.0 - (x < 0)


def _pow_local(x: Any, y: Any, out: Any) -> tuple[Any, Any]:
    # PyTorch's convention: no gradient through a zero exponent, and none into
    # the exponent where the base is 0 and the exponent non-negative.
    xd, yd = _data(x), _data(y)
    if type(xd) is not float or type(yd) is not float:
        np = numpy()
        with np.errstate(all="ignore"):
            return (
                np.where(yd == 0, 0.0, yd * _batch_power(xd, yd - 1.0)),
                np.where((xd == 0) & (yd >= 0), 0.0, out * np.log(xd)),
            )
    return (
        0.0 if yd == 0 else y * power(x, y - 1.0),
        0.0 if xd == 0 and yd >= 0 else out * log(x),
    )


# ---------------------------------------------------------------------------
# Op: the one mechanism for built-in and user-defined ops.
# ---------------------------------------------------------------------------


class Op(str):
    """An op: its name (what a node's `_op` shows) plus its forward and local gradients.

    `forward(*args)` returns the value; `local(*args, out)` returns one local
    gradient d(out)/d(arg) per argument. Write both with plain arithmetic and
    chaingrad's functions (`cg.exp`, `cg.log`, ...), not `math`, and the op
    also supports higher-order derivatives. Calling the op applies it.

    A fused op over a whole batch whose local gradients are matrices gives
    `backward(node, g)` instead: it adds the node's vector-Jacobian product
    into its inputs' grads (with `accumulate`), in a few NumPy calls.
    """

    forward: Callable[..., Any]
    local: Callable[..., Sequence[Any]] | None
    backward: Callable[[Value, Any], None] | None

    def __new__(
        cls,
        name: str,
        forward: Callable[..., Any],
        local: Callable[..., Sequence[Any]] | None,
        backward: Callable[[Value, Any], None] | None = None,
    ):
        if not isinstance(name, str) or not name:
            raise TypeError(f"an op needs a non-empty name, got {name!r}")
        if not callable(forward) or not (callable(local) or callable(backward)):
            raise TypeError(f"op {name!r}: forward and local must be callables")
        if name in _REGISTRY:  # a node names its op; two ops of one name would be confused (pickle)
            raise ValueError(f"an op named {name!r} already exists; give the new op another name")
        op = super().__new__(cls, name)
        op.forward = forward
        op.local = local
        op.backward = backward
        _REGISTRY[name] = op
        return op

    def __call__(self, *args: Any) -> Value:
        """Apply the op to Values and numbers, recording one node."""
        if len(args) == 1 and type(args[0]) is Value:
            return _unary(self, args[0])  # the fast path Value.exp() and friends take
        return apply(self, as_args(args, self))

    def __reduce__(self):
        return _op_named, (str(self),)


_REGISTRY: dict[str, Op] = {}


def _op_named(name: str) -> Op:
    """The op registered under `name` (how pickled nodes find their op again)."""
    return _REGISTRY[name]


# ---------------------------------------------------------------------------
# The table. Each row: name, forward, local gradients given (inputs..., out).
# ---------------------------------------------------------------------------

# fmt: off
ADD     = Op("+",       lambda x, y: x + y,  lambda x, y, out: (1.0, 1.0))
SUB     = Op("-",       lambda x, y: x - y,  lambda x, y, out: (1.0, -1.0))
MUL     = Op("*",       lambda x, y: x * y,  lambda x, y, out: (y, x))
DIV     = Op("/",       div,                 lambda x, y, out: (div(1.0, y), div(-out, y)))
POW     = Op("**",      power,               _pow_local)
NEG     = Op("neg",     lambda x: -x,        lambda x, out: (-1.0,))
EXP     = Op("exp",     exp,                 lambda x, out: (out,))
LOG     = Op("log",     log,                 lambda x, out: (div(1.0, x),))
TANH    = Op("tanh",    tanh,                lambda x, out: (1.0 - out * out,))
SIGMOID = Op("sigmoid", sigmoid,             lambda x, out: (out * (1.0 - out),))
RELU    = Op("relu",    relu,                lambda x, out: (1.0 - (x <= 0),))  # relu'(0) = 0
SQRT    = Op("sqrt",    sqrt,                lambda x, out: (div(0.5, out),))
ABS     = Op("abs",     abs,                 lambda x, out: (_sign(x),))         # abs'(0) = 0
# fmt: on


# ---------------------------------------------------------------------------
# Fused ops: one node for a whole reduction, with its own local gradients.
# Their arguments are flat: dot(a, b, start) has args (*a, *b, start),
# softmax's output i has args (*xs, i), cross_entropy has (*logits, target).
# ---------------------------------------------------------------------------


def _is_batch(xs: Sequence[Any]) -> bool:
    return any(type(x) is not float for x in xs)


def _stacked(xs: Sequence[Any]) -> Any:
    np = numpy()
    return np.stack(np.broadcast_arrays(*xs))


def _shift(xs: Sequence[Any], finite: bool) -> Any:
    """The max of xs (per sample for batches), which every exp is shifted by so none overflows.

    As PyTorch: logsumexp shifts by 0 where the max is infinite (finite=True), so
    logsumexp([inf, 1]) = inf; softmax and log_softmax shift by the max itself, so
    an infinite logit makes every output nan.
    """
    if not _is_batch(xs):
        m = max(xs)
        return m if not finite or -inf < m < inf else 0.0
    np = numpy()
    m = _stacked(xs).max(axis=0)
    return np.where(np.isfinite(m), m, 0.0) if finite else m


def _logsumexp_parts(xs: Sequence[Any], finite: bool = True) -> tuple[Any, Any]:
    """(m, log(sum(exp(x - m)))) for the shift m, so that logsumexp(xs) = m + the second part.

    Keeping the parts apart lets log_softmax compute (x - m) - log(...) without
    the cancellation of x - logsumexp(xs) at large |x|.
    """
    m = _shift(xs, finite)
    if not _is_batch(xs):
        return m, log(math.fsum(exp(x - m) for x in xs))
    np = numpy()
    with np.errstate(all="ignore"):
        return m, np.log(np.exp(_stacked(xs) - m).sum(axis=0))


def _logsumexp_data(xs: Sequence[Any]) -> Any:
    m, s = _logsumexp_parts(xs)
    return m + s


def _softmax_data(xs: Sequence[Any]) -> list[Any]:
    m = _shift(xs, finite=False)
    if not _is_batch(xs):
        e = [exp(x - m) for x in xs]
        total = math.fsum(e)
        return [div(v, total) for v in e]
    np = numpy()
    with np.errstate(all="ignore"):
        e = np.exp(_stacked(xs) - m)
        return list(e / e.sum(axis=0))


def _softmax_of(xs: Sequence[Any]) -> list[Any]:
    """softmax of data, or of Values (as nodes, for higher-order gradients)."""
    if any(isinstance(x, Value) for x in xs):
        return softmax(xs)
    return _softmax_data(xs)


def _pick(xs: Sequence[Any], t: Any) -> Any:
    """xs[t], per sample when t is a batch of class indices."""
    if type(t) is int:
        return xs[t]
    return numpy().choose(t, _stacked([_data(x) for x in xs]))


def _onehot(t: Any, j: int) -> Any:
    return (t == j) * 1.0


def _dot_value(a: Sequence[Any], b: Sequence[Any], start: Any) -> Any:
    return builtins.sum(map(operator.mul, a, b), start)


def _dot_grads(a: Sequence[Any], b: Sequence[Any], has_start: bool) -> tuple[Any, ...]:
    # d/da_i = b_i, d/db_i = a_i, d/dstart = 1
    return (*b, *a, 1.0) if has_start else (*b, *a)


def _dot_forward(*args: Any) -> Any:  # args: *a, *b[, start]
    n = len(args) // 2
    return _dot_value(args[:n], args[n : 2 * n], args[-1] if len(args) % 2 else 0.0)


def _dot_local(*args: Any) -> tuple[Any, ...]:  # args: *a, *b[, start], out
    n = (len(args) - 1) // 2
    return _dot_grads(args[:n], args[n : 2 * n], len(args) % 2 == 0)


def _logsumexp_local(*args: Any) -> tuple[Any, ...]:  # args: *xs, out
    *xs, out = args
    return tuple(exp(x - out) for x in xs)  # softmax, from the output


def _softmax_forward(*args: Any) -> Any:  # args: *xs, i
    *xs, i = args
    return _softmax_data(xs)[i]


def _softmax_row(s: Sequence[Any], i: int) -> tuple[Any, ...]:
    # d s_i / d x_j = s_i (1[i = j] - s_j); the trailing 0 is for the index i
    return (*(s[i] * ((i == j) - sj) for j, sj in enumerate(s)), 0.0)


def _softmax_local(*args: Any) -> tuple[Any, ...]:  # args: *xs, i, out
    *xs, i, _ = args
    return _softmax_row(_softmax_of(xs), i)


def _log_softmax_forward(*args: Any) -> Any:  # args: *xs, i
    *xs, i = args
    m, s = _logsumexp_parts(xs, finite=False)
    return (xs[i] - m) - s


def _log_softmax_row(s: Sequence[Any], i: int) -> tuple[Any, ...]:
    # d log s_i / d x_j = 1[i = j] - s_j
    return (*((i == j) - sj for j, sj in enumerate(s)), 0.0)


def _log_softmax_local(*args: Any) -> tuple[Any, ...]:  # args: *xs, i, out
    *xs, i, _ = args
    return _log_softmax_row(_softmax_of(xs), i)


def _cross_entropy_forward(*args: Any) -> Any:  # args: *logits, target
    *xs, t = args
    m, s = _logsumexp_parts(xs, finite=False)
    return s - (_pick(xs, t) - m)


def _cross_entropy_local(*args: Any) -> tuple[Any, ...]:  # args: *logits, target, out
    *xs, t, _ = args
    return (*(s - _onehot(t, j) for j, s in enumerate(_softmax_of(xs))), 0.0)


def _sum_forward(*xs: Any) -> Any:
    return builtins.sum(xs)


def _sum_local(*args: Any) -> tuple[float, ...]:  # args: *xs, out
    return (1.0,) * (len(args) - 1)


def _mean_forward(*xs: Any) -> Any:
    return builtins.sum(xs) / len(xs)


def _mean_local(*args: Any) -> tuple[float, ...]:  # args: *xs, out
    n = len(args) - 1
    return (1.0 / n,) * n


def _batch_reduce(x: Any, average: bool) -> Any:
    if type(x) is float:
        return x
    with numpy().errstate(all="ignore"):
        return float(x.mean() if average else x.sum())


def _batch_local(x: Any, average: bool) -> tuple[Any]:
    x = _data(x)
    if type(x) is float:
        return (1.0,)
    return (numpy().full(len(x), 1.0 / len(x) if average else 1.0),)


# fmt: off
#                    name           forward                              local gradients
SUM           = Op("sum",           _sum_forward,                        _sum_local)
MEAN          = Op("mean",          _mean_forward,                       _mean_local)
DOT           = Op("dot",           _dot_forward,                        _dot_local)
LOGSUMEXP     = Op("logsumexp",     lambda *xs: _logsumexp_data(xs),     _logsumexp_local)
SOFTMAX       = Op("softmax",       _softmax_forward,                    _softmax_local)
LOG_SOFTMAX   = Op("log_softmax",   _log_softmax_forward,                _log_softmax_local)
CROSS_ENTROPY = Op("cross_entropy", _cross_entropy_forward,              _cross_entropy_local)
BATCH_SUM     = Op("batch_sum",     lambda x: _batch_reduce(x, False),   lambda x, _: _batch_local(x, False))
BATCH_MEAN    = Op("batch_mean",    lambda x: _batch_reduce(x, True),    lambda x, _: _batch_local(x, True))
# fmt: on


# ---------------------------------------------------------------------------
# The fused ops as users call them.
# ---------------------------------------------------------------------------


def _sequence(values: Any, name: str) -> tuple[Any, ...]:
    if isinstance(values, (Value, str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name}() takes a sequence of Values or numbers, not {type(values).__name__}")
    args = as_args(tuple(values), f"{name}()")
    if not args:
        raise ValueError(f"{name}() of an empty sequence")
    return args


def sum(values: Sequence[Any], start: Any = 0.0) -> Value:  # noqa: A001 - as torch.sum
    """sum(values) + start, as one node."""
    return apply(SUM, (*_sequence(values, "sum"), *as_args((start,), "sum() start")))


def mean(values: Sequence[Any]) -> Value:
    """The mean of values, as one node."""
    return apply(MEAN, _sequence(values, "mean"))


def dot(a: Sequence[Any], b: Sequence[Any], start: Any = 0.0) -> Value:
    """sum(a[i] * b[i]) + start, as one node; `start` is where a neuron's bias goes."""
    if type(a) in _SEQUENCES and type(b) in _SEQUENCES and _dot_is_plain(a, b, start):
        return _dot_node(a, b, start if type(start) is Value else None)
    a, b = _sequence(a, "dot"), _sequence(b, "dot")
    if len(a) != len(b):
        raise ValueError(f"dot(): the sequences differ in length ({len(a)} and {len(b)})")
    return apply(DOT, a + b + _start(start, "dot"))


_SEQUENCES = (list, tuple)
_JUST_FLOAT = {float}
_SEQUENCE_TYPES = {list, tuple}


def _dot_node(a: Sequence[Value], b: Sequence[Value], start: Value | None) -> Value:
    """The dot node of Values a and b (+ start), unchecked: a neuron's case, the hottest node there is."""
    ad, bd = list(map(_data_of, a)), list(map(_data_of, b))
    s = 0.0 if start is None else start.data
    try:
        out = _dot_value(ad, bd, s)
    except ValueError:  # batches that do not broadcast: say which sizes
        check_batches([*ad, *bd, s], "dot()")
        raise
    if start is None:
        return node(DOT, (*a, *b), _output(out), _dot_grads(ad, bd, False))
    return node(DOT, (*a, *b, start), _output(out), _dot_grads(ad, bd, True))


def _all_values(*seqs: Sequence[Any]) -> bool:
    return set(map(type, itertools.chain.from_iterable(seqs))) == _VALUES_ONLY  # one pass in C


def _dot_is_plain(a: Sequence[Any], b: Sequence[Any], start: Any) -> bool:
    """Whether dot(a, b, start) has Values of single numbers only (start a Value or the number 0),
    of equal, nonzero length: no batch, whose NumPy arithmetic needs the general path."""
    return (
        len(a) == len(b) > 0
        and (type(start) is Value or (type(start) in (int, float) and start == 0))
        and _all_values(a, b)
        and set(map(type, map(_data_of, a))) == set(map(type, map(_data_of, b))) == _JUST_FLOAT
    )


def _start(start: Any, name: str) -> tuple[Any, ...]:
    """The optional last argument of dot: left out when it is the number 0, so the node stays all-Value."""
    if type(start) in (int, float) and start == 0:
        return ()
    return as_args((start,), f"{name}() start")


def logsumexp(values: Sequence[Any]) -> Value:
    """log(sum(exp(values))), stable for large values, as one node."""
    return apply(LOGSUMEXP, _sequence(values, "logsumexp"))


def _each_output(op: Op, xs: tuple[Any, ...], outs: list[Any], row: Callable[..., Any]) -> list[Value]:
    s = _softmax_data([_data(x) for x in xs])
    grads = is_grad_enabled()
    return [record(op, (*xs, i), out, row(s, i) if grads else ()) for i, out in enumerate(outs)]


def softmax(values: Sequence[Any]) -> list[Value]:
    """exp(x_i) / sum(exp(x)) for each i, stable; each output is one node."""
    xs = _sequence(values, "softmax")
    datas = [_data(x) for x in xs]
    check_batches(datas, "softmax()")
    return _each_output(SOFTMAX, xs, _softmax_data(datas), _softmax_row)


def log_softmax(values: Sequence[Any]) -> list[Value]:
    """x_i - logsumexp(x) for each i, stable; each output is one node."""
    xs = _sequence(values, "log_softmax")
    datas = [_data(x) for x in xs]
    check_batches(datas, "log_softmax()")
    m, s = _logsumexp_parts(datas, finite=False)
    with _quiet(*datas):
        outs = [(x - m) - s for x in datas]
    return _each_output(LOG_SOFTMAX, xs, outs, _log_softmax_row)


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


def cross_entropy(logits: Sequence[Any], target: Any) -> Value:
    """-log_softmax(logits)[target], as one node whose local gradients are softmax - onehot."""
    xs = _sequence(logits, "cross_entropy")
    datas = [_data(x) for x in xs]
    batch = check_batches(datas, "cross_entropy()")
    return apply(CROSS_ENTROPY, (*xs, _class_index(target, len(xs), batch)))


def batch_sum(v: Value) -> Value:
    """The sum over a batch's samples (a number stays as it is)."""
    return apply(BATCH_SUM, as_args((v,), "batch_sum()"))


def batch_mean(v: Value) -> Value:
    """The mean over a batch's samples (a number stays as it is)."""
    return apply(BATCH_MEAN, as_args((v,), "batch_mean()"))


# ---------------------------------------------------------------------------
# A whole layer on a batch: activation(W x + b) as one node. On single numbers
# it is one dot node per output (plus its activation), as a Neuron computes it;
# on a batch the per-input work would be one NumPy call per weight, so the
# layer becomes one node whose backward is three matrix products.
# ---------------------------------------------------------------------------

ACTIVATIONS: dict[str | None, Op | None] = {None: None, "relu": RELU, "tanh": TANH, "sigmoid": SIGMOID}


def _matrix(xs: Sequence[Any]) -> Any:
    """The inputs' data as an (inputs x batch) matrix; rows of one layer's output are reused as they are."""
    first = xs[0]
    if isinstance(first, Value) and first._op is ROW:
        layer = first._prev[0]
        rows = layer.data
        if len(xs) == len(rows) and all(
            isinstance(x, Value) and x._op is ROW and x._prev[0] is layer and x._local[0] == k
            for k, x in enumerate(xs)
        ):
            return rows
    return _stacked([_data(x) for x in xs])


def _affine_backward(node: Value, rows: list[Any]) -> None:
    # rows: each output's gradient, None for an output nothing consumed. As each neuron's own
    # node would, such an output sends nothing: no 0 * inf from its slope, inputs or weights.
    W, X, slope, kinds = node._local
    np = numpy()
    used = np.array([r is not None for r in rows])
    g = np.zeros((len(rows), X.shape[1]))
    for k in np.flatnonzero(used):
        g[k] = rows[k]
    if slope is not None:
        g = g * slope  # through the activation: d act / d z, elementwise
    if used.all():
        # d/dW = g X^T, d/db = g's row sums, d/dX = W^T g
        grads = [*(g @ X.T).ravel().tolist(), *g.sum(axis=1).tolist(), *(W.T @ g)]
    else:
        g[~used] = 0.0
        per_row = np.repeat(used, W.shape[1])
        grads = [
            *(d if u else None for d, u in zip((g @ X.T).ravel().tolist(), per_row)),
            *(d if u else None for d, u in zip(g.sum(axis=1).tolist(), used)),
            *(W[used].T @ g[used]),
        ]
    if kinds is not None:
        grads = list(itertools.compress(grads, kinds))
    for child, d in zip(node._prev, grads):
        if type(d) is float:  # a weight or bias: a single number
            child.grad += d
        elif d is not None:
            accumulate(child, d)


def _row_backward(node: Value, g: Any) -> None:
    (layer,), (k,) = node._prev, node._local
    if type(layer.grad) is float:  # the first of the layer's rows to arrive in this backward
        layer.grad = [None] * len(layer.data)
    layer.grad[k] = g  # a layer has one row node per output, so each arrives once


def _unbatched(what: str) -> Callable[..., Any]:
    def fail(*args: Any) -> Any:
        raise TypeError(f"{what} is a node of a batched layer; use affine() to make it")

    return fail


AFFINE = Op("affine", _unbatched("affine"), None, _affine_backward)
ROW = Op("row", _unbatched("row"), None, _row_backward)


def affine(
    weights: Sequence[Sequence[Any]],
    xs: Sequence[Any],
    biases: Sequence[Any] | None = None,
    activation: str | None = None,
) -> list[Value]:
    """[activation(dot(w, xs) + b) for each row w of weights, b of biases]."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"affine(): activation must be one of {list(ACTIVATIONS)}, not {activation!r}")
    act = ACTIVATIONS[activation]
    if _plain_layer(weights, xs, biases):  # single numbers and Values only: the checks are done
        bs = (None,) * len(weights) if biases is None else biases
        outs = [_dot_node(w, xs, b) for w, b in zip(weights, bs)]
        return outs if act is None else [_unary(act, o) for o in outs]
    xs = _sequence(xs, "affine")
    rows = [_sequence(w, "affine") for w in weights]
    if not rows:
        raise ValueError("affine() needs at least one row of weights")
    for k, w in enumerate(rows):
        if len(w) != len(xs):
            raise ValueError(f"affine(): weight row {k} has {len(w)} entries for {len(xs)} inputs")
    bs = (0.0,) * len(rows) if biases is None else _sequence(biases, "affine")
    if len(bs) != len(rows):
        raise ValueError(f"affine(): {len(bs)} biases for {len(rows)} rows of weights")
    datas = [_data(x) for x in xs]
    if not _is_batch(datas):
        outs = [dot(w, xs, b) for w, b in zip(rows, bs)]
        return outs if act is None else [act(o) for o in outs]
    check_batches(datas, "affine()")
    return _affine_batch(rows, xs, bs, activation)


def _plain_layer(weights: Any, xs: Any, biases: Any) -> bool:
    """Whether affine's arguments are lists of Values of single numbers, of matching lengths."""
    seqs = (list, tuple)
    if type(xs) not in seqs or type(weights) not in seqs or not weights or not xs:
        return False
    if biases is not None and (type(biases) not in seqs or len(biases) != len(weights)):
        return False
    return (
        set(map(type, weights)) <= _SEQUENCE_TYPES
        and set(map(len, weights)) == {len(xs)}
        and _all_values(xs, *weights, *(() if biases is None else (biases,)))
        and set(map(type, map(_data_of, xs))) == _JUST_FLOAT
    )


def _affine_batch(
    rows: list[tuple[Any, ...]], xs: tuple[Any, ...], bs: tuple[Any, ...], activation: str | None
) -> list[Value]:
    np = numpy()
    args = (*(w for row in rows for w in row), *bs, *xs)
    plain = set(map(type, args)) == _VALUES_ONLY
    datas = list(map(_data_of, args)) if plain else [_data(a) for a in args]
    nw = len(rows) * len(xs)
    W = np.array(datas[:nw], dtype=np.float64)
    b = np.array(datas[nw : nw + len(bs)], dtype=np.float64)
    if W.ndim != 1 or b.ndim != 1:
        raise ValueError("affine(): weights and biases must be single numbers, not batches")
    W = W.reshape(len(rows), len(xs))
    X = _matrix(xs)
    with np.errstate(all="ignore"):
        Z = W @ X + b[:, None]
        act = ACTIVATIONS[activation]
        Y = Z if act is None else act.forward(Z)
        slope = None if act is None else act.local(Z, Y)[0]
    kinds = None if plain else [isinstance(a, Value) for a in args]
    prev = args if plain else tuple(itertools.compress(args, kinds))
    layer = node(AFFINE, prev, Y, (W, X, slope, kinds))
    if not layer._prev:  # no_grad: plain rows
        return [node(ROW, (), Y[k], ()) for k in range(len(rows))]
    return [node(ROW, (layer,), Y[k], (k,)) for k in range(len(rows))]
