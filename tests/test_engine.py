"""Value and backward: construction, the chain rule on whole graphs, grad modes, anomaly mode, memory."""

from __future__ import annotations

import ast
import copy
import gc
import math
import os
import pickle
import random
import subprocess
import sys
import threading
import tracemalloc
from operator import methodcaller
from pathlib import Path

import micrograd.engine
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SOFTPLUS, assert_close, values_alive
from graphs import random_graph_mismatches
from twins import nodes as _nodes  # every node under root, leaves included, deterministically

import chaingrad as cg
from chaingrad import Value, data, losses, nn, optim

inf, nan = math.inf, math.nan


# ---------------------------------------------------------------------------
# Construction, comparisons, repr
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, exc, words",
    [
        ("3", TypeError, ["str", "'3'"]),
        (None, TypeError, ["NoneType"]),
        ([1], TypeError, ["list", "[1]"]),
        (1 + 2j, TypeError, ["complex"]),
        ({}, TypeError, ["dict"]),
        (b"1", TypeError, ["bytes"]),
        (np.array(["a"]), TypeError, ["ndarray"]),
        (np.array([1 + 1j]), TypeError, ["ndarray"]),
        (np.zeros((2, 2)), ValueError, ["1-D", "(2, 2)"]),
        (np.zeros((1, 3)), ValueError, ["1-D", "(1, 3)"]),
        (np.array([]), ValueError, ["empty"]),
    ],
    ids="str None list complex dict bytes str-array complex-array 2x2 1x3 empty".split(),
)
def test_bad_constructor_input_is_a_clear_error(data, exc, words):
    with pytest.raises(exc) as info:
        Value(data)
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)
    if exc is TypeError:  # what is accepted, too
        assert "int" in message and "float" in message, message


def test_a_value_of_a_value_is_rejected_with_advice():
    with pytest.raises(TypeError, match="another Value"):
        Value(Value(1.0))


def test_label_must_be_a_string():
    with pytest.raises(TypeError, match="label must be a str, not int"):
        Value(1.0, label=3)


@pytest.mark.parametrize("data", [3, True, 2.5, np.float64(-1.5), np.int32(7), np.array(4.0)])
def test_numbers_are_stored_as_float(data):
    v = Value(data, label="v")
    assert type(v.data) is float and v.data == float(data)
    assert (v.grad, v.label, v._prev, v._op) == (0.0, "v", (), "")


def test_a_batch_is_stored_as_a_float64_copy():
    raw = np.array([1, 2, 3])
    v = Value(raw)
    assert v.data.dtype == np.float64 and v.batch_size == 3 and list(v.data) == [1.0, 2.0, 3.0]
    raw[0] = 100
    assert v.data[0] == 1.0
    with pytest.raises(ValueError, match="item\\(\\) of a batch of 3 samples: reduce it first"):
        v.item()
    with pytest.raises(ValueError, match="batch_mean"):
        (v * 2).backward()


def test_comparisons_look_at_data_and_return_bool():
    a, b = Value(1.0), Value(2.0)
    cases = [
        (a < b, True),
        (a <= b, True),
        (a > b, False),
        (a >= b, False),
        (a < 1.5, True),
        (2 > a, True),  # reflected: Value.__lt__
        (a >= 1, True),
        (b <= 1.5, False),
    ]
    for got, want in cases:
        assert type(got) is bool and got == want


def test_equality_and_hash_are_by_identity():
    a, b = Value(1.0), Value(1.0)
    assert a == a and a != b and not (a == 1.0)
    assert len({a, b}) == 2
    d = {a: "a", b: "b"}
    assert d[a] == "a" and d[b] == "b"
    a.data = 5.0  # a hash that followed data would lose the key
    assert d[a] == "a"


@pytest.mark.parametrize("use", [float, int, round, math.tanh, math.exp, math.log, math.sqrt])
def test_a_value_is_not_a_number_to_math_or_float_as_in_micrograd(use):
    # x * math.tanh(x) would drop the tanh branch's gradient: an error, as micrograd's Value gives
    with pytest.raises(TypeError):
        use(micrograd.engine.Value(0.5))
    x = Value(0.5)
    with pytest.raises(TypeError, match=r"v\.tanh\(\), cg\.tanh\(v\).*v\.item\(\)"):
        use(x)
    assert (x.data, x.grad, x.item()) == (0.5, 0.0, 0.5)


def test_repr_matches_micrograd():
    ours, theirs = (V(-1.5) for V in (Value, micrograd.engine.Value))
    (ours * 2.0).backward()
    (theirs * 2.0).backward()
    assert repr(ours) == repr(theirs) == "Value(data=-1.5, grad=2.0)"
    assert "label='loss'" in repr(Value(1.0, label="loss"))


# ---------------------------------------------------------------------------
# The chain rule on whole graphs
# ---------------------------------------------------------------------------


