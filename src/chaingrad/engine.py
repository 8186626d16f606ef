"""The reference engine: Value, the op table, one way to make a node, and backward().

A node remembers its inputs (`_prev`), its op (`_op`) and its local gradients
d(node)/d(input) (`_local`), known as soon as the node is made. `backward()`
visits every node that leads to the output once, each after all the nodes that
use it, and adds `local * node.grad` to each input's grad: the chain rule,
applied to the whole graph. That is the engine. `chaingrad._core` is its
compiled twin, tested against it bit for bit; this one is the one to read.
"""

from __future__ import annotations

import itertools
import operator
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from . import checks, modes, numerics, opgen
from .modes import ANOMALY, NO_GRAD, check_forward, checked_step, mode
from .numerics import constant, is_array, not_a_number, quiet

__all__ = ["OPS", "Op", "Value", "apply", "arguments", "record"]

_COMPARISONS = (operator.lt, operator.le, operator.gt, operator.ge)


def _set_label(v: Value, label: str) -> None:
    if not isinstance(label, str):
        raise TypeError(f"label must be a str, not {type(label).__name__}")
    v._label = label


class Value:
    """A number, or a batch of numbers, that remembers how it was computed.

    - `data`: the number (a float), or a batch (a 1-D NumPy array, one entry per sample).
    - `grad`: d(output)/d(this value) after `output.backward()`; 0.0 before.
    - `label`: a name, shown in pictures of the graph.
    - `_prev`: the Values this one was computed from; empty for a leaf.
    - `_op`: the op that computed it ("*", "tanh", ...); "" for a leaf.
    - `_local`: d(this)/d(input) for each input in `_prev`, computed with the value.

    `Value(data, (a, b), "*")` makes a node as micrograd's lecture does: assign
    it a `_backward` function and `backward()` calls that for this node.
    `Value(data, (a, b), (da, db))` makes one as microgpt does, with its local
    gradients.
    """

    __slots__ = ("data", "grad", "_prev", "_op", "_local", "_label", "_context")
    __array_ufunc__ = None  # an ndarray (op) Value defers to the Value, giving a Value

    def __init__(self, data: Any, _children: Sequence[Value] = (), _op: Any = "", label: str = "") -> None:
        _children = _children if type(_children) is tuple else tuple(_children)  # a generator only once
        self.data, self.grad = parsed(data, _children, _op), 0.0
        self._prev, self._op, self._local = _children, *_op_local(_op)
        if label != "":
            self.label = label

    @property
    def _backward(self) -> Callable[[], None]:
        """This node's step of backprop: each input's grad += local * self.grad, as in the lecture."""
        return self._context if self._local is None and callable(self._context) else self._chain

    @_backward.setter
    def _backward(self, closure: Callable[[], None]) -> None:
        # micrograd's way: a function that updates the inputs' grads itself, kept in place of local
        # gradients; the node's op becomes just its name, so that backward calls the function instead
        if not callable(closure):
            raise TypeError(f"_backward must be a function of no arguments, not {type(closure).__name__}")
        self._local, self._context, self._op = None, closure, str(self._op)

    def _chain(self) -> None:
        chain(self)

    def backward(self, create_graph: bool = False) -> None:
        """Fill .grad of every node that leads here with d(self)/d(node).

        Leaves accumulate (zero them between steps); intermediate nodes are
        recomputed, so a second call adds the same again to the leaves only.
        With `create_graph=True` the gradients are Values with graphs of their
        own, ready to be differentiated again.
        """
        backward(self, create_graph)

    # comparisons look at data; equality and hashing stay by identity, so Values can key dicts
    __lt__, __le__, __gt__, __ge__ = (
        lambda self, other, c=c: c(self.data, other.data if isinstance(other, Value) else other)
        for c in _COMPARISONS
    )
    __eq__, __hash__ = object.__eq__, object.__hash__

    # A node leaves its label and context unset until needed (they read as "" and None): less to fill,
    # and less for the garbage collector to visit, which it does many times over for every node.
    label = property(lambda self: getattr(self, "_label", ""), _set_label, doc="A name, shown in pictures.")
    # what the op needs besides its inputs' data: its arguments (with constants in place), or a rule's state
    _ctx = property(lambda v: getattr(v, "_context", None), lambda v, ctx: setattr(v, "_context", ctx))

    def __float__(self) -> float:
        if is_array(self.data):
            raise TypeError(f"float() of a batch of {len(self.data)} samples; reduce it first")
        return float(self.data)

    def __repr__(self) -> str:
        label = f", label={self.label!r}" if self.label else ""
        return f"Value(data={self.data!r}, grad={self.grad!r}{label})"

    def __pos__(self) -> Value:
        return self

    @property
    def batch_size(self) -> int | None:
        """How many samples `data` holds, or None for a single number."""
        return None if type(self.data) is float else len(self.data)


