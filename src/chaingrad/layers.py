"""Whole layers at once: activation(W x + b), as one `dot` node per output or, on a batch, one node.

On single numbers a layer is what its neurons compute: one `dot` node per
output (the bias added last), then the activation. On a batch (NumPy data) the
per-input work would be one NumPy call per weight, so the layer becomes one
`affine` node holding the (outputs x samples) matrix, with one `row` node per
output picking out its row: forward is one matrix product, backward three.
A whole MLP on a batch (`affine_layers`) is one such node for all its layers.
The layer's gradient is an honest matrix, masked where an output was not
consumed: such an output sends nothing back, exactly as an unused neuron's
own node would (no 0 * inf from its weights or inputs).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple

from . import _backend
from ._backend import Value, twin
from .engine import Op, add_gradient, built_in
from .fused import batch_datas, checked_inputs, dot, is_batch
from .modes import ANOMALY, NO_GRAD, check_forward, mode
from .numerics import ACTIVATIONS, data, numpy, relu, sigmoid, tanh

__all__ = ["affine", "affine_layers"]


def affine(
    weights: Sequence[Sequence[Any]],
    xs: Sequence[Any],
    biases: Sequence[Any] | None = None,
    activation: str | None = None,
) -> list[Value]:
    """[activation(dot(w, xs) + b) for each row w of weights and b of biases], one Value per row."""
    xs = checked_inputs(xs, "affine")
    rows, bs, activation = layer = _checked(weights, len(xs), biases, activation)
    if not any(map(is_batch, xs)):
        outs = [dot(w, xs, b) for w, b in zip(rows, bs)]
        return outs if activation is None else [getattr(o, activation)() for o in outs]
    return _batched([layer], xs)


def affine_layers(layers: Sequence[tuple[Any, Any, str | None]], xs: Sequence[Any]) -> list[Value]:
    """affine(weights, xs, biases, activation) for each layer in turn, each layer's outputs the next
    one's inputs: a whole MLP. On a batch all the layers are one node, with their math: the hidden
    layers' outputs stay matrices, and backward goes down through them as their own nodes would."""
    if not isinstance(xs, (list, tuple)):
        xs = checked_inputs(xs, "affine")
    if not any(map(is_batch, xs)):  # single numbers: affine() layer by layer, which checks its inputs
        for weights, biases, activation in layers:
            xs = affine(weights, xs, biases, activation)
        return xs
    xs, checked = checked_inputs(xs, "affine"), []
    for weights, biases, activation in layers:
        checked.append(_checked(weights, len(checked[-1][0]) if checked else len(xs), biases, activation))
    return _batched(checked, xs)


