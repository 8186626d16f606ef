"""Neural networks built from Values: neurons, layers, MLPs, and the blocks of a tiny GPT.

A module's parameters are the Values it holds in its attributes, directly, in
lists, or inside sub-modules, found in attribute order; so `parameters()` runs
layer by layer, neuron by neuron, each neuron's weights then its bias, as in
micrograd. Forward code only combines Values, so the same module runs one
sample (float data) or a batch (1-D NumPy data, see `chaingrad.data.columns`).
"""

from __future__ import annotations

import itertools
import math
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from numbers import Integral, Real
from typing import Any, TypeVar

from . import serialization
from ._backend import Value, zero_grads
from .checks import number, positive_int
from .compiler import compile  # noqa: A004 - cg.compile, as torch.compile
from .fused import cross_entropy, dot, mean, softmax
from .layers import affine, affine_layers
from .memory import check_fits
from .modes import no_grad
from .numerics import ACTIVATIONS
from .sampling import generate_length
from .serialization import FORMAT_VERSION, MAX_FILE_BYTES

__all__ = [
    "FORMAT_VERSION",
    "GPT",
    "MAX_FILE_BYTES",
    "MLP",
    "Block",
    "CausalSelfAttention",
    "Embedding",
    "Layer",
    "Linear",
    "Module",
    "Neuron",
    "Outputs",
    "RMSNorm",
    "manual_seed",
]

# Modules made without `seed=` draw their weights from Python's own `random`, in micrograd's order, so
# that random.seed(1337) and then MLP(2, [16, 16, 1]) give micrograd's very weights.
_rng: Any = random


def manual_seed(seed: int) -> None:
    """Seed the generator that initialises modules created without `seed=`: Python's `random`."""
    _rng.seed(seed)


def _generator(seed: int | random.Random | None) -> Any:
    if seed is None or seed is _rng:
        return _rng
    if isinstance(seed, random.Random):
        return seed
    if isinstance(seed, Integral) and not isinstance(seed, bool):
        return random.Random(int(seed))  # a NumPy integer seeds as the int it holds
    raise TypeError(f"seed must be an int, a random.Random or None, not {type(seed).__name__}")


# The activations are the ones numerics.ACTIVATIONS lists (the one list of their names): each is the
# Value method of its name.
_ACTIVATIONS = {name: getattr(Value, name) if name else None for name in ACTIVATIONS}


def _activation(name: Any) -> Any:
    if type(name) is bool:  # micrograd's nonlin: True is ReLU, False none
        return "relu" if name else None
    if name not in _ACTIVATIONS:
        names = ", ".join(repr(a) for a in ACTIVATIONS if a)
        raise ValueError(f"activation must be one of {names} or None, not {name!r}")
    return name


def _neuron_name(activation: str | None) -> str:
    """micrograd's repr of a neuron: ReLUNeuron, LinearNeuron (and TanhNeuron, SigmoidNeuron)."""
    return "Linear" if activation is None else "ReLU" if activation == "relu" else activation.capitalize()


class Outputs(list):  # type: ignore[type-arg]
    """A model's outputs when there are several: a list, whose `backward()` says to reduce it first
    (a list of outputs has no gradient of its own to start from)."""

    __slots__ = ()

    def backward(self, *args: Any, **kwargs: Any) -> None:
        """Refused: reduce the outputs to one Value first."""
        raise TypeError(
            f"backward() needs one Value, and this is a list of {len(self)} outputs: reduce it first, "
            "e.g. cg.sum(outputs).backward(), cg.mean(outputs), or a loss such as "
            "cg.losses.mse(outputs, targets)"
        )


def _std(std: Any) -> float:
    """A weight initialisation's standard deviation: a finite number >= 0."""
    std = number(std, "std")
    if not math.isfinite(std):
        raise ValueError(f"std must be a finite number >= 0, got {std!r}")
    return std


# ---------------------------------------------------------------------------
# Module: parameters, state dicts, files
# ---------------------------------------------------------------------------


