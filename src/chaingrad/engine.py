"""The reference engine: Value, the op table, topological order and backward.

A node remembers its inputs (`_prev`), its op (`_op`) and its local gradients
d(node)/d(input) (`_local`), known as soon as the node is made. `backward()`
puts every node that leads to the output in topological order and, from the
output back, adds `local * node.grad` to each input's grad: the chain rule,
applied to the whole graph. That is the engine, and this file is the one to read.

It is laid out top to bottom as a learner meets it: the Value class (a method
per op), the op table (each op's forward value and local gradients side by
side), backward, then the machinery that makes a node, then micrograd's and
microgpt's ways of making nodes by hand.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from . import checks, modes
from .modes import ANOMALY, NO_GRAD, check_forward, mode
from .numerics import (
    constant,
    cos,
    div,
    exp,
    is_array,
    is_zero,
    log,
    not_a_number,
    power,
    quiet,
    relu,
    sigmoid,
    sign,
    sin,
    sqrt,
    tanh,
    where,
)

__all__ = [
    "OPS",
    "Op",
    "Value",
    "add_gradient",
    "apply",
    "arguments",
    "backward",
    "chain",
    "node",
    "record",
    "topological_order",
]


class Value:
    """A number, or a batch of numbers, that remembers how it was computed.

    - `data`: the number (a float), or a batch (a 1-D NumPy array, one entry per sample).
    - `grad`: d(output)/d(this value) after `output.backward()`; 0.0 before (None: no gradient yet).
    - `label`: a name, shown in pictures of the graph.
    - `_prev`: the Values this one was computed from; empty for a leaf.
    - `_op`: the op that computed it ("*", "tanh", ...); "" for a leaf.
    - `_local`: d(this)/d(input) for each input in `_prev`, computed with the value
      (None where the op has a rule of its own, such as `/`: then `_saved` holds the
      arguments' data and the value as the forward saw them, which the rule is given).

    `Value(data, (a, b), "*")` makes a node as micrograd's lecture does: assign
    it a `_backward` function and `backward()` calls that for this node.
    `Value(data, (a, b), (da, db))` makes one as microgpt does, with its local
    gradients.
    """

    # its parts; and a __dict__ for attributes a user gives it (p.m = 0.0), made when the first one is
    __slots__ = ("data", "grad", "_prev", "_op", "_local", "_ctx", "_saved", "_label", "__dict__")
    __array_ufunc__ = None  # an ndarray (op) Value defers to the Value, giving a Value

    def __init__(self, data: Any, _children: Sequence[Value] = (), _op: Any = "", label: str = "") -> None:
        children = tuple(_children)
        if not all(isinstance(c, Value) for c in children):
            raise TypeError("Value(): _children must be Values (the inputs this value was computed from)")
        self.data, self._op, self._local = made_by_hand(data, children, _op)
        self.grad, self._prev, self._ctx, self._saved = 0.0, children, None, None
        if not isinstance(label, str) or label:
            self.label = label  # checked there: a str

    # -- the ops: each applies its row of the op table below -------------------------

    def __add__(self, other: Any) -> Value:
        return _operator(ADD, self, other)

    def __radd__(self, other: Any) -> Value:
        return _operator(ADD, other, self)

    def __sub__(self, other: Any) -> Value:
        return _operator(SUB, self, other)

    def __rsub__(self, other: Any) -> Value:
        return _operator(SUB, other, self)

    def __mul__(self, other: Any) -> Value:
        return _operator(MUL, self, other)

    def __rmul__(self, other: Any) -> Value:
        return _operator(MUL, other, self)

    def __truediv__(self, other: Any) -> Value:
        return _operator(DIV, self, other)

    def __rtruediv__(self, other: Any) -> Value:
        return _operator(DIV, other, self)

    def __pow__(self, other: Any) -> Value:
        return _operator(POW, self, other)

    def __rpow__(self, other: Any) -> Value:
        return _operator(POW, other, self)

    def __neg__(self) -> Value:
        return NEG(self)

    def __pos__(self) -> Value:
        return self

    def __abs__(self) -> Value:
        return ABS(self)

    def abs(self) -> Value:
        """|x|."""
        return ABS(self)

    def exp(self) -> Value:
        """e ** x."""
        return EXP(self)

    def log(self) -> Value:
        """The natural logarithm: log(0) = -inf, log(x < 0) = nan."""
        return LOG(self)

    def tanh(self) -> Value:
        """The hyperbolic tangent."""
        return TANH(self)

    def sigmoid(self) -> Value:
        """1 / (1 + e ** -x), computed so that no exp overflows."""
        return SIGMOID(self)

    def relu(self) -> Value:
        """max(x, 0)."""
        return RELU(self)

    def sqrt(self) -> Value:
        """The square root: sqrt(x < 0) = nan."""
        return SQRT(self)

    def sin(self) -> Value:
        """The sine, of x in radians."""
        return SIN(self)

    def cos(self) -> Value:
        """The cosine, of x in radians."""
        return COS(self)

    # -- backpropagation ------------------------------------------------------------------

    def backward(self, create_graph: bool = False) -> None:
        """Fill .grad of every node that leads here with d(self)/d(node).

        Leaves accumulate (zero them between steps); intermediate nodes are
        recomputed, so a second call adds the same again to the leaves only.
        With `create_graph=True` the gradients are Values with graphs of their
        own, ready to be differentiated again.
        """
        backward(self, create_graph)

    @property
    def _backward(self) -> Callable[[], None]:
        """This node's step of backprop, as micrograd calls it: `node._backward()` adds
        local * node.grad to each input's grad (or runs the function given to it, as in the lecture)."""
        return functools.partial(chain, self)

    @_backward.setter
    def _backward(self, function: Callable[[], None]) -> None:
        given_backward(self, function)

    # -- the rest of a number's behaviour -------------------------------------------------

    # comparisons look at data; equality and hashing stay by identity, so Values can key dicts
    def __lt__(self, other: Any) -> bool:
        return self.data < _data(other)

    def __le__(self, other: Any) -> bool:
        return self.data <= _data(other)

    def __gt__(self, other: Any) -> bool:
        return self.data > _data(other)

    def __ge__(self, other: Any) -> bool:
        return self.data >= _data(other)

    # (== and hash() are object's own, by identity: not defined here, so sets and dicts of Values stay fast)

    @property
    def label(self) -> str:
        """A name, shown in pictures of the graph."""
        return getattr(self, "_label", "")  # unset until given: a node has less to fill

    @label.setter
    def label(self, label: str) -> None:
        if not isinstance(label, str):
            raise TypeError(f"label must be a str, not {type(label).__name__}")
        self._label = label

    def item(self) -> float:
        """The number this Value holds, as a float (PyTorch's name for it); a batch must be reduced first."""
        if is_array(self.data):
            raise not_a_number(self.data, "item()")
        return float(self.data)

    # A Value is not a number to Python's math: math.tanh(v), float(v), int(v) or round(v) would give a
    # number without the Value's graph, and with it a gradient silently wrong. (micrograd refuses too.)
    def __float__(self) -> float:
        raise TypeError(NOT_A_NUMBER)

    def __int__(self) -> int:
        raise TypeError(NOT_A_NUMBER)

    def __round__(self, ndigits: int | None = None) -> Any:
        raise TypeError(NOT_A_NUMBER)

    def __repr__(self) -> str:
        label = f", label={self.label!r}" if self.label else ""
        return f"Value(data={self.data!r}, grad={self.grad!r}{label})"

    @property
    def batch_size(self) -> int | None:
        """How many samples `data` holds, or None for a single number."""
        return None if type(self.data) is float else len(self.data)


NOT_A_NUMBER = (
    "a Value is not a number to math, float(), int() or round(), which would drop its gradient: for the op, "
    "use its method or chaingrad's function (v.tanh(), cg.tanh(v)); for the number, v.item() (or v.data)"
)


def _data(x: Any) -> Any:
    return x.data if isinstance(x, Value) else x


# ---------------------------------------------------------------------------
# The op table: each op's name, its forward value from its inputs' data x
# (and y), and its local gradients d(out)/d(x), d(out)/d(y), given x, y and
# the result out. backward() adds local * out.grad to each input's grad. On
# Values, the same formulas build the graph of the gradient, which is how
# higher derivatives work.
#
# Where PyTorch's backward is not local * g, an op gives its rule instead:
# each input's share of g = out.grad. relu and ** select, so that a zero local
# gradient passes nothing (rather than 0 * inf = nan); / and log divide, g / y,
# where 1 / y would overflow for a tiny y.
# ---------------------------------------------------------------------------


class Op(str):
    """An op: its name, its forward value and its local gradients.

    `Op(name, forward, local)`: `forward(*xs)` gives the value from the inputs'
    data; `local(*xs, out)` gives d(out)/d(x) for each input. Write both with
    chaingrad's functions (`cg.exp`, `cg.log`, ...) rather than `math`, and the
    op works on numbers, on batches and for higher derivatives. Calling the op
    applies it: `softplus(x)`.

    `Op(name, forward, rule=rule)`: an op whose backward is not local * g gives
    `rule(g, *xs, out)` instead, each argument's share of g = d(loss)/d(out)
    (None, or anything, for an argument that is a constant: it is dropped).
    For higher derivatives it is called with Values in place of the numbers.

    An op is the str of its name, and a node's `_op` is its op: so `node._op == "tanh"`,
    `str(id(node)) + node._op` and the lecture's `draw_dot` read as in micrograd.
    """

    __slots__ = ("forward", "local", "rule")

    def __new__(cls, name: str, forward: Any, local: Any = None, rule: Any = None) -> Op:
        if not isinstance(name, str) or not name:
            raise TypeError(f"an op needs a non-empty name, got {name!r}")
        if (
            not callable(local or rule)
            or None not in (local, rule)
            or not (forward is None or callable(forward))
        ):
            raise TypeError(f"op {name!r}: forward(*inputs) and local(*inputs, out) must be callable")
        if name in BUILT_IN:
            raise ValueError(f"{name!r} is the name of one of chaingrad's own ops: give your op another name")
        op = super().__new__(cls, name)
        op.forward, op.local, op.rule = forward, local, rule
        OPS[name] = op  # defined again (a notebook cell run twice): the new op replaces the old
        return op

    name = property(str.__str__, doc="The op's name, a plain str.")

    def __call__(self, *args: Any) -> Any:
        """Apply the op: to Values (and numbers), a node recorded in the graph; to numbers alone, its value,
        a number, as cg.exp(2.0) is (so ops can use each other in their local gradients, and a local
        gradient computed on numbers is a number)."""
        if self.forward is None:
            raise TypeError(f"the op {self.name!r} is made by cg.{self.name}(), not called")
        if self.node_type is Value:  # this engine's op: its common case first
            made = on_single_numbers(self, args)
            if made is not None:
                return made
        if not any(isinstance(a, self.node_type) for a in _items(args)):
            xs = [_argument(a, self, i) for i, a in enumerate(args)]
            with quiet():
                return output(self, self.forward(*xs))
        return self.applied(*args)

    node_type = Value  # the Values whose ops it records: this engine's (another engine's, for a subclass)

    def applied(self, *args: Any) -> Any:
        """The node for the op applied to args (apply, for this engine's Values)."""
        return apply(self, *args)

    def chain(self, node: Any) -> None:
        """The op's rule, as backward applies it to one of its nodes: each input's share of node.grad."""
        args = node._ctx if type(node._ctx) is tuple else node._prev  # its arguments, constants in place
        shares = self.rule(node.grad, *node._saved)  # the data as the forward saw it, even if changed since
        for child, share in zip(node._prev, checks.rule_shares(self, shares, _flat(args), type(node))):
            add_gradient(child, share)

    def __reduce__(self) -> tuple[Any, ...]:
        return op_named, (self.name,)


OPS: dict[str, Op] = {}  # every op by name, so that a pickled node finds its op again
BUILT_IN: set[str] = set()  # the names of chaingrad's own ops, which no other op may take


def built_in(*ops: Op) -> None:
    """Mark ops as chaingrad's own: no op defined later may take their names, so that a built-in node,
    copied or unpickled, always computes what it was made to."""
    BUILT_IN.update(op.name for op in ops)


def op_named(name: str) -> Op:
    """The op defined under `name` (how a pickled node finds its op again)."""
    return OPS[name]


# fmt: off
#             name       forward   local gradients, given the inputs and out
ADD = Op(     "+",       lambda x, y: x + y,  lambda x, y, out: (1.0, 1.0))
SUB = Op(     "-",       lambda x, y: x - y,  lambda x, y, out: (1.0, -1.0))
MUL = Op(     "*",       lambda x, y: x * y,  lambda x, y, out: (y, x))
NEG = Op(     "neg",     lambda x: -x,        lambda x, out: (-1.0,))
EXP = Op(     "exp",     exp,                 lambda x, out: (out,))
TANH = Op(    "tanh",    tanh,                lambda x, out: (1.0 - out * out,))
SIGMOID = Op( "sigmoid", sigmoid,             lambda x, out: (out * (1.0 - out),))
SQRT = Op(    "sqrt",    sqrt,                lambda x, out: (div(0.5, out),))
ABS = Op(     "abs",     abs,                 lambda x, out: (sign(x),))
SIN = Op(     "sin",     sin,                 lambda x, out: (cos(x),))
COS = Op(     "cos",     cos,                 lambda x, out: (-sin(x),))
#             name       forward   each input's share of g, given the inputs and out
DIV = Op(     "/",       div,      rule=lambda g, x, y, out: (div(g, y), -g * div(out, y)))
LOG = Op(     "log",     log,      rule=lambda g, x, out: (div(g, x),))
RELU = Op(    "relu",    relu,     rule=lambda g, x, out: (where(out <= 0, 0.0, g),))
POW = Op(     "**",      power,    rule=lambda g, x, y, out: (
                                       where(is_zero(y), 0.0, g * (y * power(x, y - 1.0))),
                                       g * where(is_zero(x) & (y >= 0), 0.0, out * log(x))))
# fmt: on

PRIMITIVES = (ADD, SUB, MUL, NEG, EXP, TANH, SIGMOID, SQRT, ABS, SIN, COS, DIV, LOG, RELU, POW)
"""The table's ops, in its order (a twin engine checks its own table against this one)."""
built_in(*PRIMITIVES)


# ---------------------------------------------------------------------------
# backward: order the graph, then apply the chain rule node by node
# ---------------------------------------------------------------------------


def topological_order(root: Any) -> list[Any]:
    """Every node that leads to root, leaves included, each after all of its inputs; root last.

    The order of micrograd's `build_topo` (depth first, inputs in the order of `_prev`),
    built with a stack of its own instead of recursion, so a chain of a million nodes works.
    """
    order: list[Any] = []
    visited = {root}
    stack = [(root, iter(root._prev))]
    while stack:
        node, inputs = stack[-1]
        for child in inputs:
            if child not in visited:
                visited.add(child)
                stack.append((child, iter(child._prev)))
                break
        else:  # every input of node is in the order: node comes next
            stack.pop()
            order.append(node)
    return order


def backward(root: Any, create_graph: bool = False) -> None:
    """root.backward(): the chain rule from root to every node that leads to it.

    `step(node)` is one node's step: `chain` (its local gradients, or its op's rule); with
    create_graph, autodiff.py's, which builds the gradient's own graph; in detect_anomaly(),
    modes.py's, which checks what each step gives.
    """
    if type(root.data) is not float:
        raise not_a_number(root.data, "backward()")
    step = STEP_WITH_GRAPH[0] if create_graph else modes.checked(chain) if mode() & ANOMALY else chain
    order = topological_order(root)
    with WALKS.claiming(order), quiet():
        for node in order:
            if node._prev:
                node.grad = None  # computed afresh below; a leaf's grad accumulates
        add_gradient(root, 1.0)  # d(root)/d(root)
        for node in reversed(order):
            if node._prev and node.grad is not None:  # None: no gradient reached it
                step(node)


class _Walks:
    """The graphs backward is walking: each node of a walk, and the thread walking it. A walk resets and
    adds to its nodes' grads, so it waits for another thread's walk that shares a node with it, and for
    nothing else (unrelated graphs never wait on each other); a walk inside a walk of the same thread
    (a backward in a node's _backward) goes on. A forked child starts with none: the threads that were
    walking in the parent are not there."""

    def __init__(self) -> None:
        self.forget()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self.forget)

    def forget(self) -> None:
        self.walks: list[_Walk] = []  # the walks under way
        self.done = threading.Condition()

    @contextlib.contextmanager
    def claiming(self, nodes: list[Any]) -> Any:
        walk = _Walk(threading.get_ident(), {id(n) for n in nodes})  # the walk holds its nodes meanwhile
        with self.done:
            while any(w.thread != walk.thread and not walk.nodes.isdisjoint(w.nodes) for w in self.walks):
                self.done.wait()
            self.walks.append(walk)
        try:
            yield
        finally:
            with self.done:
                self.walks.remove(walk)  # one step, so that Ctrl-C cannot leave half of it claimed
                self.done.notify_all()