def _checked(
    weights: Any, nin: int, biases: Any, activation: Any
) -> tuple[list[tuple[Any, ...]], tuple[Any, ...], Any]:
    """One layer's (rows of weights, biases, activation), checked against its number of inputs; a
    missing bias is 0.0."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"affine(): activation must be one of {list(ACTIVATIONS)}, not {activation!r}")
    rows = [checked_inputs(w, "affine") for w in weights] if isinstance(weights, (list, tuple)) else None
    if not rows:
        raise ValueError("affine() needs at least one row of weights (a list of lists)")
    for k, w in enumerate(rows):
        if len(w) != nin:
            raise ValueError(f"affine(): weight row {k} has {len(w)} entries for {nin} inputs")
    bs = (0.0,) * len(rows) if biases is None else checked_inputs(biases, "affine")
    if len(bs) != len(rows):
        raise ValueError(f"affine(): {len(bs)} biases for {len(rows)} rows of weights")
    return rows, bs, activation


class Layers(NamedTuple):
    """What an affine node's backward needs besides its output: each layer's weights and inputs as
    matrices (a hidden layer's output is the next one's input)."""

    Ws: tuple[Any, ...]  # (outputs x inputs), layer by layer
    Xs: tuple[Any, ...]  # (inputs x samples)
    activations: tuple[str | None, ...]
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


def _parameters(params: list[Any]) -> tuple[Any, tuple[bool, ...]]:
    """The weights' and biases' data as one float64 array, and which of them are Values."""
    np = numpy()
    packed = _backend.floats(params)  # a model's: float Values, read in C where the core runs
    if packed is not NotImplemented:
        return np.frombuffer(packed), (True,) * len(params)
    try:
        P = np.array([data(p) for p in params], dtype=float)
    except (TypeError, ValueError):  # a batch among single numbers
        P = None
    if P is None or P.shape != (len(params),):
        raise ValueError("affine(): weights and biases must be single numbers, not batches")
    return P, tuple(map(isinstance, params, itertools.repeat(Value)))


def _batched(layers: list[tuple[Any, ...]], xs: tuple[Any, ...]) -> list[Value]:
    np = numpy()
    params = [p for rows, bs, _ in layers for p in itertools.chain(*rows, bs)]
    P, kinds = _parameters(params)
    kinds += tuple(map(isinstance, xs, itertools.repeat(Value)))
    args = (*params, *xs)
    flags, X, Ws, Xs, start = mode(), _matrix(xs, batch_datas(xs, "affine")), [], [], 0
    for rows, _, activation in layers:  # each layer's weights, then its biases, are the next slice of P
        n, m = len(rows), len(rows[0])
        end = start + n * m
        W, b = P[start:end].reshape(n, m), P[end : end + n]
        with np.errstate(all="ignore"):
            Z = W @ X + b[:, None]
        Y = Z if activation is None else ACTIVATION[activation](Z)
        if flags & ANOMALY:
            check_forward(AFFINE, Y, params[start : end + n])
        Ws.append(W), Xs.append(X)
        X, start = Y, end + n
    if flags & NO_GRAD:
        return [_backend.node(Y[k], (), (), "", None) for k in range(len(Y))]
    activations = tuple(activation for _, _, activation in layers)
    layer = _backend.node(
        Y,
        args if all(kinds) else tuple(itertools.compress(args, kinds)),
        None,
        AFFINE,
        Layers(tuple(Ws), tuple(Xs), activations, kinds, np.zeros(len(Y), bool)),
    )
    return [_backend.node(Y[k], (layer,), None, ROW, k) for k in range(len(Y))]


ACTIVATION = {"relu": relu, "tanh": tanh, "sigmoid": sigmoid}
# Each activation's backward on the layer's gradient matrix G, given its output Y: the rules and
# local gradients of relu, tanh and sigmoid in the op table, on whole matrices.
THROUGH = {
    None: lambda G, Y: G,
    "relu": lambda G, Y: numpy().where(Y <= 0, 0.0, G),
    "tanh": lambda G, Y: (1.0 - Y * Y) * G,
    "sigmoid": lambda G, Y: (Y * (1.0 - Y)) * G,
}


class _MatrixOp(Op):
    """An op whose backward works on the whole matrices its node keeps: its rule(node, g) gives the
    shares of the node's inputs, each added to the input's grad."""

    __slots__ = ()

    def chain(self, node: Any) -> None:
        for child, share in zip(node._prev, self.rule(node, node.grad)):
            add_gradient(child, share)


def _row_rule(node: Value, g: Any) -> list[Any]:
    # A row's gradient goes into its row of the layer's gradient matrix, marked as consumed.
    (layer,) = node._prev
    if layer.grad is None:  # the first of the layer's rows to arrive in this backward
        layer.grad = numpy().zeros(layer.data.shape)
        layer._ctx.consumed[:] = False
    layer.grad[node._ctx] = g
    layer._ctx.consumed[node._ctx] = True
    return [None]  # nothing more to add: the row is in place


def _affine_rule(node: Value, g: Any) -> list[Any]:
    np = numpy()
    Ws, Xs, activations, kinds, used = node._ctx
    Ys, shares = (*Xs[1:], node.data), []
    for W, X, Y, activation in reversed(list(zip(Ws, Xs, Ys, activations))):
        G = THROUGH[activation](g, Y)
        # d/dW = G X^T, d/db = G's row sums, d/dX = W^T G; an unconsumed output sends nothing at all
        dW, db, m = (G @ X.T).ravel().tolist(), G.sum(axis=1).tolist(), len(X)
        every = used is None or used.all()
        if not every:
            for k in np.flatnonzero(~used):
                dW[k * m : (k + 1) * m], db[k] = [None] * m, None
        shares[:0] = dW + db
        dX = W.T @ G if every else W[used].T @ G[used]
        # the layer below gets dX as its rows would: added to their zero grads (so a -0.0 from some
        # BLAS becomes 0.0, as a row's grad += share makes it), every one consumed
        g, used = 0.0 + dX, None
    shares.extend(dX)  # the inputs' shares, a row each
    return shares if all(kinds) else list(itertools.compress(shares, kinds))


AFFINE = _MatrixOp("affine", None, rule=_affine_rule)
ROW = _MatrixOp("row", None, rule=_row_rule)
built_in(AFFINE, ROW)

# Where the compiled core runs, it does affine on single numbers itself; the function above does batches.
affine = twin(AFFINE, affine)
