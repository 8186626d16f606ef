"""Value and backward: a number that remembers how it was computed, and the chain rule.

Each node keeps its inputs (`_prev`), its op (`_op`) and the local gradients
d(node)/d(input) computed at forward time (`_local`). `backward()` walks the
graph once in reverse topological order, without recursion, and for each
node adds `local * node.grad` to each input's grad. The op table lives in
ops.py; this module only records nodes and runs the chain rule.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import gc
import math
import operator
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = [
    "AnomalyError",
    "Value",
    "detect_anomaly",
    "enable_grad",
    "is_grad_enabled",
    "no_grad",
]


def numpy() -> Any:
    """NumPy, imported on first use so that the scalar engine never needs it."""
    import numpy as np

    return np


def _is_array(x: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(x, np.ndarray)


def _constant(c: Any) -> Any:
    """A number or batch as the engine stores it (float or 1-D float64 array), or None."""
    t = type(c)
    if t is float:
        return c
    if t is int or t is bool:
        return float(c)
    if isinstance(c, (int, float)):  # int and float subclasses, numpy.float64
        return float(c)
    np = sys.modules.get("numpy")
    if np is None:
        return None
    if isinstance(c, np.generic) and c.dtype.kind in "biuf":
        return float(c)
    if isinstance(c, np.ndarray) and c.dtype.kind in "biuf":
        if c.ndim == 0:
            return float(c)
        if c.ndim != 1:
            raise ValueError(f"a batch must be a 1-D array (one number per sample), got shape {c.shape}")
        if len(c) == 0:
            raise ValueError("a batch must hold at least one sample, got an empty array")
        return np.array(c, dtype=np.float64)
    return None


# ---------------------------------------------------------------------------
# Modes: no_grad and detect_anomaly, per thread and per async task.
# ---------------------------------------------------------------------------

_NO_GRAD = 1
_ANOMALY = 2
_mode = contextvars.ContextVar("chaingrad_mode", default=0)
_mode_get = _mode.get

F = TypeVar("F", bound=Callable[..., Any])


class _ModeSwitch:
    """A context manager and decorator that sets or clears one mode flag."""

    _flag = 0
    _on = True

    def __init__(self) -> None:
        self._tokens: list[contextvars.Token[int]] = []

    def __enter__(self) -> _ModeSwitch:
        mode = _mode_get()
        self._tokens.append(_mode.set(mode | self._flag if self._on else mode & ~self._flag))
        return self

    def __exit__(self, *exc: object) -> None:
        _mode.reset(self._tokens.pop())

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with type(self)():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class no_grad(_ModeSwitch):
    """Build no graph inside: results are leaves. A context manager or a decorator."""

    _flag = _NO_GRAD


class enable_grad(_ModeSwitch):
    """Build the graph again inside a `no_grad` block."""

    _flag = _NO_GRAD
    _on = False


class detect_anomaly(_ModeSwitch):
    """Raise AnomalyError at the first nan or inf made in forward or backward."""

    _flag = _ANOMALY


def is_grad_enabled() -> bool:
    """Whether ops record the graph in this thread right now."""
    return not _mode_get() & _NO_GRAD


class AnomalyError(FloatingPointError):
    """A nan or inf appeared while `detect_anomaly()` was on."""


def _finite(x: Any) -> bool:
    if type(x) is float:
        return math.isfinite(x)
    return bool(numpy().isfinite(x).all())


def _describe(args: Sequence[Any]) -> str:
    parts = []
    for a in args:
        if isinstance(a, Value):
            parts.append(f"{a.label or 'Value'}={a.data!r}")
        else:
            parts.append(repr(a))
    return ", ".join(parts)


# ---------------------------------------------------------------------------
# Value
# ---------------------------------------------------------------------------

_new = object.__new__


class Value:
    """A number (or a batch of numbers) and the gradient of the output with respect to it."""

    __slots__ = ("data", "grad", "label", "_prev", "_op", "_local", "_ctx")
    __array_ufunc__ = None  # ndarray (op) Value defers to Value, giving a Value

    def __init__(self, data: Any, label: str = "") -> None:
        value = _constant(data)
        if value is None:
            accepted = "an int, a float or a 1-D NumPy array of numbers"
            if isinstance(data, Value):
                raise TypeError(f"Value() takes {accepted}, not another Value; use it directly")
            raise TypeError(f"Value() takes {accepted}, not {type(data).__name__}: {data!r:.60}")
        if not isinstance(label, str):
            raise TypeError(f"label must be a str, not {type(label).__name__}")
        self.data = value
        self.grad = 0.0
        self.label = label
        self._prev: tuple[Value, ...] = ()
        self._op = ""
        self._local: tuple[Any, ...] = ()
        self._ctx: tuple[Any, ...] | None = None

    # -- arithmetic: each is one row of the op table in ops.py --------------

    def __add__(self, other: Any) -> Value:
        return _binary(ADD, self, other)

    def __radd__(self, other: Any) -> Value:
        return _binary(ADD, other, self)

    def __sub__(self, other: Any) -> Value:
        return _binary(SUB, self, other)

    def __rsub__(self, other: Any) -> Value:
        return _binary(SUB, other, self)

    def __mul__(self, other: Any) -> Value:
        return _binary(MUL, self, other)

    def __rmul__(self, other: Any) -> Value:
        return _binary(MUL, other, self)

    def __truediv__(self, other: Any) -> Value:
        return _binary(DIV, self, other)

    def __rtruediv__(self, other: Any) -> Value:
        return _binary(DIV, other, self)

    def __pow__(self, other: Any) -> Value:
        return _binary(POW, self, other)

    def __rpow__(self, other: Any) -> Value:
        return _binary(POW, other, self)

    def __neg__(self) -> Value:
        return _unary(NEG, self)

    def __pos__(self) -> Value:
        return self

    def abs(self) -> Value:
        """|x|; its gradient at 0 is 0, as in PyTorch."""
        return _unary(ABS, self)

    __abs__ = abs  # noqa: A003 - the method above, so abs(v) and v.abs() are one op

    def exp(self) -> Value:
        """e ** x."""
        return _unary(EXP, self)

    def log(self) -> Value:
        """Natural logarithm."""
        return _unary(LOG, self)

    def tanh(self) -> Value:
        """Hyperbolic tangent."""
        return _unary(TANH, self)

    def sigmoid(self) -> Value:
        """Logistic sigmoid 1 / (1 + e ** -x)."""
        return _unary(SIGMOID, self)

    def relu(self) -> Value:
        """max(x, 0); its gradient at 0 is 0, as in PyTorch."""
        return _unary(RELU, self)

    def sqrt(self) -> Value:
        """Square root."""
        return _unary(SQRT, self)

    # -- comparisons look at data; equality and hashing stay by identity -----

    def __lt__(self, other: Any) -> Any:
        return self.data < _data(other)

    def __le__(self, other: Any) -> Any:
        return self.data <= _data(other)

    def __gt__(self, other: Any) -> Any:
        return self.data > _data(other)

    def __ge__(self, other: Any) -> Any:
        return self.data >= _data(other)

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __float__(self) -> float:
        if type(self.data) is not float:
            raise TypeError(f"float() of a batch of {len(self.data)} samples; reduce it first")
        return self.data

    def __repr__(self) -> str:
        label = f", label={self.label!r}" if self.label else ""
        return f"Value(data={self.data!r}, grad={self.grad!r}{label})"

    def __reduce__(self):
        # Pickle and deepcopy without recursion: rebuild the graph from a flat list.
        return _rebuild, (_flatten(self),)

    # -- the chain rule -------------------------------------------------------

    @property
    def batch_size(self) -> int | None:
        """How many samples `data` holds, or None for a single number."""
        return None if type(self.data) is float else len(self.data)

    def _backward(self) -> None:
        """Apply this node's local gradients once: input.grad += local * self.grad."""
        _push(self, self.grad)

    def backward(self, create_graph: bool = False) -> None:
        """Fill .grad of every node that leads here with d(self)/d(node).

        Leaves accumulate (call `zero_grad()` between steps); intermediate
        nodes are recomputed, so calling it twice adds the same amount to the
        leaves again. With `create_graph=True` the gradients are Values with
        a graph of their own, ready to be differentiated again.
        """
        if type(self.data) is not float:
            raise ValueError(
                f"backward() needs a single number, but this Value holds a batch of "
                f"{len(self.data)} samples; reduce it first with cg.batch_mean(v) or cg.batch_sum(v)"
            )
        if create_graph:
            for node, g in gradients(self, create_graph=True).items():
                if node._prev:
                    node.grad = g
                else:  # leaves accumulate, as in the float path
                    node.grad = g if type(node.grad) is float and node.grad == 0.0 else node.grad + g
            return
        reenable = gc.isenabled()
        gc.disable()  # the walk creates no cycles; a collection mid-walk only costs time
        try:
            order = _topo(self)
            for node in order:
                node.grad = _UNREACHED
            if not order:
                self.grad += 1.0  # a leaf: d(self)/d(self), accumulated like any leaf
                return
            self.grad = 1.0
            with _quiet_numpy():  # batched nodes may meet inf - inf or 0 * inf
                if _mode_get() & _ANOMALY:
                    for node in order:
                        if node.grad is not _UNREACHED:
                            _push_checked(node, node.grad)
                    return
                for node in order:
                    g = node.grad
                    if g is _UNREACHED:
                        continue
                    if type(g) is float:
                        for child, local in zip(node._prev, node._local):
                            child.grad += local * g
                    else:
                        _push(node, g)
        finally:
            if reenable:
                gc.enable()


