"""Hardening: bad input is a clear error that changes nothing; a crash while saving loses no model;
training does not leak memory; threads do not disturb each other; models survive copies.

Only what the other test files do not check already is here (bad Value() data, scalar
cross_entropy targets, empty sequences, dot lengths, most state-dict and file errors, optimizer
arguments and most `chaingrad graph` errors are in test_engine, test_ops, test_batch, test_nn,
test_optim, test_losses and test_cli).
"""

from __future__ import annotations

import builtins
import copy
import gc
import json
import math
import os
import pickle
import random
import select
import signal
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import no_value_left, values_alive

import chaingrad as cg
from chaingrad import Value, cli, data, losses, nn, optim

# ---------------------------------------------------------------------------
# State: what a failed call must leave as it was
# ---------------------------------------------------------------------------


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
# State dicts and model files
# ---------------------------------------------------------------------------


def _edited(model, **changes):
    d = json.loads(json.dumps(model.state_dict()))
    for key, value in changes.items():
        d[key.replace("__", ".")] = value
    return d


@pytest.mark.parametrize(
    "changes, error, words",
    [
        (
            {"layers__1__neurons__0__b": 10**400},
            ValueError,
            ["'layers.1.neurons.0.b'", "not a finite number"],
        ),
        ({"layers__0__neurons__1__w": [0.5, -(10**400)]}, ValueError, ["'layers.0.neurons.1.w.1'"]),
        ({"layers__1__neurons__0__b": 1j}, ValueError, ["'layers.1.neurons.0.b'", "complex"]),
        ({"0": None}, KeyError, ["extra '0'"]),
    ],
    ids=["huge int", "huge int in a list", "complex", "numeric-looking key"],
)
def test_load_state_dict_refuses_more_bad_entries(changes, error, words):
    # test_nn checks missing, extra, wrongly shaped, nan, inf, str, None and bool entries.
    model = nn.MLP(2, [2, 1], seed=1)
    assert_refused(lambda: model.load_state_dict(_edited(model, **changes)), [model], error, words)


def test_load_state_dict_with_a_key_that_is_not_a_string():
    model = nn.MLP(2, [2, 1], seed=1)
    d = model.state_dict()
    d[0] = 1.0  # an int key next to the str ones: still a KeyError naming the extra keys
    d["bogus"] = 2.0
    assert_refused(lambda: model.load_state_dict(d), [model], KeyError, ["extra", "0", "'bogus'"])


def _header(state):
    return {"format": "chaingrad", "version": 1, "module": "MLP", "state": state}


BAD_FILES = {
    # name: (file content, words in the error); test_nn has truncated, garbage, empty, no header,
    # nan inside, other architecture and other module.
    "deeply nested": (b"[" * 100_000, ["not a chaingrad model file"]),
    "huge number": (None, ["not a finite number"]),  # made from a real file below
    "a 5000-digit number": (None, []),  # json refuses it (Python >= 3.11) or it is too big for a float
    "state is a list": (json.dumps(_header([1.0, 2.0])).encode(), ["a state dict must be a dict"]),
    "utf-16": (None, ["not a chaingrad model file"]),
}


def _bad_file(name, good_text):
    content, words = BAD_FILES[name]
    if name == "huge number":
        content = good_text.replace('"layers.1.neurons.0.b": 0.0', '"layers.1.neurons.0.b": 1' + "0" * 400)
        assert content != good_text
    elif name == "a 5000-digit number":
        content = good_text.replace('"layers.1.neurons.0.b": 0.0', '"layers.1.neurons.0.b": ' + "7" * 5000)
    elif name == "utf-16":
        content = good_text.encode("utf-16")
    return content.encode() if isinstance(content, str) else content, words


@pytest.mark.parametrize("name", BAD_FILES)
def test_load_refuses_more_bad_files(name, tmp_path):
    model = nn.MLP(2, [2, 1], seed=1)
    model.save(tmp_path / "good.json")
    content, words = _bad_file(name, (tmp_path / "good.json").read_text())
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    other = nn.MLP(2, [2, 1], seed=2)
    # A ValueError naming the file, as for every other bad file; the model and the files stay.
    assert_refused(lambda: other.load(path), [other, tmp_path], ValueError, [str(path), *words])


def test_every_truncation_of_a_model_file_is_refused(tmp_path):
    model = nn.MLP(2, [3, 1], seed=1)
    model.save(tmp_path / "good.json")
    text = (tmp_path / "good.json").read_bytes()
    other = nn.MLP(2, [3, 1], seed=2)
    before = state(other)
    path = tmp_path / "cut.json"
    for n in range(len(text)):
        path.write_bytes(text[:n])
        with pytest.raises(ValueError, match="not a chaingrad model file") as info:
            other.load(path)
        assert str(path) in str(info.value) and ("empty" if n == 0 else "truncated") in str(info.value)
    assert state(other) == before
    other.load(tmp_path / "good.json")
    assert other.state_dict() == model.state_dict()


