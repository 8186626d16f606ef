"""Fuzzing against PyTorch float64: random graphs over every op, fused op and the batch axis.

Each case builds the same random graph in chaingrad and in PyTorch (tests/graphs.py): every
primitive op in each operand form (Value op Value, Value op number, number op Value, with float,
int and NumPy-batch constants), a user-defined op, every fused op (sum with and without a start,
mean, dot with and without a start, logsumexp, softmax, log_softmax, cross_entropy with int,
NumPy-int and per-sample targets), whole layers (cg.affine, batched and not, fed with another
layer's rows) and batch reductions inside the graph, with operands drawn from all earlier nodes
so that nodes are shared many times. The forward value and the gradient of every leaf must
equal PyTorch's to 1e-10 relative (or to 1e-10 times the scale of what is compared, for results
near 0 after cancellation: the largest term of the root for the value, the largest gradient
of any node for the gradients), with nan and inf exactly where PyTorch has them. Further
tests put infinities, nans and signed zeros among the leaves, and run the softmax family and
the binary ops on operands of any magnitude.

The normal run checks about eight thousand cases in under a minute. For a long soak run (50
times the cases, random graphs of up to 200 nodes and big ones of 5,000 to 20,000; about
half an hour on two cores), set CHAINGRAD_SOAK=1:

    CHAINGRAD_SOAK=1 python -m pytest tests/test_fuzz.py -n 2

Hypothesis runs derandomized, so a run is reproducible and a failure prints its seed.
"""

from __future__ import annotations

import math
import os
import random
import warnings

