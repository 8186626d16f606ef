"""The modes as decorators of generators and async functions, and what the engine's fast path assumes."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

import chaingrad as cg
from chaingrad import Value, modes


@cg.no_grad()
def _samples(x, n):
    for _ in range(n):
        got = yield x * 2.0
        if got is not None:
            yield got * x


def test_no_grad_decorates_a_generator_for_every_step_and_not_the_caller():
    x = Value(1.5)
    gen = _samples(x, 2)
    first = next(gen)
    assert first._prev == () and first.data == 3.0
    assert cg.is_grad_enabled(), "between the steps the caller records as usual"
    assert (x * 1.0)._prev == (x,)
    sent = gen.send(Value(2.0))
    assert sent._prev == () and sent.data == 3.0
    assert [v._prev for v in gen] == [()]


def test_an_exception_thrown_into_the_generator_is_handled_in_the_mode():
    @cg.no_grad()
    def gen(x):
        try:
            yield x * 1.0
        except KeyError:
            yield x * 3.0

    x = Value(2.0)
    g = gen(x)
    next(g)
    out = g.throw(KeyError())
    assert out._prev == () and out.data == 6.0


def test_no_grad_decorates_an_async_function_in_its_own_task():
    x = Value(2.0)

    @cg.no_grad()
    async def quiet():
        await asyncio.sleep(0)
        return x * 3.0

    async def busy():
        await asyncio.sleep(0)
        return x * 3.0

    async def main():
        return await asyncio.gather(quiet(), busy(), quiet())

    a, b, c = asyncio.run(main())
    assert a._prev == () and c._prev == ()
    assert b._prev == (x,), "another task keeps recording"


def test_an_async_generator_is_refused_with_advice():
    async def agen():
        yield 1

    with pytest.raises(TypeError, match=r"async generator.*with no_grad"):
        cg.no_grad()(agen)


def test_decorating_something_not_callable_is_refused():
    with pytest.raises(TypeError, match="decorates a function"):
        cg.no_grad()(3)
    with pytest.raises(TypeError, match="decorates a function"):
        cg.no_grad(3)


def test_each_mode_decorates_without_parentheses_as_torchs_do():
    @cg.no_grad
    def quiet(x):
        return x * 2.0

    @cg.enable_grad
    def loud(x):
        return x * 2.0

    @cg.detect_anomaly
    def checked(x):
        return x.log()

    @cg.no_grad
    def steps(x):
        yield x * 2.0

    x = Value(1.5)
    assert quiet(x)._prev == () and quiet.__name__ == "quiet"
    with cg.no_grad():
        assert loud(x)._prev == (x,)
    with pytest.raises(cg.AnomalyError):
        checked(Value(-1.0))
    assert next(steps(x))._prev == ()
    assert (x * 2.0)._prev == (x,), "outside them, ops record as usual"


def test_until_a_mode_is_first_on_no_op_looks_and_then_every_op_does():
    # The engine's fast path reads the modes only once one was ever turned on in the process.
    code = (
        "import chaingrad as cg\n"
        "from chaingrad import modes\n"
        "x = cg.Value(1.0)\n"
        "assert not modes.ever_on and (x * 2)._prev == (x,)\n"
        "with cg.no_grad():\n"
        "    assert (x * 2)._prev == ()\n"
        "assert modes.ever_on and (x * 2)._prev == (x,)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_a_new_thread_sees_a_mode_another_thread_turned_on_as_off():
    import threading

    x, seen = Value(1.0), []
    with cg.no_grad():
        t = threading.Thread(target=lambda: seen.append((x * 2)._prev))
        t.start()
        t.join()
    assert seen == [(x,)] and modes.ever_on