def test_a_gpt_file_of_another_shape_is_refused(tmp_path):
    nn.GPT(5, n_embd=4, n_head=2, block_size=4, seed=1).save(tmp_path / "gpt.json")
    for other in (nn.GPT(6, n_embd=4, n_head=2, block_size=4), nn.GPT(5, n_embd=4, n_head=2, block_size=5)):
        assert_refused(
            lambda other=other: other.load(tmp_path / "gpt.json"),
            [other, tmp_path],
            ValueError,
            ["gpt.json", "does not fit this GPT"],
        )


# ---------------------------------------------------------------------------
# Optimizers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda m: optim.SGD(m, lr=0.1), TypeError, ["MLP"]),
        (lambda m: optim.Adam(None), TypeError, ["NoneType"]),
        (lambda m: optim.Adam([m.parameters()]), TypeError, ["parameter 0 is list"]),
        (lambda m: optim.SGD([*m.parameters(), "w"], lr=0.1), TypeError, ["parameter 9 is str"]),
        (lambda m: optim.SGD(m.parameters(), lr=math.nan), ValueError, ["lr", "nan"]),
        (lambda m: optim.AdamW(m.parameters(), lr=-1e-3), ValueError, ["lr", "-0.001"]),
        (lambda m: optim.SGD(m.parameters(), lr=0.1, momentum=math.nan), ValueError, ["momentum", "nan"]),
        (lambda m: optim.Adam(m.parameters(), betas=(math.nan, 0.9)), ValueError, ["betas[0]", "nan"]),
        (lambda m: optim.Adam(m.parameters(), eps=math.nan), ValueError, ["eps", "nan"]),
        (lambda m: optim.SGD(m.parameters(), lr=0.1, weight_decay=math.nan), ValueError, ["weight_decay"]),
    ],
    ids=[
        "a model",
        "None",
        "a list of lists",
        "a str",
        "nan lr",
        "negative lr",
        "nan momentum",
        "nan beta",
        "nan eps",
        "nan weight decay",
    ],
)
def test_optimizers_refuse_more_bad_arguments(make, error, words):
    # test_optim checks empty lists, non-Values, batches, duplicates, negative and non-number lrs.
    model = nn.MLP(2, [2, 1], seed=1)
    model([1.0, 2.0]).backward()
    assert_refused(lambda: make(model), [model], error, words)


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


# ---------------------------------------------------------------------------
# Faults while saving: the previous file survives
# ---------------------------------------------------------------------------


def _params(model):
    return [p.data for p in model.parameters()]


