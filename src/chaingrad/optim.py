"""Optimizers (SGD, Adam, AdamW) that update Values from their grads, and learning-rate schedules.

The update rules are PyTorch's (`torch.optim`), written out per parameter, so
the same gradients give the same parameters. A schedule sets `opt.lr` each
time its `step()` is called, as `torch.optim.lr_scheduler` does. After
`backward(create_graph=True)` a grad is a Value: a step uses its data and
leaves the parameters plain numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Real
from typing import Any

from . import _backend
from ._backend import Value, zero_grads
from .checks import number, positive_int
from .numerics import div

__all__ = ["SGD", "Adam", "AdamW", "CosineAnnealingLR", "LRScheduler", "LinearLR", "Optimizer", "StepLR"]


def _grads(params: list[Value]) -> list[float]:
    """Each parameter's gradient as a float, every grad and data checked before a step changes anything
    (after backward(create_graph=True) a grad is a Value: the step uses its data)."""
    grads = []
    for i, p in enumerate(params):
        g = p.grad.data if isinstance(p.grad, Value) else p.grad
        grads.append(
            _float(g, f"parameter {i}'s grad", "set it with backward() (after zero_grad()), or to 0.0")
        )
        _float(p.data, f"parameter {i}'s data", "set it to a float")
    return grads


def _float(x: Any, what: str, fix: str) -> float:
    if isinstance(x, bool) or not isinstance(x, Real):
        raise TypeError(f"{what} is {type(x).__name__} {x!r:.40}, not a number: {fix}")
    try:
        return float(x)
    except OverflowError:
        raise ValueError(f"{what} {x!r:.40} is too large for a float: {fix}") from None


class Optimizer:
    """Holds the parameters and the learning rate; subclasses define `step()`."""

    def __init__(self, params: Iterable[Value], lr: float):
        if isinstance(params, Value):
            raise TypeError("params must be a list of Values (e.g. model.parameters()), not one Value")
        params = list(params)
        if not params:
            raise ValueError("the optimizer got an empty parameter list")
        for i, p in enumerate(params):
            if not isinstance(p, Value):
                raise TypeError(f"parameter {i} is {type(p).__name__} {p!r:.40}, not a Value")
            if not isinstance(p.data, Real):
                raise ValueError(f"parameter {i} holds a batch; parameters must be single numbers")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("the parameter list holds the same Value more than once")
        self.params = params
        self.lr = number(lr, "lr")
        self.steps = 0

    def zero_grad(self) -> None:
        """Set every parameter's grad to 0."""
        zero_grads(self.params)

    def step(self) -> None:
        """Update every parameter from its grad."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The hyperparameters, the step count and the per-parameter buffers, as plain Python values."""
        return {
            k: list(v) if isinstance(v, (list, tuple)) else v for k, v in vars(self).items() if k != "params"
        }


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (heavy-ball or Nesterov) and L2 weight decay."""

    def __init__(
        self,
        params: Iterable[Value],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        super().__init__(params, lr)
        self.momentum = number(momentum, "momentum", high=1.0, high_open=True)
        self.weight_decay = number(weight_decay, "weight_decay")
        if nesterov and not self.momentum:
            raise ValueError("nesterov=True needs a momentum > 0")
        self.nesterov = bool(nesterov)
        self.momentum_buffer = [0.0] * len(self.params)

    def step(self) -> None:
        """p -= lr * g, where g is the gradient (plus weight decay), through the momentum buffer if any."""
        lr, mu, wd, buf = self.lr, self.momentum, self.weight_decay, self.momentum_buffer
        if _backend.sgd_step is not None and _backend.sgd_step(
            self.params, lr, mu, wd, self.nesterov, buf, self.steps
        ):
            self.steps += 1  # the compiled core's loop, this one's twin, did it
            return
        for i, (p, g) in enumerate(zip(self.params, _grads(self.params))):
            if wd:
                g = g + wd * p.data
            if mu:
                buf[i] = mu * buf[i] + g if self.steps else g  # PyTorch starts the buffer at g
                g = g + mu * buf[i] if self.nesterov else buf[i]
            p.data -= lr * g
        self.steps += 1


class Adam(Optimizer):
    """Adam: steps by bias-corrected running means of the gradient and of its square.

    eps may be 0, as in PyTorch: then a parameter whose gradients have all been 0 becomes nan (0 / 0),
    and one whose squared gradients underflow to 0 becomes infinite, exactly as PyTorch's does."""

    _decoupled = False

    def __init__(
        self,
        params: Iterable[Value],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of numbers, got {betas!r}")
        self.betas = tuple(number(b, f"betas[{i}]", high=1.0, high_open=True) for i, b in enumerate(betas))
        self.eps = number(eps, "eps")
        self.weight_decay = number(weight_decay, "weight_decay")
        self.exp_avg = [0.0] * len(self.params)
        self.exp_avg_sq = [0.0] * len(self.params)

    def step(self) -> None:
        """m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= lr m_hat / (sqrt(v_hat) + eps)."""
        lr, wd, eps, (b1, b2), m, v = (
            self.lr,
            self.weight_decay,
            self.eps,
            self.betas,
            self.exp_avg,
            self.exp_avg_sq,
        )
        t = self.steps + 1
        step_size = lr / (1 - b1**t)
        bias_correction2_sqrt = math.sqrt(1 - b2**t)
        args = (self.params, lr, wd, eps, b1, b2, m, v, step_size, bias_correction2_sqrt, self._decoupled)
        if _backend.adam_step is not None and _backend.adam_step(*args):
            self.steps = t  # the compiled core's loop, this one's twin, did it
            return
        grads = _grads(self.params)
        self.steps = t
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if self._decoupled:
                p.data *= 1 - lr * wd
            elif wd:
                g = g + wd * p.data
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            # With eps = 0 and a zero gradient so far this is 0 / 0: nan, as in PyTorch.
            p.data -= div(step_size * m[i], math.sqrt(v[i]) / bias_correction2_sqrt + eps)


class AdamW(Adam):
    """Adam with decoupled weight decay: p *= 1 - lr * weight_decay before each Adam step."""

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Value],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ):
        super().__init__(params, lr, betas, eps, weight_decay)


