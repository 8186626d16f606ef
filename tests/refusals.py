"""Helpers for tests of bad input: a picture of what a failed call must leave as it was, and
assert_refused, which checks the error, its words, and that nothing changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import no_value_left

from chaingrad import Value, nn, optim


def _plain(x):
    return repr(np.asarray(x).tolist())  # nan == nan, batches and numbers alike


def state(*things):
    """A comparable picture of Values (data, grad, graph), modules, optimizers, files and folders."""
    out = []
    for t in things:
        if isinstance(t, Value):
            out.append((_plain(t.data), _plain(t.grad), str(t._op), tuple(map(id, t._prev))))
        elif isinstance(t, nn.Module):
            out.append((repr(t.state_dict()), [p.grad for p in t.parameters()]))
        elif isinstance(t, optim.Optimizer):
            out.append(repr(t.state_dict()))
        elif isinstance(t, Path) and t.is_dir():
            out.append(sorted((p.name, p.read_bytes()) for p in t.iterdir()))
        elif isinstance(t, Path):
            out.append(t.read_bytes())
        else:
            raise TypeError(f"no state for {t!r}")
    return out


def assert_refused(call, watched, error, words):
    """call() raises `error` whose message has every one of `words`, changes nothing in `watched`
    and leaves no new Value behind (a half-built node), even while the traceback is kept."""
    before = state(*watched)
    with no_value_left(call, *watched), pytest.raises(BaseException) as info:
        call()
    assert issubclass(info.type, error), f"{info.type.__name__}: {info.value} (expected {error.__name__})"
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert state(*watched) == before