def _readme_example(V):
    # micrograd's README, verbatim apart from the Value class.
    a = V(-4.0)
    b = V(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    g.backward()
    return g.data, a.grad, b.grad


def test_micrograd_readme_example():
    ours = _readme_example(Value)
    assert [f"{x:.4f}" for x in ours] == ["24.7041", "138.8338", "645.5773"]  # micrograd's README
    assert_close(ours, _readme_example(micrograd.engine.Value), what="micrograd 0.1.0")
    leaves = {x: torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in (-4.0, 2.0)}
    value, ga, gb = _readme_example(leaves.__getitem__)  # the README's code on torch tensors
    assert_close(ours, [value.item(), ga.item(), gb.item()], what="torch")


def _micrograds_draw_dot(root):
    """micrograd's draw_dot (trace_graph.ipynb, the lecture), its graphviz calls written down as text."""
    nodes, edges = set(), set()

    def build(v):
        if v not in nodes:
            nodes.add(v)
            for child in v._prev:
                edges.add((child, v))
                build(child)

    build(root)
    lines = []
    for n in nodes:
        lines.append(f"node {id(n)} {{ data {n.data:.4f} | grad {n.grad:.4f} }}")
        if n._op:
            lines.append(f"node {str(id(n)) + n._op} label={n._op}")
            lines.append(f"edge {str(id(n)) + n._op} {id(n)}")
    for n1, n2 in edges:
        lines.append(f"edge {id(n1)} {str(id(n2)) + n2._op}")
    return lines


def test_micrograds_own_draw_dot_runs_on_our_graphs():
    x1, x2, w1, w2 = Value(2.0), Value(0.0), Value(-3.0), Value(1.0)
    o = (x1 * w1 + x2 * w2 + 6.8813735870195432).tanh()
    o.backward()
    lines = _micrograds_draw_dot(o)
    ops = sorted(line.rsplit("label=", 1)[1] for line in lines if "label=" in line)
    assert ops == ["*", "*", "+", "+", "tanh"]
    assert all(type(n._op) is not str and isinstance(n._op, str) for n in (o, o._prev[0]))  # an Op, a str


def test_a_chain_of_a_million_nodes():
    gc.collect()
    before = values_alive()
    gc.disable()  # only for speed: the collector's passes over a growing heap cost 4x
    try:
        x = Value(1.0)
        y = x
        for _ in range(1_000_000):
            y = y + x
    finally:
        gc.enable()
    y.backward()  # no RecursionError
    assert (y.data, x.grad, y.grad) == (1_000_001.0, 1_000_001.0, 1.0)
    del x, y  # freeing a deep chain must not overflow the C stack either
    gc.collect()
    assert values_alive() == before


def _small_graph(V):
    """A graph with shared nodes, built from the leaf class V (Value or a torch tensor maker)."""
    x, y = V(0.8), V(-1.2)
    h = (x * y).tanh()
    mid = h + x
    out = mid * h + y.exp() - x / (1 + y * y)
    return x, y, h, mid, out


def test_repeated_backward_adds_to_leaves_and_not_to_intermediates():
    x, y, h, mid, out = _small_graph(Value)
    out.backward()
    first = {"x": x.grad, "y": y.grad, "h": h.grad, "mid": mid.grad, "out": out.grad}
    out.backward()
    assert_close([x.grad, y.grad], [2 * first["x"], 2 * first["y"]])
    assert (h.grad, mid.grad, out.grad) == (first["h"], first["mid"], first["out"]) and out.grad == 1.0

    tx, ty, *_, tout = _small_graph(lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True))
    tout.backward(retain_graph=True)
    tout.backward()
    assert_close([x.grad, y.grad], [tx.grad.item(), ty.grad.item()], what="torch, twice")


def test_backward_of_a_leaf_accumulates_one():
    x = Value(3.0)
    x.backward()
    x.backward()
    assert x.grad == 2.0


def test_backward_by_hand_node_by_node_equals_backward():
    *_, auto = _small_graph(Value)
    *_, manual = _small_graph(Value)
    auto.backward()

    # The lecture's way: a recursive topological sort, then _backward() in reverse.
    topo, visited = [], set()

    def build_topo(v):
        if v not in visited:
            visited.add(v)
            for child in v._prev:
                build_topo(child)
            topo.append(v)

    build_topo(manual)
    manual.grad = 1.0
    for node in reversed(topo):
        node._backward()
    assert_close([n.grad for n in _nodes(manual)], [n.grad for n in _nodes(auto)])


def test_backward_steps_the_nodes_in_the_order_of_the_lectures_recursive_sort_reversed():
    """On random graphs (shared nodes, an input given twice): the steps come in the reverse of micrograd's
    recursive build_topo, each once; the sums into a shared grad, so the bits, depend on it."""
    rng = random.Random(7)
    for _ in range(200):
        nodes = [Value(rng.random()) for _ in range(4)]
        stepped: list[Value] = []
        for k in range(rng.randint(1, 30)):
            node = Value(1.0, tuple(rng.choice(nodes) for _ in range(rng.randint(1, 3))), f"n{k}")

            def step(node: Value = node) -> None:
                stepped.append(node)
                for child in node._prev:
                    child.grad += node.grad

            node._backward = step
            nodes.append(node)
        topo, visited = [], set()

        def build_topo(v: Value) -> None:
            if v not in visited:
                visited.add(v)
                for child in v._prev:
                    build_topo(child)
                topo.append(v)

        build_topo(nodes[-1])
        nodes[-1].backward()
        assert [id(v) for v in stepped] == [id(v) for v in reversed(topo) if v._prev]  # (== compares data)


