"""The compiled core's support for the cyclic garbage collector (_collector.c): which nodes it tracks.

A node that holds only numbers and its inputs is left out of the collector's sight (a graph by itself
has no cycles); a node that comes to hold anything else is tracked, with what a cycle through it needs
tracked. If it tracks too little, a cycle is never freed: each kind of cycle below carries a token whose
finalizer says whether a collection freed it. If it tracks too much, every collection walks whole graphs:
the nodes of numbers must stay untracked. The cycles are freed on the reference engine too (its Values are
ordinary objects); the tests of what is tracked need the core.
"""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Callable

import pytest

import chaingrad as cg
from chaingrad import Value

compiled_only = pytest.mark.skipif(cg.backend != "compiled", reason="what the compiled core tracks")


class Token:
    """An object that only the cycle under test holds: its finalizer runs when the cycle is freed."""


def freed_by_a_collection(make_cycle: Callable[[Token], None]) -> bool:
    """Whether gc.collect() frees what make_cycle(token) built (and did not free by itself)."""
    gc.collect()
    token = Token()
    freed = weakref.finalize(token, lambda: None)
    make_cycle(token)
    del token
    assert freed.alive, "freed without the collector: not a cycle"
    gc.collect()
    return not freed.alive


def graph(x: Value) -> Value:
    """A few nodes on x: ops with Values and numbers, a rule op, a fused op."""
    y = (x * 3.0 + x).tanh() / (x + 2.0)
    return cg.sum([y, y.relu(), x**2])


# ---------------------------------------------------------------------------
# Cycles through what a node holds besides its inputs: freed by a collection
# ---------------------------------------------------------------------------


def _a_grad_that_is_a_list_holding_its_node(token):
    y = graph(Value(1.5))
    y.grad = [y, token]  # odd, but allowed: y -> list -> y


def _attributes_holding_the_node(token):
    y = graph(Value(1.5))
    y.me, y.token = y, token  # y -> its __dict__ -> y


def _a_micrograd_closure_holding_its_node(token):
    a, b = Value(2.0), Value(-3.0)
    out = Value(a.data * b.data, (a, b), "*")

    def _backward():  # the closure holds out (a cell), and out holds the closure
        a.grad += b.data * out.grad
        b.grad += a.data * out.grad
        assert token

    out._backward = _backward
    (out * a + 1.0).backward()


def _a_context_filled_after_nodes_were_made_from_it(token):
    y = graph(Value(2.0))
    y._ctx = {}  # empty: CPython does not track the dict yet
    z = (y + 1.0) * 2.0  # made from a node that holds a container: tracked from birth
    y._ctx["z"], y._ctx["token"] = z, token  # now y -> dict -> z -> ... -> y


def _a_grad_holding_a_node_over_untracked_nodes(token):
    a = Value(1.0)
    c = graph(a) * 3.0  # a, and the nodes between c and a, hold numbers only: untracked
    a.grad = [c, token]  # a -> list -> c -> ... -> a: every node on the way must be tracked


def _an_input_list_that_comes_to_hold_a_later_node(token):
    x = Value(0.5)
    x.users = []  # x open: what is made from it is tracked from birth
    y = graph(x)
    x.users.extend([y, token])  # x -> __dict__ -> list -> y -> ... -> x, no attribute set meanwhile


class Remembering(Value):
    """A subclass: its instances have a __dict__, so what is made from them is tracked from birth."""


def _a_subclass_dict_that_comes_to_hold_a_later_node(token):
    a = Remembering(1.5)
    b = graph(a)
    a.__dict__["users"] = [b, token]  # a -> __dict__ -> list -> b -> ... -> a, no attribute set


CYCLES = {
    "a grad that is a list holding its node": _a_grad_that_is_a_list_holding_its_node,
    "attributes holding the node": _attributes_holding_the_node,
    "a micrograd closure holding its node": _a_micrograd_closure_holding_its_node,
    "a context filled after nodes were made from it": _a_context_filled_after_nodes_were_made_from_it,
    "a grad holding a node over untracked nodes": _a_grad_holding_a_node_over_untracked_nodes,
    "an input's list that comes to hold a later node": _an_input_list_that_comes_to_hold_a_later_node,
    "a subclass node's dict that comes to hold a later one": _a_subclass_dict_that_comes_to_hold_a_later_node,
}


@pytest.mark.parametrize("make_cycle", CYCLES.values(), ids=CYCLES)
def test_a_cycle_through_a_node_is_freed_by_a_collection(make_cycle):
    assert freed_by_a_collection(make_cycle)


def _a_gradient_that_is_a_graph_reaching_its_leaf():
    x = Value(0.5)
    y = (x * x).tanh() * x + x.exp()  # x.grad's graph reaches x again, through y
    y.backward(create_graph=True)
    x.grad.backward()