class _Walk:
    """One walk under way: the thread walking, and the ids of its nodes (which the walk holds alive)."""

    def __init__(self, thread: int, nodes: set[int]) -> None:
        self.thread, self.nodes = thread, nodes


WALKS = _Walks()
STEP_WITH_GRAPH: list[Callable[[Any], None]] = []  # autodiff.py's step, put here when it is imported


def chain(node: Any) -> None:
    """One node's step of backprop: each input's grad += local * node.grad (or the op's rule)."""
    if node._local is not None:
        g = node.grad
        for child, local in zip(node._prev, node._local):
            add_gradient(child, local * g)
    elif callable(node._ctx):  # a function given as its _backward, as in the lecture: it adds to its
        for child in node._prev:  # inputs' grads itself, so each must be a number (0.0: none yet)
            if child.grad is None:
                child.grad = 0.0
        node._ctx()
    else:
        node._op.chain(node)


def add_gradient(child: Any, share: Any) -> None:
    """child.grad += share: the one place a gradient is added. A grad of None is no gradient yet
    (it becomes 0.0 + share, as a grad of 0.0 would), and a batch's shares are summed for an input
    that is a single number."""
    if type(share) is not float:
        if share is None:
            return
        if is_array(share) and type(child.data) is float:
            share = float(share.sum())  # a parameter's gradient from a batch: the sum over its samples
    if child.grad is None:
        child.grad = 0.0 + share if _is_constant(share) else share
    else:
        child.grad += share


