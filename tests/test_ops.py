"""The op table against PyTorch float64: every primitive, every operand form, the fused ops, custom ops."""

from __future__ import annotations

import decimal
import itertools
import math
import operator
import pickle
import warnings
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SOFTPLUS, assert_close, cg_value_and_grads, no_value_left, same, torch_value_and_grads
from hypothesis import given, settings
from hypothesis import strategies as st
from refusals import assert_refused

import chaingrad as cg
from chaingrad import Value

inf, nan = math.inf, math.nan
HYPOTHESIS = settings(deadline=None, derandomize=True, database=None, max_examples=150)

# ---------------------------------------------------------------------------
# Primitive ops: a table of cases, each compared with PyTorch.
# ---------------------------------------------------------------------------

EDGE = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 1 / 3, 2.0, 3.0, -8.0, 1000.0, -1000.0, inf, -inf, nan]

BINARY = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "**": operator.pow,
}
UNARY = ["neg", "exp", "log", "tanh", "sigmoid", "relu", "sqrt", "abs", "sin", "cos"]


def _unary(name):
    return operator.neg if name == "neg" else operator.methodcaller(name)


def _mismatches(f, forms, pairs):
    """Every (form, inputs) where chaingrad's value or gradients differ from PyTorch's."""
    bad = []
    for form, (a, b) in itertools.product(forms, pairs):
        # A form fixes which side is a Value; the other side enters as a plain number.
        # PyTorch gets the constant as a tensor: with a Python number it computes
        # x ** 0.5 as sqrt(x), so (-0.0) ** 0.5 = -0.0 and (-inf) ** 0.5 = nan,
        # where IEEE-754 pow (and torch.pow of two tensors) gives +0.0 and +inf.
        ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
        if form == "Value op Value":
            g, tg, xs = f, f, [a, b]
        elif form == "Value op number":
            g, tg, xs = (lambda x: f(x, b)), (lambda x: f(x, tb)), [a]
        else:
            g, tg, xs = (lambda y: f(a, y)), (lambda y: f(ta, y)), [b]
        got, want = cg_value_and_grads(g, xs), torch_value_and_grads(tg, xs)
        if not same(got[0], want[0]) or not all(map(same, got[1], want[1])):
            bad.append((form, a, b, got, want))
    return bad


FORMS = ["Value op Value", "Value op number", "number op Value"]


@pytest.mark.parametrize("symbol", BINARY)
def test_binary_op_matches_torch_on_every_form_and_edge_input(symbol):
    bad = _mismatches(BINARY[symbol], FORMS, itertools.product(EDGE, EDGE))
    assert not bad, f"{len(bad)} mismatches (form, a, b, chaingrad, torch): {bad[:6]}"


@pytest.mark.parametrize("symbol", BINARY)
def test_binary_op_with_int_operands_matches_torch(symbol):
    # Python ints (2 * x, x ** 2, 1 - x, 1 / x, 2 ** x) are converted, not rejected.
    f = BINARY[symbol]
    bad = []
    for k, x in itertools.product([-2, -1, 0, 1, 2, 3], [-1.5, -0.0, 0.0, 0.25, 2.0, 7.0]):
        for g in (lambda v, k=k: f(v, k)), (lambda v, k=k: f(k, v)):
            got, want = cg_value_and_grads(g, [x]), torch_value_and_grads(g, [x])
            if not same(got[0], want[0]) or not same(got[1][0], want[1][0]):
                bad.append((k, x, got, want))
    assert not bad, bad[:6]


# tanh' = 1 - tanh^2 and sigmoid' = s (1 - s) are computed from the rounded output,
# so near saturation they are good to a few ulps of 1, not relative to their size
# (true at x = -8 for PyTorch as well: both are 2e-10 off relative).
GRAD_ABS_TOL = {"tanh": 2**-52, "sigmoid": 2**-52}


@pytest.mark.parametrize("name", UNARY)
def test_unary_op_matches_torch_on_edge_inputs(name):
    f = _unary(name)
    inputs = [*EDGE, -1e-300, 5e-324, 8.0, -8.0, 20.0, -20.0, 40.0, -40.0, 710.0, -745.5, 1e300, 1e308]
    bad = []
    for x in inputs:
        got, want = cg_value_and_grads(f, [x]), torch_value_and_grads(f, [x])
        if not same(got[0], want[0]) or not same(got[1][0], want[1][0], abs_tol=GRAD_ABS_TOL.get(name, 0.0)):
            bad.append((x, got, want))
    assert not bad, f"(x, chaingrad, torch): {bad}"