def _groups(obj: Any, prefix: str = "", out: list | None = None) -> list[tuple[str, Value | list[Value]]]:
    """The parameter groups under obj: (dotted name, a Value or a list of Values), in attribute order."""
    out = [] if out is None else out
    if isinstance(obj, Value):
        out.append((prefix, obj))
    elif isinstance(obj, Module):
        for name, attr in vars(obj).items():
            if not name.startswith("_"):
                _groups(attr, f"{prefix}.{name}" if prefix else name, out)
    elif isinstance(obj, (list, tuple)):
        if obj and all(type(x) is Value for x in obj):
            out.append((prefix, list(obj)))
        else:
            for i, item in enumerate(obj):
                _groups(item, f"{prefix}.{i}" if prefix else str(i), out)
    return out


def _number(x: Any, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, Real):
        raise ValueError(f"state dict entry {name!r} holds {type(x).__name__} {x!r:.40}, not a number")
    try:
        value = float(x)
    except OverflowError:  # an int beyond float's range
        value = math.inf
    if not math.isfinite(value):
        raise ValueError(f"state dict entry {name!r} holds {x!r:.40}, not a finite number")
    return value


def _saved(p: Value, name: str) -> float:
    """A parameter's data as the float a state dict holds, or an error naming the parameter."""
    data = p.data
    if isinstance(data, Real) or getattr(data, "shape", None) == ():  # a float, an int, a NumPy scalar
        return float(data)
    if getattr(data, "shape", None) is not None:
        raise ValueError(
            f"parameter {name!r} holds a batch (an array of shape {data.shape}), not one number: "
            "parameters must be single numbers; only inputs carry the batch axis"
        )
    raise TypeError(f"parameter {name!r} holds {type(data).__name__} {data!r:.40}, not a number")


def _inputs(x: Any, n: int, owner: Callable[[], str]) -> Any:
    """x as the n inputs of owner() (its name, made only for an error): an iterator or a generator is
    read (n of it, as micrograd's zip reads it); anything that is not n inputs is a clear error."""
    try:
        fits = len(x) == n
    except TypeError:  # no len: asked only then, as a model is called once a sample
        if not isinstance(x, Iterator):
            fits = False
        else:
            x = list(itertools.islice(x, n + 1))
            if len(x) > n:
                raise ValueError(f"{owner()} takes {n} inputs, got an iterator of more") from None
            fits = len(x) == n
    if not fits:
        _wrong_inputs(x, n, owner())
    return x


def _wrong_inputs(x: Any, n: int, owner: str) -> None:
    """Raise one short line saying what `owner` takes (n inputs) and what it got instead."""
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) == 2:
        raise ValueError(
            f"{owner} takes {n} inputs, got a {shape[0]}x{shape[1]} array; for a batch of {shape[0]} "
            "samples pass cg.data.columns(X), one batched Value per feature"
        )
    try:
        count = len(x)
    except TypeError:
        example = "[x]" if n == 1 else "[x1, x2]" if n == 2 else f"[x1, ..., x{n}]"
        raise TypeError(
            f"{owner} takes a list of {n} inputs (numbers or Values, e.g. {example}), "
            f"got a {type(x).__name__}: {x!r:.30}"
        ) from None
    raise ValueError(f"{owner} takes {n} inputs, got {count}")


def _names(names: set[Any]) -> str:
    shown = sorted(names, key=str)[:10]
    more = f" and {len(names) - 10} more" if len(names) > 10 else ""
    return ", ".join(map(repr, shown)) + more


_M = TypeVar("_M", bound="Module")


