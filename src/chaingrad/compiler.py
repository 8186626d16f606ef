"""cg.compile: trace a function of Values once into a tape, then replay the tape in C.

    @cg.compile
    def loss(x, y):                  # Values and numbers in, one Value out
        return (model(x)[0] - y) ** 2

    l = loss([0.5, -1.0], 1.0)       # first call: runs loss, writes its graph down as a tape
    l = loss([0.2, 0.3], -1.0)       # later calls: the tape replayed in C, no Python per op
    l.backward()                     # d(l)/d(every parameter), as if loss had run op by op

A call returns one node: its data is the function's value, its inputs are the
Values the function read (its Value arguments and the Values it closes over, a
model's parameters, read afresh at every call), and its step of backward is the
tape's own walk, adding each input's share in the order backward would. So the
numbers are the uncompiled function's, bit for bit, and the node mixes with
everything else: a mean over many calls, optimizers, anomaly mode.

What a tape cannot replay is refused while tracing: a branch on a Value's data
(reading .data, comparing, bool()), ops with no compiled kernel (custom ops,
micrograd's _backward closures). Numbers the function reads from elsewhere (a
global list) are written into the tape as constants: pass them as arguments.
Where the compiled core does not run (CHAINGRAD_PURE=1), compile returns the
function's calls as they are: the reference engine stays the oracle.
"""

from __future__ import annotations

import functools
import numbers
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from . import _backend
from ._backend import Value

__all__ = ["compile"]

_NUMBER, _VALUE = "number", "Value"  # a key's marks for an argument that is a tape's input


class TapeOp(str):
    """The op of a compiled function's nodes: its name ("compiled f"), and its step of backward."""

    __slots__ = ()

    def chain(self, node: Any) -> None:
        """backward's step for one call's node: the tape's walk from node.grad to its inputs."""
        _backend.run_step(node)


class Compiled:
    """A function compiled by cg.compile: called as the function is, its graph replayed from a tape.

    One tape is kept per argument structure (how many Values and numbers, in which lists of which
    lengths; other arguments by value), the `max_tapes` most recently used of them.
    """

    def __init__(self, fn: Callable[..., Any], max_tapes: int = 32):
        if not callable(fn):
            raise TypeError(f"cg.compile takes a function, not {type(fn).__name__}")
        if isinstance(max_tapes, bool) or not isinstance(max_tapes, int) or max_tapes < 1:
            raise ValueError(f"max_tapes must be an int >= 1, got {max_tapes!r}")
        functools.update_wrapper(self, fn)
        self.max_tapes = max_tapes
        self.tapes: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.op = TapeOp(f"compiled {getattr(fn, '__qualname__', type(fn).__name__)}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fn = self.__wrapped__
        if _backend.run is None or _backend.tracing():  # no core; or inside another trace: its ops
            return fn(*args, **kwargs)
        values: list[Any] = []
        numbers_: list[Any] = []
        key = _structure((args, kwargs), values, numbers_)
        tape = self.tapes.get(key)
        if tape is None:
            tape = self._trace(args, kwargs, tuple(values))
            if tape is None:  # a mode is on, or a batch: as it is
                return fn(*args, **kwargs)
            self.tapes[key] = tape
            if len(self.tapes) > self.max_tapes:
                self.tapes.popitem(last=False)
        else:
            self.tapes.move_to_end(key)
        made = _backend.run(tape, self.op, tuple(values), tuple(numbers_))
        return fn(*args, **kwargs) if made is NotImplemented else made

    def _trace(self, args: Any, kwargs: Any, values: tuple[Any, ...]) -> Any:
        """Run the function on stand-ins for its numbers, and write the graph it built down as a tape."""
        if any(type(v.data) is not float for v in values) or _backend.modes_on():
            return None
        leaves: list[Any] = []
        _backend.trace(True, values)
        try:
            stand_in_args, stand_in_kwargs = _stand_ins((args, kwargs), leaves)
            out = self.__wrapped__(*stand_in_args, **stand_in_kwargs)
            if not isinstance(out, Value):
                raise TypeError(
                    f"cg.compile: {self.__name__} returned {type(out).__name__}; a compiled function "
                    "returns one Value (a scalar, such as a loss): sum or average a list first"
                )
            return _backend.tape(out, values, tuple(leaves))
        finally:
            _backend.trace(False, values)

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        """As a method: bound to its instance, which becomes part of each call's structure."""
        return self if obj is None else functools.partial(self, obj)

    def __repr__(self) -> str:
        return f"<cg.compile of {self.__wrapped__!r}: {len(self.tapes)} tape(s)>"


def compile(fn: Callable[..., Any] | None = None, *, max_tapes: int = 32) -> Any:  # noqa: A001 - as torch.compile
    """Compile fn: trace it once per argument structure into a tape, replay the tape in C after that.

    fn takes Values, numbers and lists or tuples of them (other arguments count as part of its
    structure, by value) and returns one Value. Usable as `@cg.compile` or `@cg.compile(max_tapes=8)`.
    """
    if fn is None:
        return lambda f: Compiled(f, max_tapes)
    return Compiled(fn, max_tapes)


def _structure(x: Any, values: list[Any], numbers_: list[Any]) -> tuple[Any, ...]:
    """The key of an argument structure; the Values and numbers in it appended to values and numbers_."""
    key: list[Any] = []
    stack = [x]
    while stack:
        a = stack.pop()
        t = type(a)
        if t is float or t is int:
            numbers_.append(a)
            key.append(_NUMBER)
        elif isinstance(a, Value):
            values.append(a)
            key.append(_VALUE)
        elif t is list or t is tuple:
            key.append((t, len(a)))
            stack.extend(reversed(a))
        elif t is dict:
            key.append((dict, tuple(a)))
            stack.extend(reversed(a.values()))
        elif isinstance(a, numbers.Real) and not isinstance(a, bool):
            numbers_.append(float(a))
            key.append(_NUMBER)
        else:
            try:
                hash(a)
            except TypeError:
                raise TypeError(
                    f"cg.compile: an argument of type {t.__name__} is neither a Value, a number nor a list "
                    "or tuple of them, and cannot be part of a call's structure (it is not hashable); "
                    "pass its numbers as a list (e.g. array.tolist())"
                ) from None
            key.append((t, a))
    return tuple(key)


def _stand_ins(x: Any, leaves: list[Any]) -> Any:
    """x with each number replaced by a leaf Value standing for it (appended to leaves, in the order
    _structure finds the numbers), for the trace."""
    t = type(x)
    if t is float or t is int or (isinstance(x, numbers.Real) and not isinstance(x, (bool, Value))):
        leaf = Value(float(x))
        leaves.append(leaf)
        return leaf
    if t is list or t is tuple:
        return t(_stand_ins(a, leaves) for a in x)
    if t is dict:
        return {k: _stand_ins(a, leaves) for k, a in x.items()}
    return x