def arguments(node: Any) -> list[Any]:
    """The arguments node's op was applied to: its inputs, with any constants in their places."""
    return _flat(node._ctx) if type(node._ctx) is tuple else list(node._prev)


def _is_constant(a: Any) -> bool:
    return type(a) is float or is_array(a)


def _data_or_constants(a: Any) -> Any:
    """An argument's data: a Value's (a float, where something else was assigned), a constant itself, a
    fused op's sequence item by item."""
    if type(a) is tuple:
        return tuple(map(_data_or_constants, a))
    if _is_constant(a):
        return a
    return a.data if _is_constant(a.data) else float(a.data)  # an int, a NumPy float32, a Fraction


# ---------------------------------------------------------------------------
# Making a node: apply an op to its arguments, record the result
# ---------------------------------------------------------------------------


def apply(op: Op, *args: Any) -> Value:
    """The node for op(*args). Each argument is a Value, a number or batch (a constant), or, for a
    fused op, a sequence of those. forward and local see the arguments' data."""
    made = on_single_numbers(op, args)
    if made is not None:  # the common case, made directly: the same node as below
        return made
    args = tuple(_argument(a, op, i) for i, a in enumerate(args))
    out, local = evaluate(op, [_data_of(a) for a in args])
    return record(op, out, args, local)