class Module:
    """A model: owns Values (its parameters) and maps inputs to outputs."""

    def named_parameters(self) -> list[tuple[str, Value]]:
        """Every parameter with its dotted name, e.g. ('layers.0.neurons.3.w.1', Value)."""
        out = []
        for name, group in _groups(self):
            if isinstance(group, Value):
                out.append((name, group))
            else:
                out.extend((f"{name}.{i}", p) for i, p in enumerate(group))
        return out

    def parameters(self) -> list[Value]:
        """Every parameter, layer by layer, neuron by neuron, weights before bias."""
        out = []
        for _, group in _groups(self):
            if isinstance(group, Value):
                out.append(group)
            else:
                out.extend(group)
        return out

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Set every parameter's grad to 0, or to None with set_to_none=True ("no gradient yet", as in
        PyTorch, whose default is True; chaingrad's is False, as micrograd's zero_grad sets 0)."""
        if set_to_none:
            for p in self.parameters():
                p.grad = None
        else:
            zero_grads(self.parameters())

    # PyTorch: the conversions live in chaingrad.torch_twins (below nn; it imports torch, the `torch`
    # extra), public through chaingrad.bridge.

    def to_torch(self, dtype: Any = None, forward: Callable[..., Any] | None = None) -> Any:
        """An equivalent torch.nn.Module with these weights, float64 unless `dtype` (a torch dtype) says
        otherwise; its state_dict keys carry these dotted names (see `chaingrad.bridge`). A module of
        your own made of chaingrad modules becomes its parts converted, with `forward` (called as
        forward(twin, *args)) as the torch forward, since chaingrad cannot translate your __call__."""
        from . import torch_twins

        return torch_twins.to_torch(self, dtype, forward)

    @classmethod
    def from_torch(cls: type[_M], module: Any) -> _M:
        """A new model with the architecture and weights of a torch module (what `to_torch` returns;
        for MLP any nn.Sequential of Linear layers and one kind of activation). chaingrad's own modules
        only: for a module of your own, make one and call `load_torch_state_dict`."""
        from . import torch_twins

        return torch_twins.from_torch(cls, module)

    def load_torch_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Set the parameters from `to_torch().state_dict()`'s kind of dict; on any missing, extra or bad
        entry raise and change nothing."""
        from . import torch_twins

        torch_twins.load_torch_state_dict(self, state_dict)

    def state_dict(self) -> dict[str, float | list[float]]:
        """The parameters' data as plain floats: one entry per Value or list of Values."""
        return {
            name: _saved(g, name)
            if isinstance(g, Value)
            else [_saved(p, f"{name}.{i}") for i, p in enumerate(g)]
            for name, g in _groups(self)
        }

    def architecture(self) -> dict[str, Any]:
        """What this model is apart from its parameters' values, as JSON-able data: its class and what
        its constructor was given (sizes, activations). `save` records it and `load` refuses a file
        whose architecture differs. This default gives the class and the sub-modules' architectures;
        a module of your own with settings of its own should add them."""
        out: dict[str, Any] = {"class": type(self).__name__}
        for name, attr in vars(self).items():
            if name.startswith("_"):
                continue
            if isinstance(attr, Module):
                out[name] = attr.architecture()
            elif isinstance(attr, (list, tuple)) and attr and all(isinstance(m, Module) for m in attr):
                out[name] = [m.architecture() for m in attr]
        return out

    def _checked(self, d: Any) -> list[tuple[Value | list[Value], Any]]:
        """Pair each parameter group with its entry of d, or raise naming what does not fit."""
        if not isinstance(d, Mapping):
            raise TypeError(f"a state dict must be a dict, not {type(d).__name__}")
        groups = dict(_groups(self))
        missing, extra = groups.keys() - d.keys(), d.keys() - groups.keys()
        if missing or extra:
            parts = [
                f"missing {_names(missing)}" if missing else "",
                f"extra {_names(extra)}" if extra else "",
            ]
            raise KeyError(
                f"state dict does not fit this {type(self).__name__}: " + "; ".join(filter(None, parts))
            )
        pairs = []
        for name, group in groups.items():
            entry = d[name]
            if isinstance(group, Value):
                pairs.append((group, _number(entry, name)))
                continue
            if not isinstance(entry, (list, tuple)) or len(entry) != len(group):
                got = f"{len(entry)} numbers" if isinstance(entry, (list, tuple)) else repr(entry)[:40]
                raise ValueError(
                    f"state dict entry {name!r}: expected a list of {len(group)} numbers, got {got}"
                )
            pairs.append((group, [_number(x, f"{name}.{i}") for i, x in enumerate(entry)]))
        return pairs

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Set the parameters from d; on any missing, extra or bad entry raise and change nothing."""
        for group, entry in self._checked(d):
            if isinstance(group, Value):
                group.data = entry
            else:
                for p, x in zip(group, entry):
                    p.data = x

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the architecture and the parameters to a JSON file atomically: a crash leaves the old
        file or the new one. A file already there keeps its mode; a symlink stays a link and the file
        it points to is replaced. The format is `chaingrad.serialization`'s."""
        serialization.save(self, path)

    def load(self: _M, path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES) -> _M:
        """Load a file written by `save` into this model in place; return it. A bad file changes nothing.

        Only a regular file of at most max_bytes bytes is read (64 MiB by default, about 3 million
        parameters). The file's architecture must be this model's: a file of an MLP with tanh does not
        load into one with relu. Files of version 1 (before the architecture was recorded) still load
        when their parameters fit; save again to record the architecture.
        """
        return serialization.load(self, path, max_bytes)


