"""The engine's second round of hardening, and its one-computing-path promise.

- Where PyTorch's backward selects or divides (relu, pow, div, log), chaingrad gives the same numbers,
  also where a local gradient times an infinite gradient would be nan, and on batches and layers.
- The Value methods written from the op table (the fast path on single numbers) compute exactly what
  the general path (`engine.apply`) computes, bit for bit, on every operand form and edge input.
- micrograd's own style of op (a `_backward` closure) works beside table ops, against PyTorch.
- backward never touches the garbage collector's switch; concurrent backward stays correct.
"""

from __future__ import annotations

import copy
import gc
import math
import pickle
import re
import struct
import threading

import numpy as np
import pytest
import torch
from conftest import assert_close, same
from hypothesis import given, settings
from hypothesis import strategies as st

import chaingrad as cg
from chaingrad import Value, _backend, engine

inf, nan = math.inf, math.nan


def t64(x, grad=True):
    return torch.tensor(x, dtype=torch.float64, requires_grad=grad)


def bits(x):
    """A float's exact bits (so that -0.0 differs from 0.0 and nan equals nan)."""
    return struct.pack("<d", x)


# ---------------------------------------------------------------------------
# PyTorch's rules: select where the local gradient is 0, divide rather than multiply by 1/y
# ---------------------------------------------------------------------------


def _both(f, tf, *xs):
    """f's value and gradients with chaingrad and tf's with PyTorch, at xs."""
    vs = [Value(x) for x in xs]
    out = f(*vs)
    out.backward()
    ts = [t64(x) for x in xs]
    tout = tf(*ts)
    tout.backward()
    return [out.data, *(v.grad for v in vs)], [
        tout.item(),
        *(0.0 if t.grad is None else t.grad.item() for t in ts),
    ]


