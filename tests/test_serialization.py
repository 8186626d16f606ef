"""chaingrad.serialization: the model file format. Saving and loading round trips, the architecture
recorded and checked, versions, damaged and foreign files refused by name with nothing changed, files
written before this version (Linear without a bias by default) still loading."""

from __future__ import annotations

import json
import math
import os
import threading

import numpy as np
import pytest
from refusals import assert_refused, state

import chaingrad as cg
from chaingrad import nn, serialization


def test_save_load_round_trip(tmp_path):
    a, b = nn.MLP(2, [5, 1], seed=1), nn.MLP(2, [5, 1], seed=2)
    path = tmp_path / "model.json"
    a.save(path)
    a.save(str(path))  # overwriting works too
    assert b.load(path) is b
    assert datas(b.parameters()) == datas(a.parameters())
    assert os.listdir(tmp_path) == ["model.json"]  # no temp file left behind
    assert json.loads(path.read_text())["state"] == a.state_dict()


def _bad_files(tmp_path):
    good = tmp_path / "good.json"
    nn.MLP(2, [3, 1], seed=1).save(good)
    text = good.read_bytes()
    other = tmp_path / "other.json"
    nn.MLP(2, [4, 1], seed=1).save(other)
    gpt = tmp_path / "gpt.json"
    nn.GPT(3, n_embd=4, n_head=2, block_size=2, seed=0).save(gpt)
    files = {
        "truncated": text[: len(text) // 2],
        "garbage": bytes(range(256)),
        "empty": b"",
        "not an object": b"[1, 2, 3]",
        "no header": json.dumps(nn.MLP(2, [3, 1]).state_dict()).encode(),
        "nan inside": text.replace(b"0.0", b"NaN", 1),
        "other architecture": other.read_bytes(),
        "other module": gpt.read_bytes(),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return files


@pytest.mark.parametrize(
    "name, message",
    [
        ("truncated", "not valid JSON, perhaps truncated"),
        ("garbage", "not a chaingrad model file"),
        ("empty", "empty"),
        ("not an object", "no chaingrad header"),
        ("no header", "no chaingrad header"),
        ("nan inside", "nan"),
        ("other architecture", r"does not fit this MLP: layers\.0\.nout is 4 in the file, 3 here"),
        ("other module", "holds a 'GPT', not a MLP"),
    ],
)
def test_load_rejects_bad_files_and_changes_nothing(tmp_path, name, message):
    _bad_files(tmp_path)
    model = nn.MLP(2, [3, 1], seed=5)
    before = model.state_dict()
    with pytest.raises(ValueError, match=message):
        model.load(tmp_path / name)
    assert model.state_dict() == before


def test_save_refuses_nan_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.json"
    model = nn.MLP(2, [2, 1], seed=1)
    model.save(path)
    old = path.read_bytes()
    model.layers[0].neurons[1].w[0].data = math.nan
    with pytest.raises(ValueError, match=r"layers\.0\.neurons\.1\.w\.0"):
        model.save(path)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["m.json"]


def test_a_failed_save_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    nn.MLP(2, [2, 1], seed=1).save(path)
    old = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        nn.MLP(2, [2, 1], seed=2).save(path)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["m.json"]


@pytest.mark.parametrize(
    "saved, loading, difference",
    [
        (
            lambda: nn.MLP(2, [4, 1], "tanh"),
            lambda: nn.MLP(2, [4, 1]),
            "layers.0.activation is 'tanh' in the file, 'relu' here",
        ),
        (
            lambda: nn.MLP(2, [4, 4, 1]),
            lambda: nn.MLP(2, [4, 4, 1], "sigmoid"),
            "layers.0.activation is 'relu' in the file, 'sigmoid' here; "
            "layers.1.activation is 'relu' in the file, 'sigmoid' here",
        ),
        (
            lambda: nn.MLP(2, [3, 1]),
            lambda: nn.MLP(2, [3, 3, 1]),
            "layers has 2 entries in the file, 3 here",
        ),
        (
            lambda: nn.Neuron(2, "tanh"),
            lambda: nn.Neuron(2, None),
            "activation is 'tanh' in the file, None here",
        ),
        (
            lambda: nn.Layer(2, 3),
            lambda: nn.Layer(2, 3, "tanh"),
            "activation is 'relu' in the file, 'tanh' here",
        ),
        (lambda: nn.RMSNorm(4), lambda: nn.RMSNorm(4, eps=1e-6), "eps is 1e-05 in the file, 1e-06 here"),
        (
            lambda: nn.CausalSelfAttention(4, 2),
            lambda: nn.CausalSelfAttention(4, 1),
            "n_head is 2 in the file, 1 here",
        ),
        (lambda: nn.Block(4, 2), lambda: nn.Block(4, 4), "n_head is 2 in the file, 4 here"),
        (
            lambda: nn.GPT(5, n_embd=4, n_head=2, block_size=4),
            lambda: nn.GPT(5, n_embd=4, n_head=1, block_size=4),
            "n_head is 2 in the file, 1 here",
        ),
        (
            lambda: nn.GPT(5, n_embd=4, n_head=2, block_size=4),
            lambda: nn.GPT(6, n_embd=4, n_head=2, block_size=5),
            "vocab_size is 5 in the file, 6 here; block_size is 4 in the file, 5 here",
        ),
    ],
    ids=[
        "tanh into relu",
        "relu into sigmoid",
        "another depth",
        "Neuron",
        "Layer",
        "RMSNorm eps",
        "attention heads",
        "Block heads",
        "GPT heads",
        "GPT sizes",
    ],
)
def test_a_file_of_another_architecture_is_refused_saying_what_differs(saved, loading, difference, tmp_path):
    # The heads, the activations and eps change no parameter's shape: only the architecture tells.
    path = tmp_path / "model.json"
    saved().save(path)
    model = loading()
    before = model.state_dict()
    with pytest.raises(ValueError) as info:
        model.load(path)
    assert str(info.value) == (
        f"{path}: the file's architecture does not fit this {type(model).__name__}: {difference}"
    )
    assert model.state_dict() == before


def test_a_file_of_the_same_architecture_loads_and_gives_the_same_outputs(tmp_path):
    a, b = nn.MLP(2, [4, 1], "tanh", seed=1), nn.MLP(2, [4, 1], "tanh", seed=2)
    a.save(tmp_path / "tanh.json")
    assert b.load(tmp_path / "tanh.json").state_dict() == a.state_dict()
    assert b([0.3, -0.7]).data == a([0.3, -0.7]).data
    assert json.loads((tmp_path / "tanh.json").read_text())["architecture"] == a.architecture()


def _model_file(tmp_path, edit):
    """A real model file of MLP(2, [3, 1]) with its JSON document edited by edit(doc)."""
    path = tmp_path / "edited.json"
    nn.MLP(2, [3, 1], seed=1).save(path)
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda d: d.update(version=999),
            "model file version 999; this chaingrad reads versions 1 to 2; "
            "it was written by a newer chaingrad: upgrade",
        ),
        (
            lambda d: d.update(version="banana"),
            "a chaingrad model file with version 'banana', not a whole number; it may be damaged",
        ),
        (lambda d: d.pop("version"), "a chaingrad model file with no version; it may be damaged"),
        (lambda d: d.update(version=True), "version True, not a whole number"),
        (lambda d: d.update(version=2.0), "version 2.0, not a whole number"),
        (lambda d: d.update(version=0), "model file version 0; this chaingrad reads versions 1 to 2"),
        (lambda d: d.pop("architecture"), "a version 2 model file without its architecture"),
        (lambda d: d.update(architecture=[1, 2]), "a version 2 model file without its architecture"),
    ],
    ids=["999", "banana", "missing", "true", "2.0", "0", "no architecture", "architecture a list"],
)
def test_load_refuses_a_bad_version_or_a_missing_architecture(tmp_path, edit, message):
    path = _model_file(tmp_path, edit)
    model = nn.MLP(2, [3, 1], seed=5)
    before = model.state_dict()
    with pytest.raises(ValueError) as info:
        model.load(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    assert model.state_dict() == before


def test_files_of_version_1_still_load(tmp_path):
    # What chaingrad wrote before the architecture was recorded: the parameters' shapes still checked.
    model = nn.MLP(2, [3, 1], seed=1)
    path = tmp_path / "v1.json"
    path.write_text(
        json.dumps({"format": "chaingrad", "version": 1, "module": "MLP", "state": model.state_dict()})
    )
    assert nn.MLP(2, [3, 1], seed=2).load(path).state_dict() == model.state_dict()
    other = nn.MLP(2, [4, 1], seed=2)
    with pytest.raises(ValueError, match="does not fit this MLP"):
        other.load(path)


@pytest.mark.parametrize(
    "old, new, key",
    [
        ('"version": 2', '"version": 2, "version": 1', "version"),
        (
            '"layers.1.neurons.0.b": 0.0',
            '"layers.1.neurons.0.b": 5.0, "layers.1.neurons.0.b": 0.0',
            "layers.1.neurons.0.b",
        ),
        ('"nin": 2', '"nin": 2, "nin": 7', "nin"),
    ],
    ids=["top level", "in the state", "in the architecture"],
)
def test_load_refuses_duplicate_keys(tmp_path, old, new, key):
    path = tmp_path / "model.json"
    nn.MLP(2, [3, 1], seed=1).save(path)
    text = path.read_text()
    assert text.count(old) == 1
    path.write_text(text.replace(old, new))
    model = nn.MLP(2, [3, 1], seed=5)
    before = model.state_dict()
    with pytest.raises(ValueError) as info:
        model.load(path)
    assert str(info.value) == f"{path}: not a chaingrad model file: the key {key!r} appears twice"
    assert model.state_dict() == before


# ---------------------------------------------------------------------------
# What load reads: regular files of at most MAX_FILE_BYTES
# ---------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_load_refuses_a_fifo_and_a_device_at_once(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # with no writer, opening it for reading would wait forever
    model = nn.MLP(2, [3, 1], seed=5)
    errors = []

    def load(path):
        try:
            model.load(path)
        except ValueError as e:
            errors.append(str(e))

    for path in (fifo, "/dev/zero"):  # /dev/zero would fill the memory
        thread = threading.Thread(target=load, args=(path,))
        thread.start()
        thread.join(30)
        if thread.is_alive():  # blocked: give the FIFO a writer so that the thread ends, then fail
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            thread.join(30)
            pytest.fail(f"load({path}) blocked")
    assert errors == [
        f"{fifo}: not a regular file (a FIFO); only files are read",
        "/dev/zero: not a regular file (a device); only files are read",
    ]


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m, p: m.save(bytes(p)), TypeError, "a file path is a str or a pathlib.Path, not bytes"),
        (lambda m, p: m.load(bytes(p)), TypeError, "a file path is a str or a pathlib.Path, not bytes"),
        (lambda m, p: m.load(p, max_bytes="1"), ValueError, "max_bytes must be a positive int, got '1'"),
        (lambda m, p: m.load(p, max_bytes=0), ValueError, "max_bytes must be a positive int, got 0"),
    ],
)
def test_bad_paths_and_limits_are_named_and_change_nothing(call, error, message, tmp_path):
    path = tmp_path / "model.json"
    model = nn.MLP(2, [3, 1], seed=1)
    model.save(path)
    before, weights = path.read_bytes(), [p.data for p in model.parameters()]
    with pytest.raises(error, match=message):
        call(model, path)
    assert path.read_bytes() == before and [p.data for p in model.parameters()] == weights