def test_a_node_used_many_times_gets_every_contribution():
    x = Value(1.5)
    y = x * x * x + x - x / x  # x^3 + x - 1
    y.backward()
    assert_close([y.data, x.grad], [1.5**3 + 0.5, 3 * 1.5**2 + 1])


# ---------------------------------------------------------------------------
# Random expression graphs, built the same way in chaingrad and PyTorch
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_random_graphs_match_torch(seed):
    # 8 x 250 graphs of 5-25 random nodes over 2-5 leaves, every value and leaf
    # gradient to 1e-12 (relative, or absolute for results near 0 after cancellation).
    bad = random_graph_mismatches(seed, 250, batch=0)
    assert not bad, bad[:3]


@pytest.mark.parametrize("seed", range(100, 102))
def test_random_batched_graphs_match_torch(seed):
    # The same graphs with some leaves a batch of 4 samples and the loss their mean.
    bad = random_graph_mismatches(seed, 100, batch=4)
    assert not bad, bad[:3]


# ---------------------------------------------------------------------------
# Higher order: backward(create_graph=True)
# ---------------------------------------------------------------------------


def _cg_hessian(f, xs):
    vs = [Value(x) for x in xs]
    f(*vs).backward(create_graph=True)
    grads = [v.grad for v in vs]
    assert all(isinstance(g, Value) for g in grads), "create_graph=True gives Value gradients"
    rows = []
    for g in grads:
        for v in vs:
            v.grad = 0.0
        g.backward()
        rows.append([v.grad for v in vs])
    return [g.data for g in grads], rows


def _torch_hessian(f, xs):
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    grads = torch.autograd.grad(f(*ts), ts, create_graph=True)
    rows = []
    for g in grads:
        row = torch.autograd.grad(g, ts, retain_graph=True, allow_unused=True) if g.requires_grad else ()
        rows.append([0.0 if r is None else r.item() for r in row] or [0.0] * len(ts))
    return [g.item() for g in grads], rows


def _vec(f_cg, f_torch):
    return (lambda *xs: f_cg(list(xs))), (lambda *ts: f_torch(torch.stack(ts)))


SECOND_ORDER = {
    "tanh": (methodcaller("tanh"), methodcaller("tanh"), [0.7]),
    "exp": (methodcaller("exp"), methodcaller("exp"), [0.3]),
    "x**3": (lambda x: x**3, lambda x: x**3, [-1.3]),
    "sigmoid": (methodcaller("sigmoid"), methodcaller("sigmoid"), [-0.4]),
    "log": (methodcaller("log"), methodcaller("log"), [2.5]),
    "sqrt": (methodcaller("sqrt"), methodcaller("sqrt"), [1.7]),
    "1/x": (lambda x: 1 / x, lambda x: 1 / x, [-0.6]),
    "x*y*y - x/y": (lambda x, y: x * y * y - x / y, lambda x, y: x * y * y - x / y, [0.5, -1.5]),
    "x**y": (lambda x, y: x**y, lambda x, y: x**y, [1.3, 2.2]),
    "2**x": (lambda x: 2**x, lambda x: 2**x, [0.9]),
    "softplus": (SOFTPLUS, F.softplus, [0.35]),
    "logsumexp": (*_vec(cg.logsumexp, lambda z: torch.logsumexp(z, 0)), [0.2, -1.0, 1.5]),
    "cross_entropy": (
        *_vec(lambda xs: cg.cross_entropy(xs, 1), lambda z: F.cross_entropy(z[None], torch.tensor([1]))),
        [0.2, -1.0, 1.5],
    ),
    "softmax": (*_vec(lambda xs: cg.softmax(xs)[0], lambda z: torch.softmax(z, 0)[0]), [0.4, 1.1, -0.3]),
    "log_softmax": (
        *_vec(lambda xs: cg.log_softmax(xs)[2], lambda z: torch.log_softmax(z, 0)[2]),
        [0.4, 1.1, -0.3],
    ),
    "dot": (*_vec(lambda xs: cg.dot(xs, xs[::-1], start=1.0), lambda z: z @ z.flip(0) + 1), [0.5, 2.0, -1.0]),
}


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_second_derivatives_match_torch(name):
    f, tf, xs = SECOND_ORDER[name]
    grads, hessian = _cg_hessian(f, xs)
    want_grads, want_hessian = _torch_hessian(tf, xs)
    assert_close(grads, want_grads, what="gradient")
    for row, want in zip(hessian, want_hessian):
        assert_close(row, want, abs_tol=1e-15, what="hessian row")


def test_third_derivative_of_tanh():
    x = Value(0.3)
    x.tanh().backward(create_graph=True)
    g1, x.grad = x.grad, 0.0
    g1.backward(create_graph=True)
    g2, x.grad = x.grad, 0.0
    g2.backward()
    t = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    (d1,) = torch.autograd.grad(t.tanh(), t, create_graph=True)
    (d2,) = torch.autograd.grad(d1, t, create_graph=True)
    (d3,) = torch.autograd.grad(d2, t)
    assert_close([g1.data, g2.data, x.grad], [d1.item(), d2.item(), d3.item()])


# ---------------------------------------------------------------------------
# Grad modes
# ---------------------------------------------------------------------------