def _batch_grads(f, xs):
    """f's value (a batch) and the gradients of its batch sum, in chaingrad and in PyTorch."""
    vs = [Value(x) for x in xs]
    out = f(*vs)
    cg.batch_sum(out).backward()
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    tout = f(*ts)
    tout.sum().backward()
    return (out.data, *[v.grad for v in vs]), (tout.detach().numpy(), *[t.grad.numpy() for t in ts])


def _batch_cases(op):
    """Every edge pair as one batch of samples, and single numbers combined with a whole batch."""
    if op in UNARY:
        return [(_unary(op), [np.array(EDGE)])]
    a, b = (np.array(v) for v in zip(*itertools.product(EDGE, EDGE)))
    cases = [(BINARY[op], [a, b])]
    for c in [0.0, -1.0, 0.5, 3.0]:
        cases += [(BINARY[op], [c, np.array(EDGE)]), (BINARY[op], [np.array(EDGE), c])]
    return cases


@pytest.mark.parametrize("op", [*BINARY, *UNARY])
def test_ops_on_batches_match_torch_on_edge_inputs(op):
    # A single-number Value shared by the batch gets the sum of the per-sample gradients.
    for f, xs in _batch_cases(op):
        got, want = _batch_grads(f, xs)
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, abs_tol=GRAD_ABS_TOL.get(op, 0.0) * (i > 0), what=f"{op} {xs} output {i}")


def test_ops_on_batches_are_quiet_like_torch():
    # IEEE results (inf - inf = nan, 0 * inf = nan) are values, not RuntimeWarnings.
    noisy = {}
    for op in [*BINARY, *UNARY]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for f, xs in _batch_cases(op):
                _batch_grads(f, xs)
        noisy.update(
            {op: sorted({str(w.message) for w in caught if w.category is RuntimeWarning})} if caught else {}
        )
    assert not noisy, noisy


@pytest.mark.parametrize(
    "expr, x, value, grad",
    [
        # The issue's IEEE-754 cases, with the values mathematics (and C99's pow) prescribe.
        ("x ** -1", 0.0, inf, -inf),  # derivative -1 * 0 ** -2
        ("x ** (1 / 3)", -8.0, nan, nan),  # a negative base to a non-integer power
        ("(-8.0) ** x", 1 / 3, nan, nan),
        ("x.log()", 0.0, -inf, inf),
        ("x.exp()", 1000.0, inf, inf),
        ("x.sqrt()", -1.0, nan, nan),
        ("x.relu()", 0.0, 0.0, 0.0),  # relu'(0) = 0, as in PyTorch
        ("abs(x)", 0.0, 0.0, 0.0),  # abs'(0) = 0, as in PyTorch
        ("x.tanh()", 1000.0, 1.0, 0.0),
        ("x.sigmoid()", -1000.0, 0.0, 0.0),
        ("1 / x", 0.0, inf, -inf),
        ("x / 0", -2.0, -inf, inf),
        ("x ** 1000", 1000.0, inf, inf),  # math.pow raises OverflowError here
        ("10.0 ** x", 400.0, inf, inf),
    ],
)
def test_ieee_edge_values_are_results_not_exceptions(expr, x, value, grad):
    v = Value(x)
    y = eval(expr, {}, {"x": v})
    y.backward()
    assert same(y.data, value) and same(v.grad, grad), (y.data, v.grad)


def _exact(name, x):
    """sigmoid or tanh at x and its derivative, to 60 digits (an oracle independent of floats)."""
    with decimal.localcontext(decimal.Context(prec=60, Emin=-9999, Emax=9999)):
        e = (-abs(Decimal(x))).exp()  # <= 1, for both signs of x
        s = 1 / (1 + e) if x >= 0 else e / (1 + e)
        if name == "sigmoid":
            return float(s), float(s * (1 - s))
        t = 2 * s - 1  # tanh(x / 2) = 2 sigmoid(x) - 1, so evaluate sigmoid at 2x
        return float(t), float(1 - t * t)


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
@pytest.mark.parametrize("x", [1000.0, -1000.0, 710.0, -710.0, 40.0, -40.0, 3.0, -0.5])
def test_sigmoid_and_tanh_are_exact_at_large_inputs(name, x):
    # PyTorch is not the oracle here: its sigmoid(-710) is 0, not e^-710 = 4.5e-309.
    value, grad = _exact(name, 2 * x if name == "tanh" else x)
    got = cg_value_and_grads(_unary(name), [x])
    assert same(got[0], value), (got[0], value)
    assert same(got[1][0], grad, abs_tol=2**-52), (got[1][0], grad)