def test_load_has_a_size_limit_it_states(tmp_path):
    path = tmp_path / "model.json"
    nn.MLP(2, [3, 1], seed=1).save(path)
    size = path.stat().st_size
    assert "64 MiB" in nn.Module.load.__doc__ and nn.MAX_FILE_BYTES == 64 * 2**20
    with pytest.raises(ValueError) as info:
        nn.MLP(2, [3, 1]).load(path, max_bytes=size - 1)
    assert str(info.value) == (
        f"{path}: {size:,} bytes is more than the limit of {size - 1:,} bytes; "
        "load(path, max_bytes=...) reads a bigger file"
    )
    nn.MLP(2, [3, 1]).load(path, max_bytes=size)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (serialization.MAX_FILE_BYTES + 1))
    with pytest.raises(ValueError, match="more than the limit of 67,108,864 bytes"):
        nn.MLP(2, [3, 1]).load(big)


def test_the_size_limit_fits_a_gpt_of_a_few_hundred_thousand_parameters(tmp_path):
    gpt = nn.GPT(27, n_embd=64, n_head=4, n_layer=4, block_size=16, seed=1)
    assert len(gpt.parameters()) > 200_000
    gpt.save(tmp_path / "gpt.json")
    assert (
        tmp_path / "gpt.json"
    ).stat().st_size * 10 < serialization.MAX_FILE_BYTES  # ten times as big still fits
    other = nn.GPT(27, n_embd=64, n_head=4, n_layer=4, block_size=16, seed=2)
    assert other.load(tmp_path / "gpt.json").state_dict() == gpt.state_dict()


