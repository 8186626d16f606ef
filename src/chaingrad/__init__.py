"""chaingrad: a scalar reverse-mode autodiff engine and a small neural-network library.

    >>> import chaingrad as cg
    >>> x = cg.Value(2.0)
    >>> y = (x * 3 + 1).tanh()
    >>> y.backward()

`cg.engine` is the reference engine, the file to read; `cg.backend` says which engine runs.
`cg.nn` is loaded with chaingrad; `cg.optim`, `cg.losses`, `cg.data` and `cg.viz` on first use.
"""

from . import engine  # noqa: F401 - cg.engine, the reference engine
from . import pickling as _pickling  # noqa: F401 - registers how Values pickle
from ._backend import Op, Value, backend
from .autodiff import grad, gradients, hessian, hvp, value_and_grad
from .compiler import compile
from .fused import batch_mean, batch_sum, cross_entropy, dot, log_softmax, logsumexp, mean, softmax, sum
from .gradcheck import GradcheckError, gradcheck
from .layers import affine
from .modes import AnomalyError, detect_anomaly, enable_grad, is_grad_enabled, no_grad
from .nn import manual_seed
from .numerics import cos, exp, log, relu, sigmoid, sin, sqrt, tanh

__version__ = "0.1.0"

__all__ = [
    "AnomalyError",
    "GradcheckError",
    "Op",
    "Value",
    "affine",
    "backend",
    "batch_mean",
    "batch_sum",
    "compile",
    "cos",
    "cross_entropy",
    "detect_anomaly",
    "dot",
    "enable_grad",
    "exp",
    "grad",
    "gradcheck",
    "gradients",
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
    "sin",
    "softmax",
    "sqrt",
    "sum",
    "tanh",
    "value_and_grad",
]

_SUBMODULES = ("nn", "optim", "losses", "data", "viz", "autodiff", "cli", "grader")


def __getattr__(name: str) -> object:
    if name == "check":  # cg.check(Value): grade a learner's own engine (chaingrad.grader)
        from .grader import check

        return check
    if name in _SUBMODULES:
        from importlib import import_module

        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'chaingrad' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *_SUBMODULES, "__version__"})
