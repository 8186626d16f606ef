"""chaingrad: a scalar reverse-mode autodiff engine and a small neural-network library.

    >>> import chaingrad as cg
    >>> x = cg.Value(2.0)
    >>> y = (x * 3 + 1).tanh()
    >>> y.backward()

`cg.nn`, `cg.optim`, `cg.losses`, `cg.data` and `cg.viz` load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .autodiff import grad, hessian, hvp, value_and_grad
from .engine import AnomalyError, Value, detect_anomaly, enable_grad, is_grad_enabled, no_grad
from .gradcheck import GradcheckError, gradcheck
from .nn import manual_seed
from .ops import (
    Op,
    affine,
    batch_mean,
    batch_sum,
    cross_entropy,
    dot,
    exp,
    log,
    log_softmax,
    logsumexp,
    mean,
    relu,
    sigmoid,
    softmax,
    sqrt,
    sum,
    tanh,
)

__version__ = "0.1.0"

__all__ = [
    "AnomalyError",
    "GradcheckError",
    "Op",
    "Value",
    "affine",
    "batch_mean",
    "batch_sum",
    "cross_entropy",
    "detect_anomaly",
    "dot",
    "enable_grad",
    "exp",
    "grad",
    "gradcheck",
    "hessian",
    "hvp",
    "is_grad_enabled",
    "log",
    "log_softmax",
    "logsumexp",
    "manual_seed",
    "mean",
    "no_grad",
    "relu",
    "sigmoid",
    "softmax",
    "sqrt",
    "sum",
    "tanh",
    "value_and_grad",
]

_SUBMODULES = {"nn", "optim", "losses", "data", "viz", "autodiff", "cli"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'chaingrad' has no attribute {name!r}")