# An intermediate node's grad at the start of backward: equal to 0.0, but its own object, so
# that a node no gradient ever reached (behind a batched layer's unused output) is skipped
# rather than passing on 0 * its local gradients, which is nan where those are infinite.
_UNREACHED = float("0.0")


def _data(x: Any) -> Any:
    return x.data if isinstance(x, Value) else x


def _push(node: Value, g: Any) -> None:
    """Add local * g to each input's grad (or run the op's own batched backward)."""
    backward = getattr(node._op, "backward", None)
    if backward is not None:
        backward(node, g)
        return
    for child, local in zip(node._prev, node._local):
        accumulate(child, local * g)


def accumulate(child: Value, d: Any) -> None:
    """child.grad += d, summed over the batch when child is a single number shared by all samples."""
    if type(d) is not float and type(child.data) is float:
        d = float(d.sum())
    child.grad += d


def _push_checked(node: Value, g: Any) -> None:
    _push(node, g)
    for i, child in enumerate(node._prev):
        if not _finite(child.grad):
            raise AnomalyError(
                f"backward of op {str(node._op)!r}{_label(node)} gave a non-finite gradient "
                f"{child.grad!r} to input {i} ({_describe((child,))}); "
                f"the op's inputs: {_describe(node._prev)}; its gradient: {g!r}"
            )