# ---------------------------------------------------------------------------
# Saving parameters that are not single numbers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, error, message",
    [
        (np.zeros(5), ValueError, "parameter 'layers.0.neurons.1.b' holds a batch (an array of shape (5,))"),
        (
            np.zeros((2, 2)),
            ValueError,
            "parameter 'layers.0.neurons.1.b' holds a batch (an array of shape (2, 2))",
        ),
        (cg.Value(1.5), TypeError, "parameter 'layers.0.neurons.1.b' holds Value"),
        ("0.5", TypeError, "parameter 'layers.0.neurons.1.b' holds str '0.5', not a number"),
    ],
    ids=["batch", "matrix", "Value", "str"],
)
def test_saving_a_parameter_that_is_not_a_number_names_it_and_keeps_the_old_file(
    tmp_path, data, error, message
):
    path = tmp_path / "m.json"
    model = nn.MLP(2, [2, 1], seed=1)
    model.save(path)
    old = path.read_bytes()
    model.layers[0].neurons[1].b.data = data
    with pytest.raises(error) as info:
        model.save(path)
    assert str(info.value).startswith(message)
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["m.json"]
    model.layers[0].neurons[0].w[1].data = np.float64(0.25)  # NumPy scalars are numbers
    model.layers[0].neurons[1].b.data = np.array(0.5)
    assert model.state_dict()["layers.0.neurons.1.b"] == 0.5


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


