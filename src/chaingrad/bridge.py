"""chaingrad modules as PyTorch modules and back: the way out when a model outgrows chaingrad.

`model.to_torch()` gives an equivalent `torch.nn.Module` for every module chaingrad ships (float64
unless `dtype=` says otherwise): the same forward, the same numbers. `Cls.from_torch(module)` builds
a chaingrad module back, and `model.load_torch_state_dict(sd)` loads torch weights in place; both are
checked like `load_state_dict` (missing, extra or misshapen entries: a clear error, nothing changed).

The torch parameters carry chaingrad's dotted names. Where chaingrad keeps a matrix as one list per
row (or per neuron), torch keeps one tensor, and chaingrad's key is the torch key and a row:

    chaingrad module   chaingrad state_dict key        torch state_dict key[row]
    Neuron             w, b                            w (a vector), b (a 0-d tensor)
    Layer              neurons.3.w, neurons.3.b        weight[3], bias[3]
    MLP                layers.1.neurons.3.w            2.weight[3]  (an nn.Sequential of Linear,
                                                       activation, Linear, ...; 1.weight if no activation)
    Linear, Embedding  weight.3, bias                  weight[3], bias
    GPT                layers.0.attn.q.weight.3        layers.0.attn.q.weight[3]

`torch_names(model)` gives this correspondence for any model. chaingrad's own `state_dict()` and its
save files keep their format.

A module of your own (a subclass of `nn.Module`) made of chaingrad modules converts too: to a
`Composite` holding its parts converted under the same names (a Value it holds itself becomes a 0-d
parameter, a list of Values a vector). chaingrad cannot translate your `__call__`, so give the torch
forward: `model.to_torch(forward=lambda net, x: net.head(torch.relu(net.body(x))))`; without one the
twin holds the weights and calling it says to give one. `load_torch_state_dict` works on it as on any
model; `from_torch` builds only chaingrad's own modules (it cannot know your constructor). A subclass
of one of chaingrad's modules with parameters of its own is refused, naming them.

The torch GPT takes a whole batch of token sequences, (B, T), with a causal mask, and with `targets`
returns the mean cross-entropy over the targets that are not `IGNORE`; `pad_batch` pads names of
different lengths on the right, so padding never reaches a real position. This module imports torch
(`pip install "chaingrad[torch]"`); `import chaingrad` never imports it.

The torch twins and the conversions live in `chaingrad.torch_twins`, below `chaingrad.nn` (which
imports them lazily for `model.to_torch()`); this module is their public face, and builds on nn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from . import nn
from .torch_twins import (
    GPT,
    IGNORE,
    Block,
    CausalSelfAttention,
    Composite,
    Layer,
    Neuron,
    pad_batch,
    torch_names,
)

__all__ = [
    "GPT",
    "IGNORE",
    "Block",
    "CausalSelfAttention",
    "Composite",
    "Layer",
    "Neuron",
    "from_torch",
    "load_torch_state_dict",
    "pad_batch",
    "to_torch",
    "torch_names",
]

M = TypeVar("M", bound=nn.Module)


def to_torch(model: nn.Module, dtype: Any = None, forward: Any = None) -> Any:
    """An equivalent torch.nn.Module with model's weights, float64 unless dtype (a torch dtype) says
    otherwise: the same as `model.to_torch(dtype, forward)`. For a module of your own, `forward` is
    the torch twin's forward, called as forward(twin, *args)."""
    return model.to_torch(dtype, forward)


def from_torch(cls: type[M], module: Any) -> M:
    """A new chaingrad `cls` with the architecture and weights of the torch `module`: the same as
    `cls.from_torch(module)`."""
    return cls.from_torch(module)


def load_torch_state_dict(model: nn.Module, state_dict: Mapping[str, Any]) -> None:
    """Set model's parameters from a torch state dict: the same as `model.load_torch_state_dict(sd)`."""
    model.load_torch_state_dict(state_dict)