def test_no_grad_as_context_manager_and_decorator():
    x = Value(2.0)
    with cg.no_grad():
        assert not cg.is_grad_enabled()
        ys = [x * 3, 1 - x, x**2, x.exp(), -x, x + Value(1.0)]
    assert cg.is_grad_enabled()
    assert all(y._prev == () for y in ys)
    assert [y.data for y in ys] == [6.0, -1.0, 4.0, math.exp(2.0), -2.0, 3.0]

    @cg.no_grad()
    def double(v):
        """Docstring kept."""
        return v * 2

    assert double(x)._prev == () and double.__doc__ == "Docstring kept."
    assert (x * 2)._prev == (x,)


def test_enable_grad_inside_no_grad_and_nesting():
    x = Value(2.0)
    with cg.no_grad():
        a = x * 2
        with cg.enable_grad():
            b = x * 2
            with cg.no_grad():
                c = x * 2
            d = x * 2
        e = x * 2
    f = x * 2
    assert [len(v._prev) for v in (a, b, c, d, e, f)] == [0, 1, 0, 1, 0, 1]

    @cg.enable_grad()
    def build(v):
        return v * 2

    with cg.no_grad():
        assert build(x)._prev == (x,)


def test_a_no_grad_object_can_be_reused_and_is_restored_after_an_error():
    ng = cg.no_grad()
    with ng:
        with ng:
            pass
        assert not cg.is_grad_enabled()
    assert cg.is_grad_enabled()
    with pytest.raises(ZeroDivisionError), cg.no_grad():
        1 / 0
    assert cg.is_grad_enabled()


def test_no_grad_is_per_thread():
    inside, built = threading.Event(), threading.Event()
    seen = {}

    def quiet():
        with cg.no_grad():
            inside.set()
            assert built.wait(10)  # the other thread builds while this one is inside no_grad
            seen["quiet"] = (cg.is_grad_enabled(), Value(1.0) * 2)

    def busy():
        assert inside.wait(10)
        seen["busy"] = (cg.is_grad_enabled(), Value(1.0) * 2)
        built.set()

    threads = [threading.Thread(target=quiet), threading.Thread(target=busy)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen["quiet"][0] is False and seen["quiet"][1]._prev == ()
    assert seen["busy"][0] is True and len(seen["busy"][1]._prev) == 1
    assert cg.is_grad_enabled()


def test_a_new_thread_does_not_inherit_no_grad():
    seen = []
    with cg.no_grad():
        t = threading.Thread(target=lambda: seen.append(len((Value(1.0) * 2)._prev)))
        t.start()
        t.join(10)
    assert seen == [1]


# ---------------------------------------------------------------------------
# Anomaly mode
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, words",
    [
        (lambda: Value(0.0, label="z").log(), ["'log'", "-inf", "z=0.0"]),
        (lambda: Value(1.0, label="a") / Value(0.0, label="b"), ["'/'", "inf", "a=1.0", "b=0.0"]),
        (lambda: Value(-1.0, label="neg") ** 0.5, ["'**'", "nan", "neg=-1.0", "0.5"]),
        (lambda: (Value(2.0, label="w") * 500).exp(), ["'exp'", "inf", "1000.0"]),
        (lambda: Value(-4.0, label="q").sqrt(), ["'sqrt'", "nan", "q=-4.0"]),
        (lambda: 1 - Value(inf, label="i"), ["'-'", "-inf", "i=inf"]),
        (lambda: cg.sum([Value(1e308, label="big"), 1e308]), ["'sum'", "inf", "big=1e+308"]),
        (
            lambda: Value(nan, (Value(-1.0, label="v"),), "mylog"),
            ["'mylog'", "nan", "v=-1.0"],
        ),  # the lecture's
        (lambda: Value(inf, (Value(3.0, label="u"),), (1.0,)), ["'Value'", "inf", "u=3.0"]),  # microgpt's
    ],
)
def test_anomaly_in_forward_names_the_op_and_inputs(build, words):
    with cg.detect_anomaly(), pytest.raises(cg.AnomalyError) as info:
        build()
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    value = build()  # outside the context: IEEE values, no error
    assert not math.isfinite(value.data)


def test_anomaly_in_backward_names_the_op():
    x = Value(0.0, label="x")
    with cg.detect_anomaly():
        y = x.sqrt() * 2  # forward is finite: sqrt(0) = 0
        with pytest.raises(cg.AnomalyError, match=r"backward of op 'sqrt'.*x=0\.0"):
            y.backward()
    z = x.sqrt() * 2
    z.backward()
    assert x.grad == inf
    with cg.detect_anomaly(), pytest.raises(cg.AnomalyError, match="'sqrt'"):
        z.backward()  # a graph built outside the context is checked too


def test_anomaly_mode_is_off_after_the_context():
    with pytest.raises(cg.AnomalyError), cg.detect_anomaly():
        Value(-1.0).log()
    assert math.isnan(Value(-1.0).log().data)


# ---------------------------------------------------------------------------
# Memory: small nodes, no closures, no reference cycles; training does not grow it
# ---------------------------------------------------------------------------