def datas(params):
    return [p.data for p in params]


def test_nn_keeps_the_formats_names():
    assert nn.MAX_FILE_BYTES == serialization.MAX_FILE_BYTES == 64 * 2**20
    assert nn.FORMAT_VERSION == serialization.FORMAT_VERSION == 2


# ---------------------------------------------------------------------------
# Files written before Linear had a bias by default (chaingrad at 3c6bce4) still load
# ---------------------------------------------------------------------------

OLD_LINEAR = (
    '{"format": "chaingrad", "version": 2, "module": "Linear", "architecture": {"class": "Linear", "nin":'
    ' 2, "nout": 2, "bias": false}, "state": {"weight.0": [0.10305478025243703, 0.11595564869598167], "we'
    'ight.1": [0.005306864715060953, -0.061163492077730544]}}'
)
OLD_GPT = (
    '{"format": "chaingrad", "version": 2, "module": "GPT", "architecture": {"class": "GPT", "vocab_size"'
    ': 3, "n_embd": 2, "n_head": 1, "n_layer": 1, "block_size": 2}, "state": {"wte.weight.0": [0.10305478'
    '025243703, 0.11595564869598167], "wte.weight.1": [0.005306864715060953, -0.061163492077730544], "wte'
    '.weight.2": [-0.08737385720833132, 0.0025067613465373497], "wpe.weight.0": [-0.08176825360086984, -0'
    '.11494635560820239], "wpe.weight.1": [0.01594495811870031, 0.010669968372688387], "layers.0.attn.q.w'
    'eight.0": [0.04371746402705853, -0.07311767549882502], "layers.0.attn.q.weight.1": [0.00040042269012'
    '579554, -0.005179340829815031], "layers.0.attn.k.weight.0": [-0.12046632010085935, 0.043039774292882'
    '71], "layers.0.attn.k.weight.1": [0.02565688807990786, 0.1911289634592549], "layers.0.attn.v.weight.'
    '0": [0.016237534184797137, -0.011576184653193641], "layers.0.attn.v.weight.1": [0.0986205740023139, '
    '0.01590329985547404], "layers.0.attn.o.weight.0": [0.07272248209225672, -0.029243541298601343], "lay'
    'ers.0.attn.o.weight.1": [0.017453745068846595, 0.08194309427896145], "layers.0.fc1.weight.0": [0.055'
    '699761796236924, 0.010277779890628511], "layers.0.fc1.weight.1": [-0.08658464196768356, 0.0356177417'
    '8888388], "layers.0.fc1.weight.2": [0.006149078537540186, 0.057637407748740294], "layers.0.fc1.weigh'
    't.3": [0.017298635024005846, 0.08705483289084186], "layers.0.fc1.weight.4": [-0.004124821233914034, '
    '0.0161571248063537], "layers.0.fc1.weight.5": [0.05334211509005196, -0.08695076897395836], "layers.0'
    '.fc1.weight.6": [-0.03213282080592151, -0.04000228551618948], "layers.0.fc1.weight.7": [0.1584492575'
    '6185968, -0.0074289620524867666], "layers.0.fc2.weight.0": [0.05217761790460577, 0.04955000497389752'
    ", -0.022469874414951407, -0.12406694617043577, 0.07718751765409146, -0.03257574157308735, 0.05743653"
    '253959199, -0.10442118600879717], "layers.0.fc2.weight.1": [-0.035038640157586384, 0.100545707568428'
    "91, 0.11448031904420146, -0.10419668969106859, -0.10662459832711546, -0.0035411550081465553, 0.05825"
    '930586549758, 0.01284037435034638], "lm_head.weight.0": [0.0242843766261587, -0.07910691399796904], '
    '"lm_head.weight.1": [0.04694333710510429, 0.08934818729094685], "lm_head.weight.2": [-0.034853801622'
    "71864, -0.11467904509307728]}}"
)


