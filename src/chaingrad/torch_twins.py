"""The torch twins of chaingrad's modules and the conversions both ways: what `model.to_torch()`,
`Cls.from_torch(module)` and `model.load_torch_state_dict(sd)` run. Public through `chaingrad.bridge`.

This module sits below `chaingrad.nn` and never imports it: it reads a model through what every
chaingrad module has (its attributes, `state_dict()`, `load_state_dict()`), and recognises
chaingrad's own classes by their place in `chaingrad.nn` (`kind()`), so nn can import it lazily
without a cycle. A module of your own made of chaingrad modules converts to a `Composite`: its
parts converted under the same names, with the forward you give (`to_torch(forward=...)`).
It imports torch (`pip install "chaingrad[torch]"`); `import chaingrad` never imports it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import Any, TypeVar

try:
    import torch
    from torch import nn as tnn
    from torch.nn import functional as F
except ModuleNotFoundError as e:
    if e.name != "torch":
        raise
    raise ModuleNotFoundError(
        'chaingrad\'s PyTorch bridge (to_torch, from_torch) needs PyTorch: pip install "chaingrad[torch]"',
        name="torch",
    ) from None

from ._backend import Value
from .numerics import ACTIVATIONS
from .sampling import generate_length

__all__ = [
    "GPT",
    "IGNORE",
    "Block",
    "CausalSelfAttention",
    "Composite",
    "Layer",
    "Neuron",
    "from_torch",
    "kind",
    "load_torch_state_dict",
    "pad_batch",
    "to_torch",
    "torch_names",
]

IGNORE = -100  # the target of a padded position: torch's default ignore_index, skipped by the loss
M = TypeVar("M")

# numerics.ACTIVATIONS names them; torch has a function and a module class for each (ReLU for relu).
_ACTIVATIONS = {name: getattr(torch, name) for name in ACTIVATIONS if name}
_ACTIVATION_MODULES = {
    name: next(cls for key, cls in vars(tnn).items() if key.lower() == name) for name in _ACTIVATIONS
}
_KINDS = ("Neuron", "Layer", "MLP", "Linear", "Embedding", "RMSNorm", "CausalSelfAttention", "Block", "GPT")


def kind(cls: type) -> str | None:
    """Which of chaingrad's own modules cls is or derives from ('MLP', 'GPT', ...), or None for a
    module of your own."""
    return next(
        (c.__name__ for c in cls.__mro__ if c.__module__ == "chaingrad.nn" and c.__name__ in _KINDS), None
    )


def _activation(name: Any) -> str | None:
    if name is not None and name not in _ACTIVATIONS:
        names = ", ".join(repr(a) for a in _ACTIVATIONS)
        raise ValueError(f"activation must be one of {names} or None, not {name!r}")
    return name


def _activate(x: torch.Tensor, name: str | None) -> torch.Tensor:
    return x if name is None else _ACTIVATIONS[name](x)


# ---------------------------------------------------------------------------
# The torch twins of chaingrad's modules (Linear, Embedding, RMSNorm are torch's own)
# ---------------------------------------------------------------------------


class Neuron(tnn.Module):
    """chaingrad's Neuron: activation(x @ w + b), x of shape (..., nin), the result of shape (...)."""

    def __init__(self, nin: int, activation: str | None = "relu", dtype: Any = None, device: Any = None):
        super().__init__()
        self.w = tnn.Parameter(torch.empty(nin, dtype=dtype, device=device).uniform_(-1, 1))
        self.b = tnn.Parameter(torch.zeros((), dtype=dtype, device=device))
        self.activation = _activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _activate(x @ self.w + self.b, self.activation)

    def extra_repr(self) -> str:
        return f"{self.w.shape[0]}, activation={self.activation!r}"


