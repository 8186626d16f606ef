"""Random expression graphs, built alike in chaingrad and in PyTorch float64 (test_engine and test_fuzz).

`grow` adds random nodes to two parallel lists, `cs` (chaingrad Values) and
`ts` (torch tensors), drawing operands uniformly from all nodes so far, so
nodes are shared many times. `random_graph_mismatches` builds whole graphs
on random leaves (numbers, and 1-D batches when `batch` > 0), runs backward
in both engines and reports every value or leaf gradient that differs.

With the defaults (`ops=OPS`, `rich=False`) the graphs are exactly those
test_engine.py has always checked. The fuzz suite passes `ops=ALL_OPS` and
`rich=True` for every further node kind: dot with a start, sum with a Value
start, whole layers (`cg.affine`, batched and not, with and without biases
and activations, fed with another layer's rows), batch reductions inside the
graph, class-index batches for cross_entropy, a user-defined op, and
integer and NumPy-batch constants on either side of a binary op.
"""

from __future__ import annotations

import math
import operator
import random
from operator import methodcaller

import numpy as np
import torch
import torch.nn.functional as F
from conftest import SOFTPLUS, assert_close

import chaingrad as cg
from chaingrad import Value


def as_tensor(x):
    return x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=torch.float64)


def stack(xs):
    return torch.stack(torch.broadcast_tensors(*map(as_tensor, xs)))


UNARY = ["neg", "exp", "log", "tanh", "sigmoid", "relu", "sqrt", "abs", "sin", "cos"]
BINARY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "**": operator.pow}
FUSED = {  # name: (chaingrad, torch), each given the argument list and an index k
    "sum": (lambda xs, k: cg.sum(xs, start=k), lambda xs, k: stack(xs).sum(0) + k),
    "mean": (lambda xs, k: cg.mean(xs), lambda xs, k: stack(xs).mean(0)),
    "dot": (lambda xs, k: cg.dot(xs, xs[::-1]), lambda xs, k: (stack(xs) * stack(xs[::-1])).sum(0)),
    "logsumexp": (lambda xs, k: cg.logsumexp(xs), lambda xs, k: torch.logsumexp(stack(xs), 0)),
    "softmax": (lambda xs, k: cg.softmax(xs)[k], lambda xs, k: torch.softmax(stack(xs), 0)[k]),
    "log_softmax": (lambda xs, k: cg.log_softmax(xs)[k], lambda xs, k: torch.log_softmax(stack(xs), 0)[k]),
    "cross_entropy": (
        lambda xs, k: cg.cross_entropy(xs, k),
        lambda xs, k: -torch.log_softmax(stack(xs), 0)[k],
    ),
}
OPS = [*UNARY, *BINARY, *BINARY, *FUSED]  # what test_engine's random graphs draw from


def _rotated(xs, k):
    return [*xs[k:], *xs[:k]]


def _batched_targets(xs, k, batch):
    """One class index per sample (the samples of xs, or `batch` of them if xs holds no batch)."""
    n = len(xs)
    size = max((len(x.data) for x in xs if isinstance(x, Value) and x.batch_size), default=batch)
    return np.array([(k + 7 * s) % n for s in range(size)])


def _torch_cross_entropy(txs, target):
    losses = -torch.log_softmax(stack(txs), 0)
    if losses.dim() == 1:
        return losses[torch.as_tensor(target)]
    return losses[torch.as_tensor(target), torch.arange(losses.shape[1])]


def _torch_dot(a, b):
    both = torch.broadcast_tensors(*map(as_tensor, [*a, *b]))
    return (torch.stack(both[: len(a)]) * torch.stack(both[len(a) :])).sum(0)