# ---------------------------------------------------------------------------
# micrograd's MLP: Neuron, Layer, MLP
# ---------------------------------------------------------------------------


class Neuron(Module):
    """activation(w · x + b): one fused dot node, then the activation node.

    micrograd's spelling works too: `Neuron(nin, nonlin=False)` (or `Neuron(nin, False)`) is a linear
    neuron, `nonlin=True` a ReLU one.
    """

    def __init__(
        self,
        nin: int,
        activation: str | bool | None = "relu",
        seed: int | random.Random | None = None,
        *,
        nonlin: bool | None = None,
    ):
        rng = _generator(seed)
        nin = positive_int(nin, "nin")
        check_fits(nin + 1, lambda: f"Neuron({nin})")
        self.w = [Value(rng.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(0.0)
        self.activation = _activation(activation if nonlin is None else bool(nonlin))
        self._act = _ACTIVATIONS[self.activation]

    @property
    def nonlin(self) -> bool:
        """micrograd's name: whether the neuron has an activation."""
        return self.activation is not None

    def __call__(self, x: Sequence[Any]) -> Value:
        x = _inputs(x, len(self.w), lambda: repr(self))
        act = dot(self.w, x, self.b)
        return self._act(act) if self._act else act

    def __repr__(self) -> str:
        return f"{_neuron_name(self.activation)}Neuron({len(self.w)})"

    def architecture(self) -> dict[str, Any]:
        """{'class': 'Neuron', 'nin': ..., 'activation': ...}."""
        return {"class": type(self).__name__, "nin": len(self.w), "activation": self.activation}


class Layer(Module):
    """nout neurons on the same inputs. Returns a list of Values, or one Value when nout == 1 (micrograd's
    convention). On a batch the whole layer is one `cg.affine` node, with the same math."""

    def __init__(
        self,
        nin: int,
        nout: int,
        activation: str | bool | None = "relu",
        seed: int | random.Random | None = None,
        **kwargs: Any,
    ):
        rng = _generator(seed)
        nin, nout = positive_int(nin, "nin"), positive_int(nout, "nout")
        check_fits((nin + 1) * nout, lambda: f"Layer({nin}, {nout})")
        self.neurons = [Neuron(nin, activation, rng, **kwargs) for _ in range(nout)]

    def outputs(self, x: Sequence[Any]) -> list[Value]:
        """Every neuron's output, as a list even when there is one."""
        ns = self.neurons
        x = _inputs(x, len(ns[0].w), lambda: f"Layer({len(ns[0].w)}, {len(ns)})")
        if type(x) is Outputs:
            x = list(x)  # the compiled core's fast path takes a plain list
        # The neurons' math for all of them at once: one dot node (+ activation) per neuron, or on a
        # batch one affine node for the layer (three matrix products backward).
        weights, biases, activation = self.parts()
        return affine(weights, x, biases, activation)

    def parts(self) -> tuple[list[list[Value]], list[Value], str | None]:
        """(rows of weights, biases, activation): the layer as `cg.affine` takes it."""
        ns = self.neurons
        return [n.w for n in ns], [n.b for n in ns], ns[0].activation

    def __call__(self, x: Sequence[Any]) -> Value | Outputs:
        """The layer's output: one Value when nout == 1, else an `Outputs` list of nout Values."""
        out = self.outputs(x)
        return out[0] if len(out) == 1 else Outputs(out)

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(map(repr, self.neurons))}]"

    def architecture(self) -> dict[str, Any]:
        """{'class': 'Layer', 'nin': ..., 'nout': ..., 'activation': ...} (a list if the neurons differ)."""
        activations = [n.activation for n in self.neurons]
        return {
            "class": type(self).__name__,
            "nin": len(self.neurons[0].w),
            "nout": len(self.neurons),
            "activation": activations[0] if len(set(activations)) == 1 else activations,
        }