def on_single_numbers(op: Op, args: tuple[Any, ...]) -> Value | None:
    """apply's common case: Values holding floats (at least one) and plain numbers, no mode on. The node
    the general path makes, without its checks, which these pass; None for anything else."""
    if modes.ever_on and mode():
        return None
    xs, values = [], []
    for a in args:
        if type(a) is Value and type(a.data) is float:
            xs.append(a.data)
            values.append(a)
        elif type(a) is float or type(a) is int:
            xs.append(float(a))
        else:
            return None
    if not values:
        return None
    out = op.forward(*xs)
    if type(out) is not float:
        out = output(op, out)
    every = len(values) == len(args)  # all the arguments are inputs; else the constants stay in _ctx
    made = node(out, tuple(values), None, op, None if every else _with_constants(args, xs))
    if op.local is None:
        made._saved = (*xs, out)
        return made
    local = op.local(*xs, out)
    if every and type(local) is tuple and len(local) == len(args) and _floats(local):
        made._local = local
    else:  # constants, or ints, NumPy numbers, a wrong count: the general path's checks say what
        made._local = checks.local_gradients(op, local, _with_constants(args, xs), out, Value)
    return made


def _with_constants(args: tuple[Any, ...], xs: list[float]) -> tuple[Any, ...]:
    return tuple([a if type(a) is Value else x for a, x in zip(args, xs)])


