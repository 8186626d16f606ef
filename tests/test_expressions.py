"""The expression evaluator behind `chaingrad graph`: a whitelist parsed with ast, never eval'd; each node
named by the text that made it; NAME=NUMBER variables read as Python reads names."""

import math

import pytest

import chaingrad as cg
from chaingrad import viz
from chaingrad.expressions import ExpressionError, evaluate, parse_variables


def leaves(**values):
    return {k: cg.Value(v, label=k) for k, v in values.items()}


def test_each_node_is_named_by_its_sub_expression_and_never_two_alike():
    v = leaves(x=2.0, w=-3.0, b=1.0)
    out = evaluate(" tanh(x*w + b) ", v, name_nodes=True)
    assert [n.label for n in viz.topological_order(out)] == ["x", "w", "x*w", "b", "x*w + b", "tanh(x*w + b)"]
    x = v["x"]
    twice = evaluate("x*x + x*x + (+x)", {"x": x}, name_nodes=True)
    labels = [n.label for n in viz.topological_order(twice)]
    assert labels == ["x", "x*x", "x*x #2", "x*x + x*x", "x*x + x*x + (+x)"] and x.label == "x"
    spaced = evaluate("(x  *\tw).exp()", v, name_nodes=True)
    assert spaced.label == "(x * w).exp()" and spaced._prev[0].label == "x * w"
    assert evaluate("2 * 3", {}, name_nodes=True) == 6.0  # numbers alone make no node


def test_without_name_nodes_nothing_is_labelled():
    v = leaves(x=0.5)
    out = evaluate("x.exp() - 1", v)
    assert out.label == "" and out.data == pytest.approx(math.exp(0.5) - 1, rel=1e-15)


@pytest.mark.parametrize(
    "expression, message",
    [
        ("__import__('os')", "calling __import__"),
        ("x.__class__", "attribute access"),
        ("x if x else 1", "if/else"),
        ("tanh", "is a function: call it"),
        ("y + 1", "unknown name 'y'"),
        ("x +", "not a valid expression"),
        ("(" * 300 + "x" + ")" * 300, "at most 500"),
        ("tanh(x, x)", "exactly one argument"),
    ],
)
def test_anything_outside_the_whitelist_is_an_expression_error(expression, message):
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(")):
        evaluate(expression, leaves(x=1.0), name_nodes=True)


def test_variables_are_read_as_python_reads_names():
    assert parse_variables(["x=1", " y = -2.5 ", "ｚ=3"]) == [("x", 1.0), ("y", -2.5), ("z", 3.0)]
    for texts, message in [
        (["x"], "not NAME=NUMBER"),
        (["1x=2"], "not a valid variable name"),
        (["tanh=1"], "is a function name"),
        (["x=one"], "not a number"),
        (["x=1", "x=2"], "given twice"),
        (["ｘ=1", "x=2"], "the same variable 'x'"),
    ]:
        with pytest.raises(ExpressionError, match=message):
            parse_variables(texts)
