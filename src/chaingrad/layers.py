"""A whole layer at once: activation(W x + b), as one `dot` node per output or, on a batch, one node.

On single numbers a layer is what its neurons compute: one `dot` node per
output (the bias added last), then the activation. On a batch (NumPy data) the
per-input work would be one NumPy call per weight, so the layer becomes one
`affine` node holding the (outputs x samples) matrix, with one `row` node per
output picking out its row: forward is one matrix product, backward three.
The layer's gradient is an honest matrix, masked where an output was not
consumed: such an output sends nothing back, exactly as an unused neuron's
own node would (no 0 * inf from its weights or inputs).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

from .engine import Op, Value, _node, compiled
from .fused import _datas, _inputs, dot, is_batch
from .modes import ANOMALY, NO_GRAD, check_forward, mode
from .numerics import data, numpy, relu, sigmoid, tanh

__all__ = ["ACTIVATIONS", "affine"]

ACTIVATIONS = ("relu", "tanh", "sigmoid", None)
DATA = operator.attrgetter("data")


def affine(
    weights: Sequence[Sequence[Any]],
    xs: Sequence[Any],
    biases: Sequence[Any] | None = None,
    activation: str | None = None,
) -> list[Value]:
    """[activation(dot(w, xs) + b) for each row w of weights and b of biases], one Value per row."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"affine(): activation must be one of {list(ACTIVATIONS)}, not {activation!r}")
    xs = _inputs(xs, "affine")
    rows = [_inputs(w, "affine") for w in weights] if isinstance(weights, (list, tuple)) else None
    if not rows:
        raise ValueError("affine() needs at least one row of weights (a list of lists)")
    for k, w in enumerate(rows):
        if len(w) != len(xs):
            raise ValueError(f"affine(): weight row {k} has {len(w)} entries for {len(xs)} inputs")
    bs = (None,) * len(rows) if biases is None else _inputs(biases, "affine")
    if len(bs) != len(rows):
        raise ValueError(f"affine(): {len(bs)} biases for {len(rows)} rows of weights")
    if not any(map(is_batch, xs)):
        outs = [dot(w, xs, 0.0 if b is None else b) for w, b in zip(rows, bs)]
        return outs if activation is None else [getattr(o, activation)() for o in outs]
    return _batched(rows, xs, bs, activation)


class Layer(NamedTuple):
    """What an affine node's backward needs besides its output: the weights and inputs as matrices."""

    W: Any  # (outputs x inputs)
    X: Any  # (inputs x samples)
    activation: str | None
    kinds: tuple[bool, ...]  # which of the node's arguments (weights, biases, inputs) are Values
    consumed: Any  # in backward: which outputs got a gradient (the mask of the layer's gradient matrix)


def _matrix(xs: tuple[Any, ...], datas: list[Any]) -> Any:
    """The inputs as an (inputs x samples) matrix; all the rows of one layer, in order, are its matrix."""
    first = xs[0]
    if isinstance(first, Value) and first._op is ROW:
        layer = first._prev[0]
        if len(xs) == len(layer.data) and all(
            isinstance(x, Value) and x._op is ROW and x._prev[0] is layer and x._ctx == k
            for k, x in enumerate(xs)
        ):
            return layer.data
    np = numpy()
    return np.stack(np.broadcast_arrays(*datas))


def _batched(
    rows: list[tuple[Any, ...]], xs: tuple[Any, ...], bs: tuple[Any, ...], activation: str | None
) -> list[Value]:
    np = numpy()
    params = [w for row in rows for w in row] + [0.0 if b is None else b for b in bs]
    args = (*params, *xs)
    kinds = tuple(map(isinstance, args, itertools.repeat(Value)))
    # a model's layer holds only Values: read their data in one pass of map
    values = list(map(DATA, params)) if all(kinds[: len(params)]) else [data(p) for p in params]
    try:
        P = np.array(values, dtype=float)
    except (TypeError, ValueError):  # a batch among single numbers
        P = None
    if P is None or P.shape != (len(params),):
        raise ValueError("affine(): weights and biases must be single numbers, not batches")
    W = P[: len(params) - len(bs)].reshape(len(rows), len(xs))
    b = P[len(params) - len(bs) :]
    X = _matrix(xs, _datas(xs, "affine"))
    with np.errstate(all="ignore"):
        Z = W @ X + b[:, None]
    Y = Z if activation is None else ACTIVATION[activation](Z)
    flags = mode()
    if flags & ANOMALY:
        check_forward(AFFINE, Y, list(params))
    if flags & NO_GRAD:
        return [_node(Y[k], (), (), "", None) for k in range(len(rows))]
    layer = _node(
        Y,
        tuple(itertools.compress(args, kinds)),
        None,
        AFFINE,
        Layer(W, X, activation, kinds, np.zeros(len(rows), bool)),
    )
    return [_node(Y[k], (layer,), None, ROW, k) for k in range(len(rows))]


ACTIVATION = {"relu": relu, "tanh": tanh, "sigmoid": sigmoid}
# Each activation's backward on the layer's gradient matrix G, given its output Y: the rules and
# local gradients of relu, tanh and sigmoid in the op table, on whole matrices.
THROUGH = {
    None: lambda G, Y: G,
    "relu": lambda G, Y: numpy().where(Y <= 0, 0.0, G),
    "tanh": lambda G, Y: (1.0 - Y * Y) * G,
    "sigmoid": lambda G, Y: (Y * (1.0 - Y)) * G,
}


def _row_rule(node: Value, g: Any, differentiable: bool = False) -> list[Any]:
    # A row's gradient goes into its row of the layer's gradient matrix, marked as consumed.
    (layer,) = node._prev
    if type(layer.grad) is float:  # the first of the layer's rows to arrive in this backward
        layer.grad = numpy().zeros(layer.data.shape)
        layer._ctx.consumed[:] = False
    layer.grad[node._ctx] = g
    layer._ctx.consumed[node._ctx] = True
    return []


def _affine_rule(node: Value, g: Any, differentiable: bool = False) -> list[Any]:
    W, X, activation, kinds, used = node._ctx
    G = THROUGH[activation](g, node.data)
    # d/dW = G X^T, d/db = G's row sums, d/dX = W^T G; an unconsumed output sends nothing at all
    dW = [row if u else [None] * len(row) for row, u in zip((G @ X.T).tolist(), used)]
    db = [d if u else None for d, u in zip(G.sum(axis=1).tolist(), used)]
    dX = W[used].T @ G[used]
    shares = [*(d for row in dW for d in row), *db, *dX]
    return list(itertools.compress(shares, kinds))


AFFINE = Op("affine", None, rule=_affine_rule)
ROW = Op("row", None, rule=_row_rule)

# The compiled twin of affine takes its name; the function above stays its slow path (and batches).
if compiled is not None:
    affine = compiled.setup_layers(globals())
