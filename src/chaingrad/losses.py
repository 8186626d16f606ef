"""Loss functions: per-sample outputs and targets in, one scalar Value (the mean loss) out.

Each loss takes either a sequence of per-sample outputs with a sequence of
targets, or one batched output Value (data: a 1-D NumPy array) with a NumPy
array of targets; the batch form reduces with `cg.batch_mean`, so both forms
give the same number and the same gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any

from ._backend import Op, Value
from .engine import built_in
from .fused import batch_mean, dot, mean
from .fused import cross_entropy as _cross_entropy
from .numerics import is_array, numpy, relu, sigmoid

__all__ = ["binary_cross_entropy_with_logits", "cross_entropy", "hinge", "l2", "mse"]


def _batch_targets(targets: Any, name: str) -> Any:
    """A batch's targets as a NumPy array of numbers (a list is made one)."""
    t = numpy().asarray(targets) if isinstance(targets, (list, tuple)) else targets
    if is_array(t) and t.dtype.kind not in "biuf":
        raise TypeError(f"{name}: the targets of a batch are numbers, not an array of {t.dtype}")
    return t


def _plain(outputs: Any) -> Any:
    """A model's outputs (nn.Outputs, a list subclass) as a plain list, which the compiled core's fast
    paths take."""
    return list(outputs) if isinstance(outputs, list) and type(outputs) is not list else outputs


def _reduce(per_sample: Callable[[Any, Any], Value], outputs: Any, targets: Any, name: str) -> Value:
    """The mean of per_sample(output, target), over a sequence or over a batch."""
    outputs = _plain(outputs)
    if isinstance(outputs, Value):  # a batch: its targets an array (or a list, made one)
        return batch_mean(per_sample(outputs, _batch_targets(targets, name)))
    if isinstance(outputs, (str, bytes)) or not isinstance(outputs, Sequence):
        raise TypeError(f"{name}: outputs must be a list of per-sample Values or one batched Value")
    if isinstance(targets, (str, bytes)) or not hasattr(targets, "__len__"):
        raise TypeError(f"{name}: targets must be a list, one per output, not {type(targets).__name__}")
    if len(outputs) != len(targets):
        raise ValueError(f"{name}: {len(outputs)} outputs but {len(targets)} targets")
    if not outputs:
        raise ValueError(f"{name}: no samples")
    loss = mean([per_sample(o, t) for o, t in zip(outputs, targets)])
    arrays = [] if type(loss.data) is float else [i for i, t in enumerate(targets) if is_array(t)]
    if arrays:  # looked for only when the mean is not one number, so a loss costs nothing more
        raise TypeError(
            f"{name}: target {arrays[0]} is an array, but per-sample outputs take one target each; for a "
            "batch pass one batched Value (or a list of them, for cross_entropy) and an array of targets"
        )
    return loss


def _signs(ys: Any) -> None:
    """A ValueError naming the labels that are not -1 or 1 (0/1 labels would silently train nothing
    for the 0s: relu(1 - 0 * score) has no gradient)."""
    if is_array(ys):
        np = numpy()
        bad = np.unique(ys[(ys != 1) & (ys != -1)]).tolist() if ys.dtype.kind in "biuf" else []
    elif isinstance(ys, Sequence) and not isinstance(ys, (str, bytes)):
        found = (y.data if isinstance(y, Value) else y for y in ys)
        bad = sorted({float(y) for y in found if isinstance(y, Real) and y != 1 and y != -1}, key=repr)
    else:
        return
    if bad:
        shown = ", ".join(map(repr, bad[:5])) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(
            f"hinge(): the labels must be -1 or 1, found {shown}; "
            "map 0/1 labels to -1/1 first, e.g. y = 2 * y - 1"
        )


def hinge(scores: Any, ys: Any) -> Value:
    """mean(relu(1 - y * score)) for labels y = -1 or 1: micrograd's max-margin loss. Other labels
    (0/1 ones, say) are a ValueError naming them."""
    _signs(ys)
    return _reduce(lambda s, y: relu(1 - y * s), scores, ys, "hinge()")


def mse(preds: Any, targets: Any) -> Value:
    """mean((pred - target) ** 2)."""

    def squared(p: Any, t: Any) -> Value:
        d = p - t
        return d * d

    return _reduce(squared, preds, targets, "mse()")


def _log1p_exp_neg_abs(x: Any) -> Any:
    """log(1 + e ** -|x|), accurate when e ** -|x| is tiny."""
    if type(x) is float:
        return math.log1p(math.exp(-abs(x)))
    np = numpy()
    return np.log1p(np.exp(-np.abs(x)))


def _log_sigmoid(x: Any) -> Any:
    """log(sigmoid(x)) = min(x, 0) - log(1 + e ** -|x|), as PyTorch computes it."""
    return -relu(-x) - _log1p_exp_neg_abs(x)


# One node per sample, so the gradient is exactly sigmoid(x) - t, also at x = 0. The loss is
# PyTorch's formula, (1 - t) x - log sigmoid(x), term for term: the same numbers, inf at x = inf.
BCE_WITH_LOGITS = Op(
    "bce_with_logits",
    lambda x, t: (1.0 - t) * x - _log_sigmoid(x),
    lambda x, t, out: (sigmoid(x) - t, -x),
)
built_in(BCE_WITH_LOGITS)


def binary_cross_entropy_with_logits(logits: Any, targets: Any) -> Value:
    """mean(-t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))), computed stably from the logits x."""
    return _reduce(BCE_WITH_LOGITS, logits, targets, "binary_cross_entropy_with_logits()")


def cross_entropy(logits_per_sample: Any, targets: Any) -> Value:
    """mean over samples of -log softmax(logits)[target]; logits_per_sample is a list of per-sample
    logit lists, or one list of batched class Values with an integer array of targets."""
    logits_per_sample = _plain(logits_per_sample)
    if (
        isinstance(logits_per_sample, Sequence)
        and logits_per_sample
        and isinstance(logits_per_sample[0], Value)
    ):
        return batch_mean(_cross_entropy(logits_per_sample, _batch_targets(targets, "cross_entropy()")))
    # each sample's logits as a plain list (a model gives nn.Outputs): the compiled core's fast path
    return _reduce(lambda o, t: _cross_entropy(_plain(o), t), logits_per_sample, targets, "cross_entropy()")


def l2(params: Sequence[Value]) -> Value:
    """sum(p ** 2) over params, as one dot node."""
    params = list(params)
    return dot(params, params)
