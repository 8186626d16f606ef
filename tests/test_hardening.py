"""Hardening: bad input to ops is a clear error that changes nothing; training does not leak memory;
threads do not disturb each other; copied graphs stay connected.

The library's cases moved beside their modules: state dicts and model files to test_nn and
test_serialization, faults and kills while saving to test_files, optimizer arguments and copies to
test_optim, model copies to test_nn (the helpers `state` and `assert_refused` are in refusals.py).
"""

from __future__ import annotations

import copy
import gc
import math
import pickle
import random
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest
from conftest import values_alive
from refusals import assert_refused

import chaingrad as cg
from chaingrad import Value, cli, data, losses, nn, optim

# ---------------------------------------------------------------------------
# Bad input to ops
# ---------------------------------------------------------------------------

NOT_NUMBERS = {"str": "a", "NoneType": None, "list": [1.0], "complex": 1j, "dict": {}}
OPERATORS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "**": lambda a, b: a**b,
}


@pytest.mark.parametrize("kind", NOT_NUMBERS)
@pytest.mark.parametrize("symbol", OPERATORS)
@pytest.mark.parametrize("batched", [False, True], ids=["number", "batch"])
def test_arithmetic_with_a_non_number_names_its_type(kind, symbol, batched):
    # test_ops checks the TypeError; here the message names the operand's type, on either side.
    x = Value(np.array([1.0, 2.0]) if batched else 2.0)
    f, other = OPERATORS[symbol], NOT_NUMBERS[kind]
    # x * "a" and [1.0] * x end in Python's sequence repetition once Value declines: its message
    # names the sequence, not the type.
    word = "sequence" if symbol == "*" and kind in ("str", "list") else kind
    assert_refused(lambda: f(x, other), [x], TypeError, [word])
    assert_refused(lambda: f(other, x), [x], TypeError, [word])


@pytest.mark.parametrize("kind", NOT_NUMBERS)
@pytest.mark.parametrize("name", ["exp", "log", "tanh", "sigmoid", "relu", "sqrt"])
def test_elementwise_functions_refuse_non_numbers(name, kind):
    # cg.exp and friends take a number, a batch or a Value, like Value() and the ops; anything else
    # (a string, a list, a complex number) is a TypeError naming its type, not a NumPy result.
    assert_refused(lambda: getattr(cg, name)(NOT_NUMBERS[kind]), [], TypeError, [kind])


def _three():
    return Value(np.ones(3), label="three")


def _five():
    return Value(np.ones(5), label="five")


# Every way of combining batches of 3 and 5 samples: ValueError naming both sizes, no node.
MISMATCHED = {
    "a - b": lambda a, b: a - b,
    "a * b": lambda a, b: a * b,
    "a / b": lambda a, b: a / b,
    "a ** b": lambda a, b: a**b,
    "a + array": lambda a, b: a + np.ones(5),
    "array * a": lambda a, b: np.ones(5) * a,
    "sum": lambda a, b: cg.sum([a, b]),
    "sum start": lambda a, b: cg.sum([a], start=b),
    "mean": lambda a, b: cg.mean([a, b]),
    "logsumexp": lambda a, b: cg.logsumexp([a, b]),
    "log_softmax": lambda a, b: cg.log_softmax([a, b]),
    "cross_entropy": lambda a, b: cg.cross_entropy([a, b], 0),
    "dot of Values": lambda a, b: cg.dot([a], [b]),
    "dot start": lambda a, b: cg.dot([a], [a], start=b),
    "affine": lambda a, b: cg.affine([[1.0, 2.0]], [a, b]),
    "custom op": lambda a, b: cg.Op("test_hardening_add", lambda x, y: x + y, lambda x, y, out: (1.0, 1.0))(
        a, b
    ),
}


@pytest.mark.parametrize("combine", MISMATCHED)
def test_batches_of_different_sizes_are_refused_by_every_op(combine):
    # test_batch checks +, dot with a constant and softmax.
    a, b = _three(), _five()
    assert_refused(lambda: MISMATCHED[combine](a, b), [a, b], ValueError, ["[3, 5]"])