def _halves(xs):
    n = max(len(xs) // 2, 1)
    return xs[:n], xs[-n:]


# The fuzz suite's further fused forms: (chaingrad, torch), each given the argument list and an index k.
FUSED_MORE = {
    "dot+start": (
        lambda xs, k: cg.dot(xs, _rotated(xs, k), start=xs[k]),
        lambda xs, k: (stack(xs) * stack(_rotated(xs, k))).sum(0) + as_tensor(xs[k]),
    ),
    "dot of two": (
        lambda xs, k: cg.dot(*_halves(xs)),
        lambda xs, k: _torch_dot(*_halves(xs)),
    ),
    "sum+start": (
        lambda xs, k: cg.sum(xs, start=xs[k]),
        lambda xs, k: stack(xs).sum(0) + as_tensor(xs[k]),
    ),
    "cross_entropy[np.int64]": (
        lambda xs, k: cg.cross_entropy(xs, np.int64(k)),
        lambda xs, k: -torch.log_softmax(stack(xs), 0)[k],
    ),
}
TARGETS = "cross_entropy[targets]"  # only in batched graphs: one class index per sample
REDUCTIONS = {
    "batch_mean": (cg.batch_mean, lambda t: t.mean()),
    "batch_sum": (cg.batch_sum, lambda t: t.sum()),
}
CUSTOM = {"softplus": (SOFTPLUS, F.softplus)}
ACTIVATIONS = {None: lambda z: z, "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}

# Everything, for the fuzz suite; the primitive ops twice, as in OPS, so that most nodes are primitives.
ALL_OPS = [*OPS, *FUSED_MORE, *REDUCTIONS, *CUSTOM, "affine", "affine"]
ALL_BATCHED_OPS = [*ALL_OPS, TARGETS]


def valid(op, a, b, out, exponent_is_value=False):
    """Keep the graph where both engines are well conditioned: finite, bounded, off kinks and poles.

    Gradients must stay finite too: PyTorch's relu backward selects (a nan gradient
    into relu at x < 0 gives 0), where a local-gradient engine multiplies (0 * nan = nan).
    """
    ok = torch.isfinite(out).all() and (out.abs() < 1e4).all()
    if op in ("relu", "abs"):
        ok = ok and (a.abs() > 1e-6).all()  # a one-ulp difference must not flip a kink
    elif op == "log":
        ok = ok and (a > 0.1).all()
    elif op == "sqrt":
        ok = ok and (a > 0.01).all()
    elif op == "/":
        ok = ok and (b.abs() > 0.1).all()
    elif op == "**":  # d/dy x ** y = x ** y log(x) needs x > 0 when y is a Value
        integer = not exponent_is_value and bool((b == b.round()).all())
        ok = ok and ((a.abs() if integer else a) > 0.1).all()
    elif op == "softplus":
        # The test's op is log(1 + e^x): inexact for x << 0 (1 + e^x rounds) and for x >= 20
        # torch's softplus is x itself, with gradient 1 rather than sigmoid(x) = 1 - 2e-9.
        ok = ok and ((a > -5) & (a < 15)).all()
    return bool(ok)


def _constant(rng, op, batch, rich):
    """The constant operand of a binary op: test_engine's floats, or in rich mode also ints and batches."""
    k = rng.choice([2.0, 3.0, -1.0, 0.5, 1.5, -2.0, 0.25]) if op == "**" else rng.uniform(-3, 3)
    if not rich:
        return k
    kind = rng.randrange(4)
    if kind == 1 and op == "**":
        return int(k) if k == int(k) else k
    if kind == 1:
        return rng.randint(-3, 3) or 1
    if kind == 2 and batch:
        if op == "**":
            return np.array([rng.choice([2.0, 3.0, -1.0, 0.5, -2.0]) for _ in range(batch)])
        return np.array([rng.uniform(-3, 3) for _ in range(batch)])
    return k


def _torch_affine(W, xs, bias):
    """The layer's pre-activations in torch, one dot product per output, as the neurons compute them."""
    X = stack(xs)  # (inputs,) or (inputs, samples)
    column = (-1,) + (1,) * (X.dim() - 1)
    return [
        (stack([t for _, t in row]).reshape(column) * X).sum(0)
        + (0.0 if bias is None else as_tensor(bias[r][1]))
        for r, row in enumerate(W)
    ]


def _grow_affine(rng, cs, ts, ops, check, layers):
    """One cg.affine layer: 1-3 outputs of 1-5 inputs; weights and biases single numbers or constants."""
    scalars = [q for q, c in enumerate(cs) if not c.batch_size]
    if layers and rng.random() < 0.3:  # feed another layer's rows as they are (the reused matrix)
        idx = list(rng.choice(layers))
    else:
        idx = [rng.randrange(len(cs)) for _ in range(rng.randint(1, 5))]
    nout = rng.randint(1, 3)

    def weight():
        if scalars and rng.random() < 0.8:
            q = rng.choice(scalars)
            return cs[q], ts[q]
        c = rng.uniform(-2, 2)
        return c, c

    W = [[weight() for _ in idx] for _ in range(nout)]
    bias = [weight() for _ in range(nout)] if rng.random() < 0.7 else None
    activation = rng.choice([a for a in ACTIVATIONS if a is None or a in ops])
    outs = cg.affine(
        [[w for w, _ in row] for row in W],
        [cs[q] for q in idx],
        None if bias is None else [b for b, _ in bias],
        activation,
    )
    zs = _torch_affine(W, [ts[q] for q in idx], bias)
    touts = [ACTIVATIONS[activation](z) for z in zs]
    ok = all(check("affine", None, None, t.detach()) for t in touts)
    if activation == "relu":
        ok = ok and all(check("relu", z.detach(), None, t.detach()) for z, t in zip(zs, touts))
    if not ok:
        return 0
    first = len(cs)
    cs.extend(outs)
    ts.extend(touts)
    layers.append(range(first, len(cs)))
    return len(outs)


def grow(rng, cs, ts, size, ops=OPS, batch=0, rich=False, check=valid):
    """Add `size` random nodes to the lists cs (chaingrad) and ts (torch), building both alike.

    Operands are drawn uniformly from all nodes so far, so nodes are shared many times. A node
    is kept where `check(op, input a, input b, torch's output, whether an exponent is a Value)`.
    """
    layers = []
    while size > 0:
        op = rng.choice(ops)
        if op == "affine":
            size -= _grow_affine(rng, cs, ts, ops, check, layers)
            continue
        i, j = rng.randrange(len(cs)), rng.randrange(len(cs))
        form = rng.randrange(3)  # for binary ops: Value op Value, Value op number, number op Value
        if op in UNARY:
            f = operator.neg if op == "neg" else methodcaller(op)
            c, t, a, b = f(cs[i]), f(ts[i]), ts[i], None
        elif op in CUSTOM or op in REDUCTIONS:
            f, tf = CUSTOM.get(op) or REDUCTIONS[op]
            c, t, a, b = f(cs[i]), tf(ts[i]), ts[i], None
        elif op in BINARY:
            k = _constant(rng, op, batch, rich)
            x, y, tx, ty = [(cs[i], cs[j], ts[i], ts[j]), (cs[i], k, ts[i], k), (k, cs[j], k, ts[j])][form]
            if rich:  # torch gets the constant as a tensor: torch.pow, not sqrt for ** 0.5 (test_ops.py)
                tx, ty = as_tensor(tx), as_tensor(ty)
            c, t, a, b = BINARY[op](x, y), BINARY[op](tx, ty), as_tensor(tx).detach(), as_tensor(ty).detach()
        else:
            idx = [rng.randrange(len(cs)) for _ in range(rng.randint(1, 5))]
            consts = {p: rng.uniform(-3, 3) for p in range(len(idx)) if rng.random() < 0.2}
            xs = [consts.get(p, cs[q]) for p, q in enumerate(idx)]
            txs = [consts.get(p, ts[q]) for p, q in enumerate(idx)]
            k = rng.randrange(len(idx))
            if op in FUSED:
                c, t = FUSED[op][0](xs, k), FUSED[op][1](txs, k)
            elif op in FUSED_MORE:
                c, t = FUSED_MORE[op][0](xs, k), FUSED_MORE[op][1](txs, k)
            else:  # cross_entropy with one class index per sample
                target = _batched_targets(xs, k, batch)
                c, t = cg.cross_entropy(xs, target), _torch_cross_entropy(txs, target)
            a, b = None, None
        if check(op, a, b, t.detach(), op == "**" and form != 1):
            cs.append(c)
            ts.append(t)
            size -= 1


# Leaf values beyond the usual range, for the IEEE fuzz: signed zeros, infinities, nan, and numbers
# whose exp overflows or underflows.
SPECIAL = [0.0, -0.0, math.inf, -math.inf, math.nan, 710.0, -750.0]


def _leaf(rng, special):
    # rng.random() is drawn only when `special` is asked for, so test_engine's graphs stay the same.
    return rng.choice(SPECIAL) if special and rng.random() < special else rng.uniform(-3, 3)


def leaves(rng, n, batch, special=0.0):
    """n leaf values: numbers, and (when batch > 0) half of them batches; a `special` share from SPECIAL."""
    out = []
    for _ in range(n):
        samples = [_leaf(rng, special) for _ in range(batch)]
        out.append(np.array(samples) if batch and rng.random() < 0.5 else _leaf(rng, special))
    return out


def build(rng, batch, n_leaves, size, ops=OPS, rich=False, check=valid, special=0.0):
    """One random graph of n_leaves leaves and randint(*size) nodes: (cs, ts), the lists of nodes
    in both engines, the leaves first."""
    values = leaves(rng, n_leaves, batch, special)
    cs = [Value(x) for x in values]
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in values]
    grow(rng, cs, ts, rng.randint(*size), ops, batch, rich, check)
    return cs, ts


def root(cs, ts, batch):
    """The root: the sum of a leaf and the last three nodes, reduced over the batch; and its terms."""
    terms = [0, *range(len(cs))[-3:]]
    r, t = cs[0], ts[0]
    for q in terms[1:]:
        r, t = r + cs[q], t + ts[q]
    if batch:
        r, t = cg.batch_mean(r), t.mean()
    return r, t, [ts[q] for q in terms]


def leaf_grads(cs, ts, n_leaves):
    """(chaingrad's, torch's) gradient of each leaf, as arrays of the leaf's shape."""
    # A batch leaf that the root does not reach keeps its initial grad 0.0.
    want = [t.grad if t.grad is not None else torch.zeros_like(t) for t in ts[:n_leaves]]
    return [np.broadcast_to(c.grad, g.shape) for c, g in zip(cs, want)], [g.numpy() for g in want]


def largest(arrays):
    """The largest finite magnitude in arrays (0.0 if none)."""
    finite = [np.abs(a[np.isfinite(a)]) for a in map(np.atleast_1d, arrays)]
    return max((float(a.max()) for a in finite if a.size), default=0.0)


def random_graph_mismatches(
    seed, graphs, batch, size=(5, 25), leaves=(2, 5), ops=OPS, rich=False, rel=1e-12, abs_tol=1e-12
):
    """Build `graphs` random graphs in both engines; return the ones whose value or a leaf grad differ.

    Each graph has `leaves` (a range) leaves, some of them batches of `batch` samples, and `size`
    (a range) random nodes; its root adds up the last few nodes and a leaf, reduced over the batch.
    Values and gradients must agree to `rel`, or to `abs_tol` near 0. With abs_tol=None the
    absolute tolerance is `rel` times the scale of what is compared (for results near 0 after
    cancellation): the largest term of the root's sum for the value, and for the gradients the
    largest gradient of any node (a leaf's gradient may be the small sum of large contributions).
    """
    rng = random.Random(seed)
    bad = []
    for n in range(graphs):
        n_leaves = rng.randint(*leaves)
        cs, ts = build(rng, batch, n_leaves, size, ops, rich)
        r, t, terms = root(cs, ts, batch)
        inner = [x for x in ts[n_leaves:] if x.requires_grad]
        if abs_tol is None:
            for x in inner:
                x.retain_grad()
        r.backward()
        t.backward()
        got, want = leaf_grads(cs, ts, n_leaves)
        value_tol = abs_tol if abs_tol is not None else rel * largest(x.detach().numpy() for x in terms)
        grad_tol = abs_tol
        if abs_tol is None:
            grad_tol = rel * largest([*want, *(x.grad.numpy() for x in inner if x.grad is not None)])
        try:
            assert_close(r.data, t.item(), rel, value_tol, "value")
            for q, (c, w) in enumerate(zip(got, want)):
                assert_close(c, w, rel, grad_tol, f"leaf {q} grad")
        except AssertionError as e:
            bad.append((seed, n, str(e)))
    return bad
