"""cg.compile: trace a function of Values once into a tape, then replay the tape in C.

    @cg.compile
    def loss(x, y):                  # Values and numbers in, one Value out
        return (model(x) - y) ** 2      # model = cg.nn.MLP(2, [16, 1]): its output, a Value

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
from collections.abc import Callable
from typing import Any

from . import _backend
from ._backend import Value

__all__ = ["compile"]


class TapeOp(str):
    """The op of a compiled function's nodes: its name ("compiled f"), and its step of backward."""

    __slots__ = ()

    def chain(self, node: Any) -> None:
        """backward's step for one call's node: the tape's walk from node.grad to its inputs."""
        _backend.run_step(node)


class _Calls:
    """Where no compiled core runs: a call is the function's."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)  # type: ignore[attr-defined]


class Compiled(_backend.Compiled or _Calls):  # type: ignore[misc]
    """A function compiled by cg.compile: called as the function is, its graph replayed from a tape.

    One tape is kept per argument structure (how many Values and numbers, in which lists of which
    lengths; other arguments by value), the `max_tapes` most recently traced of them. A call goes to
    the compiled core, which replays the tape of its structure; what it cannot do, `_first_call` does.
    """

    def __init__(self, fn: Callable[..., Any], max_tapes: int = 32):
        if not callable(fn):
            raise TypeError(f"cg.compile takes a function, not {type(fn).__name__}")
        if isinstance(max_tapes, bool) or not isinstance(max_tapes, int) or max_tapes < 1:
            raise ValueError(f"max_tapes must be an int >= 1, got {max_tapes!r}")
        functools.update_wrapper(self, fn)
        self.max_tapes = max_tapes
        self.tapes: dict[tuple[Any, ...], Any] = {}
        self.op = TapeOp(f"compiled {getattr(fn, '__qualname__', type(fn).__name__)}")
        self._other = _other

    def _first_call(self, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> Any:
        """A call the core left to Python: trace it if its structure has no tape yet; run the function
        as it is inside another trace, with a mode on, or on a batch."""
        fn = self.__wrapped__
        kwargs = kwargs or {}
        if _backend.tracing() or _backend.modes_on():
            return fn(*args, **kwargs)
        key, values, _ = _backend.structure(_other, args, kwargs)
        if key in self.tapes or any(type(v.data) not in (float, int) for v in values):
            return fn(*args, **kwargs)  # it has a tape, so replay() found a batch among the inputs
        self.tapes[key] = self._trace(args, kwargs)
        while len(self.tapes) > self.max_tapes:
            del self.tapes[next(iter(self.tapes))]  # the oldest
        made = _backend.replay(self.tapes, self.op, _other, args, kwargs)
        return fn(*args, **kwargs) if made is NotImplemented else made

    def _trace(self, args: Any, kwargs: Any) -> Any:
        """Run the function on stand-ins for its arguments, and write the graph it built down as a tape.

        Each number and each Value argument gets a leaf of its own standing for it, so that the tape
        reads every argument from its place in the call: the same Value given in two places now (a
        name's repeated letter) may be two different ones next time.
        """
        numbers_: list[Any] = []
        values: list[Any] = []
        stand_in_args, stand_in_kwargs = _stand_ins((args, kwargs), numbers_, values)
        marked = (*numbers_, *values)
        _backend.trace(True, marked)
        try:
            out = self.__wrapped__(*stand_in_args, **stand_in_kwargs)
            if not isinstance(out, Value):
                raise TypeError(
                    f"cg.compile: {self.__name__} returned {type(out).__name__}; a compiled function "
                    "returns one Value (a scalar, such as a loss): sum or average a list first"
                )
            return _backend.tape(out, tuple(values), tuple(numbers_))
        finally:
            _backend.trace(False, marked)

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


def _other(x: Any) -> Any:
    """What an argument that is no Value, float, int, list or tuple is to a call's structure: a number
    (a NumPy scalar: its float), or else part of the key, by value (a str, None, a model)."""
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return float(x)
    try:
        hash(x)
    except TypeError:
        raise TypeError(
            f"cg.compile: an argument of type {type(x).__name__} is neither a Value, a number nor a list "
            "or tuple of them, and cannot be part of a call's structure (it is not hashable); pass its "
            "numbers as a list (e.g. array.tolist())"
        ) from None
    return (type(x), x)


def _stand_ins(x: Any, numbers_: list[Any], values: list[Any]) -> Any:
    """x with each number and each Value replaced by a leaf standing for it (appended to numbers_ or
    values, in the order the core's structure() finds them: depth first, left to right, kwargs after
    args), for the trace."""
    t = type(x)
    if isinstance(x, Value):
        leaf = Value(x.data)
        values.append(leaf)
        return leaf
    if (t is float or t is int) or (isinstance(x, (float, int)) and t is not bool):
        leaf = Value(float(x))
        numbers_.append(leaf)
        return leaf
    if isinstance(x, list) or t is tuple:
        items = [_stand_ins(a, numbers_, values) for a in x]
        return t(items) if t in (list, tuple) else items
    if t is dict:
        return {k: _stand_ins(a, numbers_, values) for k, a in x.items()}
    if isinstance(x, numbers.Real) and t is not bool:  # what _other makes a number
        return _stand_ins(float(x), numbers_, values)
    return x