@pytest.mark.parametrize("name", ["exp", "log", "tanh", "sigmoid", "relu", "sqrt", "sin", "cos"])
def test_elementwise_functions_take_floats_ints_batches_and_values(name):
    f, tf = getattr(cg, name), getattr(torch, name)
    xs = [-1000.0, -3.0, -0.5, -0.0, 0.0, 0.5, 2.0, 3.0, 1000.0, nan]
    want = tf(torch.tensor(xs, dtype=torch.float64)).numpy()
    assert_close([f(x) for x in xs], want, what=f"{name}(float)")
    assert all(type(f(x)) is float for x in xs)
    assert_close(f(np.array(xs)), want, what=f"{name}(batch)")
    assert same(f(2), tf(torch.tensor(2.0, dtype=torch.float64)).item())
    v = f(Value(0.5))
    assert isinstance(v, Value) and v._op == name


# ---------------------------------------------------------------------------
# Fused ops: one node each, equal to their composition from primitive ops.
# ---------------------------------------------------------------------------


def _fold_add(xs, start=0.0):
    total = start
    for x in xs:
        total = total + x
    return total


def _exp_sum(xs):
    return _fold_add([x.exp() if isinstance(x, Value) else cg.exp(x) for x in xs])


def _log_of(x):
    return x.log() if isinstance(x, Value) else cg.log(x)


# name -> (fused, unfused composition of + - * / exp log); each returns one Value.
# `k` picks an output (softmax, log_softmax) or the target class (cross_entropy).
FUSED = {
    "sum": (lambda xs, k: cg.sum(xs, start=0.25), lambda xs, k: _fold_add(xs, 0.25)),
    "mean": (lambda xs, k: cg.mean(xs), lambda xs, k: _fold_add(xs) / len(xs)),
    "dot": (
        lambda xs, k: cg.dot(xs, xs[::-1], start=-1.5),
        lambda xs, k: _fold_add([a * b for a, b in zip(xs, xs[::-1])], -1.5),
    ),
    "logsumexp": (lambda xs, k: cg.logsumexp(xs), lambda xs, k: _log_of(_exp_sum(xs))),
    "softmax": (
        lambda xs, k: cg.softmax(xs)[k % len(xs)],
        lambda xs, k: cg.exp(xs[k % len(xs)]) / _exp_sum(xs),
    ),
    "log_softmax": (
        lambda xs, k: cg.log_softmax(xs)[k % len(xs)],
        lambda xs, k: xs[k % len(xs)] - _log_of(_exp_sum(xs)),
    ),
    "cross_entropy": (
        lambda xs, k: cg.cross_entropy(xs, k % len(xs)),
        lambda xs, k: _log_of(_exp_sum(xs)) - xs[k % len(xs)],
    ),
}


@st.composite
def fused_args(draw):
    """Leaf values and an argument list that repeats leaves and mixes in constants."""
    leaves = draw(st.lists(st.floats(-6, 6), min_size=1, max_size=4))
    slots = st.one_of(st.integers(0, len(leaves) - 1), st.floats(-6, 6).map(lambda c: ("c", c)))
    pattern = draw(st.lists(slots, min_size=1, max_size=7))
    return leaves, pattern, draw(st.integers(0, 6))


def _build(leaves, pattern):
    vs = [Value(x) for x in leaves]
    return vs, [p[1] if isinstance(p, tuple) else vs[p] for p in pattern]


@pytest.mark.parametrize("name", FUSED)
@HYPOTHESIS
@given(case=fused_args())
def test_fused_op_equals_its_unfused_composition(name, case):
    leaves, pattern, k = case
    fused, unfused = FUSED[name]
    got_leaves, got_args = _build(leaves, pattern)
    want_leaves, want_args = _build(leaves, pattern)
    got, want = fused(got_args, k), unfused(want_args, k)
    if isinstance(want, Value):
        want.backward()
    if isinstance(got, Value):
        got.backward()
    values = sum(isinstance(a, Value) for a in got_args) * (2 if name == "dot" else 1)
    assert len(got._prev) == values, "one node whose inputs are the Values; constants are not inputs"
    assert_close(got.data, want.data if isinstance(want, Value) else want, abs_tol=1e-12, what="value")
    assert_close([v.grad for v in got_leaves], [v.grad for v in want_leaves], abs_tol=1e-12, what="grads")


