"""Threads, tasks and fork: unrelated work never waits on another thread's, modes stay per thread, and
two trainings side by side give what they give one after the other."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import pytest

import chaingrad as cg
from chaingrad import Value, data, losses, nn, optim


def _run_in_a_fork(child) -> int:
    """Fork; the child runs child() and exits 0 if it returns True within 20 s. The child's exit status."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os._exit(0 if child() else 1)
        except BaseException:
            os._exit(2)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return -9


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_fork_while_another_thread_is_inside_backward_can_backpropagate():
    inside, finish = threading.Event(), threading.Event()
    x = Value(1.0)
    y = Value(x.data * 2, (x,), "wait")

    def _backward():  # a step that waits, so the walk is under way when the fork happens
        inside.set()
        finish.wait(10)
        x.grad += 2.0 * y.grad

    y._backward = _backward
    walker = threading.Thread(target=y.backward)
    walker.start()
    assert inside.wait(10)
    try:

        def child():
            a = Value(3.0)
            (a * a).backward()
            return a.grad == 6.0

        assert _run_in_a_fork(child) == 0, "the child's first backward never returned (the lock was held)"
    finally:
        finish.set()
        walker.join(10)
    assert x.grad == 2.0


def test_one_no_grad_shared_by_threads_whose_uses_overlap_restores_each_threads_mode():
    shared = cg.no_grad()
    entered, leave_first = threading.Barrier(2), threading.Event()
    modes, errors = {}, []

    def use(name, wait_before_leaving):
        try:
            with shared:
                entered.wait(5)
                if wait_before_leaving:
                    leave_first.wait(5)
                modes[name, "inside"] = cg.is_grad_enabled()
            if not wait_before_leaving:
                leave_first.set()  # this thread leaves first, while the other is still inside
            modes[name, "after"] = cg.is_grad_enabled()
            a = Value(2.0)
            (a * 3.0).backward()
            modes[name, "grad"] = a.grad
        except Exception as e:  # pragma: no cover - what the test reports
            errors.append(e)

    threads = [threading.Thread(target=use, args=(n, n == "second")) for n in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    for name in ("first", "second"):
        assert modes[name, "inside"] is False and modes[name, "after"] is True and modes[name, "grad"] == 3.0


@pytest.mark.parametrize("manager", [cg.no_grad, cg.enable_grad, cg.detect_anomaly])
def test_one_mode_shared_by_async_tasks_restores_what_each_task_found(manager):
    shared = manager()

    def now():
        return cg.is_grad_enabled(), cg.modes.is_anomaly_enabled()

    async def first(inside, other_inside, left):
        before = now()
        with shared:  # enters first, and leaves first, while the second task is still inside
            inside.set()
            await other_inside.wait()
        left.set()
        return before, now()

    async def second(inside, first_inside, first_left):
        await first_inside.wait()
        before = now()
        with shared:
            inside.set()
            await first_left.wait()
        return before, now()

    async def main():
        a_in, b_in, a_left = asyncio.Event(), asyncio.Event(), asyncio.Event()
        with cg.no_grad() if manager is cg.enable_grad else _nothing():  # enable_grad restores no_grad
            return await asyncio.gather(first(a_in, b_in, a_left), second(b_in, a_in, a_left))

    for before, after in asyncio.run(main()):
        assert before == after


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def test_a_mode_ended_in_another_thread_than_it_began_in_is_a_clear_error():
    shared = cg.no_grad()
    shared.__enter__()
    error = []
    worker = threading.Thread(target=lambda: error.append(_exit_error(shared)))
    worker.start()
    worker.join(10)
    shared.__exit__(None, None, None)
    assert cg.is_grad_enabled()
    assert error and "not entered in" in error[0]


def _exit_error(mode):
    try:
        mode.__exit__(None, None, None)
    except RuntimeError as e:
        return str(e)
    return ""


def test_a_rule_that_waits_for_another_threads_unrelated_backward_goes_on():
    # PyTorch's autograd.Function doing the same returns; a lock over every backward deadlocked here.
    def rule(g, x, out):
        done = {}

        def other():
            a = Value(3.0)
            (a * a + a).backward()
            done["grad"] = a.grad

        helper = threading.Thread(target=other, daemon=True)
        helper.start()
        helper.join(10)
        assert not helper.is_alive(), "the other thread's backward waited for this one"
        return (2.0 * x * g * (done["grad"] / 7.0),)

    square = cg.Op("test_square_waiting", lambda x: x * x, rule=rule)
    x = Value(1.5)
    (square(x) * 2.0).backward()
    assert x.grad == 6.0


def test_two_threads_backpropagating_one_graph_get_what_one_after_the_other_would():
    # A walk waits for another thread's walk of the same graph (here, one whose rule sleeps, so that
    # they would overlap): each adds the whole gradient to the leaves, once.
    def slow_rule(g, x, out):
        time.sleep(0.05)
        return (3.0 * g,)

    triple = cg.Op("test_triple_slowly", lambda x: 3.0 * x, rule=slow_rule)
    x, w = Value(0.5), Value(2.0)
    loss = (triple(x * w) * w).tanh()
    loss.backward()
    once = (x.grad, w.grad)
    x.grad = w.grad = 0.0
    start = threading.Barrier(2)

    def walk():
        start.wait(5)
        loss.backward()

    threads = [threading.Thread(target=walk) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert (x.grad, w.grad) == (once[0] + once[0], once[1] + once[1])


# ---------------------------------------------------------------------------
# Two trainings side by side give what they give one after the other
# ---------------------------------------------------------------------------


def _params(model):
    return [p.data for p in model.parameters()]


def _batched_run(steps, inside_no_grad=lambda: None):
    """Moons on the batch axis with SGD + momentum; between steps, a per-sample evaluation inside
    no_grad, during which `inside_no_grad()` runs (the other thread's step, in the threaded run)."""
    X, y = data.make_moons(100, 0.1, seed=3)
    y = 2.0 * y - 1
    model = nn.MLP(2, [16, 16, 1], seed=3)
    params = model.parameters()
    opt = optim.SGD(params, lr=0.05, momentum=0.9)
    inputs = data.columns(X)
    history = []
    for _ in range(steps):
        loss = losses.hinge(model(inputs), y) + 1e-4 * losses.l2(params)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with cg.no_grad():
            inside_no_grad()
            scores = [model(x) for x in X[:10].tolist()]
        history.append((loss.data, [s.data for s in scores], all(s._prev == () for s in scores)))
    return history, _params(model)


def _per_sample_run(steps, after_step=lambda: None):
    """Moons one sample at a time with Adam, each step inside enable_grad."""
    X, y = data.make_moons(20, 0.1, seed=4)
    model = nn.MLP(2, [8, 1], seed=4)
    opt = optim.Adam(model.parameters(), lr=0.02)
    history = []
    for _ in range(steps):
        with cg.enable_grad():
            loss = losses.hinge([model(x) for x in X.tolist()], (2.0 * y - 1).tolist())
            opt.zero_grad()
            loss.backward()
            opt.step()
        history.append(loss.data)
        after_step()
    return history, _params(model)


def test_two_threads_train_as_if_one_after_the_other():
    steps_a, steps_b = 60, 40
    alone = (_batched_run(steps_a), _per_sample_run(steps_b))

    done_b = threading.Condition()
    count = {"b": 0, "finished": False}

    def wait_for_a_step_of_b():  # called inside thread A's no_grad
        with done_b:
            seen = count["b"]
            done_b.wait_for(lambda: count["b"] > seen or count["finished"], timeout=30)

    def b_stepped():
        with done_b:
            count["b"] += 1
            done_b.notify_all()

    results, errors = {}, []

    def run(name, f):
        try:
            results[name] = f()
        except BaseException as e:  # reported below
            errors.append(e)
        finally:
            with done_b:
                count["finished"] |= name == "b"
                done_b.notify_all()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, in the middle of ops
    try:
        threads = [
            threading.Thread(target=run, args=("a", lambda: _batched_run(steps_a, wait_for_a_step_of_b))),
            threading.Thread(target=run, args=("b", lambda: _per_sample_run(steps_b, b_stepped))),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    assert (results["a"], results["b"]) == alone
    assert all(no_graph for _, _, no_graph in results["a"][0])
    assert results["b"][0][-1] < results["b"][0][0]  # it trained