class Layer(tnn.Linear):
    """chaingrad's Layer: an nn.Linear followed by its neurons' activation; the result is (..., nout),
    even when nout is 1 (where chaingrad returns one Value)."""

    def __init__(
        self, nin: int, nout: int, activation: str | None = "relu", dtype: Any = None, device: Any = None
    ):
        super().__init__(nin, nout, dtype=dtype, device=device)
        self.activation = _activation(activation)

    def reset_parameters(self) -> None:
        """chaingrad's initialisation: weights uniform in (-1, 1), biases 0."""
        tnn.init.uniform_(self.weight, -1.0, 1.0)
        tnn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _activate(super().forward(x), self.activation)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation!r}"


class CausalSelfAttention(tnn.Module):
    """chaingrad's attention on a whole sequence at once: x of shape (..., T, n_embd), each position
    attending to itself and the earlier ones (a causal mask instead of chaingrad's KV cache)."""

    def __init__(self, n_embd: int, n_head: int, dtype: Any = None, device: Any = None):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        self.n_head = n_head
        self.q, self.k, self.v, self.o = (
            tnn.Linear(n_embd, n_embd, bias=False, dtype=dtype, device=device) for _ in range(4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *lead, T, C = x.shape
        hd = C // self.n_head
        q, k, v = (f(x).view(*lead, T, self.n_head, hd).transpose(-3, -2) for f in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=hd**-0.5)
        return self.o(y.transpose(-3, -2).reshape(*lead, T, C))

    def extra_repr(self) -> str:
        return f"n_head={self.n_head}"


def _rmsnorm(dim: int, eps: float, dtype: Any, device: Any) -> tnn.RMSNorm:
    return tnn.RMSNorm(dim, eps=eps, elementwise_affine=False, dtype=dtype, device=device)


class Block(tnn.Module):
    """chaingrad's transformer layer: x + attn(norm(x)), then x + fc2(relu(fc1(norm(x)))); no biases."""

    def __init__(self, n_embd: int, n_head: int, eps: float = 1e-5, dtype: Any = None, device: Any = None):
        super().__init__()
        self.norm = _rmsnorm(n_embd, eps, dtype, device)
        self.attn = CausalSelfAttention(n_embd, n_head, dtype, device)
        self.fc1 = tnn.Linear(n_embd, 4 * n_embd, bias=False, dtype=dtype, device=device)
        self.fc2 = tnn.Linear(4 * n_embd, n_embd, bias=False, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm(x))
        return x + self.fc2(torch.relu(self.fc1(self.norm(x))))


class GPT(tnn.Module):
    """chaingrad's GPT, batched: token and position embeddings, RMSNorm, the blocks, a linear head.

    Created directly it draws chaingrad's initialisation (every weight ~ N(0, 0.08)); usually it comes
    from `cg.nn.GPT(...).to_torch()`.
    """

    def __init__(
        self,
        vocab_size: int,
        n_embd: int = 16,
        n_head: int = 4,
        n_layer: int = 1,
        block_size: int = 16,
        eps: float = 1e-5,
        dtype: Any = None,
        device: Any = None,
    ):
        super().__init__()
        self.vocab_size, self.block_size = vocab_size, block_size
        self.wte = tnn.Embedding(vocab_size, n_embd, dtype=dtype, device=device)
        self.wpe = tnn.Embedding(block_size, n_embd, dtype=dtype, device=device)
        self.norm = _rmsnorm(n_embd, eps, dtype, device)
        self.layers = tnn.ModuleList(Block(n_embd, n_head, eps, dtype, device) for _ in range(n_layer))
        self.lm_head = tnn.Linear(n_embd, vocab_size, bias=False, dtype=dtype, device=device)
        for p in self.parameters():
            tnn.init.normal_(p, std=0.08)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits (B, T, vocab_size) for token ids idx of shape (B, T) or (T,), T <= block_size.

        Given targets of idx's shape, return instead the mean cross-entropy over the targets that are
        not IGNORE (the padding `pad_batch` adds), so DistributedDataParallel sees the loss come out
        of forward.
        """
        T = idx.shape[-1]
        if not 1 <= T <= self.block_size:
            raise ValueError(f"GPT takes 1 to {self.block_size} tokens (block_size) per sequence, got {T}")
        x = self.norm(self.wte(idx) + self.wpe(torch.arange(T, device=idx.device)))
        for block in self.layers:
            x = block(x)
        logits = self.lm_head(x)
        if targets is None:
            return logits
        if targets.shape != idx.shape:
            raise ValueError(f"targets must have idx's shape {tuple(idx.shape)}, got {tuple(targets.shape)}")
        return F.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1), ignore_index=IGNORE)

    @torch.no_grad()
    def generate(
        self,
        start: int | Sequence[int],
        temperature: float = 0.5,
        max_len: int | None = None,
        generator: torch.Generator | None = None,
        stop: int | None = None,
    ) -> list[int]:
        """Sample up to max_len tokens after `start` (a token or a prompt), ending early at `stop` (not
        included), as chaingrad's `GPT.generate`; `generator` is a CPU torch.Generator."""
        prompt = [start] if isinstance(start, Integral) else list(start)
        max_len = generate_length(prompt, self.block_size, max_len, temperature)
        device = self.lm_head.weight.device
        tokens, out = list(prompt), []
        while len(out) < max_len:
            logits = self(torch.tensor(tokens, device=device))[-1]
            probs = torch.softmax(logits.double() / temperature, -1).cpu()
            token = int(torch.multinomial(probs, 1, generator=generator))
            if token == stop:
                break
            out.append(token)
            tokens.append(token)
        return out

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, block_size={self.block_size}"


def pad_batch(
    sequences: Sequence[Sequence[int]], block_size: int, pad: int = 0, device: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), each (B, T), to train a GPT on token sequences of different lengths.

    Each sequence s gives inputs s[:-1] and targets s[1:], cut to block_size as chaingrad's
    `GPT.loss` takes them; shorter ones are padded on the right (inputs with `pad`, targets with
    IGNORE). The causal mask keeps padding out of every real position, and the loss skips it.
    """
    rows = [list(s)[: block_size + 1] for s in sequences]
    if not rows or any(len(r) < 2 for r in rows):
        raise ValueError("pad_batch() needs at least one sequence, each of at least 2 tokens")
    T = max(len(r) for r in rows) - 1
    inputs = torch.full((len(rows), T), pad, dtype=torch.long)
    targets = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    for i, r in enumerate(rows):
        inputs[i, : len(r) - 1] = torch.tensor(r[:-1])
        targets[i, : len(r) - 1] = torch.tensor(r[1:])
    return inputs.to(device), targets.to(device)


# ---------------------------------------------------------------------------
# The correspondence of names
# ---------------------------------------------------------------------------

Names = dict[str, tuple[str, int | None]]


def _prefixed(cg_prefix: str, torch_prefix: str, names: Names) -> Names:
    return {f"{cg_prefix}.{k}": (f"{torch_prefix}.{t}", row) for k, (t, row) in names.items()}


def _rows(cg_prefix: str, torch_key: str, n: int) -> Names:
    return {f"{cg_prefix}.{i}": (torch_key, i) for i in range(n)}


def _same_names(model: Any, parts: list[str]) -> Names:
    """The entries of these parts of model (attribute paths such as 'layers.0'), which torch names alike."""
    out: Names = {}
    for path in parts:
        part: Any = model
        for name in path.split("."):
            part = part[int(name)] if name.isdigit() else getattr(part, name)
        out |= _prefixed(path, path, torch_names(part))
    return out


def _is_module(x: Any) -> bool:
    """A chaingrad module, as nn makes them: it has parameters() and a state_dict()."""
    return callable(getattr(x, "parameters", None)) and callable(getattr(x, "state_dict", None))


def torch_names(model: Any) -> Names:
    """For each key of model.state_dict(): the key of model.to_torch().state_dict() holding it, and the
    row (index along the tensor's first axis) it is, or None when it is the whole tensor."""
    k = kind(type(model))
    if k == "Neuron":
        return {"w": ("w", None), "b": ("b", None)}
    if k == "Layer":
        out: Names = {}
        for i in range(len(model.neurons)):
            out |= {f"neurons.{i}.w": ("weight", i), f"neurons.{i}.b": ("bias", i)}
        return out
    if k == "MLP":
        out, index = {}, 0
        for j, layer in enumerate(model.layers):
            out |= _prefixed(f"layers.{j}", str(index), torch_names(layer))
            index += 1 if layer.neurons[0].activation is None else 2  # the activation's own slot
        return out
    if k in ("Linear", "Embedding"):
        out = _rows("weight", "weight", len(model.weight))
        if getattr(model, "bias", None) is not None:
            out["bias"] = ("bias", None)
        return out
    if k == "RMSNorm":
        return {}
    if k == "CausalSelfAttention":
        return _same_names(model, ["q", "k", "v", "o"])
    if k == "Block":
        return _same_names(model, ["attn", "fc1", "fc2"])
    if k == "GPT":
        layers = [f"layers.{j}" for j in range(len(model.layers))]
        return _same_names(model, ["wte", "wpe", *layers, "lm_head"])
    return _composite_names(model)


def _parts(model: Any) -> list[tuple[str, Any]]:
    """The attributes of a module of your own that hold parameters, in attribute order."""
    return [(name, attr) for name, attr in vars(model).items() if not name.startswith("_")]


def _composite_names(model: Any) -> Names:
    """The names of a module of your own: its parts' names under the part's name; a Value it holds
    itself is a 0-d parameter, a list of Values a vector."""
    out: Names = {}
    for name, attr in _parts(model):
        if isinstance(attr, Value):
            out[name] = (name, None)
        elif _is_module(attr):
            out |= _prefixed(name, name, torch_names(attr))
        elif isinstance(attr, (list, tuple)) and attr and all(type(x) is Value for x in attr):
            out[name] = (name, None)  # one state dict entry, a list: one vector
        elif isinstance(attr, (list, tuple)) and attr and all(_is_module(m) for m in attr):
            for i, m in enumerate(attr):
                out |= _prefixed(f"{name}.{i}", f"{name}.{i}", torch_names(m))
        elif isinstance(attr, dict) and _holds_parameters(attr):
            raise TypeError(
                f"the PyTorch bridge cannot convert {type(model).__name__}.{name}: a dict (parameters() "
                "does not look inside dicts either); hold the modules in attributes or in a list"
            )
        elif isinstance(attr, (list, tuple)) and _holds_parameters(attr):
            raise TypeError(
                f"the PyTorch bridge cannot convert {type(model).__name__}.{name}: a "
                f"{type(attr).__name__} mixing modules, Values and other things; hold modules in a "
                "list of modules, Values in a list of Values, or convert the parts yourself"
            )
    return out


def _holds_parameters(x: Any) -> bool:
    if isinstance(x, Value) or _is_module(x):
        return True
    items = x.values() if isinstance(x, dict) else x if isinstance(x, (list, tuple)) else ()
    return any(_holds_parameters(i) for i in items)


def _checked_names(model: Any) -> Names:
    names = torch_names(model)
    if names.keys() != model.state_dict().keys():  # a subclass with parameters of its own
        extra = sorted(model.state_dict().keys() - names.keys())
        if kind(type(model)) is None:
            raise TypeError(
                f"the PyTorch bridge cannot place {', '.join(extra[:3])} of {type(model).__name__}: hold "
                "modules, Values, lists of modules or lists of Values in its attributes"
            )
        raise TypeError(
            f"{type(model).__name__} has parameters its base class {kind(type(model))} does not have "
            f"({', '.join(extra[:3])}), which the PyTorch bridge cannot place; convert its parts "
            "instead, or derive from nn.Module so that its parts are converted"
        )
    return names


def _grouped(names: Names, state: Mapping[str, Any]) -> dict[str, Any]:
    """chaingrad's state dict regrouped under the torch keys: whole entries, or their rows in order."""
    whole: dict[str, Any] = {}
    rows: dict[str, dict[int, Any]] = {}
    for key, (tkey, row) in names.items():
        if row is None:
            whole[tkey] = state[key]
        else:
            rows.setdefault(tkey, {})[row] = state[key]
    return whole | {tkey: [r[i] for i in range(len(r))] for tkey, r in rows.items()}


# ---------------------------------------------------------------------------
# chaingrad -> torch
# ---------------------------------------------------------------------------


def _torch_dtype(dtype: Any) -> torch.dtype:
    if dtype is None:
        return torch.float64
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(
            f"to_torch(dtype=...) takes a floating-point torch dtype such as torch.float32, not {dtype!r}"
        )
    return dtype


def _norm_pairs(model: Any, twin: tnn.Module) -> list[tuple[Any, tnn.RMSNorm]]:
    """Each chaingrad RMSNorm inside model with its torch counterpart inside twin."""
    k = kind(type(model))
    if k == "RMSNorm":
        return [(model, twin)]
    if k == "Block":
        return [(model.norm, twin.norm)]
    if k == "GPT":
        return [(model.norm, twin.norm)] + [(b.norm, t.norm) for b, t in zip(model.layers, twin.layers)]
    if k is None:
        return [p for name, attr in _parts(model) for p in _composite_norms(attr, getattr(twin, name, None))]
    return []


def _composite_norms(attr: Any, twin: Any) -> list[tuple[Any, tnn.RMSNorm]]:
    if _is_module(attr) and twin is not None:
        return _norm_pairs(attr, twin)
    if isinstance(attr, (list, tuple)) and isinstance(twin, tnn.ModuleList):
        return [p for a, t in zip(attr, twin) for p in _composite_norms(a, t)]
    return []


class Composite(tnn.Module):
    """The torch twin of a module of your own made of chaingrad modules: each part converted under its
    own name (a list of modules as an nn.ModuleList), each Value it holds itself as a parameter (a
    list of Values as a vector), and as forward the function you gave `to_torch(forward=...)`, called
    as forward(twin, *args). chaingrad cannot read your __call__ to write its torch twin."""

    def __init__(self, model: Any, dtype: torch.dtype, forward: Any = None):
        super().__init__()
        self.source = type(model).__name__
        self._forward = forward
        for name, attr in _parts(model):
            if isinstance(attr, Value):
                setattr(self, name, tnn.Parameter(torch.zeros((), dtype=dtype)))
            elif _is_module(attr):
                setattr(self, name, _twin(attr, dtype))
            elif isinstance(attr, (list, tuple)) and attr and all(type(x) is Value for x in attr):
                setattr(self, name, tnn.Parameter(torch.zeros(len(attr), dtype=dtype)))
            elif isinstance(attr, (list, tuple)) and attr and all(_is_module(m) for m in attr):
                setattr(self, name, tnn.ModuleList(_twin(m, dtype) for m in attr))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """forward(self, *args, **kwargs), the function given to `to_torch(forward=...)`."""
        if self._forward is None:
            raise NotImplementedError(
                f"the torch twin of {self.source} has its parts but no forward: chaingrad cannot "
                f"translate {self.source}.__call__; give one, e.g. model.to_torch(forward=lambda net, x: "
                "net.head(torch.relu(net.body(x)))), or convert the parts one by one"
            )
        return self._forward(self, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"twin of {self.source}"


def _twin(model: Any, dtype: torch.dtype, forward: Any = None) -> tnn.Module:
    """A torch module of model's architecture (its weights not yet set)."""
    k = kind(type(model))
    if k == "Neuron":
        return Neuron(len(model.w), model.activation, dtype)
    if k == "Layer":
        ns = model.neurons
        return Layer(len(ns[0].w), len(ns), ns[0].activation, dtype)
    if k == "MLP":
        modules: list[tnn.Module] = []
        for layer in model.layers:
            ns = layer.neurons
            modules.append(tnn.Linear(len(ns[0].w), len(ns), dtype=dtype))
            if ns[0].activation is not None:
                modules.append(_ACTIVATION_MODULES[ns[0].activation]())
        return tnn.Sequential(*modules)
    if k == "Linear":
        return tnn.Linear(len(model.weight[0]), len(model.weight), bias=model.bias is not None, dtype=dtype)
    if k == "Embedding":
        return tnn.Embedding(len(model.weight), len(model.weight[0]), dtype=dtype)
    if k == "RMSNorm":
        return _rmsnorm(model.dim, model.eps, dtype, None)
    if k == "CausalSelfAttention":
        return CausalSelfAttention(len(model.q.weight), model.n_head, dtype)
    if k == "Block":
        return Block(len(model.fc1.weight[0]), model.attn.n_head, model.norm.eps, dtype)
    if k == "GPT":
        n_embd, n_head = len(model.wte.weight[0]), model.layers[0].attn.n_head
        return GPT(model.vocab_size, n_embd, n_head, len(model.layers), model.block_size, dtype=dtype)
    return Composite(model, dtype, forward)


def to_torch(model: Any, dtype: Any = None, forward: Any = None) -> tnn.Module:
    """An equivalent torch.nn.Module with model's weights, in float64 unless dtype says otherwise.

    Neuron, Layer, CausalSelfAttention, Block and GPT become this module's classes of those names;
    MLP an nn.Sequential of nn.Linear and activation modules; Linear, Embedding and RMSNorm torch's own.
    A module of your own becomes a `Composite` of its converted parts, whose forward is `forward`
    (called as forward(twin, *args)); chaingrad's own modules take no forward.
    """
    names = _checked_names(model)
    dtype = _torch_dtype(dtype)
    if forward is not None and (kind(type(model)) is not None or not callable(forward)):
        what = "a function" if kind(type(model)) is None else f"none: {type(model).__name__} has its own"
        raise TypeError(f"to_torch(forward=...) takes {what}, not {forward!r:.40}")
    twin = _twin(model, dtype, forward)
    tensors = {
        k: torch.tensor(v, dtype=torch.float64) for k, v in _grouped(names, model.state_dict()).items()
    }
    with torch.no_grad():
        twin.load_state_dict(tensors)  # strict: fills every torch entry, and no other
    for norm, tnorm in _norm_pairs(model, twin):
        tnorm.eps = norm.eps
    return twin


# ---------------------------------------------------------------------------
# torch -> chaingrad
# ---------------------------------------------------------------------------


def _keys(keys: set[str]) -> str:
    shown = sorted(keys)[:10]
    return ", ".join(map(repr, shown)) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")


def load_torch_state_dict(model: Any, state_dict: Mapping[str, Any]) -> None:
    """Set model's parameters from a torch state dict with the keys and shapes of
    `model.to_torch().state_dict()` (any floating dtype, any device); on any missing, extra,
    misshapen or non-finite entry raise naming it, and change nothing."""
    names = _checked_names(model)
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            "a torch state dict must be a dict of tensors (module.state_dict()), "
            f"not {type(state_dict).__name__}"
        )
    shapes = {k: tuple(torch.tensor(v).shape) for k, v in _grouped(names, model.state_dict()).items()}
    missing, extra = shapes.keys() - state_dict.keys(), state_dict.keys() - shapes.keys()
    if missing or extra:
        parts = [f"missing {_keys(missing)}" if missing else "", f"extra {_keys(extra)}" if extra else ""]
        raise KeyError(
            f"torch state dict does not fit this {type(model).__name__}: " + "; ".join(filter(None, parts))
        )
    values: dict[str, Any] = {}
    for tkey, shape in shapes.items():
        t = state_dict[tkey]
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            what = f"a {t.dtype} tensor" if isinstance(t, torch.Tensor) else type(t).__name__
            raise TypeError(f"torch state dict entry {tkey!r} holds {what}, not a floating-point tensor")
        if tuple(t.shape) != shape:
            raise ValueError(
                f"torch state dict entry {tkey!r}: expected shape {shape}, got {tuple(t.shape)} "
                f"(a {type(model).__name__} of another size?)"
            )
        t = t.detach().to("cpu", torch.float64)
        if not torch.isfinite(t).all():
            raise ValueError(f"torch state dict entry {tkey!r} holds nan or inf")
        values[tkey] = t.tolist()
    model.load_state_dict({k: values[t] if row is None else values[t][row] for k, (t, row) in names.items()})


def _expect(module: Any, types: type | tuple[type, ...], cls: type | str, what: str) -> None:
    if isinstance(module, types):
        return
    hint = ""
    if isinstance(getattr(module, "module", None), tnn.Module):  # DistributedDataParallel and the like
        hint = "; it wraps a module: pass its .module"
    name = cls if isinstance(cls, str) else cls.__name__
    raise TypeError(f"{name}.from_torch takes {what}, not {type(module).__name__}{hint}")


def _norm_eps(norm: Any, where: str) -> float:
    """The eps of a torch RMSNorm that chaingrad's RMSNorm (no weight, a fixed eps) can be."""
    _expect(norm, tnn.RMSNorm, "RMSNorm", "a torch.nn.RMSNorm")
    if len(norm.normalized_shape) != 1 or norm.weight is not None or norm.eps is None:
        raise ValueError(
            f"from_torch: {where} is {norm}; chaingrad's RMSNorm normalises the last axis, "
            "has no weight (elementwise_affine=False) and a fixed eps"
        )
    return float(norm.eps)


def _with_bias(linears: Sequence[tnn.Linear], prefix: Sequence[str]) -> dict[str, torch.Tensor]:
    """The state dict of these Linear layers under these prefixes, a missing bias as zeros."""
    out = {}
    for p, m in zip(prefix, linears):
        out[f"{p}weight"] = m.weight
        out[f"{p}bias"] = m.bias if m.bias is not None else torch.zeros(m.out_features)
    return out


def _mlp(cls: type, module: Any) -> tuple[Any, Mapping[str, Any]]:
    _expect(module, tnn.Sequential, cls, "a torch.nn.Sequential")
    kinds = {v: k for k, v in _ACTIVATION_MODULES.items()}
    mods = list(module)
    names = ["Linear" if isinstance(m, tnn.Linear) else kinds.get(type(m), type(m).__name__) for m in mods]
    if names and all(n == "Linear" for n in names):
        linears, activation = mods, None
    elif (
        len(names) % 2
        and all(n == "Linear" for n in names[0::2])
        and len(set(names[1::2])) == 1
        and names[1] in _ACTIVATIONS
    ):
        linears, activation = mods[0::2], names[1]
    else:
        raise ValueError(
            "from_torch: expected Linear, activation, Linear, ..., Linear with one kind of activation "
            f"(ReLU, Tanh or Sigmoid) or none, got {names}"
        )
    for a, b in itertools.pairwise(linears):
        if a.out_features != b.in_features:
            raise ValueError(f"from_torch: {a} feeds {b}, whose sizes do not match")
    step = 1 if activation is None else 2
    model = cls(linears[0].in_features, [m.out_features for m in linears], activation=activation, seed=0)
    return model, _with_bias(linears, [f"{step * k}." for k in range(len(linears))])


def _layer(cls: type, module: Any) -> tuple[Any, Mapping[str, Any]]:
    _expect(module, tnn.Linear, cls, "a torch.nn.Linear or a chaingrad.bridge.Layer")
    activation = module.activation if isinstance(module, Layer) else None
    model = cls(module.in_features, module.out_features, activation=activation, seed=0)
    return model, _with_bias([module], [""])


def _linear(cls: type, module: Any) -> tuple[Any, Mapping[str, Any]]:
    _expect(module, tnn.Linear, cls, "a torch.nn.Linear")
    if getattr(module, "activation", None) is not None:
        raise ValueError(f"from_torch: {module} applies {module.activation}; chaingrad's Linear applies none")
    return cls(
        module.in_features, module.out_features, bias=module.bias is not None, seed=0
    ), module.state_dict()


def _embedding(cls: type, module: Any) -> tuple[Any, Mapping[str, Any]]:
    _expect(module, tnn.Embedding, cls, "a torch.nn.Embedding")
    if module.padding_idx is not None or module.max_norm is not None or module.scale_grad_by_freq:
        raise ValueError(
            f"from_torch: {module} uses padding_idx, max_norm or scale_grad_by_freq, which chaingrad's "
            "Embedding does not have"
        )
    return cls(module.num_embeddings, module.embedding_dim, seed=0), module.state_dict()


def _norm(cls: type, module: Any) -> tuple[Any, Mapping[str, Any]]:
    eps = _norm_eps(module, "the module")
    return cls(module.normalized_shape[0], eps=eps), {}


def _attention(cls: type, module: Any) -> tuple[Any, Mapping[str, Any]]:
    _expect(module, CausalSelfAttention, cls, "a chaingrad.bridge.CausalSelfAttention")
    return cls(module.q.in_features, module.n_head, seed=0), module.state_dict()


def _block(cls: type, module: Any) -> tuple[Any, Mapping[str, Any]]:
    _expect(module, Block, cls, "a chaingrad.bridge.Block")
    eps = _norm_eps(module.norm, "its norm")
    model = cls(module.attn.q.in_features, module.attn.n_head, seed=0)
    model.norm.eps = eps
    return model, module.state_dict()


def _gpt(cls: type, module: Any) -> tuple[Any, Mapping[str, Any]]:
    _expect(module, GPT, cls, "a chaingrad.bridge.GPT (what GPT.to_torch() returns)")
    if not module.layers:
        raise ValueError("from_torch: the torch GPT has no layers; chaingrad's GPT needs at least one")
    eps = [_norm_eps(module.norm, "its norm")]
    eps += [_norm_eps(b.norm, f"layers.{k}.norm") for k, b in enumerate(module.layers)]
    model = cls(
        module.vocab_size,
        module.wte.embedding_dim,
        module.layers[0].attn.n_head,
        len(module.layers),
        module.block_size,
        seed=0,
    )
    for norm, e in zip([model.norm] + [b.norm for b in model.layers], eps):
        norm.eps = e
    return model, module.state_dict()


def _neuron(cls: type, module: Any) -> tuple[Any, Mapping[str, Any]]:
    _expect(module, Neuron, cls, "a chaingrad.bridge.Neuron")
    return cls(module.w.shape[0], activation=module.activation, seed=0), module.state_dict()


_BUILDERS = {
    "Neuron": _neuron,
    "Layer": _layer,
    "MLP": _mlp,
    "Linear": _linear,
    "Embedding": _embedding,
    "RMSNorm": _norm,
    "CausalSelfAttention": _attention,
    "Block": _block,
    "GPT": _gpt,
}


def from_torch(cls: type[M], module: Any) -> M:
    """A new chaingrad `cls` with the architecture and weights of the torch `module`: what
    `cls.to_torch()` returns, or for MLP any nn.Sequential of nn.Linear layers with one kind of
    activation (ReLU, Tanh, Sigmoid) between them; for Layer and Linear any nn.Linear. Reads `module`
    and changes nothing, nor chaingrad's random generator."""
    k = kind(cls)
    if k is None:
        raise TypeError(
            f"{cls.__name__}.from_torch: chaingrad cannot build a module of your own from torch (it "
            f"cannot know {cls.__name__}'s constructor); make one and load the weights with "
            "model.load_torch_state_dict(module.state_dict())"
        )
    build = _BUILDERS[k]
    model, state = build(cls, module)
    try:
        load_torch_state_dict(model, state)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{cls.__name__}.from_torch: {e.args[0]}") from None
    return model  # type: ignore[return-value]