@pytest.mark.parametrize("name", FUSED)
def test_fused_ops_take_values_holding_ints(name):
    # micrograd's biases are Value(0), whose data a copied model sets as the int (p.data = 0); softmax,
    # log_softmax and cross_entropy raised on them, and dot's and sum's starts took the Python path. An op
    # computes on the data as it is (ints past 2**53 add exactly), so these are ints a float holds exactly.
    ints = [0, 3, -2, 7]
    fused, _ = FUSED[name]
    for k in range(len(ints)):
        got, want = [Value(0.5) for _ in ints], [Value(float(i)) for i in ints]
        for v, i in zip(got, ints):
            v.data = i
        g, w = fused(got, k), fused(want, k)
        g.backward(), w.backward()
        assert (g.data, [v.grad for v in got]) == (w.data, [v.grad for v in want]), (name, k)  # bit for bit
    start, float_start = Value(0.5), Value(float(2**60 + 1))
    start.data = 2**60 + 1  # added last, rounded as Python rounds it
    xs = [Value(0.25), Value(-1.5)]
    for op in (lambda s: cg.dot(xs, [2.0, 3], start=s), lambda s: cg.sum(xs, start=s)):
        assert op(start).data == op(float_start).data


def test_repeated_values_inside_one_fused_call():
    a, b = Value(3.0), Value(-2.0)
    cg.dot([a, b], [a, b]).backward()
    assert (a.grad, b.grad) == (6.0, -4.0)  # d(x.x)/dx = 2x

    a, b = Value(3.0), Value(-2.0)
    cg.sum([a, a, b]).backward()
    assert (a.grad, b.grad) == (2.0, 1.0)

    a, b = Value(0.5), Value(-1.0)
    got = cg.softmax([a, a, b])[2]
    got.backward()
    ta, tb = (torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in (0.5, -1.0))
    want = torch.softmax(torch.stack([ta, ta, tb]), 0)[2]
    want.backward()
    assert_close([got.data, a.grad, b.grad], [want.item(), ta.grad.item(), tb.grad.item()])


def _torch_fused(name, ts, k):
    z = torch.stack(ts)
    n = len(ts)
    return {
        "sum": lambda: torch.sum(z) + 0.25,
        "mean": lambda: torch.mean(z),
        "dot": lambda: torch.dot(z, z.flip(0)) - 1.5,
        "logsumexp": lambda: torch.logsumexp(z, 0),
        "softmax": lambda: torch.softmax(z, 0)[k % n],
        "log_softmax": lambda: torch.log_softmax(z, 0)[k % n],
        "cross_entropy": lambda: F.cross_entropy(z.unsqueeze(0), torch.tensor([k % n])),
    }[name]()


LOGITS = [
    [0.3, -1.2, 2.5, 0.0, -0.7],
    [1000.0, -1000.0, 0.0, 999.5],
    [-1000.0, -1000.0, -1000.0],
    [1000.0, 1000.0],
    [-1000.0, -999.0],
    [1e300, -1e300],
    [0.0, -inf, 1.0],
    [4.0],
]


@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize("logits", LOGITS, ids=str)
def test_fused_op_matches_torch(name, logits):
    for k in range(len(logits)):
        got = cg_value_and_grads(lambda *xs: FUSED[name][0](list(xs), k), logits)
        want = torch_value_and_grads(lambda *ts: _torch_fused(name, list(ts), k), logits)
        assert_close(got[0], want[0], abs_tol=1e-300, what=f"{name} value, k={k}")
        assert_close(got[1], want[1], abs_tol=1e-300, what=f"{name} grads, k={k}")


def test_fused_ops_are_finite_at_large_logits():
    for logits in ([1000.0, -1000.0, 0.0], [-1000.0, -1000.0], [1000.0, 1000.0, 999.0]):
        for name, (fused, _) in FUSED.items():
            data, grads = cg_value_and_grads(lambda *xs: fused(list(xs), 0), logits)
            assert math.isfinite(data) and all(map(math.isfinite, grads)), (name, logits, data, grads)