class MLP(Module):
    """A multi-layer perceptron: hidden layers use `activation`, the last layer is linear (micrograd's).
    On a batch the whole MLP is one `cg.affine` node, with the layers' math."""

    def __init__(
        self,
        nin: int,
        nouts: Sequence[int],
        activation: str | None = "relu",
        seed: int | random.Random | None = None,
    ):
        if isinstance(nouts, (str, bytes)) or not isinstance(nouts, Sequence) or not nouts:
            raise ValueError(f"nouts must be a non-empty list of layer widths, got {nouts!r}")
        _activation(activation)  # checked even where there is no hidden layer to use it
        rng = _generator(seed)
        sizes = [positive_int(nin, "nin")] + [positive_int(n, "each layer width") for n in nouts]
        count = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
        check_fits(count, lambda: f"MLP({sizes[0]}, {sizes[1:]})")
        last = len(nouts) - 1
        self.layers = [
            Layer(sizes[i], sizes[i + 1], activation if i != last else None, rng) for i in range(len(nouts))
        ]

    def __call__(self, x: Sequence[Any]) -> Value | Outputs:
        """The output: one Value when the last layer has one neuron, else an `Outputs` list of Values."""
        nin = len(self.layers[0].neurons[0].w)
        x = _inputs(x, nin, lambda: f"MLP({nin}, {[len(layer.neurons) for layer in self.layers]})")
        if type(x) is Outputs:
            x = list(x)  # the compiled core's fast path takes a plain list
        # the layers' math for all of them at once: on a batch one affine node for the whole MLP
        outs = affine_layers([layer.parts() for layer in self.layers], x)
        return outs[0] if len(outs) == 1 else Outputs(outs)

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(map(repr, self.layers))}]"

    def architecture(self) -> dict[str, Any]:
        """{'class': 'MLP', 'layers': [each layer's architecture]}: sizes and activations, layer by layer."""
        return {"class": type(self).__name__, "layers": [layer.architecture() for layer in self.layers]}


# ---------------------------------------------------------------------------
# The blocks of a tiny GPT (the shape of Karpathy's microgpt)
# ---------------------------------------------------------------------------


def _matrix(rows: int, cols: int, std: float, rng: random.Random) -> list[list[Value]]:
    return [[Value(rng.gauss(0.0, std)) for _ in range(cols)] for _ in range(rows)]


