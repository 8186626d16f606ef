"""Pickling and deep-copying graphs without recursion, however deep.

Python's pickle and `copy.deepcopy` follow references recursively, so a chain
of 60,000 nodes would exceed the recursion limit. Here a Value is saved as a
flat table of every node under it, inputs before the nodes that use them, each
referring to its inputs by position; loading rebuilds the nodes in that order.
A leaf is saved as itself (data, grad and label), so that a parameter saved
with its model and with a graph is one Value again after loading. A gradient
that is a Value (after `backward(create_graph=True)`) is saved as its number.
Set here as Value's `__reduce__` (subclasses included), so the engine itself knows nothing of it.
"""

from __future__ import annotations

from typing import Any

from ._backend import Value, node
from .engine import topological_order

__all__: list[str] = []


def _number(x: Any) -> Any:
    return x.data if isinstance(x, Value) else x


def _reduce(v: Value) -> tuple[Any, ...]:
    if not v._prev:
        state = vars(v) or None  # the attributes it was given (p.m = 0.0), as any object's
        if type(v) is not Value:  # a learner's subclass: its class too
            return _leaf_of, (type(v), v.data, _number(v.grad), v.label, state)
        return _leaf, (v.data, _number(v.grad), v.label, state)
    if v._local is None and callable(v._ctx):
        raise TypeError(
            f"cannot pickle a Value made with its own _backward function (op {v._op!r}); "
            "make the op with cg.Op instead"
        )
    nodes = topological_order(v)
    index = {id(n): i for i, n in enumerate(nodes)}

    def ref(a: Any) -> Any:
        if isinstance(a, Value):
            return ("v", index[id(a)])
        if type(a) is tuple:
            return ("t", tuple(map(ref, a)))
        return ("c", a)

    rows = [
        n
        if not n._prev
        else (
            n.data,
            _number(n.grad),
            n.label,
            n._op,
            tuple(index[id(p)] for p in n._prev),
            n._local,
            None if n._ctx is None else ref(n._ctx),
            n._saved,
        )
        for n in nodes
    ]
    return _rebuild, (rows,)


def _leaf(data: Any, grad: Any, label: str, state: dict[str, Any] | None = None) -> Value:
    v = Value(data, label=label)
    v.grad = grad
    if state:
        vars(v).update(state)
    return v


def _leaf_of(cls: type, data: Any, grad: Any, label: str, state: dict[str, Any] | None) -> Value:
    v = cls.__new__(cls)  # as pickle makes any object: the subclass's own __init__ is not called
    Value.__init__(v, data, label=label)
    v.grad = grad
    if state:
        vars(v).update(state)
    return v


def _rebuild(rows: list[Any]) -> Value:
    nodes: list[Value] = []

    def deref(r: Any) -> Any:
        kind, x = r
        return nodes[x] if kind == "v" else tuple(map(deref, x)) if kind == "t" else x

    for row in rows:
        if isinstance(row, Value):
            nodes.append(row)
            continue
        data, grad, label, op, prev, local, ctx, saved = row
        n = node(data, tuple(nodes[i] for i in prev), local, op, None if ctx is None else deref(ctx))
        n._saved = saved
        n.grad = grad
        if label:
            n.label = label
        nodes.append(n)
    return nodes[-1]


Value.__reduce__ = _reduce  # on the class, not in copyreg's table (Value alone): subclasses use it too