def _floats(xs: tuple[Any, ...]) -> bool:
    return all(type(x) is float for x in xs)


def evaluate(op: Op, xs: Sequence[Any]) -> tuple[Any, Any]:
    """op's value on the arguments' data xs, and its local gradients there (None for an op with a
    rule, or where no graph is recorded): the mathematics of one node, without the node."""
    batch = {len(x) for x in _flat(xs) if is_array(x)}
    if len(batch) > 1:
        raise ValueError(f"{op}(): batches of different sizes {sorted(batch)} cannot be combined")
    with quiet() if batch else _numbers:  # NumPy's warnings off for a batch: inf and nan, as for floats
        out = op.forward(*xs)
        return out, None if op.local is None or mode() & NO_GRAD else op.local(*xs, out)


_numbers = contextlib.nullcontext()


def record(op: Op, out: Any, args: tuple[Any, ...], local: Sequence[Any] | None) -> Value:
    """The node for out = op(*args), given the local gradients of the arguments (None: op.rule).

    Its inputs (`_prev`) are the arguments that are Values, with their local
    gradients; the arguments themselves stay in `_ctx` when they hold more
    (constants, or a fused op's structure). Under no_grad the node is a leaf.
    """
    value = output(op, out)
    flat, flags = _flat(args), mode()
    if flags & ANOMALY:
        check_forward(op, value, flat)
    if flags & NO_GRAD:
        return node(value, (), (), "", None)
    prev = tuple(a for a in flat if isinstance(a, Value))
    if local is not None:
        local = checks.local_gradients(op, local, flat, value, Value)
    plain = len(prev) == len(args) and tuple not in map(type, args)  # the inputs are all there is
    made = node(value, prev, local, op, None if plain else args)
    if local is None:  # the op's rule will need the arguments' data: kept as they are now (data may change)
        made._saved = (*map(_data_or_constants, args), value)
    return made