def _every_kind_of_node():
    x, w = Value(0.5, label="x"), Value(-1.5, label="w")
    b = Value(np.array([0.1, -0.2, 0.3]), label="batch")
    h = SOFTPLUS(x * w + 2.0)
    h.label = "h"
    probs = cg.softmax([h, x, 1.0])
    terms = [
        cg.cross_entropy([h, x, w.tanh()], 0),
        2**x - 1 / w + x**2 + (-w).relu() + abs(w) + x.sigmoid() + x.sqrt() + w.exp().log(),
        cg.dot([x, w], [w, 3.0], start=0.5) + cg.mean([x, x, w]) + cg.logsumexp([x, w]),
        probs[0] * cg.log_softmax([h, w])[1],
        cg.batch_mean(b * w + x),
        cg.batch_sum((b - x) ** 2),
    ]
    loss = cg.sum(terms)
    loss.label = "loss"
    return x, w, b, loss


def test_graph_is_freed_at_once_after_del():
    gc.collect()
    gc.collect()
    values = values_alive()
    gc.disable()  # so that only reference counting can free the graph
    try:
        x, w, b, loss = _every_kind_of_node()
        loss.backward()
        del x, w, b, loss
        assert gc.collect() == 0, "the graph had reference cycles"
    finally:
        gc.enable()
    assert values_alive() == values


def test_nodes_have_slots_and_store_no_closures():
    *_, loss = _every_kind_of_node()
    loss.backward()
    nodes = _nodes(loss)
    ops = {}
    for node in nodes:
        for name in Value.__slots__:
            stored = getattr(node, name, None)  # some slots are left unset on most nodes
            items = stored if isinstance(stored, tuple) else (stored,)
            assert not any(callable(i) and not isinstance(i, (Value, cg.engine.Op)) for i in items), (
                name,
                stored,
            )
        assert type(node._prev) is tuple
        # local gradients, one per input, or None where the op has a rule of its own
        assert (type(node._local) is tuple and len(node._local) == len(node._prev)) or (
            node._local is None and node._op.rule is not None
        ), node._op
        ops.setdefault(str(node._op), set()).add(id(node._op))
    assert all(len(ids) == 1 for ids in ops.values()), "nodes of one op share one Op object"
    assert {"test_softplus", "cross_entropy", "dot", "batch_mean", "**", "tanh"} <= set(ops)


def _moons_trainer(seed=1, batch=True, n=100):
    """One training step of micrograd's moons demo: MLP(2, [16, 16, 1]), hinge + 1e-4 * L2, SGD."""
    X, y = data.make_moons(n, 0.1, seed=seed)
    y = 2.0 * y - 1
    model = nn.MLP(2, [16, 16, 1], seed=seed)
    params = model.parameters()
    opt = optim.SGD(params, lr=0.05)
    inputs = data.columns(X) if batch else X.tolist()
    targets = y if batch else y.tolist()

    def step():
        scores = model(inputs) if batch else [model(x) for x in inputs]
        loss = losses.hinge(scores, targets) + 1e-4 * losses.l2(params)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.data

    return step


def test_ten_thousand_training_steps_do_not_grow_memory():
    step = _moons_trainer()
    for _ in range(500):  # warm-up: caches, free lists, NumPy's first calls
        step()
    gc.collect()
    values, blocks = values_alive(), sys.getallocatedblocks()
    # tracemalloc slows every allocation sixfold, so it watches steps 500-3,000 byte by byte
    # (after 500 of them to fill caches); object and block counts watch all 10,000.
    tracemalloc.start()
    try:
        for _ in range(500):
            step()
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0]
        for _ in range(2000):
            step()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - traced
    finally:
        tracemalloc.stop()
    for _ in range(7000):
        loss = step()
    gc.collect()
    assert grown < 4096, f"{grown} bytes more after 2,000 steps"
    assert values_alive() == values, "Values accumulate"
    assert sys.getallocatedblocks() - blocks < 1000, "Python objects accumulate"
    assert math.isfinite(loss) and loss < 0.5


def _gpt_trainer():
    model = nn.GPT(8, n_embd=8, n_head=2, block_size=6, seed=0)
    opt = optim.Adam(model.parameters(), lr=0.01)

    def step():
        loss = model.loss([7, 1, 2, 3, 4, 7])
        opt.zero_grad()
        loss.backward()
        opt.step()
        with cg.no_grad():
            model.generate(7, rng=random.Random(0))
        return loss.data

    return step


@pytest.mark.parametrize(
    "make",
    [_moons_trainer, lambda: _moons_trainer(batch=False, n=20), _gpt_trainer],
    ids=["batch", "per sample", "gpt"],
)
def test_a_training_step_makes_no_reference_cycles(make):
    step = make()
    step()
    gc.collect()
    gc.disable()  # so that only reference counting frees what a step made
    try:
        step()
        assert gc.collect() == 0, "a training step left reference cycles"
    finally:
        gc.enable()


# ---------------------------------------------------------------------------
# Pickle and deepcopy
# ---------------------------------------------------------------------------


def _structure(root):
    nodes = _nodes(root)
    index = {n: i for i, n in enumerate(nodes)}
    return [
        (
            n.data.tolist() if isinstance(n.data, np.ndarray) else n.data,
            n.grad.tolist() if isinstance(n.grad, np.ndarray) else n.grad,
            n.label,
            str(n._op),
            tuple(index[p] for p in n._prev),
        )
        for n in nodes
    ]