def _label(node: Value) -> str:
    return f" (label {node.label!r})" if node.label else ""


def _topo(root: Value) -> list[Value]:
    """The non-leaf nodes that lead to root, each before the nodes it consumes."""
    if not root._prev:
        return []
    return _postorder(root, leaves=False)[::-1]


def _postorder(root: Value, leaves: bool) -> list[Value]:
    """The nodes that lead to root (leaves only if asked), inputs first; no recursion."""
    order = []
    seen = set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif node not in seen:
            seen.add(node)
            stack.append((node, True))
            for child in node._prev:
                if (leaves or child._prev) and child not in seen:
                    stack.append((child, False))
    return order


def gradients(root: Value, create_graph: bool = False) -> dict[Value, Any]:
    """d(root)/d(node) for every node that leads to root, in a dict; every .grad is left as it was.

    With create_graph=True each op's local gradients are recomputed from its
    formula on the Values themselves, so the gradients carry a graph and can
    be differentiated again. A gradient that is a plain float is a constant.
    """
    if type(root.data) is not float:
        raise ValueError(f"gradients of a batch of {len(root.data)} samples; reduce it first")
    if not create_graph:  # the ordinary backward, with every .grad saved and restored
        nodes = _all_nodes(root)
        saved = [n.grad for n in nodes]
        try:
            for n in nodes:
                n.grad = 0.0
            root.backward()
            return {n: n.grad for n in nodes}
        finally:
            for n, g in zip(nodes, saved):
                n.grad = g
    order = _topo(root)
    if any(type(n.data) is not float for n in order):
        raise NotImplementedError("higher-order gradients of batched graphs are not supported")
    grads: dict[Value, Any] = {root: 1.0}
    for node in order:
        g = grads[node]
        args = node._prev if node._ctx is None else node._ctx
        for arg, local in zip(args, node._op.local(*args, node)):
            if isinstance(arg, Value):
                d = local * g
                before = grads.get(arg)
                grads[arg] = d if before is None else before + d
    return grads


