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
    "ACTIVATIONS",
    "constant",
    "cos",
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
    "sin",
    "sqrt",
    "tanh",
    "where",
]

inf, nan = math.inf, math.nan

# The activations a layer may apply (None: none), named in this one place: each is a function of this
# module and the Value method and op of its name. layers, nn and torch_twins read it here, the compiled
# core through _backend's interface; this module is the lowest all of them import.
ACTIVATIONS = ("relu", "tanh", "sigmoid", None)


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


def _other(x: Any, name: str, scalar: Any, batch: Any = None) -> Any:
    """A one-argument function on what is not a float: a batch (quietly: the float function on each
    sample, or `batch` where NumPy's is exact), a number (an int, a NumPy float32 ...) or a Value (its
    method)."""
    if is_array(x):
        with quiet():
            return batch(x) if batch is not None else _each(scalar, x)
    if isinstance(x, Real):
        return scalar(float(x))
    method = getattr(x, name, None)
    if method is None:
        raise TypeError(f"{name}() takes a number, a NumPy batch or a Value, not {type(x).__name__}")
    return method()


def _each(f: Any, *batches: Any) -> Any:
    """f on each sample of the batches (broadcast together): the very function a single number gets, so
    that a batch gives, bit for bit, what its samples give alone. (NumPy's own exp, log, tanh and power
    differ from C's in the last bit for some inputs.)"""
    np = numpy()
    arrays = np.broadcast_arrays(*(np.asarray(b, dtype=float) for b in batches))
    columns = [a.ravel().tolist() for a in arrays]
    return np.fromiter(map(f, *columns), float, arrays[0].size).reshape(arrays[0].shape)


def exp(x: Any) -> Any:
    """e ** x; inf on overflow."""
    if type(x) is float:
        try:
            return math.exp(x)
        except OverflowError:
            return inf
    return _other(x, "exp", exp)


def log(x: Any) -> Any:
    """Natural logarithm; log(0) = -inf, log(x < 0) = nan."""
    if type(x) is float:
        return math.log(x) if x > 0 else -inf if x == 0 else nan
    return _other(x, "log", log)


def tanh(x: Any) -> Any:
    """Hyperbolic tangent."""
    if type(x) is float:
        return math.tanh(x)
    return _other(x, "tanh", tanh)


def sigmoid(x: Any) -> Any:
    """1 / (1 + e ** -x), computed so that no exp overflows."""
    if type(x) is float:
        if x >= 0:
            return 1.0 / (1.0 + math.exp(-x))
        e = math.exp(x)
        return e / (1.0 + e)
    return _other(x, "sigmoid", sigmoid)


def sin(x: Any) -> Any:
    """The sine (of radians); sin(+-inf) = nan."""
    if type(x) is float:
        return math.sin(x) if x - x == 0 or x != x else nan  # math.sin raises at an infinity
    return _other(x, "sin", sin)


def cos(x: Any) -> Any:
    """The cosine (of radians); cos(+-inf) = nan."""
    if type(x) is float:
        return math.cos(x) if x - x == 0 or x != x else nan
    return _other(x, "cos", cos)


def relu(x: Any) -> Any:
    """max(x, 0), passing nan and -0.0 through as PyTorch does."""
    if type(x) is float:
        return 0.0 if x < 0 else x
    return _other(x, "relu", relu, lambda b: numpy().where(b < 0, 0.0, b))  # a choice, exact


def sqrt(x: Any) -> Any:
    """Square root; sqrt(x < 0) = nan."""
    if type(x) is float:
        return math.sqrt(x) if x >= 0 else nan
    return _other(x, "sqrt", sqrt, lambda b: numpy().sqrt(b))  # IEEE-754 rounds it exactly, as C's


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
    return _other2(x, y, power, lambda a, b: _each(power, a, b), lambda a, b: a**b)


def _odd_integer(y: float) -> bool:
    return y.is_integer() and y % 2 == 1


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