CASES = {
    # relu passes nothing where x <= 0, even an infinite or nan gradient (0 * inf would be nan)
    "sqrt(relu(-1))": (lambda x: x.relu().sqrt(), lambda x: torch.relu(x).sqrt(), [-1.0]),
    "log(relu(-1))": (lambda x: x.relu().log(), lambda x: torch.relu(x).log(), [-1.0]),
    "log(relu(0))": (lambda x: x.relu().log(), lambda x: torch.relu(x).log(), [0.0]),
    # a zero exponent passes nothing to the base: log(x ** 0 - 1) at x = 2
    "log(x ** e - 1), e = 0": (lambda x, e: (x**e - 1).log(), lambda x, e: (x**e - 1).log(), [2.0, 0.0]),
    "log(x ** 0 - 1)": (lambda x: (x**0.0 - 1).log(), lambda x: (x ** t64(0.0, False) - 1).log(), [2.0]),
    # division and log by subnormals divide the gradient, as PyTorch: g / y, not (1 / y) * g
    "log(p) * 0 at 1e-320": (lambda p: p.log() * 0.0, lambda p: p.log() * 0.0, [1e-320]),
    "log(p) * 1e-200 at 1e-320": (lambda p: p.log() * 1e-200, lambda p: p.log() * 1e-200, [1e-320]),
    "x / y * 1e-200, y = 1e-320": (
        lambda x, y: x / y * 1e-200,
        lambda x, y: x / y * 1e-200,
        [1e-300, 1e-320],
    ),
    "c / y, y = 1e-320": (
        lambda y: (1e-200 / y) * 1e-100,
        lambda y: (t64(1e-200, False) / y) * 1e-100,
        [1e-320],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_gradients_where_pytorch_gives_a_number(name):
    f, tf, xs = CASES[name]
    got, want = _both(f, tf, *xs)
    assert all(map(same, got, want)), (got, want)


def test_relu_passes_nothing_on_batches_and_through_a_layer():
    x = np.array([-1.0, 2.0, -3.0])
    v = Value(x)
    cg.batch_sum(v.relu().sqrt()).backward()
    t = t64(x)
    torch.relu(t).sqrt().sum().backward()
    assert_close(v.grad, t.grad.numpy(), what="batch")

    for data in (-1.0, x):  # one number, and a batch through a batched layer
        w, xin = Value(1.0), Value(data)
        (out,) = cg.affine([[w]], [xin], activation="relu")
        loss = out.sqrt() if type(data) is float else cg.batch_sum(out.sqrt())
        loss.backward()
        tw, tx = t64(1.0), t64(data)
        torch.relu(tw * tx).sqrt().sum().backward()
        assert_close([w.grad], [tw.grad.item()], what=f"layer weight on {data}")
        assert_close(xin.grad, tx.grad.numpy(), what=f"layer input on {data}")


def test_relu_keeps_minus_zero_and_nan_as_pytorch_does():
    for x in (-0.0, nan, -2.0, 3.0):
        assert bits(Value(x).relu().data) == bits(torch.relu(t64(x, False)).item())
        batch = Value(np.array([x, 1.0])).relu().data
        assert bits(float(batch[0])) == bits(torch.relu(t64(x, False)).item())


def test_minus_zero_to_the_half_is_plus_zero_on_a_number_and_on_a_batch():
    want = torch.pow(t64(-0.0, False), t64(0.5, False)).item()
    assert bits((Value(-0.0) ** 0.5).data) == bits(want) == bits(0.0)
    assert bits(float((Value(np.array([-0.0, 4.0])) ** 0.5).data[0])) == bits(want)


def test_dot_adds_its_start_after_the_products():
    out = cg.dot([Value(1e16), Value(-1e16)], [1.0, 1.0], start=1.0)
    assert out.data == 1.0
    neuron = cg.nn.Neuron(2, None, seed=0)
    neuron.w[0].data, neuron.w[1].data, neuron.b.data = 1e16, -1e16, 1.0
    assert neuron([1.0, 1.0]).data == 1.0
    t = torch.nn.functional.linear(t64([1.0, 1.0], False), t64([[1e16, -1e16]], False), t64([1.0], False))
    assert t.item() == 1.0


def test_a_batch_of_one_does_not_broadcast_against_a_batch_of_five():
    one, five = Value(np.array([2.0])), Value(np.arange(5.0))
    for combine in (lambda a, b: a * b, lambda a, b: b + a, lambda a, b: cg.dot([a], [b])):
        with pytest.raises(ValueError, match=r"batches of different sizes \[1, 5\]"):
            combine(one, five)
    assert one.grad == 0.0 and five.grad == 0.0


def test_an_op_with_its_own_rule_works_on_a_single_number():
    # Op(name, forward, None, rule): rule(g, x, out) gives each argument's share of g
    double = cg.Op("test_double_by_rule", lambda x: 2.0 * x, None, lambda g, x, out: (2.0 * g,))
    x = Value(1.5)
    y = double(x) * 3.0
    y.backward()
    assert (y.data, x.grad) == (9.0, 6.0)
    b = Value(np.array([1.0, 2.0]))
    cg.batch_sum(double(b)).backward()
    assert b.grad.tolist() == [2.0, 2.0]


def test_an_op_needs_local_or_rule_and_says_so():
    for args in [(lambda x: x, None), (lambda x: x, 1.0), (1.0, lambda x, out: (1.0,))]:
        with pytest.raises(TypeError, match="must be callable"):
            cg.Op("test_bad_op", *args)


@pytest.mark.parametrize(
    "op, message",
    [
        (
            cg.Op("test_local_too_few", lambda x, y: x * y, lambda x, y, out: (y,)),
            "local\\(\\) gave 1 gradient for 2",
        ),
        (
            cg.Op("test_local_a_str", lambda x, y: x * y, lambda x, y, out: (y, "x")),
            "gave str 'x' as a gradient",
        ),
        (cg.Op("test_local_a_value", lambda x, y: x * y, lambda x, y, out: (y, Value(x))), "gave Value"),
        (
            cg.Op("test_local_a_batch", lambda x, y: x * y, lambda x, y, out: (y, np.array([x, x]))),
            "a batch as the local gradient of single numbers",
        ),
        (
            cg.Op("test_rule_too_few", lambda x, y: x * y, rule=lambda g, x, y, out: (g,)),
            "its rule gave 1 gradient for 2",
        ),
        (
            cg.Op("test_rule_a_str", lambda x, y: x * y, rule=lambda g, x, y, out: (g, "oops")),
            "gave str 'oops'",
        ),
        (
            cg.Op("test_local_no_tuple", lambda x, y: x * y, lambda x, y, out: y),
            "local\\(\\) gave float 3.0; give a tuple of gradients, one per argument",
        ),
        (
            cg.Op("test_local_too_many", lambda x, y: x * y, lambda x, y, out: (y, x, 1.0)),
            "local\\(\\) gave 3 gradients for 2 inputs",
        ),
        (
            cg.Op("test_rule_too_many", lambda x, y: x * y, rule=lambda g, x, y, out: (g, g, g)),
            "its rule gave 3 gradients for 2 inputs; give one per argument",
        ),
        (
            cg.Op("test_rule_no_list", lambda x, y: x * y, rule=lambda g, x, y, out: g),
            "its rule gave float 1.0",
        ),
    ],
    ids=lambda v: v if isinstance(v, cg.Op) else "",
)
def test_an_op_that_gives_a_wrong_gradient_is_named_and_the_graph_stays_usable(op, message):
    a, b = Value(2.0), Value(3.0)
    with pytest.raises(TypeError, match=message):
        op(a, b).backward()
    assert (a.grad, b.grad) == (0.0, 0.0)  # every gradient is checked before any is added
    good = a * b
    good.backward()
    assert good.data == 6.0 and b.grad == 2.0


def test_a_rule_gives_a_share_per_argument_and_a_constants_share_is_dropped():
    sub = cg.Op("test_rule_sub", lambda x, y: x - y, rule=lambda g, x, y, out: (g, -g))
    x = Value(2.0)
    sub(1.0, x).backward()  # the constant 1.0's share, g, goes nowhere; x gets its own, -g
    assert x.grad == -1.0
    y = Value(2.0)
    sub(y, 1.0).backward()
    assert y.grad == 1.0
    only_one = cg.Op("test_rule_sub_one", lambda x, y: x - y, rule=lambda g, x, y, out: (-g,))
    z = Value(2.0)
    with pytest.raises(TypeError, match="gave 1 gradient for 2 inputs; give one per argument"):
        only_one(1.0, z).backward()  # a share for y alone would have gone to x's place: refused
    assert z.grad == 0.0


def test_a_local_gradient_that_is_an_int_or_a_numpy_number_is_a_float():
    op = cg.Op("test_local_ints", lambda x, y: x * y, lambda x, y, out: (3, np.float64(2.0)))
    a, b = Value(2.0), Value(3.0)
    op(a, b).backward()
    assert (a.grad, b.grad) == (3.0, 2.0) and type(a.grad) is float and type(b.grad) is float


def test_an_op_whose_last_arguments_are_constants_needs_no_gradient_for_them():
    scale = cg.Op("test_scale_by", lambda x, k: k * x, lambda x, k, out: (k,))  # none for the constant k
    x = Value(2.0)
    scale(x, 4.0).backward()
    assert x.grad == 4.0


@pytest.mark.parametrize("op", ["*", "/", "relu", "log", "**"])
def test_a_grad_set_to_an_int_steps_back_as_its_float(op):
    a, b = Value(2.0), Value(3.0)
    o = {"*": a * b, "/": a / b, "relu": a.relu(), "log": a.log(), "**": a**b}[op]
    o.grad = 1  # an int, as micrograd's notebook writes o.grad = 1
    o._backward()
    want = {"*": 3.0, "/": 1 / 3.0, "relu": 1.0, "log": 0.5, "**": 12.0}[op]
    assert a.grad == want and type(a.grad) is float


# ---------------------------------------------------------------------------
# logsumexp at infinities and nan (no fsum overflow)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "xs", [[inf, 709.78, 709.78], [nan, 1.0, 2.0], [1.0, nan], [-inf, -inf], [inf, inf], [709.78] * 3]
)
def test_logsumexp_gives_what_pytorch_gives_at_the_edges(xs):
    want = torch.logsumexp(t64(xs, False), 0).item()
    assert same(cg.logsumexp([Value(x) for x in xs]).data, want)
    assert same(cg.logsumexp(xs).data, want)
    batch = cg.logsumexp([Value(np.array([x, 0.0])) for x in xs]).data
    assert same(batch[0], want)


# ---------------------------------------------------------------------------
# The methods written from the op table compute what the general path computes, bit for bit
# ---------------------------------------------------------------------------

EDGES = st.sampled_from(
    [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -2.5, 1e-320, -1e-310, 1e308, -1e308, inf, -inf, nan]
)
NUMBERS = st.one_of(EDGES, st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3))
BINARY = {"+": "__add__", "-": "__sub__", "*": "__mul__", "/": "__truediv__", "**": "__pow__"}
REFLECTED = {"+": "__radd__", "-": "__rsub__", "*": "__rmul__", "/": "__rtruediv__", "**": "__rpow__"}
UNARY = {"neg": "__neg__", "exp": "exp", "log": "log", "tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu",
         "sqrt": "sqrt", "abs": "abs", "sin": "sin", "cos": "cos"}  # fmt: skip