class Linear(Module):
    """y_i = w_i · x + b_i: one fused dot node per output; returns a list. Weights ~ gauss(0, std),
    biases 0. As torch.nn.Linear, it has a bias unless bias=False (the GPT's layers have none)."""

    def __init__(
        self,
        nin: int,
        nout: int,
        bias: bool = True,
        std: float = 0.08,
        seed: int | random.Random | None = None,
    ):
        nin, nout, std = positive_int(nin, "nin"), positive_int(nout, "nout"), _std(std)
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be True or False, not {bias!r:.40}")
        check_fits((nin + bias) * nout, lambda: f"Linear({nin}, {nout})")
        self.weight = _matrix(nout, nin, std, _generator(seed))
        self.bias = [Value(0.0) for _ in range(nout)] if bias else None

    def __call__(self, x: Sequence[Any]) -> list[Value]:
        x = _inputs(x, len(self.weight[0]), lambda: f"Linear({len(self.weight[0])}, {len(self.weight)})")
        return affine(self.weight, x, self.bias)

    def __repr__(self) -> str:
        return f"Linear({len(self.weight[0])}, {len(self.weight)}, bias={self.bias is not None})"

    def architecture(self) -> dict[str, Any]:
        """{'class': 'Linear', 'nin': ..., 'nout': ..., 'bias': True or False}."""
        return {
            "class": type(self).__name__,
            "nin": len(self.weight[0]),
            "nout": len(self.weight),
            "bias": self.bias is not None,
        }


class Embedding(Module):
    """A table of `num` learned vectors of size `dim`; calling it with an index returns that row."""

    def __init__(self, num: int, dim: int, std: float = 0.08, seed: int | random.Random | None = None):
        num, dim, std = positive_int(num, "num"), positive_int(dim, "dim"), _std(std)
        check_fits(num * dim, lambda: f"Embedding({num}, {dim})")
        self.weight = _matrix(num, dim, std, _generator(seed))

    def __call__(self, i: int) -> list[Value]:
        if isinstance(i, bool) or not isinstance(i, Integral) or not 0 <= i < len(self.weight):
            raise IndexError(f"Embedding of {len(self.weight)} rows: index {i!r} is out of range")
        return self.weight[i]

    def __repr__(self) -> str:
        return f"Embedding({len(self.weight)}, {len(self.weight[0])})"

    def architecture(self) -> dict[str, Any]:
        """{'class': 'Embedding', 'num': ..., 'dim': ...}."""
        return {"class": type(self).__name__, "num": len(self.weight), "dim": len(self.weight[0])}


class RMSNorm(Module):
    """x / sqrt(mean(x^2) + eps), without a learnable weight (as microgpt)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        self.dim = positive_int(dim, "dim")
        self.eps = eps

    @property
    def eps(self) -> float:
        """Added to the mean square before the square root: a finite number >= 0, checked when set."""
        return self._eps

    @eps.setter
    def eps(self, eps: Any) -> None:
        eps = number(eps, "eps")
        if not math.isfinite(eps):
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
        self._eps = eps

    def __call__(self, x: Sequence[Value]) -> list[Value]:
        x = _inputs(x, self.dim, lambda: f"RMSNorm({self.dim})")
        scale = (dot(x, x) / self.dim + self.eps) ** -0.5
        return [xi * scale for xi in x]

    def __repr__(self) -> str:
        return f"RMSNorm({self.dim})"

    def architecture(self) -> dict[str, Any]:
        """{'class': 'RMSNorm', 'dim': ..., 'eps': ...}."""
        return {"class": type(self).__name__, "dim": self.dim, "eps": self.eps}


class CausalSelfAttention(Module):
    """Multi-head attention of one position over itself and all earlier ones (kept in a cache)."""

    def __init__(self, n_embd: int, n_head: int, seed: int | random.Random | None = None):
        if positive_int(n_embd, "n_embd") % positive_int(n_head, "n_head"):
            raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        rng = _generator(seed)
        self.n_head = n_head
        self.q, self.k, self.v, self.o = (Linear(n_embd, n_embd, bias=False, seed=rng) for _ in range(4))

    def __call__(self, x: Sequence[Value], cache: tuple[list[Any], list[Any]]) -> list[Value]:
        """Attend from x; appends x's key and value to `cache` = (keys, values), one list per layer."""
        keys, values = cache
        keys.append(self.k(x))
        values.append(self.v(x))
        q = self.q(x)
        hd = len(q) // self.n_head
        scale = hd**-0.5
        out: list[Value] = []
        for hs in range(0, len(q), hd):
            q_h = q[hs : hs + hd]
            weights = softmax([dot(q_h, k[hs : hs + hd]) * scale for k in keys])
            out.extend(dot(weights, [v[j] for v in values]) for j in range(hs, hs + hd))
        return self.o(out)

    def __repr__(self) -> str:
        return f"CausalSelfAttention({len(self.q.weight)}, n_head={self.n_head})"

    def architecture(self) -> dict[str, Any]:
        """{'class': 'CausalSelfAttention', 'n_embd': ..., 'n_head': ...}."""
        return {"class": type(self).__name__, "n_embd": len(self.q.weight), "n_head": self.n_head}