@pytest.mark.parametrize(
    "targets, error, words",
    [
        (np.array([0, 2, 1]), IndexError, ["target 2", "2 classes"]),
        (np.array([0, -1, 1]), IndexError, ["target -1", "2 classes"]),
        (np.array([0.0, 1.0, 0.0]), TypeError, ["integer", "float64"]),
        (np.array([True, False, True]), TypeError, ["integer", "bool"]),
        (np.zeros((3, 1), dtype=int), TypeError, ["1-D", "(3, 1)"]),
        (np.array([0, 1]), ValueError, ["2 targets", "3 samples"]),
        ([0, 1, 0], TypeError, ["int", "list"]),
    ],
    ids=["too big", "negative", "floats", "bools", "2-D", "too few", "a list"],
)
def test_cross_entropy_refuses_bad_targets_for_a_batch(targets, error, words):
    # test_ops checks a single target; these are one target per sample.
    logits = [Value(np.array([0.1, 0.2, 0.3])), Value(np.array([0.3, -0.1, 0.0]))]
    assert_refused(lambda: cg.cross_entropy(logits, targets), logits, error, words)


BATCH = Value(np.ones(2), label="batch")


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda x: cg.sum([x], start="0"), TypeError, ["sum() start", "str"]),
        (lambda x: cg.batch_mean("a"), TypeError, ["batch_mean()", "str"]),
        (lambda x: cg.batch_sum(None), TypeError, ["batch_sum()", "NoneType"]),
        (lambda x: cg.affine([[x, "w"]], [x, x]), TypeError, ["affine", "str"]),
        (lambda x: cg.affine([[x]], ["in"]), TypeError, ["affine", "str"]),
        (lambda x: cg.affine([[x]], [x], ["b"]), TypeError, ["affine", "str"]),
        (
            lambda x: cg.affine([[x]], [BATCH], [BATCH]),
            ValueError,
            ["single numbers"],
        ),
        (lambda x: cg.affine([], [x]), ValueError, ["at least one row"]),
    ],
    ids=[
        "sum start",
        "batch_mean",
        "batch_sum",
        "affine weight",
        "affine input",
        "affine bias",
        "batch bias",
        "no rows",
    ],
)
def test_fused_ops_refuse_bad_arguments(call, error, words):
    x = Value(0.5)
    assert_refused(lambda: call(x), [x, BATCH], error, words)


# ---------------------------------------------------------------------------
# `chaingrad graph`: more bad expressions and options, each exit code 2 and no file
# ---------------------------------------------------------------------------

BAD_EXPRESSIONS = [
    "",
    "   ",
    "x y",
    "1 2",
    "x\n+ 1",
    "# x",
    "*x",
    "x,",
    "x @ x",
    "x << 1",
    "x >> 1",
    "x ^ 1",
    "x | 1",
    "x & 1",
    "...",
    "(yield x)",
    "await x",
    "lambda: 0",
    "x.exp",
    "x.real",
    "x.exp(1)",
    "math.exp(x)",
    "exp.x()",
    "exp(x)(x)",
    "x.__abs__()",
    "abs",
    "x if x",
    "x ** ",
]