def _outcome(make, leaves):
    """The node make() builds (its data) and, after a backward through it times 1.5, the leaves' grads."""
    for leaf in leaves:
        leaf.grad = 0.0
    node = make()
    (node * 1.5).backward()
    return [bits(node.data), *(bits(leaf.grad) for leaf in leaves)], node


@settings(deadline=None, derandomize=True, database=None, max_examples=400)
@given(op=st.sampled_from(sorted(BINARY)), a=NUMBERS, b=NUMBERS, form=st.sampled_from(["vv", "vc", "cv"]))
def test_a_binary_method_equals_the_general_path(op, a, b, form):
    x, y = Value(a), Value(b)
    if form == "vv":
        fast = lambda: getattr(x, BINARY[op])(y)  # noqa: E731
        general = lambda: _backend.apply(engine.OPS[op], x, y)  # noqa: E731
        leaves = [x, y]
    elif form == "vc":
        fast = lambda: getattr(x, BINARY[op])(b)  # noqa: E731
        general = lambda: _backend.apply(engine.OPS[op], x, b)  # noqa: E731
        leaves = [x]
    else:
        fast = lambda: getattr(y, REFLECTED[op])(a)  # noqa: E731
        general = lambda: _backend.apply(engine.OPS[op], a, y)  # noqa: E731
        leaves = [y]
    got, node = _outcome(fast, leaves)
    want, other = _outcome(general, leaves)
    assert got == want, (op, a, b, form)
    assert node._prev == other._prev and node._op is other._op
    ctx, other_ctx = node._ctx or (), other._ctx or ()
    assert [(type(a), a if isinstance(a, Value) else bits(a)) for a in ctx] == [
        (type(a), a if isinstance(a, Value) else bits(a)) for a in other_ctx
    ], "the same arguments, constants as floats"
    local, other_local = node._local, other._local
    assert (local is None) == (other_local is None)
    if local is not None:
        assert list(map(bits, map(float, local))) == list(map(bits, map(float, other_local)))