class Block(Module):
    """One transformer layer: x + attn(norm(x)), then x + fc2(relu(fc1(norm(x))))."""

    def __init__(self, n_embd: int, n_head: int, seed: int | random.Random | None = None):
        rng = _generator(seed)
        self.norm = RMSNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, rng)
        self.fc1 = Linear(n_embd, 4 * n_embd, bias=False, seed=rng)
        self.fc2 = Linear(4 * n_embd, n_embd, bias=False, seed=rng)

    def __call__(self, x: list[Value], cache: tuple[list[Any], list[Any]]) -> list[Value]:
        x = [a + r for a, r in zip(self.attn(self.norm(x), cache), x)]
        h = [hi.relu() for hi in self.fc1(self.norm(x))]
        return [m + r for m, r in zip(self.fc2(h), x)]

    def __repr__(self) -> str:
        return f"Block({self.attn!r}, mlp {len(self.fc1.weight[0])}-{len(self.fc1.weight)})"

    def architecture(self) -> dict[str, Any]:
        """{'class': 'Block', 'n_embd': ..., 'n_head': ...}."""
        return {"class": type(self).__name__, "n_embd": len(self.fc1.weight[0]), "n_head": self.attn.n_head}


@compile(max_tapes=64)
def _loss(model: GPT, embedded: list[list[Value]], targets: list[int]) -> Value:
    """GPT.loss, compiled: a tape per sequence length (the tokens come in as their embeddings and
    targets, so that one tape serves every name of a length)."""
    caches: list[tuple[list[Any], list[Any]]] = [([], []) for _ in model.layers]
    logits = [model._step_from(row, pos, caches) for pos, row in enumerate(embedded)]
    return mean([cross_entropy(lg, t) for lg, t in zip(logits, targets)])


