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
from collections.abc import Callable
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


def quiet() -> Any:
    """A context in which NumPy (if loaded) gives IEEE results (inf, nan) without warnings, as floats do."""
    np = sys.modules.get("numpy")
    return contextlib.nullcontext() if np is None else np.errstate(all="ignore")


def _quiet(batch: Callable[..., Any], *args: Any) -> Any:
    with numpy().errstate(all="ignore"):  # IEEE results (inf, nan), as for floats, without warnings
        return batch(*args)


def _elementwise(name: str, scalar: Callable[[float], float], batch: Callable[[Any], Any]) -> Callable:
    """The function `name` on a float (scalar), an int, a batch (batch, quietly) or a Value (its method)."""

    def f(x: Any) -> Any:
        if type(x) is float:
            return scalar(x)
        if isinstance(x, (int, float)):
            return scalar(float(x))
        if is_array(x):
            return _quiet(batch, x)
        method = getattr(x, name, None)
        if method is None:
            raise TypeError(f"{name}() takes a number, a NumPy batch or a Value, not {type(x).__name__}")
        return method()

    f.__name__ = name
    return f


def _binary(name: str, scalar: Callable[[float, float], float], batch: Callable, value: Callable) -> Callable:
    """The two-argument function `name` on floats, ints, batches, or Values (through the operator `value`)."""

    def f(x: Any, y: Any) -> Any:
        if type(x) is float and type(y) is float:
            return scalar(x, y)
        x_number, y_number = isinstance(x, (int, float)), isinstance(y, (int, float))
        if x_number and y_number:
            return scalar(float(x), float(y))
        if (x_number or is_array(x)) and (y_number or is_array(y)):
            return _quiet(batch, x, y)
        return value(x, y)  # a Value on either side

    f.__name__ = name
    return f


# -- floats -----------------------------------------------------------------


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return inf


def _log(x: float) -> float:
    if x > 0:
        return math.log(x)
    return -inf if x == 0 else nan


def _sigmoid(x: float) -> float:
    # 1 / (1 + e^-x) for x >= 0; e^x / (1 + e^x) below, so that no exp overflows
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _relu(x: float) -> float:
    return 0.0 if x < 0 else x  # as PyTorch: relu(-0.0) = -0.0, relu(nan) = nan


def _sqrt(x: float) -> float:
    return math.sqrt(x) if x >= 0 else nan


def _sign(x: float) -> float:
    return 1.0 if x > 0 else -1.0 if x < 0 else 0.0  # as PyTorch's sgn: 0 at 0 and at nan


def _div(x: float, y: float) -> float:
    try:
        return x / y
    except ZeroDivisionError:  # IEEE-754: +-inf, or nan for 0 / 0 and nan / 0
        if x != x or x == 0:
            return nan
        return math.copysign(inf, x) * math.copysign(1.0, y)


def _odd_integer(y: float) -> bool:
    return y.is_integer() and y % 2 == 1


def _power(x: float, y: float) -> float:
    # C's pow: 0 ** -1 = inf, (-8) ** (1/3) = nan, overflow = inf
    try:
        return math.pow(x, y)
    except OverflowError:
        return -inf if x < 0 and _odd_integer(y) else inf
    except ValueError:
        if x == 0:  # a negative power of zero
            return math.copysign(inf, x) if _odd_integer(y) else inf
        return nan  # a negative base to a non-integer power


# -- batches ----------------------------------------------------------------


def _batch_sigmoid(x: Any) -> Any:
    np = numpy()
    e = np.exp(-np.abs(x))  # <= 1, so no overflow on either side
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _batch_power(x: Any, y: Any) -> Any:
    np = numpy()
    x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    out = np.power(
        x, y
    )  # an array exponent: NumPy's x ** 0.5 = sqrt(x) shortcut would give (-0.0) ** 0.5 = -0.0
    # NumPy gives nan for (-inf) ** y with y not an integer; C's pow gives +-inf for y > 0, +-0 for y < 0
    fix = np.isneginf(x) & (y != 0) & ~np.isnan(y)
    if fix.any():
        odd = (np.mod(y, 2) == 1) & (np.floor(y) == y)
        out = np.where(fix, np.where(y > 0, np.where(odd, -inf, inf), np.where(odd, -0.0, 0.0)), out)
    return out


def _batch_sign(x: Any) -> Any:
    return (x > 0) * 1.0 - (x < 0)


# -- the functions ----------------------------------------------------------


def _np(name: str) -> Callable[..., Any]:
    return lambda *args: getattr(numpy(), name)(*args)


exp = _elementwise("exp", _exp, _np("exp"))
log = _elementwise("log", _log, _np("log"))
tanh = _elementwise("tanh", math.tanh, _np("tanh"))
sigmoid = _elementwise("sigmoid", _sigmoid, _batch_sigmoid)
relu = _elementwise("relu", _relu, lambda x: numpy().where(x < 0, 0.0, x))
sqrt = _elementwise("sqrt", _sqrt, _np("sqrt"))
div = _binary("div", _div, _np("divide"), lambda x, y: x / y)
power = _binary("power", _power, _batch_power, lambda x, y: x**y)

exp.__doc__ = "e ** x; inf on overflow."
log.__doc__ = "Natural logarithm; log(0) = -inf, log(x < 0) = nan."
tanh.__doc__ = "Hyperbolic tangent."
sigmoid.__doc__ = "1 / (1 + e ** -x), computed so that no exp overflows."
relu.__doc__ = "max(x, 0), passing nan and -0.0 through as PyTorch does."
sqrt.__doc__ = "Square root; sqrt(x < 0) = nan."
div.__doc__ = "x / y with IEEE-754 division by zero (+-inf, or nan for 0 / 0)."
power.__doc__ = "x ** y as C's pow: 0 ** -1 = inf, (-8) ** (1/3) = nan, overflow = inf."


def data(x: Any) -> Any:
    """The number (or batch) x holds: x itself, or a Value's data."""
    return x if isinstance(x, (int, float)) or is_array(x) else x.data


def sign(x: Any) -> Any:
    """1, -1 or 0 (also at nan), as PyTorch's sgn; a constant even for a Value (its derivative is 0)."""
    x = data(x)
    return _sign(x) if type(x) is float else _batch_sign(x) if is_array(x) else _sign(float(x))


def is_zero(x: Any) -> Any:
    """Whether x (a number, a batch elementwise, or a Value's data) is 0."""
    return data(x) == 0


def where(condition: Any, a: Any, b: Any) -> Any:
    """a where condition holds, else b: elementwise on a batch of conditions, and no 0 * inf anywhere."""
    if is_array(condition) or is_array(a) or is_array(b):
        return _quiet(lambda: numpy().where(condition, a, b))
    return a if condition else b