@settings(deadline=None, derandomize=True, database=None, max_examples=200)
@given(op=st.sampled_from(sorted(UNARY)), a=NUMBERS)
def test_a_unary_method_equals_the_general_path(op, a):
    x = Value(a)
    got, node = _outcome(lambda: getattr(x, UNARY[op])(), [x])
    want, other = _outcome(lambda: _backend.apply(engine.OPS[op], x), [x])
    assert got == want, (op, a)
    assert node._op is other._op and node._prev == other._prev


# ---------------------------------------------------------------------------
# micrograd's own style of op: a node made with Value(data, children, op) and a _backward closure
# ---------------------------------------------------------------------------


def lecture_tanh(self):
    """tanh as the lecture writes it, inside or outside the class."""
    x = self.data
    t = (math.exp(2 * x) - 1) / (math.exp(2 * x) + 1)
    out = Value(t, (self,), "tanh")

    def _backward():
        self.grad += (1 - t**2) * out.grad

    out._backward = _backward
    return out


def lecture_mul(self, other):
    out = Value(self.data * other.data, (self, other), "*")

    def _backward():
        self.grad += other.data * out.grad
        other.grad += self.data * out.grad

    out._backward = _backward
    return out


def test_the_lectures_ops_match_pytorch_in_a_mixed_graph():
    x1, x2, w1, w2 = (Value(v, label=n) for v, n in [(2.0, "x1"), (0.0, "x2"), (-3.0, "w1"), (1.0, "w2")])
    b = Value(6.8813735870195432, label="b")
    n = lecture_mul(x1, w1) + x2 * w2 + b  # one closure node beside table ops
    o = lecture_tanh(n)
    assert (o._op, o._prev, n._op) == ("tanh", (n,), "+")
    assert (n._prev[0]._prev[0]._op, n._prev[0]._prev[0]._prev) == ("*", (x1, w1))
    o.backward()
    ts = [t64(v) for v in (2.0, 0.0, -3.0, 1.0, 6.8813735870195432)]
    torch.tanh(ts[0] * ts[2] + ts[1] * ts[3] + ts[4]).backward()
    assert_close([v.grad for v in (x1, x2, w1, w2, b)], [t.grad.item() for t in ts])
    o.backward()  # twice: leaves accumulate again, intermediates are recomputed
    assert_close([v.grad for v in (x1, x2, w1, w2, b)], [2 * t.grad.item() for t in ts])


