"""Optimizers (SGD, Adam, AdamW) that update Values from their grads, and learning-rate schedules.

The update rules are PyTorch's (`torch.optim`), written out per parameter, so
the same gradients give the same parameters. A schedule sets `opt.lr` each
time its `step()` is called, as `torch.optim.lr_scheduler` does. After
`backward(create_graph=True)` a grad is a Value: a step uses its data and
leaves the parameters plain numbers.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping
from numbers import Complex, Real
from typing import Any

from . import _backend
from ._backend import Value, zero_grads
from .checks import number, positive_int
from .numerics import div

__all__ = ["SGD", "Adam", "AdamW", "CosineAnnealingLR", "LRScheduler", "LinearLR", "Optimizer", "StepLR"]


def _grads(params: list[Value]) -> list[float | None]:
    """Each parameter's gradient as a float (None where the grad is None: that parameter is skipped, as
    torch.optim skips it), every grad and data checked before a step changes anything (after
    backward(create_graph=True) a grad is a Value: the step uses its data)."""
    grads: list[float | None] = []
    for i, p in enumerate(params):
        g = p.grad.data if isinstance(p.grad, Value) else p.grad
        if g is None:
            grads.append(None)
            continue
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


def _setting(x: Any, name: str, high: float = math.inf, high_open: bool = False) -> float:
    """A hyperparameter as a Python float, or a clear error: a Value, an array, a complex number, a bool
    or a str is refused (a Value would make every update a graph node; an array a batch)."""
    if isinstance(x, Value):
        raise TypeError(f"{name} must be a number, not a Value: give {name}.item() (or .data), the float")
    if getattr(x, "shape", ()) != ():
        raise TypeError(f"{name} must be one number, not an array of shape {x.shape}")
    if isinstance(x, complex) or (not isinstance(x, Real) and isinstance(x, Complex)):
        raise TypeError(f"{name} must be a real number, not the complex {x!r:.40}")
    return number(x, name, high=high, high_open=high_open)


def _validated(name: str, doc: str, high: float = math.inf, high_open: bool = False) -> property:
    """A hyperparameter attribute checked by `_setting` whenever it is set, in __init__ or later."""
    attr = "_" + name

    def get(self: Any) -> float:
        return getattr(self, attr)

    def set_(self: Any, x: Any) -> None:
        setattr(self, attr, _setting(x, name, high, high_open))

    return property(get, set_, doc=doc)


def _is_module(params: Any) -> bool:
    return callable(getattr(params, "parameters", None)) and not isinstance(params, (list, tuple))


def _zeros(n: int) -> array:
    """A per-parameter buffer: n doubles, 0.0 each (an array, which the compiled core updates in place)."""
    return array("d", bytes(8 * n))


class Optimizer:
    """Holds the parameters and the learning rate; subclasses define `step()`.

    A parameter whose grad is None is skipped by `step()` (its data and its buffers stay as they
    are), as torch.optim skips it. The settings (lr, momentum, betas, eps, weight_decay) are checked
    whenever they are set, so `opt.lr = 0.01` after construction is checked as the constructor's is.
    """

    lr = _validated("lr", "The learning rate: a float >= 0, checked whenever it is set.")
    _buffers: tuple[str, ...] = ()  # the names of the per-parameter buffers (array('d')) state_dict() holds

    def __init__(self, params: Iterable[Value], lr: float):
        if isinstance(params, Value):
            raise TypeError("params must be a list of Values (e.g. model.parameters()), not one Value")
        if _is_module(params):
            raise TypeError(
                f"an optimizer takes the parameters, not the {type(params).__name__} itself: "
                f"pass model.parameters(), e.g. {type(self).__name__}(model.parameters(), lr=...)"
            )
        try:
            params = list(params)
        except TypeError:
            raise TypeError(
                f"params must be a list of Values (e.g. model.parameters()), not {type(params).__name__}"
            ) from None
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
        self.lr = lr
        self.steps = 0
        # How many steps each parameter has taken, kept only once a parameter has been skipped (its grad
        # None); until then every parameter has taken `steps` steps.
        self.param_steps: list[int] | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, also an optimizer pickled before the settings were checked properties."""
        for name in ("lr", "momentum", "weight_decay", "eps", "betas"):
            if name in state:
                state["_" + name] = state.pop(name)
        state.setdefault("param_steps", None)
        self.__dict__.update(state)

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Set every parameter's grad to 0, or to None with set_to_none=True (then the next `step()`
        skips the parameters that no backward() has reached). PyTorch's default is True; chaingrad's is
        False, as micrograd's zero_grad sets 0."""
        if set_to_none:
            for p in self.params:
                p.grad = None
        else:
            zero_grads(self.params)

    def step(self) -> None:
        """Update every parameter from its grad."""
        raise NotImplementedError

    def _own_steps(self, grads: list[float | None]) -> list[int]:
        """How many steps each parameter had taken before this one, once some are skipped."""
        if self.param_steps is None and None in grads:
            self.param_steps = [self.steps] * len(self.params)
        return self.param_steps if self.param_steps is not None else [self.steps] * len(self.params)

    def _settings(self) -> dict[str, Any]:
        return {"lr": self.lr}

    def state_dict(self) -> dict[str, Any]:
        """The settings, the step count and the per-parameter buffers, as plain Python values (JSON and
        pickle take them); `load_state_dict` of a fresh optimizer on the same parameters resumes."""
        out = self._settings()
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
        out["steps"] = self.steps
        out["param_steps"] = None if self.param_steps is None else list(self.param_steps)
        out |= {name: list(getattr(self, name)) for name in self._buffers}
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from `state_dict()`'s dict (read back from JSON or pickle): settings, step count and
        buffers. Everything is checked before anything is set; a bad dict changes nothing."""
        if not isinstance(state, Mapping):
            raise TypeError(f"an optimizer state dict is a dict, not {type(state).__name__}")
        mine = self.state_dict()
        state = {"param_steps": None, **state}  # a dict saved before chaingrad kept per-parameter steps
        missing, extra = mine.keys() - state.keys(), state.keys() - mine.keys()
        if missing or extra:
            parts = [
                f"missing {sorted(missing)}" if missing else "",
                f"extra {sorted(extra)}" if extra else "",
            ]
            raise KeyError(
                f"state dict does not fit this {type(self).__name__}: " + "; ".join(filter(None, parts))
            )
        n = len(self.params)
        steps = state["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"state dict entry 'steps' must be an int >= 0, got {steps!r:.40}")
        param_steps = state["param_steps"]
        if param_steps is not None:
            if not isinstance(param_steps, (list, tuple)) or len(param_steps) != n:
                raise ValueError(f"state dict entry 'param_steps' must be None or a list of {n} ints")
            for k in param_steps:
                if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= steps:
                    raise ValueError(
                        f"state dict entry 'param_steps' holds {k!r:.40}, not an int in 0..{steps}"
                    )
            param_steps = list(param_steps)
        buffers = {}
        for name in self._buffers:
            entry = state[name]
            if not isinstance(entry, (list, tuple)) or len(entry) != n:
                got = f"{len(entry)} numbers" if isinstance(entry, (list, tuple)) else type(entry).__name__
                raise ValueError(
                    f"state dict entry {name!r}: expected a list of {n} numbers (one per parameter), got "
                    f"{got}; was it saved from an optimizer on other parameters?"
                )
            buffers[name] = [
                _float(x, f"state dict entry {name!r}", "save it with state_dict()") for x in entry
            ]
        trial = object.__new__(type(self))  # the settings checked by the properties, on a scratch object
        settings = {k: state[k] for k in self._settings()}
        for k, v in settings.items():
            setattr(trial, k, tuple(v) if k == "betas" and isinstance(v, list) else v)
        self._check_settings(trial)
        for k in settings:
            setattr(self, k, getattr(trial, k))
        self.steps, self.param_steps = steps, param_steps
        for name, values in buffers.items():
            getattr(self, name)[:] = array("d", values)

    def _check_settings(self, trial: Any) -> None:
        """Checks between settings (nesterov needs momentum), on an object holding them."""


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (heavy-ball or Nesterov) and L2 weight decay."""

    momentum = _validated("momentum", "The momentum: a float in [0, 1).", high=1.0, high_open=True)
    weight_decay = _validated("weight_decay", "L2 weight decay: a float >= 0, added to the gradient.")
    _buffers = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Value],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        super().__init__(params, lr)
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.nesterov = bool(nesterov)
        self._check_settings(self)
        self.momentum_buffer = _zeros(len(self.params))

    def _check_settings(self, trial: Any) -> None:
        if not isinstance(trial.nesterov, bool):
            raise TypeError(f"nesterov must be True or False, not {trial.nesterov!r:.40}")
        if trial.nesterov and not trial.momentum:
            raise ValueError("nesterov=True needs a momentum > 0")

    def _settings(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "nesterov": self.nesterov,
        }

    def step(self) -> None:
        """p -= lr * g, where g is the gradient (plus weight decay), through the momentum buffer if any.
        A parameter whose grad is None is skipped."""
        lr, mu, wd, buf = self.lr, self.momentum, self.weight_decay, self.momentum_buffer
        if self.nesterov and not mu:
            raise ValueError("nesterov=True needs a momentum > 0; the momentum was set to 0")
        if (
            self.param_steps is None
            and _backend.sgd_step(
                params=self.params,
                lr=lr,
                momentum=mu,
                weight_decay=wd,
                nesterov=self.nesterov,
                buffers=buf,
                steps=self.steps,
            )
            is not NotImplemented
        ):
            self.steps += 1  # the compiled core's loop, this one's twin, did it
            return
        grads = _grads(self.params)
        own = self._own_steps(grads)
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if g is None:
                continue
            if wd:
                g = g + wd * p.data
            if mu:
                buf[i] = mu * buf[i] + g if own[i] else g  # PyTorch starts the buffer at g
                g = g + mu * buf[i] if self.nesterov else buf[i]
            p.data -= lr * g
            if self.param_steps is not None:
                self.param_steps[i] += 1
        self.steps += 1