_one_backward_at_a_time = threading.RLock()
HIGHER_ORDER: list[Callable[[Value], None]] = []  # backward(create_graph=True)'s step, from autodiff.py


def parsed(data: Any, children: Sequence[Any], op: Any) -> Any:
    """Value(data, children, op)'s data as a node keeps it, the arguments checked."""
    if isinstance(data, Value) or (d := constant(data)) is None:
        what = f"{type(data).__name__}: {data!r:.60}" if not isinstance(data, Value) else "another Value"
        raise TypeError(f"Value() takes an int, a float or a 1-D NumPy array of numbers, not {what}")
    if not all(isinstance(c, Value) for c in children):
        raise TypeError("Value(): _children must be Values (the inputs this value was computed from)")
    if not isinstance(op, str):
        checks.given_local_gradients(op, len(children))
    if children and modes.ever_on and mode() & ANOMALY:  # a node made by hand, as the lecture's, too
        check_forward(op if isinstance(op, str) else "Value", d, list(children))
    return d


def _op_local(op: Any) -> tuple[Any, tuple[Any, ...]]:
    """(op, local gradients) from Value()'s third argument: micrograd's op name, or microgpt's local_grads."""
    return (op, ()) if isinstance(op, str) else ("", tuple(map(constant, op)))


def backward(root: Value, create_graph: bool = False) -> None:
    """root.backward(): the chain rule from root to every node that leads to it."""
    if type(root.data) is not float:
        raise not_a_number(root.data, "backward()")
    with _one_backward_at_a_time, quiet():  # intermediate grads live on the nodes, shared by threads
        unreached = float("0.0")  # every intermediate grad starts as this zero of its own
        order = _topo(root, unreached)
        root.grad = 1.0 if order else root.grad + 1.0  # a leaf accumulates d(root)/d(root) too
        step = HIGHER_ORDER[0] if create_graph else checked_step if mode() & ANOMALY else None
        for node in order:
            g, local = node.grad, node._local
            if g is unreached:
                continue  # no gradient reached it (behind a batched layer's unconsumed output)
            if step is not None:
                step(node)
            elif local is None and type(node._op) is Op:
                node._op.chain(node, g)  # the op's rule
            elif type(g) is float and local is not None:  # chain's common case, inline
                for child, local_grad in zip(node._prev, local):
                    child.grad += local_grad * g
            else:
                chain(node)


def chain(node: Value) -> None:
    """One node's step of backprop: each input's grad += local * node.grad (or the op's rule)."""
    g, local = node.grad, node._local
    if local is not None:
        _add(node, [d * g for d in local])
    elif callable(ctx := getattr(node, "_context", None)):  # set on every node without local gradients
        ctx()  # micrograd's _backward
    else:
        node._op.chain(node, g)  # the op's rule


def _topo(root: Value, unreached: float) -> list[Value]:
    """The nodes that lead to root, leaves left out, each before the nodes it uses.

    Each one's grad is set to `unreached` (a fresh zero, told apart by identity),
    which also marks it as visited. A node that no gradient reaches then (behind
    a batched layer's unconsumed output) is skipped, rather than passing on
    0 * its local gradients, which is nan where they are infinite.
    """
    if not root._prev:
        return []
    order, stack = [], [root]
    while stack:  # depth first, without recursion: a node is done once all its inputs are
        node = stack.pop()
        if node is _INPUTS_DONE:
            order.append(stack.pop())
        elif node.grad is not unreached:
            node.grad = unreached
            stack.append(node)  # one by one: `stack += (node, _INPUTS_DONE)` allocates a tuple a node
            stack.append(_INPUTS_DONE)
            for child in node._prev:
                if child._prev and child.grad is not unreached:
                    stack.append(child)
    order.reverse()
    return order


_INPUTS_DONE = object()  # on the stack above a node whose inputs come next: when it is popped, they are done


# ---------------------------------------------------------------------------
# Ops, and the one way to make a node
# ---------------------------------------------------------------------------