def test_softmax_and_log_softmax_return_one_node_per_output():
    xs = [Value(1.0), Value(2.0), 3.0]
    for f in (cg.softmax, cg.log_softmax):
        outs = f(xs)
        assert isinstance(outs, list) and len(outs) == 3
        assert all(isinstance(o, Value) and o._prev == tuple(xs[:2]) for o in outs)
    assert_close(math.fsum(o.data for o in cg.softmax(xs)), 1.0)


def test_numbers_inside_fused_ops_are_constants():
    x, y = Value(1.5), Value(-0.5)
    out = cg.dot([x, 2.0], [3.0, y], start=1)
    assert out._prev == (x, y)
    out.backward()
    assert (out.data, x.grad, y.grad) == (1.5 * 3.0 + 2.0 * -0.5 + 1.0, 3.0, 2.0)

    x = Value(0.7)
    out = cg.cross_entropy([x, 2, np.float64(-1.0)], 1)
    assert out._prev == (x,)
    out.backward()
    tx = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    logits = torch.stack([tx, torch.tensor(2.0), torch.tensor(-1.0)])
    want = F.cross_entropy(logits.unsqueeze(0), torch.tensor([1]))
    want.backward()
    assert_close([out.data, x.grad], [want.item(), tx.grad.item()])

    out = cg.sum([1, 2.5])  # constants only: a value with no inputs
    assert out.data == 3.5 and out._prev == ()


def test_fused_ops_build_no_graph_under_no_grad():
    xs = [Value(1.0), Value(-2.0)]
    with cg.no_grad():
        outs = [cg.sum(xs), cg.mean(xs), cg.dot(xs, xs), cg.logsumexp(xs), cg.cross_entropy(xs, 0)]
        outs += cg.softmax(xs) + cg.log_softmax(xs)
    assert all(o._prev == () for o in outs)
    assert_close(outs[3].data, math.log(math.exp(1.0) + math.exp(-2.0)))


# ---------------------------------------------------------------------------
# Bad input to fused ops: a clear error and no node.
# ---------------------------------------------------------------------------


def _raises_without_a_node(exc, match, f):
    # no_value_left checks on leaving, while `info` still holds the traceback and with it the failed
    # call's frames: a half-built node they held would be found.
    with no_value_left(f), pytest.raises(exc, match=match) as info:
        f()
    del info


@pytest.mark.parametrize(
    "target, exc, match",
    [
        (3, IndexError, r"target 3 .*3 classes"),
        (-1, IndexError, r"target -1 .*3 classes"),
        (100, IndexError, r"target 100 .*3 classes"),
        (1.0, TypeError, r"target must be an int.*float"),
        (True, TypeError, r"target must be an int.*bool"),
        ("1", TypeError, r"target must be an int.*str"),
        (None, TypeError, r"target must be an int.*NoneType"),
        (np.float64(1.0), TypeError, r"target must be an int"),
    ],
)
def test_cross_entropy_rejects_bad_targets(target, exc, match):
    xs = [Value(0.1), Value(0.2), Value(0.3)]
    _raises_without_a_node(exc, match, lambda: cg.cross_entropy(xs, target))
    assert all(x.grad == 0.0 for x in xs)


def test_cross_entropy_accepts_numpy_integer_targets():
    xs = [Value(0.1), Value(0.2), Value(0.3)]
    assert cg.cross_entropy(xs, np.int64(2)).data == cg.cross_entropy(xs, 2).data


SEQUENCE_OPS = {
    "sum": cg.sum,
    "mean": cg.mean,
    "logsumexp": cg.logsumexp,
    "softmax": cg.softmax,
    "log_softmax": cg.log_softmax,
    "cross_entropy": lambda xs: cg.cross_entropy(xs, 0),
    "dot": lambda xs: cg.dot(xs, xs),
}