class Adam(Optimizer):
    """Adam: steps by bias-corrected running means of the gradient and of its square.

    eps may be 0, as in PyTorch: then a parameter whose gradients have all been 0 becomes nan (0 / 0),
    and one whose squared gradients underflow to 0 becomes infinite, exactly as PyTorch's does."""

    _decoupled = False
    eps = _validated("eps", "Added to the denominator: a float >= 0.")
    weight_decay = _validated("weight_decay", "Weight decay: a float >= 0.")
    _buffers = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Value],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, lr)
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.exp_avg = _zeros(len(self.params))
        self.exp_avg_sq = _zeros(len(self.params))

    @property
    def betas(self) -> tuple[float, float]:
        """(beta1, beta2), each a float in [0, 1), checked whenever set."""
        return self._betas

    @betas.setter
    def betas(self, betas: Any) -> None:
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of numbers, got {betas!r:.60}")
        b1, b2 = (_setting(b, f"betas[{i}]", high=1.0, high_open=True) for i, b in enumerate(betas))
        self._betas = (b1, b2)

    def _settings(self) -> dict[str, Any]:
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay}

    def step(self) -> None:
        """m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= lr m_hat / (sqrt(v_hat) + eps).
        A parameter whose grad is None is skipped; its bias corrections count its own steps."""
        lr, wd, eps, (b1, b2), m, v = (
            self.lr,
            self.weight_decay,
            self.eps,
            self.betas,
            self.exp_avg,
            self.exp_avg_sq,
        )
        t = self.steps + 1
        if self.param_steps is None:
            step_size = lr / (1 - b1**t)
            bias_correction2_sqrt = math.sqrt(1 - b2**t)
            done = _backend.adam_step(
                params=self.params,
                lr=lr,
                weight_decay=wd,
                eps=eps,
                beta1=b1,
                beta2=b2,
                exp_avg=m,
                exp_avg_sq=v,
                step_size=step_size,
                bias_correction2_sqrt=bias_correction2_sqrt,
                decoupled=self._decoupled,
            )
            if done is not NotImplemented:
                self.steps = t  # the compiled core's loop, this one's twin, did it
                return
        grads = _grads(self.params)
        own = self._own_steps(grads)
        corrections: dict[int, tuple[float, float]] = {}  # per step count: step_size, sqrt(1 - b2^t)
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if g is None:
                continue
            ti = own[i] + 1
            if ti not in corrections:
                corrections[ti] = (lr / (1 - b1**ti), math.sqrt(1 - b2**ti))
            step_size, bias_correction2_sqrt = corrections[ti]
            if self._decoupled:
                p.data *= 1 - lr * wd
            elif wd:
                g = g + wd * p.data
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            # With eps = 0 and a zero gradient so far this is 0 / 0: nan, as in PyTorch.
            p.data -= div(step_size * m[i], math.sqrt(v[i]) / bias_correction2_sqrt + eps)
            if self.param_steps is not None:
                self.param_steps[i] += 1
        self.steps = t


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

    def state_dict(self) -> dict[str, Any]:
        """The schedule's settings, base_lr and the number of steps so far, as plain Python values."""
        return {k: v for k, v in vars(self).items() if k != "optimizer"}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from `state_dict()`'s dict: the schedule continues where it was saved, and the
        optimizer's lr is set to the schedule's lr there. Checked first; a bad dict changes nothing."""
        if not isinstance(state, Mapping):
            raise TypeError(f"a schedule's state dict is a dict, not {type(state).__name__}")
        mine = self.state_dict()
        if mine.keys() != state.keys():
            missing, extra = sorted(mine.keys() - state.keys()), sorted(state.keys() - mine.keys())
            raise KeyError(
                f"state dict does not fit this {type(self).__name__}: missing {missing}, extra {extra}"
            )
        epoch = state["last_epoch"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"state dict entry 'last_epoch' must be an int >= 0, got {epoch!r:.40}")
        trial = object.__new__(type(self))  # rebuilt through the constructor's checks on a scratch copy
        settings = {k: v for k, v in state.items() if k not in ("base_lr", "last_epoch")}
        trial.__dict__.update(self._checked(settings))
        trial.base_lr = _setting(state["base_lr"], "base_lr")
        trial.last_epoch = epoch
        lr = _setting(trial.lr_at(epoch), "lr")
        vars(self).update({k: v for k, v in vars(trial).items()})
        self.optimizer.lr = lr

    def _checked(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The schedule's own settings, checked as the constructor checks them."""
        return settings