def output(op: Any, out: Any) -> Any:
    """An op's result as a node keeps it: a float, or a batch of float64; a TypeError naming the op
    for anything else."""
    value = out.astype(float, copy=False) if is_array(out) else constant(out)
    if value is None:
        raise TypeError(f"op {str(op)!r}: forward returned {type(out).__name__} {out!r:.60}, not a number")
    return value


def node(data: Any, prev: tuple[Any, ...], local: tuple[Any, ...] | None, op: Any, ctx: Any) -> Value:
    """A node with these parts (no checks: apply and record check them)."""
    v = object.__new__(Value)
    v.data, v.grad, v._prev, v._op, v._local, v._ctx, v._saved = data, 0.0, prev, op, local, ctx, None
    return v


def _items(args: Sequence[Any]) -> list[Any]:
    """The arguments as given, a sequence (a list or a tuple) spliced in."""
    return [x for a in args for x in (a if isinstance(a, (list, tuple)) else (a,))]


def _flat(args: Sequence[Any]) -> list[Any]:
    return [x for a in args for x in (a if type(a) is tuple else (a,))]  # a fused op's sequences spliced in


def _data_of(a: Any) -> Any:
    return a.data if isinstance(a, Value) else tuple(map(_data_of, a)) if type(a) is tuple else a