@pytest.mark.parametrize("name", SEQUENCE_OPS)
@pytest.mark.parametrize(
    "values, exc, match",
    [
        ([], ValueError, "empty"),
        (["a"], TypeError, "str"),
        ([Value(1.0), None], TypeError, "NoneType"),
        ([Value(1.0), [2.0]], TypeError, "list"),
        ([1j], TypeError, "complex"),
        (Value(1.0), TypeError, "sequence"),
        ("ab", TypeError, "sequence"),
        (3.0, TypeError, "sequence"),
    ],
    ids=["empty", "str item", "None item", "list item", "complex item", "a Value", "a str", "a number"],
)
def test_fused_ops_reject_bad_sequences(name, values, exc, match):
    _raises_without_a_node(exc, rf"{name}\(\).*{match}", lambda: SEQUENCE_OPS[name](values))


def test_dot_rejects_mismatched_lengths_and_bad_start():
    x, y = Value(1.0), Value(2.0)
    _raises_without_a_node(ValueError, r"dot\(\).*length.*2 and 1", lambda: cg.dot([x, y], [x]))
    _raises_without_a_node(TypeError, r"dot\(\) start.*str", lambda: cg.dot([x], [y], start="0"))


BATCH = Value(np.ones(2), label="batch")


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda x: cg.sum([x], start="0"), TypeError, ["sum() start", "str"]),
        (lambda x: cg.batch_mean("a"), TypeError, ["batch_mean()", "str"]),
        (lambda x: cg.batch_sum(None), TypeError, ["batch_sum()", "NoneType"]),
        (lambda x: cg.affine([[x, "w"]], [x, x]), TypeError, ["affine", "str"]),
        (lambda x: cg.affine([[x]], ["in"]), TypeError, ["affine", "str"]),
        (lambda x: cg.affine([[x]], [x], ["b"]), TypeError, ["affine", "str"]),
        (
            lambda x: cg.affine([[x]], [BATCH], [BATCH]),
            ValueError,
            ["single numbers"],
        ),
        (lambda x: cg.affine([], [x]), ValueError, ["at least one row"]),
    ],
    ids=[
        "sum start",
        "batch_mean",
        "batch_sum",
        "affine weight",
        "affine input",
        "affine bias",
        "batch bias",
        "no rows",
    ],
)
def test_fused_ops_refuse_bad_arguments(call, error, words):
    x = Value(0.5)
    assert_refused(lambda: call(x), [x, BATCH], error, words)


# ---------------------------------------------------------------------------
# Custom ops: the same mechanism as the built-in ones.
# ---------------------------------------------------------------------------

XS = [-5.0, -1.0, -0.0, 0.5, 3.0, 15.0]


def test_custom_op_matches_torch_softplus():
    for x in XS:
        got = cg_value_and_grads(SOFTPLUS, [x])
        want = torch_value_and_grads(F.softplus, [x])
        assert_close(got[0], want[0], what=f"softplus({x})")
        assert_close(got[1], want[1], what=f"softplus'({x})")


def test_custom_op_node_and_composition():
    x = Value(0.3, label="x")
    y = SOFTPLUS(x * 2) * x
    assert y._prev[0]._op == "test_softplus" and y._prev[0]._op is SOFTPLUS
    y.backward()
    want = torch_value_and_grads(lambda t: F.softplus(t * 2) * t, [0.3])
    assert_close([y.data, x.grad], [want[0], *want[1]])


def test_custom_op_with_two_inputs_and_constants():
    xlogy = cg.Op("test_xlogy", lambda x, y: x * cg.log(y), lambda x, y, out: (cg.log(y), x / y))
    for a, b in [(2.0, 3.0), (-1.5, 0.25)]:
        for f, tf, xs in [
            (xlogy, torch.xlogy, [a, b]),
            (lambda y: xlogy(a, y), lambda y: torch.xlogy(torch.tensor(a, dtype=torch.float64), y), [b]),
            (lambda x: xlogy(x, b), lambda x: torch.xlogy(x, b), [a]),
        ]:
            got, want = cg_value_and_grads(f, xs), torch_value_and_grads(tf, xs)
            assert_close(got[0], want[0])
            assert_close(got[1], want[1])


def test_custom_op_under_no_grad_and_on_plain_numbers():
    with cg.no_grad():
        y = SOFTPLUS(Value(1.0))
    assert y._prev == () and same(y.data, math.log1p(math.e))
    z = SOFTPLUS(2.0)  # an op on numbers alone is a number, as cg.exp(2.0) is
    assert type(z) is float and same(z, math.log1p(math.exp(2.0)))


def test_custom_op_under_detect_anomaly():
    with cg.detect_anomaly(), pytest.raises(cg.AnomalyError, match=r"softplus.*big=1000\.0"):
        SOFTPLUS(Value(1000.0, label="big"))  # log(1 + e^1000) overflows in this formula