@pytest.mark.parametrize("expression", BAD_EXPRESSIONS)
def test_more_bad_expressions_exit_2(expression, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(["graph", expression, "--var", "x=1"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "chaingrad graph: error: EXPR: " in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, words",
    [
        (["x", "--var"], "--var: expected one argument"),
        (["x", "--var", "x=1", "--rankdir"], "--rankdir: expected one argument"),
        (["x", "--var", "x=1", "--rankdir", "lr"], "invalid choice: 'lr'"),
        (["x", "--var", "x=1", "-o", "graph"], "'graph' must end in one of .svg, .png"),
        (["x", "--var", "x=1", "-o", ".svg"], "'.svg' must end in one of"),
        (["x", "--var", "x=1", "-o", ""], "'' must end in one of"),
        (["x", "--var", "x=1", "--output=g.pdf"], "'g.pdf' must end in one of"),
        (["x", "--var", "=1"], "'' is not a valid variable name"),
        (["x", "--var", "None=1"], "'None' is not a valid variable name"),
        (["x", "--var", "x=1=2"], "not a number: '1=2'"),
        (["x", "--var", "x=0x10"], "not a number: '0x10'"),
        (["x", "--var", "x=1", "--var=y"], "'y' is not NAME=NUMBER"),
        (["x", "--var", "x=1", "extra"], "unrecognized arguments: extra"),
        (["x", "-v", "x=1"], "unrecognized arguments: -v"),
        (["-x", "--var", "x=1"], "required: EXPR"),
    ],
)
def test_more_bad_options_exit_2(argv, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(["graph", *argv])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "error: " in err and words in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_bad_option_exits_2_from_the_shell(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "chaingrad", "graph", "x +", "--var", "x=1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "EXPR: not a valid expression" in done.stderr
    assert list(tmp_path.iterdir()) == []


def _params(model):
    return [p.data for p in model.parameters()]


# ---------------------------------------------------------------------------
# Memory: training does not grow it; graphs have no reference cycles
# ---------------------------------------------------------------------------


def _moons_trainer(seed=1, batch=True, n=100):
    """One training step of micrograd's moons demo: MLP(2, [16, 16, 1]), hinge + 1e-4 * L2, SGD."""
    X, y = data.make_moons(n, 0.1, seed=seed)
    y = 2.0 * y - 1
    model = nn.MLP(2, [16, 16, 1], seed=seed)
    params = model.parameters()
    opt = optim.SGD(params, lr=0.05)
    inputs = data.columns(X) if batch else X.tolist()
    targets = y if batch else y.tolist()

    def step():
        scores = model(inputs) if batch else [model(x) for x in inputs]
        loss = losses.hinge(scores, targets) + 1e-4 * losses.l2(params)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.data

    return step


def test_ten_thousand_training_steps_do_not_grow_memory():
    step = _moons_trainer()
    for _ in range(500):  # warm-up: caches, free lists, NumPy's first calls
        step()
    gc.collect()
    values, blocks = values_alive(), sys.getallocatedblocks()
    # tracemalloc slows every allocation sixfold, so it watches steps 500-3,000 byte by byte
    # (after 500 of them to fill caches); object and block counts watch all 10,000.
    tracemalloc.start()
    try:
        for _ in range(500):
            step()
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0]
        for _ in range(2000):
            step()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - traced
    finally:
        tracemalloc.stop()
    for _ in range(7000):
        loss = step()
    gc.collect()
    assert grown < 4096, f"{grown} bytes more after 2,000 steps"
    assert values_alive() == values, "Values accumulate"
    assert sys.getallocatedblocks() - blocks < 1000, "Python objects accumulate"
    assert math.isfinite(loss) and loss < 0.5


def _gpt_trainer():
    model = nn.GPT(8, n_embd=8, n_head=2, block_size=6, seed=0)
    opt = optim.Adam(model.parameters(), lr=0.01)

    def step():
        loss = model.loss([7, 1, 2, 3, 4, 7])
        opt.zero_grad()
        loss.backward()
        opt.step()
        with cg.no_grad():
            model.generate(7, rng=random.Random(0))
        return loss.data

    return step


@pytest.mark.parametrize(
    "make",
    [_moons_trainer, lambda: _moons_trainer(batch=False, n=20), _gpt_trainer],
    ids=["batch", "per sample", "gpt"],
)
def test_a_training_step_makes_no_reference_cycles(make):
    step = make()
    step()
    gc.collect()
    gc.disable()  # so that only reference counting frees what a step made
    try:
        step()
        assert gc.collect() == 0, "a training step left reference cycles"
    finally:
        gc.enable()


# ---------------------------------------------------------------------------
# Threads: two trainings side by side give what they give one after the other
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Copies: deepcopy and pickle
# ---------------------------------------------------------------------------

COPIES = {"deepcopy": copy.deepcopy, "pickle": lambda x: pickle.loads(pickle.dumps(x))}


@pytest.mark.parametrize("how", COPIES)
def test_values_copied_together_keep_their_graph_connected(how):
    # test_engine copies one graph; copied together with its leaves (a model and its loss, a
    # checkpoint), the copied graph must lead to the copied leaves, as the original does.
    model = nn.MLP(2, [4, 1], seed=1)
    x = Value(0.5, label="x")
    loss = (model([x, 2.0]) - 1.0) ** 2
    twin_model, twin_x, twin_loss = COPIES[how]((model, x, loss))
    twin_loss.backward()
    loss.backward()
    assert twin_x.grad == x.grad != 0
    assert [p.grad for p in twin_model.parameters()] == [p.grad for p in model.parameters()]