def test_a_linear_saved_before_bias_became_the_default_loads_into_a_linear_without_bias(tmp_path):
    path = tmp_path / "linear.json"
    path.write_text(OLD_LINEAR)
    model = nn.Linear(2, 2, bias=False, seed=5).load(path)
    assert model.state_dict() == json.loads(OLD_LINEAR)["state"]
    # Into today's default, which has a bias, it is refused saying what differs and what to do.
    default = nn.Linear(2, 2, seed=5)
    assert_refused(
        lambda: default.load(path), [default, tmp_path], ValueError, ["bias is False in the file, True here"]
    )


def test_a_gpt_saved_before_bias_became_the_default_loads_and_computes_what_it_did(tmp_path):
    path = tmp_path / "gpt.json"
    path.write_text(OLD_GPT)
    model = nn.GPT(3, n_embd=2, n_head=1, block_size=2, seed=9).load(path)
    assert model.state_dict() == json.loads(OLD_GPT)["state"]
    assert all(m.bias is None for m in [model.lm_head, model.layers[0].fc1, model.layers[0].attn.q])
    # the loss, against PyTorch's on the same weights
    torch = pytest.importorskip("torch")
    twin = model.to_torch()
    tokens = [0, 2, 1]
    expected = twin(torch.tensor(tokens[:-1]), targets=torch.tensor(tokens[1:])).item()
    assert model.loss(tokens).data == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------
# Limits and settings that could make a file unloadable
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("max_bytes", [2**63, 10**30, 2**31])
def test_any_size_limit_reads_a_small_file(max_bytes, tmp_path):
    model = nn.MLP(2, [3, 1], seed=1)
    model.save(tmp_path / "m.json")
    assert (
        nn.MLP(2, [3, 1], seed=2).load(tmp_path / "m.json", max_bytes=max_bytes).state_dict()
        == model.state_dict()
    )


@pytest.mark.parametrize("eps", [math.nan, math.inf, -1e-5, "1e-5", cg.Value(1e-5)])
def test_an_rmsnorm_eps_that_a_file_could_not_hold_is_refused_when_set(eps, tmp_path):
    error = TypeError if isinstance(eps, (str, cg.Value)) else ValueError
    with pytest.raises(error, match="eps must be"):
        nn.RMSNorm(4, eps=eps)
    norm = nn.RMSNorm(4, eps=1e-6)
    with pytest.raises(error, match="eps must be"):
        norm.eps = eps
    assert norm.eps == 1e-6
    norm.save(tmp_path / "norm.json")
    assert nn.RMSNorm(4, eps=1e-6).load(tmp_path / "norm.json").eps == 1e-6