def test_defining_an_op_again_replaces_it_and_keeps_existing_nodes():
    # A notebook cell that defines an op, run twice, must not fail the second time.
    first = cg.Op("test_duplicate", lambda x: 2 * x, lambda x, out: (2.0,))
    node = first(Value(1.0))
    second = cg.Op("test_duplicate", lambda x: -x, lambda x, out: (-1.0,))
    assert node._op is first and node.data == 2.0, "an existing node keeps the op that made it"
    assert second(Value(1.0)).data == -1.0
    node.backward()
    assert node._prev[0].grad == 2.0, "and its local gradients"
    twin = pickle.loads(pickle.dumps(node))
    assert twin._op is second, "a loaded node finds the op defined under its name now"
    twin.backward()
    assert twin._prev[0].grad == 2.0 + 2.0, "with the local gradients it was saved with"


def test_op_rejects_bad_definitions_and_arguments():
    with pytest.raises(TypeError, match="name"):
        cg.Op("", lambda x: x, lambda x, out: (1.0,))
    with pytest.raises(TypeError, match="callable"):
        cg.Op("test_bad", 1.0, lambda x, out: (1.0,))
    with pytest.raises(TypeError, match=r"softplus.*argument 0 is str"):
        SOFTPLUS("a")


@pytest.mark.parametrize(
    "f",
    [
        lambda x: x + "a",
        lambda x: "a" + x,
        lambda x: x - "a",
        lambda x: x * "a",
        lambda x: x / "a",
        lambda x: x ** "a",
        lambda x: "a" ** x,
        lambda x: x + None,
        lambda x: x * [1.0],
        lambda x: x + 1j,
    ],
)
def test_arithmetic_with_non_numbers_is_a_type_error(f):
    x = Value(2.0)
    with pytest.raises(TypeError):
        f(x)
    assert (x.data, x.grad) == (2.0, 0.0)


NOT_NUMBERS = {"str": "a", "NoneType": None, "list": [1.0], "complex": 1j, "dict": {}}
OPERATORS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "**": lambda a, b: a**b,
}


@pytest.mark.parametrize("kind", NOT_NUMBERS)
@pytest.mark.parametrize("symbol", OPERATORS)
@pytest.mark.parametrize("batched", [False, True], ids=["number", "batch"])
def test_arithmetic_with_a_non_number_names_its_type(kind, symbol, batched):
    # test_arithmetic_with_non_numbers_is_a_type_error checks the TypeError; here the message names the
    # operand's type, on either side.
    x = Value(np.array([1.0, 2.0]) if batched else 2.0)
    f, other = OPERATORS[symbol], NOT_NUMBERS[kind]
    # x * "a" and [1.0] * x end in Python's sequence repetition once Value declines: its message
    # names the sequence, not the type.
    word = "sequence" if symbol == "*" and kind in ("str", "list") else kind
    assert_refused(lambda: f(x, other), [x], TypeError, [word])
    assert_refused(lambda: f(other, x), [x], TypeError, [word])


@pytest.mark.parametrize("kind", NOT_NUMBERS)
@pytest.mark.parametrize("name", ["exp", "log", "tanh", "sigmoid", "relu", "sqrt"])
def test_elementwise_functions_refuse_non_numbers(name, kind):
    # cg.exp and friends take a number, a batch or a Value, like Value() and the ops; anything else
    # (a string, a list, a complex number) is a TypeError naming its type, not a NumPy result.
    assert_refused(lambda: getattr(cg, name)(NOT_NUMBERS[kind]), [], TypeError, [kind])


@pytest.mark.parametrize("number", [np.float32(0.75), np.float16(0.75), np.int8(1), Fraction(3, 4)])
@pytest.mark.parametrize("op", ["exp", "tanh", "log", "relu", "sigmoid", "sqrt", "sin", "cos"])
def test_a_unary_op_takes_data_assigned_any_kind_of_real_number(op, number):
    v, expected = Value(1.0), Value(float(number))
    v.data = number  # assigned, not converted by Value(): the op converts it
    y, z = getattr(v, op)(), getattr(expected, op)()
    y.backward()
    z.backward()
    assert (y.data, v.grad) == (z.data, expected.grad) and type(y.data) is float
