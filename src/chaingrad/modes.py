"""Modes: `no_grad`, `enable_grad` and `detect_anomaly`, each per thread and per async task.

The modes live in one ContextVar holding a set of flags, so a thread (or an
asyncio task) that turns one on never changes what another one records. Each
mode is a context manager and a decorator; as a decorator it also covers
generators (every resumption runs in the mode) and `async def` functions.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "AnomalyError",
    "detect_anomaly",
    "enable_grad",
    "is_anomaly_enabled",
    "is_grad_enabled",
    "no_grad",
]

NO_GRAD = 1  # ops build no graph: their results are leaves
ANOMALY = 2  # the first nan or inf made in forward or backward is an AnomalyError

_mode = contextvars.ContextVar("chaingrad_mode", default=0)
mode = _mode.get  # the flags in force here; the engine reads it once per op
# What each use of a mode still open here (in this thread or task) found, innermost last: so one
# no_grad() shared by threads or tasks restores, at each use's end, what that use found.
_found: contextvars.ContextVar[tuple[int, ...]] = contextvars.ContextVar("chaingrad_modes_found", default=())
# False until a mode is first turned on, anywhere: until then no context can hold one, and an op
# need not look (reading the ContextVar costs an op about a tenth of its time).
ever_on = False
when_first_on: list[Callable[[], None]] = []  # called once, as ever_on turns True (the compiled core)

F = TypeVar("F", bound=Callable[..., Any])


class AnomalyError(FloatingPointError):
    """A nan or inf appeared while `detect_anomaly()` was on."""


class _Mode:
    """A context manager and decorator that sets (or, with _on False, clears) one mode flag."""

    _flag = 0
    _on = True

    def __new__(cls, fn: Callable[..., Any] | None = None) -> Any:
        self = super().__new__(cls)
        return self if fn is None else self(fn)  # a bare `@no_grad` decorates fn, as torch's does

    def __init__(self, fn: Callable[..., Any] | None = None) -> None:
        pass  # an instance holds nothing of its uses: threads and tasks may share one

    def __enter__(self) -> _Mode:
        global ever_on
        if not ever_on:
            ever_on = True
            for tell in when_first_on:
                tell()
        flags = mode()
        _found.set((*_found.get(), flags))
        _mode.set(flags | self._flag if self._on else flags & ~self._flag)
        return self

    def __exit__(self, *exc: object) -> None:
        found = _found.get()
        if not found:
            raise RuntimeError(f"{type(self).__name__}() ended in a thread or task it was not entered in")
        _found.set(found[:-1])
        _mode.set(found[-1])

    def __call__(self, fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"{type(self).__name__}() decorates a function, not {type(fn).__name__}")
        switch = type(self)
        if inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"{switch.__name__}() cannot decorate the async generator {fn.__qualname__}; "
                f"use `with {switch.__name__}():` inside it"
            )
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with switch():  # the task's own context: other tasks are not affected
                    return await fn(*args, **kwargs)

            return run_async  # type: ignore[return-value]
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def run_generator(*args: Any, **kwargs: Any) -> Any:
                return (yield from _resumed_in(switch, fn(*args, **kwargs)))

            return run_generator  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with switch():
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]


def _resumed_in(switch: type[_Mode], gen: Any) -> Any:
    """Drive gen, running each of its steps (not the caller's code between them) inside switch()."""
    resume, arg = gen.send, None
    while True:
        try:
            with switch():
                item = resume(arg)
        except StopIteration as done:
            return done.value
        try:
            arg, resume = (yield item), gen.send
        except GeneratorExit:
            with switch():
                gen.close()
            raise
        except BaseException as e:  # thrown in by the caller: hand it to gen, in the mode
            arg, resume = e, gen.throw


class no_grad(_Mode):
    """Build no graph inside: results are leaves. A context manager or a decorator."""

    _flag = NO_GRAD


class enable_grad(_Mode):
    """Build the graph again inside a `no_grad` block."""

    _flag = NO_GRAD
    _on = False


class detect_anomaly(_Mode):
    """Raise AnomalyError at the first nan or inf made in forward or backward, naming the op."""

    _flag = ANOMALY


def checked(step: Callable[[Any], None]) -> Callable[[Any], None]:
    """backward()'s step under detect_anomaly(): step(node), then the first non-finite gradient it gave
    to an input is an AnomalyError naming the op, its inputs and its gradient."""

    def checked_step(node: Any) -> None:
        step(node)
        for i, child in enumerate(node._prev):
            if child.grad is not None and not _finite(child.grad):
                op = repr(str(node._op)) + (f" (label {node.label!r})" if node.label else "")
                raise AnomalyError(
                    f"backward of op {op} gave the non-finite gradient {child.grad!r} to input {i} "
                    f"({_describe([child])}); the op's inputs: {_describe(node._prev)}; "
                    f"its gradient: {node.grad!r}"
                )

    return checked_step


def check_forward(op: str, out: Any, args: list[Any]) -> None:
    """Under detect_anomaly(): an AnomalyError if op made a non-finite value out of args."""
    if not _finite(out):
        raise AnomalyError(f"op {str(op)!r} produced {out!r} from inputs ({_describe(args)})")


def _finite(x: Any) -> bool:
    return x - x == 0 if type(x) is float else bool((x - x == 0).all())


def _describe(args: list[Any]) -> str:
    """Values as label=data (a Value is whatever has data), constants as they are."""
    return ", ".join(f"{a.label or 'Value'}={a.data!r}" if hasattr(a, "data") else repr(a) for a in args)


def is_grad_enabled() -> bool:
    """Whether ops record the graph in this thread (or task) right now."""
    return not mode() & NO_GRAD


def is_anomaly_enabled() -> bool:
    """Whether `detect_anomaly()` is on in this thread (or task) right now."""
    return bool(mode() & ANOMALY)