# ---------------------------------------------------------------------------
# Recording nodes
# ---------------------------------------------------------------------------


def _binary(op: Any, x: Any, y: Any) -> Value:
    """Apply a two-input op; one side may be a plain number or a batch."""
    # The fast path: single numbers, at most one of them a constant.
    if type(x) is Value:
        xd = x.data
        if type(y) is Value:
            yd, const = y.data, -1
        else:
            yd, const = (y if type(y) is float else _constant(y)), 1
    elif type(y) is Value:
        xd, yd, const = (x if type(x) is float else _constant(x)), y.data, 0
    else:
        return _binary_general(op, x, y)
    if type(xd) is not float or type(yd) is not float or _mode_get():
        return _binary_general(op, x, y)
    out = op.forward(xd, yd)
    local = op.local(xd, yd, out)
    node = _new(Value)
    node.data = out
    node.grad = 0.0
    node.label = ""
    node._op = op
    if const < 0:
        node._prev = (x, y)
        node._local = local
        node._ctx = None
    else:  # keep the Value's local gradient; the constant lives in _ctx
        node._prev = (y,) if const == 0 else (x,)
        node._local = (local[1 - const],)
        node._ctx = (xd, y) if const == 0 else (x, yd)
    return node


def _binary_general(op: Any, x: Any, y: Any) -> Value:
    if not isinstance(x, Value):
        x = _constant(x)
    elif not isinstance(y, Value):
        y = _constant(y)
    if x is None or y is None:
        return NotImplemented
    with _quiet(_data(x), _data(y)):
        return apply(op, (x, y))


def _quiet_numpy() -> Any:
    """NumPy set to give IEEE results (inf, nan) without RuntimeWarnings, as floats do."""
    np = sys.modules.get("numpy")
    return contextlib.nullcontext() if np is None else np.errstate(all="ignore")


def _quiet(*datas: Any) -> Any:
    """_quiet_numpy() when any of the data is a batch."""
    return _quiet_numpy() if any(_is_array(d) for d in datas) else contextlib.nullcontext()


def _unary(op: Any, x: Value) -> Value:
    """Apply a one-input op."""
    xd = x.data
    if type(xd) is float and not _mode_get():
        out = op.forward(xd)
        node = _new(Value)
        node.data = out
        node.grad = 0.0
        node.label = ""
        node._prev = (x,)
        node._op = op
        node._local = op.local(xd, out)
        node._ctx = None
        return node
    with _quiet(xd):
        return apply(op, (x,))


_VALUES_ONLY = {Value}
_VALUES_AND_FLOATS = {Value, float}
_NUMBERS = {float, int}
_data_of = operator.attrgetter("data")


def as_args(args: Sequence[Any], op: str) -> tuple[Any, ...]:
    """Check an op's arguments: Values, numbers or batches; numbers become floats."""
    if set(map(type, args)) <= _VALUES_AND_FLOATS:  # the common case, checked in one C loop
        return tuple(args)
    out = []
    for i, a in enumerate(args):
        if not isinstance(a, Value):
            c = _constant(a)
            if c is None:
                raise TypeError(
                    f"{op}: argument {i} is {type(a).__name__} {a!r:.60}; "
                    "expected a Value, a number or a 1-D NumPy batch"
                )
            a = c
        out.append(a)
    return tuple(out)


def check_batches(datas: Sequence[Any], op: str) -> int | None:
    """The common batch size of an op's inputs (None if none is a batch); unequal ones are an error."""
    sizes = {len(d) for d in datas if type(d) is not float and _is_array(d)}
    if len(sizes) > 1:
        raise ValueError(f"{op}: batches of different sizes {sorted(sizes)} cannot be combined")
    return sizes.pop() if sizes else None