# ---------------------------------------------------------------------------
# Learning-rate schedules
# ---------------------------------------------------------------------------


class LRScheduler:
    """Sets optimizer.lr to base_lr scaled by a function of the number of `step()` calls so far."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"a schedule needs a chaingrad optimizer, not {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, t: int) -> float:
        """The learning rate after t calls of `step()`."""
        raise NotImplementedError

    def step(self) -> None:
        """Advance the schedule by one and set the optimizer's lr."""
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)


class LinearLR(LRScheduler):
    """lr goes linearly from base_lr * start_factor to base_lr * end_factor over total_iters steps, then
    stays. micrograd's demo, lr = 1.0 - 0.9 * k / 100, is LinearLR(opt, 1.0, 0.1, 100) with lr=1.0."""

    def __init__(
        self, optimizer: Optimizer, start_factor: float = 1 / 3, end_factor: float = 1.0, total_iters: int = 5
    ):
        self.start_factor = number(start_factor, "start_factor", high=1.0)
        if self.start_factor == 0:
            raise ValueError("start_factor must be > 0")
        self.end_factor = number(end_factor, "end_factor", high=1.0)
        self.total_iters = positive_int(total_iters, "total_iters")
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        """base_lr * (start + (end - start) * min(t, T) / T)."""
        frac = min(t, self.total_iters) / self.total_iters
        return self.base_lr * (self.start_factor + (self.end_factor - self.start_factor) * frac)


class CosineAnnealingLR(LRScheduler):
    """lr follows half a cosine from base_lr down to eta_min over T_max steps."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        self.T_max = positive_int(T_max, "T_max")
        self.eta_min = number(eta_min, "eta_min")
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        """eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2."""
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2


class StepLR(LRScheduler):
    """lr is multiplied by gamma every step_size steps."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        self.step_size = positive_int(step_size, "step_size")
        self.gamma = number(gamma, "gamma")
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        """base_lr * gamma ** (t // step_size)."""
        try:
            factor = self.gamma ** (t // self.step_size)
        except OverflowError:  # a gamma above 1, long enough: inf, as PyTorch's lr becomes
            factor = math.inf
        return self.base_lr * factor
