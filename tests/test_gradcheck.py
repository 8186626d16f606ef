"""gradcheck: passes correct gradients, reports wrong ones with a table, changes nothing."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import SOFTPLUS

import chaingrad as cg
from chaingrad import Value

# A custom op whose local gradient is deliberately wrong: d(x^2)/dx is 2x, not 3x.
BAD_SQUARE = cg.Op("test_bad_square", lambda x: x * x, lambda x, out: (3 * x,))


CORRECT = {
    "arithmetic": (lambda x, y: (x * y - x / y + 2 ** (x - y)) ** 2, [0.7, -1.3]),
    "unary": (
        lambda x, y: x.exp() * y.tanh() + x.sigmoid().log() - (y * y).sqrt() + (x - y).relu(),
        [0.4, 1],
    ),
    "x ** y": (lambda x, y: x**y + abs(y), [1.7, -0.8]),
    "fused": (
        lambda x, y: cg.cross_entropy([x, y, x * y], 2) + cg.dot([x, y], [y, 3.0]) + cg.softmax([x, y])[0],
        [0.2, -0.9],
    ),
    "custom op": (lambda x, y: SOFTPLUS(x * y), [0.5, 2.0]),
}


@pytest.mark.parametrize("name", CORRECT)
def test_gradcheck_passes_correct_gradients(name):
    f, xs = CORRECT[name]
    assert cg.gradcheck(f, [Value(x) for x in xs]) is True


def test_gradcheck_passes_a_batch_input():
    x, w = Value(np.array([0.5, -1.0, 2.0])), Value(0.3)
    assert cg.gradcheck(lambda x, w: cg.batch_mean((x * w).tanh()), [x, w]) is True


def _table(message):
    """The report's rows: name -> (analytic, numeric, flagged)."""
    rows = {}
    for line in message.splitlines():
        m = re.match(r"(\S+(?: \d+)?)\s+(\S+)\s+(\S+)\s*(MISMATCH)?\s*$", line)
        if m and m.group(1) != "input":
            rows[m.group(1)] = (float(m.group(2)), float(m.group(3)), bool(m.group(4)))
    return rows


def test_a_wrong_local_gradient_is_reported_with_a_table():
    x, y = Value(1.5, label="x"), Value(-0.5)
    with pytest.raises(cg.GradcheckError) as info:
        cg.gradcheck(lambda a, b: BAD_SQUARE(a) * b, [x, y])
    message = str(info.value)
    assert "analytic" in message and "numeric" in message
    rows = _table(message)
    assert set(rows) == {"x", "input 1"}, message
    analytic, numeric, flagged = rows["x"]
    assert flagged and analytic == pytest.approx(3 * 1.5 * -0.5) and numeric == pytest.approx(2 * 1.5 * -0.5)
    analytic, numeric, flagged = rows["input 1"]  # d/dy of x^2 y = x^2 is right
    assert not flagged and analytic == pytest.approx(1.5**2) and numeric == pytest.approx(1.5**2)


def test_the_tolerances_are_atol_plus_rtol_times_numeric():
    off = cg.Op("test_off_by_1e-3", lambda x: x * x, lambda x, out: (2 * x * 1.001,))
    assert cg.gradcheck(off, [Value(2.0)], rtol=2e-3)  # |4.004 - 4| = 0.004 <= 0.008
    assert cg.gradcheck(off, [Value(2.0)], atol=5e-3, rtol=0.0)
    with pytest.raises(cg.GradcheckError):
        cg.gradcheck(off, [Value(2.0)])  # 0.004 > 1e-5 + 1e-4 * 4


@pytest.mark.parametrize("wrong", [False, True], ids=["passing", "failing"])
def test_gradcheck_leaves_inputs_as_they_were(wrong):
    x, y = Value(0.8, label="x"), Value(np.array([1.0, -2.0, 0.5]))
    x.grad, y.grad = 0.25, np.array([1.0, 2.0, 3.0])
    f = BAD_SQUARE if wrong else (lambda v: v * v)
    try:
        cg.gradcheck(lambda a, b: cg.batch_sum(f(a) * b), [x, y])
    except cg.GradcheckError:
        assert wrong
    else:
        assert not wrong
    assert (x.data, x.grad, x.label) == (0.8, 0.25, "x")
    assert y.data.tolist() == [1.0, -2.0, 0.5] and y.grad.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("bad", [1.0, np.array([1.0]), "x", None], ids=["float", "array", "str", "None"])
def test_gradcheck_rejects_inputs_that_are_not_values(bad):
    x = Value(1.0)
    with pytest.raises(TypeError, match=r"input 1 is \w+, not a Value"):
        cg.gradcheck(lambda a, b: a * b, [x, bad])
    assert (x.data, x.grad) == (1.0, 0.0)


def test_gradcheck_rejects_functions_that_do_not_return_one_number():
    x = Value(1.0)
    with pytest.raises(TypeError, match="must return a Value, got float"):
        cg.gradcheck(lambda a: 2.0, [x])
    with pytest.raises(ValueError, match="single number"):
        cg.gradcheck(lambda a: a * Value(np.array([1.0, 2.0])), [x])


def test_gradcheck_works_inside_no_grad():
    # A check of gradients should not depend on the caller's grad mode.
    with cg.no_grad():
        assert cg.gradcheck(lambda a: a * a, [Value(1.0)]) is True


@pytest.mark.parametrize("batch", [False, True], ids=["number", "batch"])
@pytest.mark.parametrize("failing_call", [2, 3, 4])  # f(x + eps), f(x - eps), the next entry's
def test_an_f_that_raises_midway_leaves_the_inputs_as_they_were(batch, failing_call):
    x = Value(np.array([1.0, 2.0])) if batch else Value(1.0)
    y = Value(0.5)
    calls = []

    def f(a, b):
        calls.append(1)
        if len(calls) == failing_call:
            raise RuntimeError("boom")
        return cg.batch_mean(a * a * b)

    with pytest.raises(RuntimeError, match="boom"):
        cg.gradcheck(f, [x, y])
    assert (x.data.tolist() if batch else x.data, y.data) == ([1.0, 2.0] if batch else 1.0, 0.5)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda x: cg.gradcheck(lambda a: a * a, x),
            TypeError,
            "a list of Values, e.g. \\[x, w\\], not one Value",
        ),
        (lambda x: cg.gradcheck(lambda: Value(1.0), []), ValueError, "no inputs to check"),
        (
            lambda x: cg.gradcheck(lambda a: a * a, [x], eps=0),
            ValueError,
            "eps must be a positive finite step",
        ),
        (lambda x: cg.gradcheck(lambda a: a * a, [x], eps=float("inf")), ValueError, "positive finite"),
        (lambda x: cg.gradcheck(lambda a: a * a, [x], eps="a"), TypeError, "gradcheck: eps must be a number"),
        (
            lambda x: cg.gradcheck(lambda a: a * a, [x], atol=None),
            TypeError,
            "gradcheck: atol must be a number",
        ),
        (lambda x: cg.gradcheck(lambda a: a * a, [x], rtol=-1.0), ValueError, "gradcheck: rtol must be in"),
    ],
)
def test_bad_arguments_are_named_and_nothing_is_called(call, error, message):
    x = Value(1.0)
    with pytest.raises(error, match=message):
        call(x)
    assert (x.data, x.grad) == (1.0, 0.0)


def test_an_input_holding_an_int_is_refused():
    x = Value(1.0)
    x.data = 2
    with pytest.raises(TypeError, match="input 0 holds int 2; give it a float"):
        cg.gradcheck(lambda a: a * a, [x])