CLONES = {"pickle": lambda v: pickle.loads(pickle.dumps(v)), "deepcopy": copy.deepcopy}


@pytest.mark.parametrize("how", CLONES)
def test_a_graph_round_trips(how):
    x, w, b, loss = _every_kind_of_node()
    loss.backward()
    twin = CLONES[how](loss)
    assert _structure(twin) == _structure(loss)
    assert not set(map(id, _nodes(twin))) & set(map(id, _nodes(loss))), "a copy shares no node"

    leaves = [n for n in _nodes(twin) if not n._prev]
    assert sorted(n.label for n in leaves) == ["batch", "w", "x"]
    before = [np.copy(n.grad) for n in leaves]
    original = (x.grad, w.grad, b.grad.copy())
    twin.backward()  # backward still works on the copy, and adds the same again
    for leaf, g in zip(leaves, before):
        assert_close(leaf.grad, 2 * np.asarray(g), what=leaf.label)
    assert (x.grad, w.grad) == original[:2] and (b.grad == original[2]).all(), "the original is untouched"


def test_a_deep_graph_pickles_without_recursion():
    x = Value(1.0)
    y = x
    for _ in range(30_000):  # 60,000 nodes deep, far beyond any recursion limit
        y = y * 1.0 + x
    twin = pickle.loads(pickle.dumps(y))
    twin.backward()
    (leaf,) = [n for n in _nodes(twin) if not n._prev]
    assert twin.data == leaf.grad == 30_001.0


def test_ops_pickle_to_the_same_op():
    for op in (cg.engine.OPS["+"], cg.fused.CROSS_ENTROPY, SOFTPLUS):
        assert pickle.loads(pickle.dumps(op)) is op


COPIES = {"deepcopy": copy.deepcopy, "pickle": lambda x: pickle.loads(pickle.dumps(x))}


@pytest.mark.parametrize("how", COPIES)
def test_values_copied_together_keep_their_graph_connected(how):
    # test_a_graph_round_trips copies one graph; copied together with its leaves (a model and its loss, a
    # checkpoint), the copied graph must lead to the copied leaves, as the original does.
    model = nn.MLP(2, [4, 1], seed=1)
    x = Value(0.5, label="x")
    loss = (model([x, 2.0]) - 1.0) ** 2
    twin_model, twin_x, twin_loss = COPIES[how]((model, x, loss))
    twin_loss.backward()
    loss.backward()
    assert twin_x.grad == x.grad != 0
    assert [p.grad for p in twin_model.parameters()] == [p.grad for p in model.parameters()]


@pytest.mark.parametrize("data", [6, "six", None])
def test_backward_of_a_value_whose_data_is_not_a_float_says_so_and_changes_nothing(data):
    a = Value(2.0)
    b = a * 3
    b.data = data
    with pytest.raises(TypeError, match=f"backward\\(\\) of a Value whose data is {type(data).__name__}"):
        b.backward()
    assert a.grad == 0.0 and b.grad == 0.0
    with pytest.raises(TypeError, match=r"set \.data to a float"):
        cg.gradients(b)


def test_item_of_a_value_holding_an_int_is_that_number():
    v = Value(1.0)
    v.data = 7
    assert v.item() == 7.0 and type(v.item()) is float


# ---------------------------------------------------------------------------
# The layout: the engine in one sitting, dependencies pointing one way
# ---------------------------------------------------------------------------

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "chaingrad"


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """The package's modules a module imports (from . import x, from .x import y): (at import time,
    only inside functions)."""
    tree = ast.parse(path.read_text())
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f)}
    top, lazy = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = {node.module} if node.module else {a.name for a in node.names}
            (lazy if id(node) in inside else top).update(names)
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return top & modules, lazy & modules