class Op(str):
    """An op: its name, its forward value and its local gradients.

    `Op(name, forward, local)`: `forward(*xs)` gives the value from the inputs'
    data; `local(*xs, out)` gives d(out)/d(x) for each input. Write both with
    chaingrad's functions (`cg.exp`, `cg.log`, ...) rather than `math`, and the
    op works on numbers, on batches and for higher derivatives. Calling the op
    applies it: `softplus(x)`. An op whose backward is not `local * grad`
    gives `rule(node, g)` instead, returning each input's share of g; for higher
    derivatives, `rule(node, g, differentiable=False)` computes them from the
    Values in `node._prev` when differentiable is True.

    An op is the str of its name, and a node's `_op` is its op: so `node._op == "tanh"`,
    `str(id(node)) + node._op` and the lecture's `draw_dot` read as in micrograd.
    """

    __slots__ = ("forward", "local", "rule", "chain")

    def __new__(cls, name: str, forward: Any, local: Any = None, rule: Any = None) -> Op:
        if not isinstance(name, str) or not name:
            raise TypeError(f"an op needs a non-empty name, got {name!r}")
        if not callable(local or rule) or None not in (local, rule) or not callable(forward or local or rule):
            raise TypeError(f"op {name!r}: forward(*inputs) and local(*inputs, out) must be callable")
        op = super().__new__(cls, name)
        op.forward, op.local, op.rule = forward, local, rule
        op.chain = op._chain  # how backward applies a rule; the table's ops get theirs written out
        OPS[name] = op  # defined again (a notebook cell run twice): the new op replaces the old
        return op

    name = property(str.__str__, doc="The op's name, a plain str.")

    def __call__(self, *args: Any) -> Value:
        """Apply the op to Values and numbers, recording one node."""
        if self.forward is None:
            raise TypeError(f"the op {self.name!r} is made by cg.{self.name}(), not called")
        return apply(self, *args)

    def _chain(self, node: Value, g: Any) -> None:
        _add(node, self.rule(node, g))  # each input's share of g, added to its grad

    def __reduce__(self) -> tuple[Any, ...]:
        return op_named, (self.name,)


OPS: dict[str, Op] = {}  # every op by name, so that a pickled node finds its op again


def op_named(name: str) -> Op:
    """The op defined under `name` (how a pickled node finds its op again)."""
    return OPS[name]


def apply(op: Op, *args: Any) -> Value:
    """The node for op(*args). Each argument is a Value, a number or batch (a constant), or, for a
    fused op, a sequence of those. forward and local see the arguments' data."""
    args = tuple(_argument(a, op, i) for i, a in enumerate(args))
    xs = [_data_of(a) for a in args]
    batch = {len(x) for x in _flat(xs) if is_array(x)}
    if len(batch) > 1:
        raise ValueError(f"{op}(): batches of different sizes {sorted(batch)} cannot be combined")
    with quiet():
        out = op.forward(*xs)
        return record(op, out, args, None if op.local is None or mode() & NO_GRAD else op.local(*xs, out))


def record(op: Op, out: Any, args: tuple[Any, ...], local: Sequence[Any] | None) -> Value:
    """The node for out = op(*args), given the local gradients of the arguments (None: op.rule).

    Its inputs (`_prev`) are the arguments that are Values, with their local
    gradients; the arguments themselves stay in `_ctx` when they hold more
    (constants, or a fused op's structure). Under no_grad the node is a leaf.
    """
    flags, value = mode(), out.astype(float, copy=False) if is_array(out) else constant(out)
    if value is None:
        raise TypeError(f"op {str(op)!r}: forward returned {type(out).__name__} {out!r:.60}, not a number")
    if flags & ANOMALY:
        check_forward(op, value, _flat(args))
    if flags & NO_GRAD:
        return _node(value, (), (), "", None)
    flat = _flat(args)
    prev = tuple(a for a in flat if isinstance(a, Value))
    if local is not None:
        local = checks.local_gradients(op, local, flat, value, Value)
    plain = len(prev) == len(args) and tuple not in map(type, args)  # the inputs are all there is
    return _node(value, prev, local, op, None if plain else args)


def _add(node: Value, shares: Sequence[Any]) -> None:
    """Add each share of node's gradient to its input's grad (None: nothing), summed over the samples
    where the share is a batch but the input a single number."""
    shares = checks.shares(node._op, shares, node._prev)
    done = 0 if compiled is None else compiled.add_shares(node, shares)  # the float shares it can, in C
    for child, d in itertools.islice(zip(node._prev, shares), done, None):
        if d is not None:
            child.grad += d


def _node(out: Any, prev: tuple[Value, ...], local: tuple[Any, ...] | None, op: Any, ctx: Any) -> Value:
    node = _new(Value)
    node.data, node.grad, node._prev, node._op, node._local = out, 0.0, prev, op, local
    if ctx is not None or local is None:  # an op with a rule looks at its context
        node._context = ctx
    return node


def zero_grads(values: Sequence[Value]) -> None:
    """Set each value's grad to 0 (a model's or an optimizer's zero_grad; the compiled core in one loop)."""
    if compiled is None or not compiled.zero_grad(values if type(values) is list else list(values)):
        for v in values:
            v.grad = 0.0


def arguments(node: Value) -> list[Any]:
    """The arguments node's op was applied to: its inputs, with any constants in their places."""
    return _flat(node._ctx) if type(node._ctx) is tuple else list(node._prev)