def test_gradients_that_are_graphs_reaching_their_leaf_are_freed_by_a_collection():
    # create_graph: x.grad is a Value whose graph reaches x. No token can be put in that cycle without
    # adding a reference of its own, so the evidence is memory: 300 such graphs leave next to nothing.
    make_garbage = _a_gradient_that_is_a_graph_reaching_its_leaf
    make_garbage()
    gc.collect()
    before = sys.getallocatedblocks()
    for _ in range(300):
        make_garbage()
    gc.collect()
    assert sys.getallocatedblocks() - before < 100


# ---------------------------------------------------------------------------
# A graph by itself has no cycles: dropped, it is freed at once, without the collector
# ---------------------------------------------------------------------------


def _freed_at_once(build: Callable[[Value], object]) -> bool:
    """Whether a graph that build(x) makes on a leaf x lets go of x as soon as it is dropped, with the
    collector off (so only reference counting can free it)."""
    x = Value(1.25)
    gc.collect()
    gc.disable()
    try:
        count = sys.getrefcount(x)
        out = build(x)
        assert sys.getrefcount(x) > count, "the graph does not hold x"
        del out
        return sys.getrefcount(x) == count
    finally:
        gc.enable()


def _with_gradients(x):
    y = graph(x)
    for _ in range(200):
        y = y * 1.0001 + x
    y.backward()
    return y


def _with_containers(x):
    y = graph(x)
    y.grad = [1.0]  # a container, tracked, but no cycle
    y.note = {"made": "by hand"}
    y._ctx = {"anything": 1}
    return y * 2.0


def _made_by_hand(x):
    out = Value(x.data * 2.0, (x,), "*2")
    out._backward = lambda: None
    return [cg.softmax([out, x, Value(0.5)]), out]


GRAPHS = {"with gradients": _with_gradients, "with containers": _with_containers, "by hand": _made_by_hand}


@pytest.mark.parametrize("build", GRAPHS.values(), ids=GRAPHS)
def test_a_dropped_graph_is_freed_without_the_collector(build):
    assert _freed_at_once(build)


# ---------------------------------------------------------------------------
# What the core tracks: nodes of numbers are left out of the collector's sight
# ---------------------------------------------------------------------------


def _nodes(y: Value) -> list[Value]:
    """y and every node under it."""
    found, stack = {id(y): y}, [y]
    while stack:
        for child in stack.pop()._prev:
            if id(child) not in found:
                found[id(child)] = child
                stack.append(child)
    return list(found.values())


@compiled_only
def test_nodes_of_numbers_are_not_tracked():
    x = Value(0.5, label="x")
    y = graph(x) + cg.dot([x, Value(2.0)], [Value(1.0), x], Value(0.25))
    y.label = "y"  # a str: nothing a cycle can run through
    y.backward()
    y._op = y._op  # an op holds nothing mutable
    outs = cg.softmax([x, y, Value(3.0)])
    nodes = _nodes(y) + outs
    assert len(nodes) > 10
    assert not [v for v in nodes if gc.is_tracked(v)]
    f = cg.compile(lambda a, b: (a * b).tanh())
    calls = [f(x, Value(float(i))) for i in range(3)]  # a compiled call's node: its op, a bare str
    assert not [v for v in [*calls, cg.mean(calls)] if gc.is_tracked(v)]


@compiled_only
def test_a_node_that_comes_to_hold_a_container_is_tracked_with_everything_under_it():
    x = Value(0.5)
    y = graph(x)
    below = _nodes(y)
    z = y * 2.0  # made before: not under y, left untracked
    y.grad = []
    assert all(gc.is_tracked(v) for v in below)
    assert not gc.is_tracked(z)


@compiled_only
def test_nodes_made_from_a_node_that_holds_a_container_are_tracked_from_birth():
    closed, open_ = Value(1.0), Value(2.0)
    open_.notes = {}
    made = [closed * open_, open_ + 1.0, -open_, cg.sum([closed, open_]), cg.softmax([closed, open_])[0]]
    assert all(gc.is_tracked(v) for v in made)
    assert not gc.is_tracked(closed * 2.0)
    later = made[0].tanh()  # made from a node that was tracked at birth: open, tracked too
    assert gc.is_tracked(later)


@compiled_only
def test_a_node_holding_a_value_is_tracked_with_that_value_and_what_is_under_it():
    a = Value(1.0)
    b = graph(a)
    holder = Value(3.0)
    holder.grad = b  # a Value: no container, but a cycle could run through it
    assert gc.is_tracked(holder)
    assert all(gc.is_tracked(v) for v in _nodes(b))
    assert not gc.is_tracked(holder * 2.0)  # holding a Value is not holding a container