def _imports_the_core(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    return any(
        isinstance(node, ast.ImportFrom) and ("_core" in {node.module, *(a.name for a in node.names)})
        for node in ast.walk(tree)
    )


def test_the_reference_engine_knows_nothing_of_the_compiled_core():
    # As heapq.py knows nothing of _heapq: one module, the seam, loads the core and installs it.
    assert "_core" not in (PACKAGE / "engine.py").read_text()
    assert "_backend" not in set().union(*_imports(PACKAGE / "engine.py"))
    assert [p.name for p in PACKAGE.glob("*.py") if _imports_the_core(p)] == ["_backend.py"]


def test_no_module_of_the_package_imports_one_that_imports_it():
    # Imports inside functions count as much as those at the top: no exceptions.
    imports = {p.stem: _imports(p) for p in PACKAGE.glob("*.py")}
    assert imports["numerics"] == (set(), set()), "numerics imports nothing of chaingrad"
    assert not {"fused", "layers", "autodiff", "pickling"} & set().union(*imports["engine"])
    assert "bridge" not in set().union(*imports["nn"]), "the bridge builds on nn, never the reverse"
    assert "nn" not in set().union(*imports["torch_twins"]), "the torch twins sit below nn"
    graph = {m: top | late for m, (top, late) in imports.items()}
    for start in graph:  # depth first from every module: meeting it again is a cycle
        stack, seen = list(graph[start]), set()
        while stack:
            module = stack.pop()
            assert module != start, f"an import cycle through {start}"
            if module not in seen:
                seen.add(module)
                stack.extend(graph[module])


@pytest.mark.parametrize(
    "core, why",
    [
        ("None", "was not built"),  # None in sys.modules: the import fails, as with no compiled module
        ("types.SimpleNamespace(INTERFACE=2)", "is left from another version of chaingrad"),
    ],
)
def test_without_a_fitting_compiled_core_chaingrad_warns_once_and_runs_the_reference_engine(core, why):
    code = (
        "import sys, types, warnings\n"
        f"sys.modules['chaingrad._core'] = {core}\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import chaingrad as cg\n"
        "    x = cg.Value(3.0); (x * x).backward()\n"
        "print(cg.backend, x.grad, len(caught), caught[0].message)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CHAINGRAD_PURE"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    backend, grad, count, message = done.stdout.split(" ", 3)
    assert (backend, grad, count) == ("python", "6.0", "1")
    assert why in message and "reference engine" in message


@pytest.mark.parametrize("kind", [tuple, list, iter], ids=["tuple", "list", "generator"])
def test_a_nodes_children_may_come_in_any_iterable(kind):
    a, b = Value(2.0), Value(3.0)
    out = Value(6.0, kind([a, b]), "*")

    def _backward():
        a.grad += b.data * out.grad
        b.grad += a.data * out.grad

    out._backward = _backward
    assert out._prev == (a, b)
    out.backward()
    assert (a.grad, b.grad) == (3.0, 2.0)
    with pytest.raises(TypeError, match="_children must be Values"):
        Value(1.0, iter([a, 2.0]), "+")


def test_errors_name_the_type_value_as_python_shows_it():
    with pytest.raises(TypeError, match=r"for \+: 'Value' and 'NoneType'"):
        Value(1.0) + None
    with pytest.raises(TypeError, match="'Value' object is not iterable"):
        iter(Value(1.0))
    assert pickle.loads(pickle.dumps(Value)) is Value


@pytest.mark.parametrize("data", [np.float64(2.5), np.int64(4), np.float32(0.5), 7, "3"])
def test_item_of_a_value_holding_what_was_assigned_is_float_of_it(data):
    v = Value(1.0)
    v.data = data
    assert v.item() == float(data)
    v.data = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="item\\(\\) of a batch of 2 samples"):
        v.item()


@pytest.mark.parametrize("bad", [None, 3, "f"])
def test_backward_must_be_set_to_a_function(bad):
    a = Value(2.0)
    o = a * 3.0
    with pytest.raises(
        TypeError, match=f"_backward must be a function of no arguments, not {type(bad).__name__}"
    ):
        o._backward = bad
    o.backward()  # the node keeps its own step
    assert a.grad == 3.0


class _Plain(Value):
    """A subclass adding nothing, as a learner's `class MyValue(Value): pass`."""


@pytest.mark.parametrize(
    "f",
    [
        lambda a, b: a / b,
        lambda a, b: 1.0 / a + b / 2.0,
        lambda a, b: a**2 * b**-1.5,
        lambda a, b: a**b + 2.0**a,
        lambda a, b: a.log() + b.relu() + (-a).relu(),
        lambda a, b: (a * b) ** 2 / b,
        lambda a, b: a.exp() * b.tanh() - a.sigmoid() + b.sqrt() + abs(a - b),
    ],
)
def test_a_subclass_of_value_gets_the_gradients_value_gets(f):
    expected, got = [Value(1.5), Value(2.5)], [_Plain(1.5), _Plain(2.5)]
    f(*expected).backward()
    f(*got).backward()
    assert [v.grad for v in got] == [v.grad for v in expected]
    assert all(v.grad != 0.0 for v in got)


class _Remembers(Value):
    """A subclass with a method and an attribute of its own, as micrograd forks write them."""

    def __init__(self, data):
        super().__init__(data)
        self.users = []

    def doubled(self):
        return self * 2.0


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_a_subclass_leaf_copies_and_pickles_as_its_class_with_its_own_attributes(how):
    leaf = _Remembers(1.5)
    leaf.grad, leaf.label, leaf.users = 0.25, "w", ["a user"]
    again = {
        "copy": copy.copy,
        "deepcopy": copy.deepcopy,
        "pickle": lambda v: pickle.loads(pickle.dumps(v)),
    }[how]
    got = again(leaf)
    assert type(got) is _Remembers and got is not leaf
    assert (got.data, got.grad, got.label, got.users) == (1.5, 0.25, "w", ["a user"])
    assert got.doubled().data == 3.0
    graph = again(leaf * leaf + 1.0)  # a leaf inside a graph keeps its class too
    graph.backward()
    (inner,) = {type(p) for p in graph._prev[0]._prev}
    assert inner is _Remembers and graph._prev[0]._prev[0].grad == 0.25 + 3.0  # its grad kept, then 2 * 1.5


# ---------------------------------------------------------------------------
# item() and attributes of one's own, as on PyTorch's tensors and micrograd's Values
# ---------------------------------------------------------------------------


def test_item_is_the_float_and_a_batch_must_be_reduced_first():
    assert Value(3).item() == 3.0 and type(Value(3).item()) is float
    assert (Value(2.0) * 4).item() == 8.0
    with pytest.raises(ValueError, match="item\\(\\) of a batch of 2 samples: reduce it first"):
        Value(np.array([1.0, 2.0])).item()


def test_a_value_takes_new_attributes_and_keeps_them_through_copies():
    # micrograd's author's newer demo keeps its AdamW moments on the parameters: p.m, p.v
    p = Value(1.5)
    p.m, p.v, p._vis_color = 0.0, 0.25, "red"
    assert (p.m, p.v, p._vis_color) == (0.0, 0.25, "red")
    assert vars(copy.deepcopy(p)) == vars(pickle.loads(pickle.dumps(p))) == vars(p)
    y = (p * 2.0).tanh()
    y.backward()
    assert p.grad == pytest.approx(2 * (1 - math.tanh(3.0) ** 2), rel=1e-15)
    with pytest.raises(AttributeError):
        y.not_there


def test_a_cycle_through_a_values_attributes_is_collected():
    gc.collect()
    before = values_alive()
    for _ in range(3):
        p = Value(1.0)
        q = p * 2.0
        p.made_from_me = q  # p -> its dict -> q -> p
        q.me = q
        del p, q
    gc.collect()
    assert values_alive() == before


@pytest.mark.parametrize("label", [np.ones(2), 3, None, b"x"])
def test_a_label_that_is_not_a_str_is_the_same_type_error_on_both_engines(label):
    with pytest.raises(TypeError, match=f"label must be a str, not {type(label).__name__}$"):
        Value(1.0, label=label)


# ---------------------------------------------------------------------------
# An input's data changed after the forward: the gradient is still the forward's
# ---------------------------------------------------------------------------

SQUARE_BY_RULE = cg.Op("test_square_by_rule", lambda x: x * x, rule=lambda g, x, out: (2.0 * x * g,))
AFTER_FORWARD = {
    "x*x + 1/x (the issue's)": lambda x: x * x + 1 / x,
    "x / 3": lambda x: x / 3.0,
    "3 / x": lambda x: 3.0 / x,
    "x / x": lambda x: x / (x * 1.0),
    "x ** 2.5": lambda x: x**2.5,
    "2 ** x": lambda x: 2.0**x,
    "x ** x": lambda x: x ** (x * 1.0),
    "log": lambda x: x.log(),
    "relu": lambda x: (x - 1.8).relu() + x.relu(),
    "tanh, exp, sin": lambda x: x.tanh() * x.exp() + x.sin(),
    "a custom rule": lambda x: SQUARE_BY_RULE(x),
    "softmax": lambda x: cg.softmax([x, x * 2.0, 1.0])[0],
    "cross_entropy": lambda x: cg.cross_entropy([x, -x], 1),
}


@pytest.mark.parametrize("f", AFTER_FORWARD.values(), ids=AFTER_FORWARD)
@pytest.mark.parametrize("batched", [False, True], ids=["number", "batch"])
def test_an_input_whose_data_changes_after_the_forward_gets_the_gradient_at_the_forward(f, batched):
    # x.data = 3.0 between forward and backward: the gradient at the forward's point, never a mix of two
    # points (the ops with a rule read the data the forward saw, as the others use local gradients)
    def leaf():
        return Value(np.array([1.7, 0.4]) if batched else 1.7)

    untouched, changed = leaf(), leaf()
    y_untouched, y_changed = f(untouched), f(changed)
    changed.data = np.array([3.3, -2.0]) if batched else 3.3
    for y in (y_untouched, y_changed):
        (cg.batch_sum(y) if batched else y).backward()
    assert np.asarray(changed.grad).tobytes() == np.asarray(untouched.grad).tobytes()


def test_the_training_step_after_backward_is_unchanged():
    p = Value(0.5)
    for _ in range(3):
        loss = (p * 3.0 - 1.0) ** 2 / 2.0
        p.grad = 0.0
        loss.backward()
        p.data -= 0.1 * p.grad
    want = 0.5
    for _ in range(3):
        want -= 0.1 * (3.0 * (want * 3.0 - 1.0))
    assert p.data == pytest.approx(want, rel=1e-15)


# ---------------------------------------------------------------------------
# The op table: every op reachable as a method or a function, and the compiled core's table its mirror
# ---------------------------------------------------------------------------

OPERATORS = {"+": "__add__", "-": "__sub__", "*": "__mul__", "/": "__truediv__", "**": "__pow__"}
OPERATORS["neg"] = "__neg__"


@pytest.mark.parametrize("op", cg.engine.PRIMITIVES, ids=str)
def test_every_op_of_the_table_has_its_value_method_and_function(op):
    # A row added to the table without its method (or cg. function) fails here.
    x, y = Value(0.75), Value(1.25)
    name = OPERATORS.get(op.name, op.name)
    node = getattr(x, name)(y) if op.name in ("+", "-", "*", "/", "**") else getattr(x, name)()
    assert node._op is op
    if op.name not in OPERATORS and op.name != "abs":
        assert getattr(cg, op.name)(x)._op is op and getattr(cg, op.name)(0.75) == node.data
    if op.name == "abs":
        assert abs(x)._op is op