def apply(op: Any, args: tuple[Any, ...]) -> Value:
    """Compute op's value and local gradients from its arguments' data and record the node."""
    only_values = set(map(type, args)) == _VALUES_ONLY
    datas = list(map(_data_of, args)) if only_values else [_data(a) for a in args]
    with contextlib.nullcontext() if set(map(type, datas)) <= _NUMBERS else _quiet_numpy():
        try:
            out = op.forward(*datas)
        except ValueError:
            check_batches(datas, op)
            raise
        local = () if _mode_get() & _NO_GRAD else op.local(*datas, out)
    if only_values:
        return node(op, args, _output(out), tuple(local))
    return record(op, args, out, local)


def _output(out: Any) -> Any:
    """An op's result as a node stores it: a float, or a 1-D float64 batch."""
    if type(out) is float or (type(out).__name__ == "ndarray" and out.dtype.kind == "f"):
        return out
    return _constant(out)


def record(op: Any, args: tuple[Any, ...], out: Any, local: Sequence[Any]) -> Value:
    """Make the node for `out = op(*args)` with the given local gradients, one per arg."""
    out = _output(out)
    prev = tuple(a for a in args if isinstance(a, Value))
    if len(prev) == len(args):
        return node(op, prev, out, tuple(local))
    return node(op, prev, out, tuple(g for a, g in zip(args, local) if isinstance(a, Value)), args)


def node(op: Any, prev: tuple[Value, ...], out: Any, local: Any, ctx: Any = None) -> Value:
    """A new node: out = op(prev...) with its local gradients, honouring no_grad and detect_anomaly."""
    mode = _mode_get()
    if mode & _ANOMALY and not _finite(out):
        raise AnomalyError(f"op {str(op)!r} produced {out!r} from inputs ({_describe(ctx or prev)})")
    n = _new(Value)
    n.data = out
    n.grad = 0.0
    n.label = ""
    if mode & _NO_GRAD:
        n._prev, n._op, n._local, n._ctx = (), "", (), None
    else:
        n._prev, n._op, n._local, n._ctx = prev, op, local, ctx
    return n


# ---------------------------------------------------------------------------
# Pickling without recursion
# ---------------------------------------------------------------------------


def _flatten(root: Value) -> list[Any]:
    """Every node under root, inputs first: a leaf as itself (so that pickle's memo shares a leaf
    copied together with the graph, such as a model's parameter), any other node as
    (data, grad, label, op, prev indices, local, ctx)."""
    nodes = _all_nodes(root)
    index = {id(n): i for i, n in enumerate(nodes)}

    def ref(a: Any) -> Any:
        return ("v", index[id(a)]) if isinstance(a, Value) else ("c", a)

    return [
        n
        if not n._prev and n is not root
        else (
            n.data,
            n.grad,
            n.label,
            str(n._op) and n._op,
            tuple(index[id(p)] for p in n._prev),
            n._local,
            None if n._ctx is None else tuple(ref(a) for a in n._ctx),
        )
        for n in nodes
    ]


def _rebuild(rows: list[Any]) -> Value:
    nodes: list[Value] = []
    for row in rows:
        if isinstance(row, Value):
            nodes.append(row)
            continue
        data, grad, label, op, prev, local, ctx = row
        node = _new(Value)
        node.data, node.grad, node.label, node._op, node._local = data, grad, label, op, local
        node._prev = tuple(nodes[i] for i in prev)
        node._ctx = None if ctx is None else tuple(nodes[x] if k == "v" else x for k, x in ctx)
        nodes.append(node)
    return nodes[-1]


def _all_nodes(root: Value) -> list[Value]:
    """Every node that leads to root (leaves too), inputs before the nodes using them."""
    return _postorder(root, leaves=True)


# The op table refers to Value, so it is imported after Value is defined.
from .ops import ABS, ADD, DIV, EXP, LOG, MUL, NEG, POW, RELU, SIGMOID, SQRT, SUB, TANH  # noqa: E402
