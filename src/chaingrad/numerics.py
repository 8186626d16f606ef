"""IEEE-754 elementary functions for a float, a batch (a 1-D NumPy array) or a Value.

Python's `math` raises where IEEE-754 (and PyTorch) gives a number: `math.exp(1000)`
raises OverflowError, `math.log(0)` and `1.0 / 0.0` raise, `math.pow(0, -1)` raises.
Here each function returns what C and PyTorch return instead (inf, -inf, nan), so
that no op of the engine ever raises on a number. On a batch each applies
elementwise, quietly; on a Value it calls the Value's method, building a node, so
that one formula serves forward values, local gradients and higher derivatives.

This module imports nothing of chaingrad: a Value is recognised by not being a
number or an array, and asked for its method by name.
"""

from __future__ import annotations

import contextlib
import math
import sys
from numbers import Real
from typing import Any

__all__ = [
    "constant",
    "data",
    "div",
    "exp",
    "is_array",
    "is_zero",
    "log",
    "numpy",
    "power",
    "quiet",
    "relu",
    "sigmoid",
    "sign",
    "sqrt",
    "tanh",
    "where",
]

inf, nan = math.inf, math.nan


def numpy() -> Any:
    """NumPy, imported on first use, so that single numbers never need it."""
    import numpy as np

    return np


def is_array(x: Any) -> bool:
    """Whether x is a NumPy array (without importing NumPy)."""
    np = sys.modules.get("numpy")
    return np is not None and isinstance(x, np.ndarray)


def constant(x: Any) -> Any:
    """x as the engine keeps a number: a float, or a 1-D float64 array (a batch); None if x is neither."""
    if type(x) is float:
        return x
    if isinstance(x, (int, float)):  # bool, int, float subclasses, numpy.float64
        return float(x)
    np = sys.modules.get("numpy")
    if np is None or not isinstance(x, (np.ndarray, np.generic)) or x.dtype.kind not in "biuf":
        return None
    if x.ndim == 0:
        return float(x)
    if x.ndim != 1:
        raise ValueError(f"a batch must be a 1-D array (one number per sample), got shape {x.shape}")
    if len(x) == 0:
        raise ValueError("a batch must hold at least one sample, got an empty array")
    return np.array(x, dtype=float)


def not_a_number(data: Any, what: str) -> Exception:
    """The error for `what` on a Value that holds no single float: a batch, or what was assigned to .data."""
    if is_array(data):
        return ValueError(f"{what} of a batch of {len(data)} samples: reduce it first with cg.batch_mean(v)")
    kind = type(data).__name__
    return TypeError(f"{what} of a Value whose data is {kind} {data!r:.40}: set .data to a float")


def quiet() -> Any:
    """A context in which NumPy (if loaded) gives IEEE results (inf, nan) without warnings, as floats do."""
    np = sys.modules.get("numpy")
    return contextlib.nullcontext() if np is None else np.errstate(all="ignore")


def data(x: Any) -> Any:
    """The number (or batch) x holds: x itself, or a Value's data."""
    return x if isinstance(x, (int, float)) or is_array(x) else x.data


# -- one argument: the float case first, then ints, batches and Values --------


def _other(x: Any, name: str, scalar: Any, batch: Any) -> Any:
    """A one-argument function on what is not a float: a batch (quietly), a number (an int, a NumPy
    float32 ...) or a Value (its method)."""
    if is_array(x):
        with quiet():
            return batch(x)
    if isinstance(x, Real):
        return scalar(float(x))
    method = getattr(x, name, None)
    if method is None:
        raise TypeError(f"{name}() takes a number, a NumPy batch or a Value, not {type(x).__name__}")
    return method()


def exp(x: Any) -> Any:
    """e ** x; inf on overflow."""
    if type(x) is float:
        try:
            return math.exp(x)
        except OverflowError:
            return inf
    return _other(x, "exp", exp, lambda b: numpy().exp(b))


def log(x: Any) -> Any:
    """Natural logarithm; log(0) = -inf, log(x < 0) = nan."""
    if type(x) is float:
        return math.log(x) if x > 0 else -inf if x == 0 else nan
    return _other(x, "log", log, lambda b: numpy().log(b))


def tanh(x: Any) -> Any:
    """Hyperbolic tangent."""
    if type(x) is float:
        return math.tanh(x)
    return _other(x, "tanh", tanh, _batch_tanh)


def sigmoid(x: Any) -> Any:
    """1 / (1 + e ** -x), computed so that no exp overflows."""
    if type(x) is float:
        if x >= 0:
            return 1.0 / (1.0 + math.exp(-x))
        e = math.exp(x)
        return e / (1.0 + e)
    return _other(x, "sigmoid", sigmoid, _batch_sigmoid)