class LinearLR(LRScheduler):
    """lr goes linearly from base_lr * start_factor to base_lr * end_factor over total_iters steps, then
    stays. micrograd's demo, lr = 1.0 - 0.9 * k / 100, is LinearLR(opt, 1.0, 0.1, 100) with lr=1.0."""

    def __init__(
        self, optimizer: Optimizer, start_factor: float = 1 / 3, end_factor: float = 1.0, total_iters: int = 5
    ):
        given = {"start_factor": start_factor, "end_factor": end_factor, "total_iters": total_iters}
        vars(self).update(self._checked(given))
        super().__init__(optimizer)

    def _checked(self, settings: dict[str, Any]) -> dict[str, Any]:
        start = number(settings["start_factor"], "start_factor", high=1.0)
        if start == 0:
            raise ValueError("start_factor must be > 0")
        return {
            "start_factor": start,
            "end_factor": number(settings["end_factor"], "end_factor", high=1.0),
            "total_iters": positive_int(settings["total_iters"], "total_iters"),
        }

    def lr_at(self, t: int) -> float:
        """base_lr * (start + (end - start) * min(t, T) / T)."""
        frac = min(t, self.total_iters) / self.total_iters
        return self.base_lr * (self.start_factor + (self.end_factor - self.start_factor) * frac)


class CosineAnnealingLR(LRScheduler):
    """lr follows half a cosine from base_lr down to eta_min over T_max steps."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        vars(self).update(self._checked({"T_max": T_max, "eta_min": eta_min}))
        super().__init__(optimizer)

    def _checked(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {
            "T_max": positive_int(settings["T_max"], "T_max"),
            "eta_min": number(settings["eta_min"], "eta_min"),
        }

    def lr_at(self, t: int) -> float:
        """eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2."""
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2


class StepLR(LRScheduler):
    """lr is multiplied by gamma every step_size steps."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        vars(self).update(self._checked({"step_size": step_size, "gamma": gamma}))
        super().__init__(optimizer)

    def _checked(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {
            "step_size": positive_int(settings["step_size"], "step_size"),
            "gamma": number(settings["gamma"], "gamma"),
        }

    def lr_at(self, t: int) -> float:
        """base_lr * gamma ** (t // step_size)."""
        try:
            factor = self.gamma ** (t // self.step_size)
        except OverflowError:  # a gamma above 1, long enough: inf, as PyTorch's lr becomes
            factor = math.inf
        return self.base_lr * factor