def test_the_lectures_ops_under_no_grad_gradcheck_and_pictures():
    x = Value(0.3, label="x")
    with cg.no_grad():
        y = x * 2.0
    assert y._prev == ()
    assert cg.gradcheck(lambda v: lecture_tanh(lecture_mul(v, v) * 2.0), [x])
    dot_text = cg.viz.to_dot(lecture_tanh(x * 2.0))
    assert "tanh" in dot_text and "data 0.3000" in dot_text
    # a closure given to a table op's node makes it micrograd's kind of node: backward calls the closure
    z = x * 3.0
    z._backward = lambda: setattr(x, "grad", x.grad + 100.0)
    before = x.grad
    z.backward()
    assert x.grad == before + 100.0


def test_microgpts_form_of_a_node_has_its_local_gradients():
    x = Value(2.0)
    y = Value(math.log(x.data), (x,), (1 / x.data,))  # microgpt: Value(math.log(d), (self,), (1/d,))
    (y * 3.0).backward()
    assert x.grad == 1.5
    for local in ([0.5], np.array([0.5])):  # a list or an array of them too
        x.grad = 0.0
        (Value(1.0, (x,), local) * 3.0).backward()
        assert x.grad == 1.5
    for bad in [(1.0, 2.0), ("x",), 5, {1.0}]:  # too many, not a number, not a sequence of them
        with pytest.raises(
            TypeError, match="op is the op's name, or one local gradient \\(a number\\) per child"
        ):
            Value(1.0, (x,), bad)


# ---------------------------------------------------------------------------
# Anomaly mode on batched graphs
# ---------------------------------------------------------------------------


def test_detect_anomaly_gives_a_batched_mlps_gradients_unchanged():
    X, y = cg.data.make_spirals(30, seed=0)
    model = cg.nn.MLP(2, [8, 8, 1], seed=0)

    def grads(anomaly):
        model.zero_grad()
        loss = cg.losses.hinge(model(cg.data.columns(X)), 2 * y - 1.0)
        if anomaly:
            with cg.detect_anomaly():
                loss.backward()
        else:
            loss.backward()
        return [p.grad for p in model.parameters()]

    assert list(map(bits, grads(True))) == list(map(bits, grads(False)))


# ---------------------------------------------------------------------------
# Threads: the collector's switch, and concurrent backward on one graph
# ---------------------------------------------------------------------------


def test_backward_never_switches_the_garbage_collector(monkeypatch):
    calls = []
    monkeypatch.setattr(gc, "disable", lambda: calls.append("disable"))
    monkeypatch.setattr(gc, "enable", lambda: calls.append("enable"))
    x = Value(0.5)
    ((x * x).tanh() + cg.dot([x, x], [x, 2.0])).backward()
    assert calls == []