def relu(x: Any) -> Any:
    """max(x, 0), passing nan and -0.0 through as PyTorch does."""
    if type(x) is float:
        return 0.0 if x < 0 else x
    return _other(x, "relu", relu, lambda b: numpy().where(b < 0, 0.0, b))


def sqrt(x: Any) -> Any:
    """Square root; sqrt(x < 0) = nan."""
    if type(x) is float:
        return math.sqrt(x) if x >= 0 else nan
    return _other(x, "sqrt", sqrt, lambda b: numpy().sqrt(b))


def _batch_tanh(x: Any) -> Any:
    # math's tanh on each sample: NumPy's own tanh differs from it in the last bit for about a quarter
    # of inputs, and a batch must give what its samples give one at a time
    b = numpy().asarray(x, dtype=float)
    return numpy().fromiter(map(math.tanh, b.ravel()), float, b.size).reshape(b.shape)


def _batch_sigmoid(x: Any) -> Any:
    np = numpy()
    e = np.exp(-np.abs(x))  # <= 1, so no overflow on either side
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# -- two arguments ---------------------------------------------------------------


def _other2(x: Any, y: Any, scalar: Any, batch: Any, value: Any) -> Any:
    """A two-argument function on what are not two floats: numbers, batches, or a Value (its operator)."""
    x_number, y_number = isinstance(x, (int, float)), isinstance(y, (int, float))
    if x_number and y_number:
        return scalar(float(x), float(y))
    if (x_number or is_array(x)) and (y_number or is_array(y)):
        with quiet():
            return batch(x, y)
    return value(x, y)


def div(x: Any, y: Any) -> Any:
    """x / y with IEEE-754 division by zero (+-inf, or nan for 0 / 0)."""
    if type(x) is float and type(y) is float:
        try:
            return x / y
        except ZeroDivisionError:
            if x != x or x == 0:
                return nan
            return math.copysign(inf, x) * math.copysign(1.0, y)
    return _other2(x, y, div, lambda a, b: numpy().divide(a, b), lambda a, b: a / b)


def power(x: Any, y: Any) -> Any:
    """x ** y as C's pow: 0 ** -1 = inf, (-8) ** (1/3) = nan, overflow = inf."""
    if type(x) is float and type(y) is float:
        try:
            return math.pow(x, y)
        except OverflowError:
            return -inf if x < 0 and _odd_integer(y) else inf
        except ValueError:
            if x == 0:  # a negative power of zero
                return math.copysign(inf, x) if _odd_integer(y) else inf
            return nan  # a negative base to a non-integer power
    return _other2(x, y, power, _batch_power, lambda a, b: a**b)


def _odd_integer(y: float) -> bool:
    return y.is_integer() and y % 2 == 1


def _batch_power(x: Any, y: Any) -> Any:
    # NumPy's power differs from C's pow (and PyTorch) in two corners, fixed here: (-inf) ** y with y not an
    # integer is nan in NumPy, +-inf for y > 0 and +-0 for y < 0 in C; (-0.0) ** y with y > 0 not an odd
    # integer is -0.0 in NumPy (x ** 0.5 is taken as sqrt(x)), +0.0 in C.
    np = numpy()
    x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    out = np.power(x, y)
    odd = (np.mod(y, 2) == 1) & (np.floor(y) == y)
    fix = np.isneginf(x) & (y != 0) & ~np.isnan(y)
    out = np.where(fix, np.where(y > 0, np.where(odd, -inf, inf), np.where(odd, -0.0, 0.0)), out)
    return np.where((x == 0) & (y > 0) & ~odd, 0.0, out)


# -- for the rules and local gradients of the op table ---------------------------


def sign(x: Any) -> Any:
    """1, -1 or 0 (also at nan), as PyTorch's sgn; a constant even for a Value (its derivative is 0)."""
    x = data(x)
    if is_array(x):
        return (x > 0) * 1.0 - (x < 0)
    return 1.0 if x > 0 else -1.0 if x < 0 else 0.0


def is_zero(x: Any) -> Any:
    """Whether x (a number, a batch elementwise, or a Value's data) is 0."""
    return data(x) == 0


def where(condition: Any, a: Any, b: Any) -> Any:
    """a where condition holds, else b: elementwise on batches, and no 0 * inf anywhere."""
    if is_array(condition) or is_array(a) or is_array(b):
        with quiet():
            return numpy().where(condition, a, b)
    return a if condition else b