def _operator(op: Op, x: Any, y: Any) -> Any:
    """x op y for one of Python's operators: NotImplemented unless both are Values or numbers, so that
    Python can try the other operand's operator, and say which types it does not support."""
    for a in (x, y):
        if type(a) is not float and not isinstance(a, Value) and constant(a) is None:
            return NotImplemented
    return op(x, y)


def _argument(a: Any, op: Op, i: int) -> Any:
    if isinstance(a, Value):
        return a
    if isinstance(a, (list, tuple)):
        return tuple(_argument(x, op, i) for x in a)
    if (c := constant(a)) is None:
        raise TypeError(f"{op}(): argument {i} is {type(a).__name__} {a!r:.60}; expected a Value or a number")
    return c


# ---------------------------------------------------------------------------
# The compatibility forms: nodes made by hand, as micrograd's lecture and
# microgpt make them.
#
#   Value(data, (a, b), "*")        micrograd: the op's name; then give the node
#   out._backward = _backward       a function that adds each input's share itself
#   Value(data, (a, b), (da, db))   microgpt: the local gradients, one per input
# ---------------------------------------------------------------------------


def made_by_hand(data: Any, children: tuple[Any, ...], op: Any) -> tuple[Any, Any, Any]:
    """Value(data, children, op)'s data, op and local gradients: a leaf, or a node made as micrograd's
    lecture (op: a name; local gradients none yet, a _backward to come) or microgpt (op: the local
    gradients themselves) makes one."""
    if isinstance(data, Value) or (d := constant(data)) is None:
        what = f"{type(data).__name__}: {data!r:.60}" if not isinstance(data, Value) else "another Value"
        raise TypeError(f"Value() takes an int, a float or a 1-D NumPy array of numbers, not {what}")
    if not isinstance(op, str):
        checks.given_local_gradients(op, len(children))
    if children and modes.ever_on and mode() & ANOMALY:
        check_forward(op if isinstance(op, str) else "Value", d, list(children))
    return (d, op, ()) if isinstance(op, str) else (d, "", tuple(map(constant, op)))


def given_backward(v: Any, function: Callable[[], None]) -> None:
    """out._backward = function: micrograd's way. The function updates the inputs' grads itself and is
    kept in place of local gradients; the node's op becomes just its name."""
    if not callable(function):
        raise TypeError(f"_backward must be a function of no arguments, not {type(function).__name__}")
    v._local, v._ctx, v._op = None, function, str(v._op)