class GPT(Module):
    """A character-level GPT with the shape of Karpathy's microgpt: embeddings, RMSNorm, attention + MLP
    blocks with residuals, and a linear head giving next-token logits."""

    def __init__(
        self,
        vocab_size: int,
        n_embd: int = 16,
        n_head: int = 4,
        n_layer: int = 1,
        block_size: int = 16,
        seed: int | random.Random | None = None,
    ):
        rng = _generator(seed)
        self.vocab_size = positive_int(vocab_size, "vocab_size")
        self.block_size = positive_int(block_size, "block_size")
        d, layers = positive_int(n_embd, "n_embd"), positive_int(n_layer, "n_layer")
        count = 2 * vocab_size * d + block_size * d + layers * 12 * d * d
        check_fits(count, lambda: f"GPT({vocab_size}, n_embd={d}, n_layer={layers}, block_size={block_size})")
        self.wte = Embedding(vocab_size, n_embd, seed=rng)
        self.wpe = Embedding(block_size, n_embd, seed=rng)
        self.norm = RMSNorm(n_embd)
        self.layers = [Block(n_embd, n_head, rng) for _ in range(positive_int(n_layer, "n_layer"))]
        self.lm_head = Linear(n_embd, vocab_size, bias=False, seed=rng)

    def __repr__(self) -> str:
        return (
            f"GPT(vocab_size={self.vocab_size}, n_embd={len(self.wte.weight[0])}, "
            f"n_head={self.layers[0].attn.n_head}, n_layer={len(self.layers)}, block_size={self.block_size})"
        )

    def architecture(self) -> dict[str, Any]:
        """The configuration: {'class': 'GPT', 'vocab_size', 'n_embd', 'n_head', 'n_layer', 'block_size'}."""
        return {
            "class": type(self).__name__,
            "vocab_size": self.vocab_size,
            "n_embd": len(self.wte.weight[0]),
            "n_head": self.layers[0].attn.n_head,
            "n_layer": len(self.layers),
            "block_size": self.block_size,
        }

    def _tokens(self, tokens: Any, name: str) -> list[int]:
        if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
            raise TypeError(f"{name} must be a list of token ids, not {type(tokens).__name__}")
        for t in tokens:
            if isinstance(t, bool) or not isinstance(t, Integral) or not 0 <= t < self.vocab_size:
                raise ValueError(f"{name}: {t!r} is not a token id in 0..{self.vocab_size - 1}")
        return list(tokens)

    def _step(self, token: int, pos: int, caches: list[tuple[list[Any], list[Any]]]) -> list[Value]:
        """The logits after `token` at position `pos`, given the earlier positions' keys and values."""
        return self._step_from(self.wte(token), pos, caches)

    def _step_from(
        self, embedded: list[Value], pos: int, caches: list[tuple[list[Any], list[Any]]]
    ) -> list[Value]:
        """The logits after the token whose embedding is `embedded`, at position `pos`."""
        x = self.norm([t + p for t, p in zip(embedded, self.wpe(pos))])
        for block, cache in zip(self.layers, caches):
            x = block(x, cache)
        return self.lm_head(x)

    def forward(self, tokens: Sequence[int]) -> list[list[Value]]:
        """Next-token logits at every position of `tokens` (at most block_size of them)."""
        tokens = self._tokens(tokens, "forward()")
        if not 1 <= len(tokens) <= self.block_size:
            raise ValueError(f"forward() takes 1 to {self.block_size} tokens (block_size), got {len(tokens)}")
        caches: list[tuple[list[Any], list[Any]]] = [([], []) for _ in self.layers]
        return [self._step(t, pos, caches) for pos, t in enumerate(tokens)]

    __call__ = forward

    def loss(self, tokens: Sequence[int]) -> Value:
        """Mean cross-entropy of predicting tokens[t + 1] from tokens[: t + 1], over every t."""
        tokens = self._tokens(tokens, "loss()")
        if not 2 <= len(tokens) <= self.block_size + 1:
            raise ValueError(
                f"loss() takes 2 to {self.block_size + 1} tokens (block_size + 1), got {len(tokens)}"
            )
        return _loss(self, [self.wte(t) for t in tokens[:-1]], tokens[1:])

    def generate(
        self,
        start: int | Sequence[int],
        temperature: float = 0.5,
        max_len: int | None = None,
        rng: random.Random | None = None,
        stop: int | None = None,
    ) -> list[int]:
        """Sample up to max_len tokens after `start` (a token or a prompt), ending early at `stop`
        (not included). max_len defaults to what fits in the block; rng to chaingrad's generator."""
        prompt = self._tokens([start] if isinstance(start, Integral) else start, "generate() start")
        max_len = generate_length(prompt, self.block_size, max_len, temperature)
        rng = _rng if rng is None else rng
        out: list[int] = []
        with no_grad():
            caches: list[tuple[list[Any], list[Any]]] = [([], []) for _ in self.layers]
            for pos, t in enumerate(prompt[:-1]):
                self._step(t, pos, caches)
            token, pos = prompt[-1], len(prompt) - 1
            while len(out) < max_len:
                probs = softmax([lg / temperature for lg in self._step(token, pos, caches)])
                token = rng.choices(range(self.vocab_size), weights=[p.data for p in probs])[0]
                if token == stop:
                    break
                out.append(token)
                pos += 1
        return out