def _flat(args: Sequence[Any]) -> list[Any]:
    return [x for a in args for x in (a if type(a) is tuple else (a,))]  # a fused op's sequences spliced in


def _data_of(a: Any) -> Any:
    return a.data if isinstance(a, Value) else tuple(map(_data_of, a)) if type(a) is tuple else a


def _argument(a: Any, op: Op, i: int) -> Any:
    if isinstance(a, Value):
        return a
    if isinstance(a, (list, tuple)):
        return tuple(_argument(x, op, i) for x in a)
    if (c := constant(a)) is None:
        raise TypeError(f"{op}(): argument {i} is {type(a).__name__} {a!r:.60}; expected a Value or a number")
    return c


def _operator(op: Op, *args: Any) -> Any:
    """apply(op, *args) for an operator such as `x * y`: NotImplemented if an argument is not a number."""
    if any(not isinstance(a, Value) and constant(a) is None for a in args):
        return NotImplemented
    return apply(op, *args)


_new = object.__new__


# ---------------------------------------------------------------------------
# The op table. Each row: the op's name, the Value methods that apply it, its
# forward value, and its local gradients d(out)/d(x), d(out)/d(y), written in
# x and y (the inputs' data) and out (the result). backward() adds
# local * out.grad to each input's grad. On Values the same formulas build the
# graph of the gradient, which is how higher derivatives work.
# ---------------------------------------------------------------------------

# fmt: off
TABLE = """
  op      | methods                   | forward      | local gradients
  +       | __add__ __radd__          | x + y        | 1.0, 1.0
  -       | __sub__ __rsub__          | x - y        | 1.0, -1.0
  *       | __mul__ __rmul__          | x * y        | y, x
  neg     | __neg__                   | -x           | -1.0
  exp     | exp                       | exp(x)       | out
  tanh    | tanh                      | tanh(x)      | 1.0 - out * out
  sigmoid | sigmoid                   | sigmoid(x)   | out * (1.0 - out)
  sqrt    | sqrt                      | sqrt(x)      | div(0.5, out)
  abs     | abs __abs__               | abs(x)       | sign(x)
"""
# Where PyTorch's backward is not local * g, the op gives its rule instead: each
# input's share of g = out.grad. relu and pow select, so that a zero local
# gradient passes nothing (rather than 0 * inf = nan); div and log divide, g / y,
# where 1 / y would overflow for a tiny y.
RULES = """
  op      | methods                   | forward      | shares of g
  /       | __truediv__ __rtruediv__  | div(x, y)    | div(g, y), -g * div(out, y)
  log     | log                       | log(x)       | div(g, x)
  relu    | relu                      | relu(x)      | where(out <= 0, 0.0, g)
  **      | __pow__ __rpow__          | power(x, y)  | where(is_zero(y), 0.0, g * (y * power(x, y - 1.0))),
          |                           |              | g * where(is_zero(x) & (y >= 0), 0.0, out * log(x))
"""
# fmt: on


def _compiled() -> Any:
    """chaingrad._core, the compiled twin of this engine, unless CHAINGRAD_PURE=1 or it was not built
    (or was built from another version of _core.c, whose INTERFACE number differs)."""
    if os.environ.get("CHAINGRAD_PURE", "") not in ("", "0"):
        return None
    try:
        from . import _core

        if getattr(_core, "INTERFACE", None) == 4:  # bumped with _core.c's whenever they change together
            return _core
        why = "is left from another version of chaingrad (reinstall to rebuild it)"
    except ImportError:
        why = "was not built (no C compiler when it was installed?)"
    warnings.warn(
        f"chaingrad's compiled core {why}: running the reference engine in pure Python, "
        "10-20x slower on single numbers",
        RuntimeWarning,
        stacklevel=3,
    )
    return None


# The compiled twin takes Value's place unless CHAINGRAD_PURE=1: the same nodes, with their ops and
# backward in C, and the functions above, which it calls for all else, make and read its nodes.
compiled = _compiled()
if compiled is not None:
    compiled.Value.__doc__ = Value.__doc__  # help(Value) reads the same on both engines
    Value, _node = compiled.Value, compiled.node

# Each row becomes its Op, and the Value methods that apply it (opgen.py writes them): on single
# numbers a method has its row's formulas written into its code, with no call to look them up.
for _table, _rules in ((TABLE, False), (RULES, True)):
    for _row in opgen.rows(_table):
        namespace = {**vars(numerics), **globals(), "new": _new, "add": _add}
        opgen.define(*_row, rules=_rules, engine=namespace, write=compiled is None)
if compiled is not None:
    compiled.setup_engine(globals(), vars(modes), vars(numerics))
