"""Functional derivatives: gradients, grad, value_and_grad, Hessian-vector products.

These compute gradients without touching any `.grad`, and always build the
gradient's own graph (`backward(create_graph=True)`), so they nest:
`grad(grad(f))` is the second derivative. A gradient that does not depend on
the arguments comes back as a constant (a leaf Value); an argument that does
not reach the output gets gradient 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import engine
from ._backend import Value
from .engine import Op, add_gradient, arguments, topological_order
from .fused import dot
from .modes import enable_grad
from .numerics import not_a_number

__all__ = ["grad", "gradients", "hessian", "hvp", "value_and_grad"]


def step_with_graph(node: Any) -> None:
    """One node's step of backward(create_graph=True): its local gradients (or its rule's shares)
    computed again from the op's formulas on the Values themselves, so that every gradient is a
    Value with a graph of its own."""
    op, g = node._op, node.grad
    if not isinstance(op, Op) or type(op).chain is not Op.chain or type(node.data) is not float:
        raise NotImplementedError(
            f"backward(create_graph=True) reached a node of op {str(op)!r} made with its own _backward or "
            "with numbers as its local gradients, a batch, or a cg.compile'd call: higher derivatives go "
            "through chaingrad's ops (and cg.Op's) on single numbers (a compiled f's own: f.__wrapped__)"
        )
    args = node._ctx if type(node._ctx) is tuple else node._prev  # the arguments, constants in place
    values = [not isinstance(a, (float, tuple)) for a in arguments(node)]
    if op.rule is not None:
        shares = op.rule(g, *args, node)
    else:
        shares = [local * g for local in op.local(*args, node)]
    for child, share in zip(node._prev, (s for s, v in zip(shares, values) if v)):
        add_gradient(child, share)


engine.STEP_WITH_GRAPH.append(step_with_graph)


def gradients(root: Value, create_graph: bool = False) -> dict[Value, Any]:
    """d(root)/d(node) for every node that leads to root, in a dict; every .grad is left as it was.

    With create_graph=True the gradients are Values (or constants) with graphs
    of their own, ready to be differentiated again.
    """
    if not hasattr(root, "_prev") or not hasattr(root, "data"):
        raise TypeError(f"gradients() takes the Value to differentiate (a loss), not {type(root).__name__}")
    if type(root.data) is not float:
        raise not_a_number(root.data, "gradients")
    nodes = topological_order(root)
    saved = [n.grad for n in nodes]
    try:
        for n in nodes:
            n.grad = 0.0
        root.backward(create_graph=create_graph)
        return {n: n.grad for n in nodes}
    finally:
        for n, g in zip(nodes, saved):
            n.grad = g


def _as_value(x: Any) -> Value:
    return x if isinstance(x, Value) else Value(x)


def _scalar(out: Any, name: str) -> Value:
    if not isinstance(out, Value):
        raise TypeError(f"{name}: the function must return a Value, not {type(out).__name__}")
    if type(out.data) is not float:
        raise ValueError(
            f"{name}: the function returned a batch of {len(out.data)} samples; "
            "it must return a single number (reduce with cg.batch_mean)"
        )
    return out


def value_and_grad(
    f: Callable[..., Value], argnums: int | Sequence[int] = 0
) -> Callable[..., tuple[Value, Any]]:
    """A function returning f(*args) and its gradient with respect to args[argnums]."""
    many = not isinstance(argnums, int)
    nums = tuple(argnums) if many else (argnums,)

    @enable_grad()  # the gradient needs the graph even inside no_grad, as torch.func.grad does
    def wrapped(*args: Any) -> tuple[Value, Any]:
        for i in nums:
            if not isinstance(i, int) or not -len(args) <= i < len(args):
                raise IndexError(f"argnums {i!r} is out of range for {len(args)} arguments")
        wrt = {i % len(args) for i in nums}
        args = tuple(_as_value(a) if i in wrt else a for i, a in enumerate(args))
        out = _scalar(f(*args), "grad")
        grads = gradients(out, create_graph=True)
        result = tuple(_as_value(grads.get(args[i], 0.0)) for i in nums)
        return out, result if many else result[0]

    return wrapped


def grad(f: Callable[..., Value], argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
    """A function returning the gradient of scalar f with respect to args[argnums]."""
    vg = value_and_grad(f, argnums)
    return lambda *args: vg(*args)[1]


@enable_grad()
def hvp(f: Callable[[list[Value]], Value], xs: Sequence[Any], v: Sequence[float]) -> list[float]:
    """The Hessian of f at xs times the vector v, by reverse-over-reverse differentiation."""
    xs = [_as_value(x) for x in xs]
    if len(v) != len(xs):
        raise ValueError(f"hvp: v has {len(v)} entries but there are {len(xs)} inputs")
    grads = gradients(_scalar(f(xs), "hvp"), create_graph=True)
    g_dot_v = dot([grads.get(x, 0.0) for x in xs], v)  # d/dx (grad f . v) = H v
    second = gradients(g_dot_v)
    return [float(second.get(x, 0.0)) for x in xs]


def hessian(f: Callable[[list[Value]], Value], xs: Sequence[Any]) -> list[list[float]]:
    """The full Hessian of f at xs, one Hessian-vector product per coordinate.

    Where a second derivative is nan or infinite it is PyTorch's, with one difference, on purpose: at
    x ** y with a base of exactly 0, and at a division by relu's 0, PyTorch's Hessian is nan (0 * inf in
    the branch its first derivative masked out), chaingrad's the mathematical limit (2 for x ** 2 at 0).
    """
    n = len(xs)
    return [hvp(f, xs, [float(i == j) for j in range(n)]) for i in range(n)]