import numpy as np
import pytest
import torch
from conftest import assert_close, same
from graphs import (
    ALL_BATCHED_OPS,
    ALL_OPS,
    BINARY,
    build,
    largest,
    leaf_grads,
    random_graph_mismatches,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chaingrad as cg
from chaingrad import Value

SOAK = os.environ.get("CHAINGRAD_SOAK") == "1"
MORE = 50 if SOAK else 1
REL = 1e-10


def fuzz(examples):
    """Hypothesis settings for `examples` cases (50 times as many in a soak run)."""
    return settings(
        max_examples=examples * MORE,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


SEEDS = st.integers(0, 2**32 - 1)

# ---------------------------------------------------------------------------
# Random graphs in the range where both engines are finite
# ---------------------------------------------------------------------------


@fuzz(3000)
@given(seed=SEEDS, leaves=st.integers(1, 8), size=st.integers(1, 200 if SOAK else 60))
def test_random_graphs_match_torch(seed, leaves, size):
    bad = random_graph_mismatches(
        seed, 1, 0, (size, size), (leaves, leaves), ALL_OPS, rich=True, rel=REL, abs_tol=None
    )
    assert not bad, bad


@fuzz(1000)
@given(
    seed=SEEDS, batch=st.integers(1, 5), leaves=st.integers(1, 8), size=st.integers(1, 200 if SOAK else 60)
)
def test_random_batched_graphs_match_torch(seed, batch, leaves, size):
    bad = random_graph_mismatches(
        seed, 1, batch, (size, size), (leaves, leaves), ALL_BATCHED_OPS, rich=True, rel=REL, abs_tol=None
    )
    assert not bad, bad


BIG = [(seed, batch) for seed in range(10 if SOAK else 2) for batch in (0, 3)]


@pytest.mark.parametrize("seed, batch", BIG, ids=[f"seed{s}-batch{b}" for s, b in BIG])
def test_big_random_graphs_match_torch(seed, batch):
    # Graphs of thousands of nodes (up to 20,000 in a soak run) over 2-20 leaves.
    size = (5000, 20000) if SOAK else (1000, 3000)
    graphs = 5 if SOAK else 1
    ops = ALL_BATCHED_OPS if batch else ALL_OPS
    bad = random_graph_mismatches(
        1000 + seed, graphs, batch, size, (2, 20), ops, rich=True, rel=REL, abs_tol=None
    )
    assert not bad, bad


# ---------------------------------------------------------------------------
# Random graphs with infinities, nans and signed zeros among the leaves
# ---------------------------------------------------------------------------

# Every op but the test's softplus, log(1 + e^x), whose naive formula overflows where torch's does not.
IEEE_OPS = {
    batched: [op for op in ops if op != "softplus"] for batched, ops in ((0, ALL_OPS), (1, ALL_BATCHED_OPS))
}


def _ieee_check(op, a, b, out, exponent_is_value=False):
    # Keep every node, non-finite or not, except where the sign of a zero input decides the sign
    # of an infinity (x / 0, 0 ** -1): zeros' signs may differ without either being wrong, as
    # torch's mean of a single -0.0 is +0.0 and its cross_entropy of a single class is -0.0.
    if op == "/":
        return not bool((b == 0).any())
    if op == "**":
        return not bool(((a == 0) & (b < 0)).any())
    return True


def _pattern(x):
    """Where x is nan, +inf and -inf."""
    x = np.atleast_1d(np.asarray(x, dtype=float))
    return np.isnan(x).tolist(), np.isposinf(x).tolist(), np.isneginf(x).tolist()


def _ieee_mismatches(seed, batch, n_leaves, size):
    rng = random.Random(seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cs, ts = build(
            rng, batch, n_leaves, (size, size), IEEE_OPS[batch > 0], True, _ieee_check, special=0.3
        )
        root, troot = cs[-1], ts[-1]  # the last node: a sum of nodes would be nan whenever two infinities met
        if batch:
            root, troot = cg.batch_mean(root), troot.mean()
        for t in ts[n_leaves:]:
            if t.requires_grad:
                t.retain_grad()
        root.backward()
        if troot.requires_grad:
            troot.backward()
    bad = []
    noisy = sorted({str(w.message) for w in caught if "chaingrad" in w.filename})
    if noisy:
        bad.append(f"NumPy warnings instead of quiet IEEE results: {noisy}")
    scale = largest(t.detach().numpy() for t in ts)  # accuracy is the other tests' job; here, patterns
    for q, (c, t) in enumerate(zip(cs, ts)):
        got, want = np.broadcast_to(c.data, t.shape), t.detach().numpy()
        if _pattern(got) != _pattern(want):
            bad.append(f"node {q} ({c._op or 'leaf'}) value {got} where torch has {want}")
        elif not all(same(x, y, REL, REL * scale) for x, y in zip(np.ravel(got), np.ravel(want))):
            bad.append(f"node {q} ({c._op or 'leaf'}) value {got} != torch's {want}")
    # PyTorch's fused backward formulas mix an infinite incoming gradient across the inputs
    # (softmax: s * (g - sum(g * s))) and its relu and pow select where chaingrad multiplies
    # (0 * inf), so leaf gradients are compared where every gradient torch passes on is finite.
    inner = [t.grad for t in ts[n_leaves:] if t.grad is not None]
    if not bad and all(bool(torch.isfinite(g).all()) for g in inner):
        got, want = leaf_grads(cs, ts, n_leaves)
        tol = REL * max(1.0, largest(want), largest(g.numpy() for g in inner))  # the contributions' scale
        for q, (g, w) in enumerate(zip(got, want)):
            if _pattern(g) != _pattern(w) or not all(
                same(x, y, REL, tol) for x, y in zip(g.ravel(), w.ravel())
            ):
                bad.append(f"leaf {q} grad {g} where torch has {w}")
    return [(seed, batch, n_leaves, size, *bad)] if bad else []


@fuzz(1500)
@given(seed=SEEDS, batch=st.sampled_from([0, 0, 1, 3]), leaves=st.integers(1, 4), size=st.integers(1, 6))
def test_random_graphs_with_infinities_and_nans_match_torch(seed, batch, leaves, size):
    # Leaves are 0, -0, +-inf, nan, 710 (exp overflows) or -750 (exp underflows) three times in
    # ten; every node's value must have nan and +-inf where torch's has, and no op may warn.
    bad = _ieee_mismatches(seed, batch, leaves, size)
    assert not bad, bad


QUIET = {  # every fused op on batches holding infinities and nans, forward and backward
    "sum": lambda xs: cg.sum(xs, start=xs[2]),
    "mean": lambda xs: cg.mean(xs),
    "dot": lambda xs: cg.dot(xs, xs[::-1], start=xs[0]),
    "dot with numbers": lambda xs: cg.dot(xs, [1.0, -1.0, 0.0]),
    "logsumexp": lambda xs: cg.logsumexp(xs),
    "softmax": lambda xs: cg.softmax(xs)[0],
    "log_softmax": lambda xs: cg.log_softmax(xs)[1],
    "cross_entropy": lambda xs: cg.cross_entropy(xs, np.array([0, 1, 2, 0, 1])),
    "affine": lambda xs: cg.affine(
        [[Value(1.0), Value(-1.0), Value(0.0)], [Value(math.inf), Value(2.0), Value(math.nan)]],
        xs,
        [Value(0.0), Value(math.inf)],
        "relu",
    )[0],
    "batch_mean": lambda xs: cg.batch_mean(xs[0] - xs[1]),
}


@pytest.mark.parametrize("name", QUIET)
def test_batched_fused_ops_give_ieee_results_without_warnings(name):
    # Found by the fuzz (log_softmax). test_ops checks the primitive ops the same way.
    xs = [
        Value(np.array([math.inf, -math.inf, math.nan, 0.0, 710.0])),
        Value(np.array([math.inf, math.inf, 1.0, -0.0, -750.0])),
        Value(np.array([-math.inf, 1.0, 2.0, 0.0, 710.0])),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cg.batch_sum(QUIET[name](xs)).backward()
    assert not [str(w.message) for w in caught], f"{name}: {[str(w.message) for w in caught]}"


def _t64(x, grad=True):
    return torch.tensor(x, dtype=torch.float64, requires_grad=grad)


def test_the_batched_gradient_of_a_power_uses_c_pow_like_its_value():
    # Found by the fuzz: (-inf) ** 1.5 = inf on a number and on a batch, and so is its derivative
    # 1.5 * (-inf) ** 0.5 (C's pow, as PyTorch), not NumPy's nan.
    for data in (-math.inf, np.array([-math.inf, 4.0])):
        x = Value(data)
        cg.batch_sum(x**1.5).backward()
        t = _t64(data)
        (t ** _t64(1.5, grad=False)).sum().backward()
        assert_close(x.grad, t.grad.numpy(), what=f"d/dx x ** 1.5 at {data}")


def _consumed_with_zero_gradient(x, tx):
    w, tw = Value(2.0), _t64(2.0)
    (out,) = cg.affine([[w]], [x])
    cg.batch_sum(out * 0.0).backward()
    (tw * tx * 0.0).sum().backward()
    return w.grad, tw.grad.item()


def _unconsumed_with_infinite_weight(x, tx):
    used, _ = cg.affine([[Value(1.0)], [Value(math.inf)]], [x])
    cg.batch_sum(used).backward()
    (_t64(1.0, grad=False) * tx).sum().backward()
    return x.grad, tx.grad.numpy()


def _feeding_only_an_unconsumed_output(x, tx):
    a, ta = Value(0.0), _t64(0.0)
    used, _ = cg.affine([[Value(1.0)], [a.sqrt()]], [x])  # sqrt's local gradient at 0 is inf
    cg.batch_sum(used).backward()
    used, _ = (_t64(1.0, grad=False) * tx, ta.sqrt() * tx)
    used.sum().backward()
    return a.grad, 0.0 if ta.grad is None else ta.grad.item()


@pytest.mark.parametrize(
    "case, samples",
    [
        (_consumed_with_zero_gradient, [math.inf, 1.0]),
        (_unconsumed_with_infinite_weight, [1.0, 2.0]),
        (_feeding_only_an_unconsumed_output, [1.0, 2.0]),
    ],
    ids=["consumed with gradient 0", "unconsumed, infinite weight", "feeding only an unconsumed output"],
)
def test_a_batched_layer_sends_the_gradients_its_neurons_would(case, samples):
    # Found by the fuzz. A layer on a batch must give what its neurons give sample by sample (and
    # PyTorch gives): an output that is consumed, even with a gradient of exactly 0, multiplies
    # its infinite input (0 * inf = nan); an output nothing consumes sends nothing, even from an
    # infinite weight, and a weight that feeds only such outputs is not reached at all (so its
    # own infinite local gradient meets no 0).
    per_sample = [case(Value(v), _t64(v)) for v in samples]
    assert_close([g for g, _ in per_sample], [w for _, w in per_sample], what="per sample")
    got, want = case(Value(np.array(samples)), _t64(samples))
    assert_close(got, want, what="batched")


# ---------------------------------------------------------------------------
# Fused and primitive ops at any magnitude
# ---------------------------------------------------------------------------

SOFTMAX_FAMILY = {
    "softmax": (lambda xs, k: cg.softmax(xs)[k], lambda z, k: torch.softmax(z, 0)[k]),
    "log_softmax": (lambda xs, k: cg.log_softmax(xs)[k], lambda z, k: torch.log_softmax(z, 0)[k]),
    "logsumexp": (lambda xs, k: cg.logsumexp(xs), lambda z, k: torch.logsumexp(z, 0)),
    "cross_entropy": (lambda xs, k: cg.cross_entropy(xs, k), lambda z, k: -torch.log_softmax(z, 0)[k]),
}
CENTERS = st.one_of(st.floats(-1e15, 1e15), st.sampled_from([0.0, 1000.0, -1e6, 1e8, 1e16, -1e100, 1e300]))


@pytest.mark.parametrize("name", SOFTMAX_FAMILY)
@fuzz(150)
@given(
    center=CENTERS,
    offsets=st.lists(st.floats(-40, 40), min_size=1, max_size=6),
    k=st.integers(0, 5),
    batched=st.booleans(),
)
def test_softmax_family_is_as_accurate_as_torch_at_any_magnitude(name, center, offsets, k, batched):
    # Logits close to each other but far from 0: softmax is shift-invariant, and so is the accuracy
    # PyTorch reaches (it subtracts the max before anything else). In a batch, the second sample is
    # the same logits around 0.
    k %= len(offsets)
    logits = [center + o for o in offsets]
    data = [np.array([x, o]) for x, o in zip(logits, offsets)] if batched else logits
    f, tf = SOFTMAX_FAMILY[name]
    vs = [Value(x) for x in data]
    out = f(vs, k)
    cg.batch_sum(out).backward()
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in data]
    tout = tf(torch.stack(ts), k)
    tout.sum().backward()
    assert_close(out.data, tout.detach().numpy(), REL, REL, f"{name} value, logits {logits}")
    for i, (v, t) in enumerate(zip(vs, ts)):
        assert_close(v.grad, t.grad.numpy(), REL, REL, f"{name} grad {i}, logits {logits}")


ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True, width=64)


@pytest.mark.parametrize("symbol", BINARY)
@fuzz(300)
@given(
    x=ANY_FLOAT, y=ANY_FLOAT, form=st.sampled_from(["Value op Value", "Value op number", "number op Value"])
)
def test_binary_ops_match_torch_at_any_magnitude(symbol, x, y, form):
    # Operands anywhere in the float range (subnormals, 1e-300, 1e300, infinities, nan): the value
    # and both local gradients, where the true ones are representable, as PyTorch computes them.
    f = BINARY[symbol]
    vx, vy = Value(x), Value(y)
    tx, ty = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (x, y))
    args = {"Value op Value": (vx, vy), "Value op number": (vx, y), "number op Value": (x, vy)}[form]
    targs = {
        "Value op Value": (tx, ty),
        "Value op number": (tx, ty.detach()),
        "number op Value": (tx.detach(), ty),
    }
    out, tout = f(*args), f(*targs[form])
    out.backward()
    tout.backward()
    want_x = 0.0 if tx.grad is None else tx.grad.item()
    want_y = 0.0 if ty.grad is None else ty.grad.item()
    got = [
        out.data,
        vx.grad if form != "number op Value" else 0.0,
        vy.grad if form != "Value op number" else 0.0,
    ]
    want = [tout.item(), want_x, want_y]
    assert all(same(g, w, REL) for g, w in zip(got, want)), (f"{x!r} {symbol} {y!r}", form, got, want)


@pytest.mark.parametrize("op, scale", [("tanh", 1 + 1e-6), ("dot", 1 - 1e-6), ("affine", None)])
def test_the_fuzz_catches_a_gradient_off_by_one_part_in_a_million(op, scale, monkeypatch):
    # The tolerance is not vacuous: one local gradient 1e-6 off (or the batched layer's weight
    # gradients) is found in a few dozen graphs.
    target = cg.engine.OPS[op]
    if scale is None:
        rule = target.rule

        def skewed_rule(node, g):
            Xs = node._ctx.Xs
            node._ctx = node._ctx._replace(Xs=tuple(X * (1 + 1e-6) for X in Xs))
            try:
                return rule(node, g)
            finally:
                node._ctx = node._ctx._replace(Xs=Xs)

        monkeypatch.setattr(target, "rule", skewed_rule)
    else:
        local = target.local
        monkeypatch.setattr(target, "local", lambda *args: tuple(d * scale for d in local(*args)))
    if op == "tanh":  # Value.tanh has the op table's formula written into it: skew what it records
        method = Value.tanh

        def skewed_tanh(x):
            out = method(x)
            if out._local:
                out._local = tuple(d * scale for d in out._local)
            return out

        monkeypatch.setattr(Value, "tanh", skewed_tanh)
    batch = 3 if op == "affine" else 0
    ops = ALL_BATCHED_OPS if batch else ALL_OPS
    bad = random_graph_mismatches(7, 30, batch, (20, 60), (2, 6), ops, rich=True, rel=REL, abs_tol=None)
    assert len(bad) >= 3, bad