def test_two_threads_backward_through_one_graph_as_if_one_after_the_other():
    x, w = Value(0.7), Value(-1.3)
    loss = cg.sum([((x * w + i).tanh() * x).relu() for i in range(300)])
    loss.backward()
    once = (x.grad, w.grad)
    x.grad = w.grad = 0.0
    barrier = threading.Barrier(4)

    def run():
        barrier.wait()
        for _ in range(5):
            loss.backward()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert_close([x.grad, w.grad], [20 * once[0], 20 * once[1]], rel=1e-12)
    assert gc.isenabled()


# ---------------------------------------------------------------------------
# Copies after backward(create_graph=True): the gradients' graphs refer back to the leaves
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_values_and_models_copy_after_create_graph(how):
    clone = (lambda v: pickle.loads(pickle.dumps(v))) if how == "pickle" else copy.deepcopy
    x = Value(1.5, label="x")
    loss = (x**3).tanh()
    loss.backward(create_graph=True)
    assert isinstance(x.grad, Value)
    twin_x, twin_loss = clone([x, loss])
    assert twin_x.grad == x.grad.data  # a gradient that is a Value is copied as its number
    assert twin_loss.data == loss.data and twin_loss._prev[0]._prev[0] is twin_x
    assert clone(x).grad == clone(loss)._prev[0]._prev[0].grad == x.grad.data
    model = cg.nn.MLP(2, [3, 1], "tanh", seed=0)
    out = model([0.5, -1.0])
    out.backward(create_graph=True)
    twin = clone(model)
    assert [p.grad for p in twin.parameters()] == [
        p.grad.data if isinstance(p.grad, Value) else p.grad for p in model.parameters()
    ]


# ---------------------------------------------------------------------------
# Custom ops that use each other in their local gradients
# ---------------------------------------------------------------------------


def test_two_ops_that_differentiate_each_other_give_the_third_derivative_of_pytorch():
    # On numbers an op gives a number (no node, no local gradients), so sin's local gradient cos(x)
    # does not ask for cos's, which would ask for sin's, and so on forever.
    sin = cg.Op("test_my_sin", np.sin, lambda x, out: (cos(x),))
    cos = cg.Op("test_my_cos", np.cos, lambda x, out: (-sin(x),))
    assert type(sin(0.3)) is float and sin(0.3) == math.sin(0.3)
    d3 = cg.grad(cg.grad(cg.grad(lambda t: sin(t) * cos(t))))
    x = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    y = torch.sin(x) * torch.cos(x)
    for _ in range(3):
        (y,) = torch.autograd.grad(y, x, create_graph=True)
    assert d3(0.3).data == pytest.approx(y.item(), rel=1e-14)


def test_an_op_on_numbers_alone_is_its_value_and_on_a_value_a_node():
    square = cg.Op("test_square", lambda x: x * x, lambda x, out: (2.0 * x,))
    assert square(3) == 9.0 and type(square(3)) is float
    batch = square(np.array([1.0, 2.0]))
    assert isinstance(batch, np.ndarray) and batch.tolist() == [1.0, 4.0]
    node = square(Value(3.0))
    assert isinstance(node, Value) and node._op is square


# ---------------------------------------------------------------------------
# chaingrad's own op names
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["exp", "*", "cross_entropy", "affine", "sin"])
def test_an_op_cannot_take_the_name_of_one_of_chaingrads_own(name):
    before = cg.engine.OPS[name]
    with pytest.raises(ValueError, match=f"'{re.escape(name)}' is the name of one of chaingrad's own ops"):
        cg.Op(name, lambda x: 2 * x, lambda x, out: (2.0,))
    assert cg.engine.OPS[name] is before
    x = Value(1.0)
    node = x.exp() if name != "*" else x * x
    copied = pickle.loads(pickle.dumps(node))
    assert copied._op is node._op and copied.data == node.data


def test_a_user_op_defined_again_replaces_itself_as_a_notebook_cell_run_twice_does():
    first = cg.Op("test_cell_op", lambda x: x + 1.0, lambda x, out: (1.0,))
    second = cg.Op("test_cell_op", lambda x: x + 2.0, lambda x, out: (1.0,))
    assert cg.engine.OPS["test_cell_op"] is second and first(1.0) == 2.0 and second(1.0) == 3.0