def _half_writes(real_open):
    """An open() whose files for writing write half of what they are given, then fail as a full
    disk does."""

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def write(self, text):
            self.f.write(text[: len(text) // 2])
            self.f.flush()
            raise OSError(28, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return HalfWriter(f) if set(mode) & set("wxa+") else f

    return fake_open


def _raise(error):
    def fail(*args, **kwargs):
        raise error

    return fail


FAULTS = {  # (module, function, its replacement given the real one, the error save passes on)
    "write fails halfway": (builtins, "open", _half_writes, OSError),
    "fsync fails": (os, "fsync", lambda real: _raise(OSError(5, "Input/output error")), OSError),
    "Ctrl-C at fsync": (os, "fsync", lambda real: _raise(KeyboardInterrupt()), KeyboardInterrupt),
    "rename fails": (os, "replace", lambda real: _raise(OSError(18, "Invalid cross-device link")), OSError),
    "Ctrl-C at rename": (os, "replace", lambda real: _raise(KeyboardInterrupt()), KeyboardInterrupt),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failed_save_keeps_the_old_file_loadable_and_leaves_no_temp_file(fault, tmp_path, monkeypatch):
    path = tmp_path / "model.json"
    old = nn.MLP(2, [8, 8, 1], seed=1)
    old.save(path)
    saved = path.read_bytes()
    new = nn.MLP(2, [8, 8, 1], seed=2)
    before = state(new)
    module, name, make, error = FAULTS[fault]
    monkeypatch.setattr(module, name, make(getattr(module, name)))
    with pytest.raises(error):
        new.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == saved
    assert os.listdir(tmp_path) == ["model.json"], "a temp file was left behind"
    assert _params(nn.MLP(2, [8, 8, 1], seed=3).load(path)) == _params(old)
    assert state(new) == before


# The child saves a big model over the old file and stops in the middle (halfway through writing
# the data, or between writing and renaming), tells the parent, and waits to be killed.
CHILD = """
import builtins, os, sys, time
from chaingrad import nn

path, phase = sys.argv[1], sys.argv[2]


def stop_here():
    print(phase, flush=True)
    time.sleep(600)


class SlowWriter:
    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)

    def write(self, text):
        half = len(text) // 2
        self.f.write(text[:half])
        self.f.flush()
        os.fsync(self.f.fileno())
        stop_here()
        self.f.write(text[half:])

    def __getattr__(self, name):
        return getattr(self.f, name)


if phase == "writing":
    real_open = builtins.open

    def slow_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return SlowWriter(f) if set(mode) & set("wxa+") else f

    builtins.open = slow_open
else:
    real_replace = os.replace
    os.replace = lambda *args: (stop_here(), real_replace(*args))
nn.MLP(2, [256, 256, 1], seed=2).save(path)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("phase", ["writing", "renaming"])
def test_killing_a_process_while_it_saves_keeps_the_old_file(phase, tmp_path):
    path = tmp_path / "model.json"
    old = nn.MLP(2, [256, 256, 1], seed=1)
    old.save(path)
    saved = path.read_bytes()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), phase],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([child.stdout], [], [], 120)
        said = child.stdout.readline().strip() if ready else ""
        assert said == phase, f"the child did not reach the {phase} step: {child.poll()} {said!r}"
        (temp,) = [p for p in tmp_path.iterdir() if p.name != "model.json"]
        written = temp.stat().st_size
        assert 0 < written < len(saved) if phase == "writing" else written > len(saved) // 2
        child.kill()  # SIGKILL: no cleanup runs
        assert child.wait(60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(60)
        child.stdout.close()
        child.stderr.close()
    assert path.read_bytes() == saved
    assert _params(nn.MLP(2, [256, 256, 1], seed=3).load(path)) == _params(old)
    if phase == "writing":  # the half-written temp file is no model: loading it is a clear error
        with pytest.raises(ValueError, match="truncated"):
            nn.MLP(2, [256, 256, 1], seed=3).load(temp)


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


def _mlp():
    model = nn.MLP(2, [8, 8, 1], seed=1)
    model([0.5, -1.0]).backward()  # some grads to copy too
    return model, lambda m: [m([0.3, 0.7]).data, *m(data.columns(np.array([[0.1, 0.2], [-1.0, 2.0]]))).data]


def _gpt():
    model = nn.GPT(6, n_embd=8, n_head=2, block_size=5, seed=1)
    model.loss([5, 1, 2, 5]).backward()
    return model, lambda m: [m.loss([5, 3, 4, 1]).data, *m.generate(5, rng=random.Random(1))]


@pytest.mark.parametrize("how", COPIES)
@pytest.mark.parametrize("make", [_mlp, _gpt], ids=["MLP", "GPT"])
def test_a_model_survives_a_copy_as_an_independent_equal(make, how):
    model, outputs = make()
    twin = COPIES[how](model)
    assert type(twin) is type(model) and repr(twin) == repr(model)
    assert state(twin) == state(model)  # parameters and grads
    assert not {id(p) for p in twin.parameters()} & {id(p) for p in model.parameters()}
    assert outputs(twin) == outputs(model)
    before = state(model)
    for p in twin.parameters():
        p.data += 0.5
    twin.zero_grad()
    assert state(model) == before, "changing the copy changed the original"
    assert outputs(twin) != outputs(model)


@pytest.mark.parametrize("how", COPIES)
@pytest.mark.parametrize(
    "make",
    [
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
        lambda ps: optim.Adam(ps, lr=0.05),
        lambda ps: optim.AdamW(ps, lr=0.05, weight_decay=0.1),
    ],
    ids=["SGD", "Adam", "AdamW"],
)
def test_training_resumes_the_same_from_a_copy_of_model_and_optimizer(make, how):
    X, y = data.make_moons(30, 0.1, seed=5)
    inputs, targets = data.columns(X), 2.0 * y - 1
    model = nn.MLP(2, [8, 1], seed=5)
    opt = make(model.parameters())
    schedule = optim.CosineAnnealingLR(opt, T_max=10)

    def train(model, opt, schedule, steps):
        out = []
        for _ in range(steps):
            loss = losses.hinge(model(inputs), targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            out.append(loss.data)
        return out

    train(model, opt, schedule, 5)
    twin, twin_opt, twin_schedule = COPIES[how]((model, opt, schedule))
    assert twin_opt.params == twin.parameters() and twin_schedule.optimizer is twin_opt
    assert twin_opt.state_dict() == opt.state_dict()
    assert train(twin, twin_opt, twin_schedule, 5) == train(model, opt, schedule, 5)
    assert _params(twin) == _params(model)


@pytest.mark.parametrize("how", COPIES)
def test_an_optimizer_alone_survives_a_copy(how):
    model = nn.MLP(2, [3, 1], seed=1)
    opt = optim.Adam(model.parameters(), lr=0.1)
    model([1.0, 2.0]).backward()
    opt.step()
    twin = COPIES[how](opt)
    assert twin.state_dict() == opt.state_dict()
    assert [p.data for p in twin.params] == _params(model)
    twin.step()
    assert _params(model) != [p.data for p in twin.params]


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
