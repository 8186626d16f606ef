"""chaingrad.nn: modules, parameters, state dicts and files, the GPT blocks, and the acceptance runs
(micrograd's demo, a digits classifier, GPT on names)."""

from __future__ import annotations

import copy
import itertools
import json
import math
import pickle
import random

import micrograd.engine
import micrograd.nn
import numpy as np
import pytest
import sklearn.datasets
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from refusals import state

import chaingrad as cg
from chaingrad import data, losses, nn, optim

torch.set_default_dtype(torch.float64)


def micrograd_mlp(seed: int) -> micrograd.nn.MLP:
    """micrograd's MLP(2, [16, 16, 1]) after random.seed(seed), leaving Python's random state as it was."""
    state = random.getstate()
    random.seed(seed)
    try:
        return micrograd.nn.MLP(2, [16, 16, 1])
    finally:
        random.setstate(state)


@pytest.fixture(scope="module")
def moons():
    """micrograd's demo data: make_moons after numpy.random.seed(1337), labels -1 / +1."""
    state = np.random.get_state()
    np.random.seed(1337)
    X, y = sklearn.datasets.make_moons(n_samples=100, noise=0.1)
    np.random.set_state(state)
    return X, 2 * y - 1


def datas(params):
    return [p.data for p in params]


# ---------------------------------------------------------------------------
# Structure, order, initialisation
# ---------------------------------------------------------------------------


def test_seeded_init_is_micrograds_init_in_micrograds_order():
    ours, theirs = nn.MLP(2, [16, 16, 1], seed=1337), micrograd_mlp(1337)
    assert len(ours.parameters()) == len(theirs.parameters()) == 337
    assert datas(ours.parameters()) == datas(theirs.parameters())


def test_repr_is_micrograds():
    assert repr(nn.MLP(2, [16, 16, 1])) == repr(micrograd_mlp(0))
    assert repr(nn.Neuron(3, "tanh")) == "TanhNeuron(3)"
    assert repr(nn.Neuron(3, "sigmoid")) == "SigmoidNeuron(3)"


def test_named_parameters_name_every_parameter_in_order():
    model = nn.MLP(3, [4, 2])
    named = model.named_parameters()
    assert [p for _, p in named] == model.parameters()
    names = [n for n, _ in named]
    assert len(set(names)) == len(names)
    assert names[:5] == [
        "layers.0.neurons.0.w.0",
        "layers.0.neurons.0.w.1",
        "layers.0.neurons.0.w.2",
        "layers.0.neurons.0.b",
        "layers.0.neurons.1.w.0",
    ]
    assert names[-1] == "layers.1.neurons.1.b"


def test_init_with_a_seed_never_touches_global_random_state():
    # Without seed= a model draws from Python's random, as micrograd's do (test_micrograds_spellings...).
    state = random.getstate()
    np_state = np.random.get_state()
    nn.MLP(2, [8, 1], seed=3)
    nn.GPT(5, n_embd=4, n_head=2, block_size=4, seed=random.Random(1))
    assert random.getstate() == state
    nn.MLP(2, [8, 1])
    assert random.getstate() != state
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), np_state))


def test_manual_seed_and_seed_make_init_reproducible():
    nn.manual_seed(7)
    a = nn.MLP(2, [4, 1])
    nn.manual_seed(7)
    b = nn.MLP(2, [4, 1])
    assert datas(a.parameters()) == datas(b.parameters())
    assert datas(nn.MLP(2, [4, 1], seed=1).parameters()) == datas(nn.MLP(2, [4, 1], seed=1).parameters())
    assert datas(nn.MLP(2, [4, 1], seed=1).parameters()) != datas(nn.MLP(2, [4, 1], seed=2).parameters())
    w = datas(nn.MLP(2, [4, 1], seed=1).parameters())
    assert all(-1 <= x <= 1 for x in w) and all(
        n.b.data == 0 for n in nn.MLP(2, [4], seed=1).layers[0].neurons
    )


def test_layer_returns_a_value_when_it_has_one_output():
    x = [cg.Value(1.0), cg.Value(-2.0)]
    assert isinstance(nn.Layer(2, 1)(x), cg.Value)
    out = nn.Layer(2, 3)(x)
    assert isinstance(out, list) and len(out) == 3


def test_mlp_hidden_layers_use_the_activation_and_the_last_is_linear():
    model = nn.MLP(2, [3, 3, 2], activation="tanh")
    acts = [[n.activation for n in layer.neurons] for layer in model.layers]
    assert acts == [["tanh"] * 3, ["tanh"] * 3, [None, None]]


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", None])
def test_neuron_is_one_dot_node_then_its_activation_and_matches_torch(activation):
    n = nn.Neuron(3, activation, seed=4)
    n.b.data = 0.3
    xs = [0.5, -1.25, 2.0]
    x = [cg.Value(v) for v in xs]
    out = n(x)
    top = out._prev[0] if activation else out
    if activation:
        assert out._op == activation
    assert top._op == "dot" and set(top._prev) == {*n.w, *x, n.b}
    out.backward()

    w = torch.tensor(datas(n.w), requires_grad=True)
    b = torch.tensor(0.3, requires_grad=True)
    xt = torch.tensor(xs, requires_grad=True)
    z = w @ xt + b
    zt = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, None: lambda v: v}[activation](z)
    zt.backward()
    np.testing.assert_allclose(out.data, zt.item(), rtol=1e-12)
    np.testing.assert_allclose([p.grad for p in n.w], w.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(n.b.grad, b.grad.item(), rtol=1e-12)
    np.testing.assert_allclose([v.grad for v in x], xt.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: nn.Neuron(2, "gelu"), "activation"),
        (lambda: nn.Neuron(0), "nin"),
        (lambda: nn.Layer(2, 0), "nout"),
        (lambda: nn.MLP(2, []), "nouts"),
        (lambda: nn.MLP(2, [3, -1]), "width"),
        (lambda: nn.MLP(2.5, [3]), "nin"),
        (lambda: nn.MLP(2, [True]), "width"),
        (lambda: nn.MLP(2, [3], activation="gelu"), "activation"),  # one layer: no hidden one to use it
        (lambda: nn.CausalSelfAttention(6, 4), "multiple"),
    ],
)
def test_bad_construction_is_a_clear_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_sizes_may_be_numpy_integers():
    model = nn.MLP(np.int64(2), [np.int64(3), np.int32(1)], seed=0)
    assert model.architecture() == nn.MLP(2, [3, 1], seed=0).architecture()
    assert [type(n) for n in (len(model.layers[0].neurons), len(model.layers[0].neurons[0].w))] == [int, int]


def test_bad_seed_is_a_type_error():
    with pytest.raises(TypeError, match="seed"):
        nn.MLP(2, [1], seed="x")


def test_wrong_number_of_inputs_is_a_clear_error():
    with pytest.raises(ValueError, match="takes 2 inputs, got 3"):
        nn.MLP(2, [3, 1])([1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "model, x, error, message",
    [
        (nn.MLP(2, [32, 32, 1]), [1.0, 2.0, 3.0], ValueError, "MLP(2, [32, 32, 1]) takes 2 inputs, got 3"),
        (nn.Layer(2, 32), [1.0], ValueError, "Layer(2, 32) takes 2 inputs, got 1"),
        (nn.Neuron(3, "tanh"), [1.0], ValueError, "TanhNeuron(3) takes 3 inputs, got 1"),
        (nn.Linear(4, 8), [1.0], ValueError, "Linear(4, 8) takes 4 inputs, got 1"),
        (nn.RMSNorm(4), [1.0], ValueError, "RMSNorm(4) takes 4 inputs, got 1"),
        (
            nn.MLP(2, [32, 1]),
            np.zeros((5, 2)),
            ValueError,
            "MLP(2, [32, 1]) takes 2 inputs, got a 5x2 array; for a batch of 5 samples pass "
            "cg.data.columns(X), one batched Value per feature",
        ),
        (
            nn.Layer(2, 32),
            np.zeros((7, 3)),
            ValueError,
            "Layer(2, 32) takes 2 inputs, got a 7x3 array; for a batch of 7 samples pass "
            "cg.data.columns(X), one batched Value per feature",
        ),
        (
            nn.MLP(2, [32, 1]),
            1.0,
            TypeError,
            "MLP(2, [32, 1]) takes a list of 2 inputs (numbers or Values, e.g. [x1, x2]), got a float: 1.0",
        ),
        (
            nn.Neuron(1),
            cg.Value(2.0),
            TypeError,
            "ReLUNeuron(1) takes a list of 1 inputs (numbers or Values, e.g. [x]), "
            "got a Value: Value(data=2.0, grad=0.0)",
        ),
        (
            nn.Layer(5, 32),
            None,
            TypeError,
            "Layer(5, 32) takes a list of 5 inputs (numbers or Values, e.g. [x1, ..., x5]), "
            "got a NoneType: None",
        ),
        (nn.MLP(2, [32, 1]), iter([1.0]), ValueError, "MLP(2, [32, 1]) takes 2 inputs, got 1"),
        (
            nn.Layer(2, 32),
            itertools.count(),
            ValueError,
            "Layer(2, 32) takes 2 inputs, got an iterator of more",
        ),
    ],
    ids=[
        "MLP",
        "Layer",
        "Neuron",
        "Linear",
        "RMSNorm",
        "5x2 array",
        "7x3 array",
        "float",
        "Value",
        "None",
        "short iterator",
        "endless iterator",
    ],
)
def test_wrong_inputs_get_one_short_line_saying_what_the_model_takes(model, x, error, message):
    before = model.state_dict()
    with pytest.raises(error) as info:
        model(x)
    assert str(info.value) == message  # one line, no list of the layer's neurons
    assert model.state_dict() == before


@pytest.mark.parametrize(
    "model", [nn.MLP(3, [4, 2]), nn.Layer(3, 2), nn.Neuron(3), nn.Linear(3, 2), nn.RMSNorm(3)], ids=repr
)
def test_a_generator_or_an_iterator_of_inputs_works_as_micrograds_zip_takes_it(model):
    xs = [0.5, -1.0, 2.0]
    expected = model(xs)
    for inputs in ((x for x in xs), iter(xs), map(float, xs)):
        got = model(inputs)
        assert repr(got) == repr(expected)


def test_zero_grad():
    model = nn.MLP(2, [3, 1])
    model([1.0, 2.0]).backward()
    assert any(p.grad != 0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0 for p in model.parameters())


def test_zero_grad_of_parameters_of_a_value_subclass():
    class Param(cg.Value):
        pass

    ps = [Param(1.0), cg.Value(2.0), Param(3.0)]
    (ps[0] * ps[1] * ps[2]).backward()
    assert [p.grad for p in ps] == [6.0, 3.0, 2.0]
    cg.optim.SGD(ps, lr=0.1).zero_grad()
    assert [p.grad for p in ps] == [0.0, 0.0, 0.0]


# ---------------------------------------------------------------------------
# state_dict, load_state_dict, save, load
# ---------------------------------------------------------------------------


def test_state_dict_round_trip():
    a, b = nn.MLP(3, [4, 2], seed=1), nn.MLP(3, [4, 2], seed=2)
    state = a.state_dict()
    assert all(
        type(v) is float or (type(v) is list and all(type(x) is float for x in v)) for v in state.values()
    )
    assert json.loads(json.dumps(state)) == state
    b.load_state_dict(state)
    assert datas(b.parameters()) == datas(a.parameters())
    x = [0.1, -0.2, 0.3]
    assert [o.data for o in b(x)] == [o.data for o in a(x)]


def _bad_states():
    good = nn.MLP(2, [3, 1], seed=1).state_dict()

    def edit(f):
        d = json.loads(json.dumps(good))
        f(d)
        return d

    return [
        (
            "missing",
            edit(lambda d: d.pop("layers.1.neurons.0.b")),
            KeyError,
            "missing 'layers.1.neurons.0.b'",
        ),
        ("extra", edit(lambda d: d.update(bogus=1.0)), KeyError, "extra 'bogus'"),
        ("other model", nn.MLP(2, [3, 3, 1]).state_dict(), KeyError, "extra .*'layers.2.neurons.0.b'"),
        ("wrong width", nn.MLP(3, [3, 1]).state_dict(), ValueError, "layers.0.neurons.0.w.*3 numbers"),
        ("string", edit(lambda d: d.update({"layers.1.neurons.0.b": "0.5"})), ValueError, "not a number"),
        ("none", edit(lambda d: d["layers.1.neurons.0.w"].__setitem__(2, None)), ValueError, "w.2"),
        ("bool", edit(lambda d: d.update({"layers.1.neurons.0.b": True})), ValueError, "not a number"),
        ("nan", edit(lambda d: d["layers.0.neurons.2.w"].__setitem__(0, math.nan)), ValueError, "nan"),
        ("inf", edit(lambda d: d.update({"layers.1.neurons.0.b": math.inf})), ValueError, "inf"),
        (
            "scalar for list",
            edit(lambda d: d.update({"layers.0.neurons.0.w": 1.0})),
            ValueError,
            "a list of 2",
        ),
    ]


@pytest.mark.parametrize("case, state, error, message", _bad_states(), ids=[c[0] for c in _bad_states()])
def test_load_state_dict_rejects_bad_entries_and_changes_nothing(case, state, error, message):
    model = nn.MLP(2, [3, 1], seed=9)
    before = model.state_dict()
    with pytest.raises(error, match=message):
        model.load_state_dict(state)
    assert model.state_dict() == before


def test_load_state_dict_of_a_non_dict_is_a_type_error():
    with pytest.raises(TypeError, match="dict"):
        nn.MLP(2, [1]).load_state_dict([1.0, 2.0])


# ---------------------------------------------------------------------------
# Architecture: recorded in the file, checked on load
# ---------------------------------------------------------------------------

ARCHITECTURES = [
    (lambda: nn.Neuron(3, "tanh"), {"class": "Neuron", "nin": 3, "activation": "tanh"}),
    (lambda: nn.Layer(3, 2, None), {"class": "Layer", "nin": 3, "nout": 2, "activation": None}),
    (
        lambda: nn.MLP(2, [4, 1], "sigmoid"),
        {
            "class": "MLP",
            "layers": [
                {"class": "Layer", "nin": 2, "nout": 4, "activation": "sigmoid"},
                {"class": "Layer", "nin": 4, "nout": 1, "activation": None},
            ],
        },
    ),
    (lambda: nn.Linear(3, 2, bias=True), {"class": "Linear", "nin": 3, "nout": 2, "bias": True}),
    (lambda: nn.Embedding(5, 3), {"class": "Embedding", "num": 5, "dim": 3}),
    (lambda: nn.RMSNorm(4, eps=1e-6), {"class": "RMSNorm", "dim": 4, "eps": 1e-6}),
    (lambda: nn.CausalSelfAttention(4, 2), {"class": "CausalSelfAttention", "n_embd": 4, "n_head": 2}),
    (lambda: nn.Block(6, 3), {"class": "Block", "n_embd": 6, "n_head": 3}),
    (
        lambda: nn.GPT(5, n_embd=4, n_head=2, n_layer=3, block_size=7),
        {"class": "GPT", "vocab_size": 5, "n_embd": 4, "n_head": 2, "n_layer": 3, "block_size": 7},
    ),
]


@pytest.mark.parametrize("make, expected", ARCHITECTURES, ids=[e["class"] for _, e in ARCHITECTURES])
def test_every_module_describes_its_architecture_as_json(make, expected):
    architecture = make().architecture()
    assert architecture == expected
    assert json.loads(json.dumps(architecture)) == architecture


def test_every_module_class_of_nn_has_its_own_architecture():
    classes = {c for c in vars(nn).values() if isinstance(c, type) and issubclass(c, nn.Module)} - {nn.Module}
    assert {e["class"] for _, e in ARCHITECTURES} == {c.__name__ for c in classes}
    assert all("architecture" in vars(c) for c in classes)


def test_a_module_of_your_own_describes_its_class_and_its_sub_modules():
    class TwoHeads(nn.Module):
        def __init__(self):
            self.body = nn.Layer(2, 3)
            self.heads = [nn.Neuron(3, None), nn.Neuron(3, "tanh")]
            self.scale = cg.Value(1.0)

    assert TwoHeads().architecture() == {
        "class": "TwoHeads",
        "body": {"class": "Layer", "nin": 2, "nout": 3, "activation": "relu"},
        "heads": [
            {"class": "Neuron", "nin": 3, "activation": None},
            {"class": "Neuron", "nin": 3, "activation": "tanh"},
        ],
    }


# ---------------------------------------------------------------------------
# The same model code on a batch
# ---------------------------------------------------------------------------

LOSSES = {
    "hinge": (lambda rng, n: rng.choice([-1.0, 1.0], n), losses.hinge, 1),
    "mse": (lambda rng, n: rng.normal(size=n), losses.mse, 1),
    "bce": (lambda rng, n: rng.uniform(size=n), losses.binary_cross_entropy_with_logits, 1),
    "cross_entropy": (lambda rng, n: rng.integers(0, 3, n), losses.cross_entropy, 3),
}


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    nin=st.integers(1, 4),
    hidden=st.lists(st.integers(1, 5), max_size=2),
    activation=st.sampled_from(["relu", "tanh", "sigmoid", None]),
    batch=st.integers(1, 6),
    loss_name=st.sampled_from(sorted(LOSSES)),
    seed=st.integers(0, 2**16),
)
def test_batch_gives_the_mean_of_per_sample_losses_and_gradients(
    nin, hidden, activation, batch, loss_name, seed
):
    make_targets, loss, nout = LOSSES[loss_name]
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(batch, nin)), make_targets(rng, batch)
    model = nn.MLP(nin, [*hidden, nout], activation, seed=seed)
    params = model.parameters()
    for p in params:
        p.data += rng.normal(scale=0.1)  # nonzero biases

    per_sample_losses, per_sample_grads = [], []
    for x, t in zip(X, y):
        model.zero_grad()
        out = model([cg.Value(v) for v in x])
        total = loss([out], [t.item()])
        total.backward()
        per_sample_losses.append(total.data)
        per_sample_grads.append([p.grad for p in params])

    model.zero_grad()
    total = loss(model(data.columns(X)), y)
    total.backward()
    assert type(total.data) is float
    np.testing.assert_allclose(total.data, np.mean(per_sample_losses), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        [p.grad for p in params], np.mean(per_sample_grads, axis=0), rtol=1e-12, atol=1e-12
    )


# ---------------------------------------------------------------------------
# Acceptance: micrograd's demo
# ---------------------------------------------------------------------------


def demo_loss(model, X, y):
    """micrograd's demo loss: hinge + 1e-4 * L2, per sample or (X from data.columns) as a batch."""
    scores = model(X) if isinstance(X, list) and isinstance(X[0], cg.Value) else [model(x) for x in X]
    return losses.hinge(scores, y) + 1e-4 * losses.l2(model.parameters())


def test_micrograd_demo_reaches_full_training_accuracy(moons):
    X, y = moons
    model = nn.MLP(2, [16, 16, 1], seed=1337)
    opt = optim.SGD(model.parameters(), lr=1.0)
    schedule = optim.LinearLR(opt, start_factor=1.0, end_factor=0.1, total_iters=100)
    xs = data.columns(X)
    for k in range(100):
        assert opt.lr == pytest.approx(1.0 - 0.9 * k / 100, rel=1e-12)
        total = demo_loss(model, xs, y)
        opt.zero_grad()
        total.backward()
        opt.step()
        schedule.step()
    with cg.no_grad():
        scores = model(xs).data
    assert np.mean((scores > 0) == (y > 0)) == 1.0
    assert total.data < 0.05


def micrograd_demo_steps(model, X, y, steps):
    """micrograd's own demo loop, verbatim in substance; the loss at each step and the final weights."""
    out = []
    for k in range(steps):
        inputs = [list(map(micrograd.engine.Value, xrow)) for xrow in X]
        scores = list(map(model, inputs))
        hinge = [(1 + -yi * scorei).relu() for yi, scorei in zip(y, scores)]
        data_loss = sum(hinge) * (1.0 / len(hinge))
        reg_loss = 1e-4 * sum(p * p for p in model.parameters())
        total = data_loss + reg_loss
        model.zero_grad()
        total.backward()
        for p in model.parameters():
            p.data -= (1.0 - 0.9 * k / 100) * p.grad
        out.append(total.data)
    return out, datas(model.parameters())


def test_micrograd_demo_losses_equal_micrograds_from_its_own_initial_weights(moons):
    X, y = moons
    steps = 3
    theirs = micrograd_mlp(4321)
    start = datas(theirs.parameters())
    expected_losses, expected_weights = micrograd_demo_steps(theirs, X, [int(v) for v in y], steps)

    for batched in (False, True):
        model = nn.MLP(2, [16, 16, 1], seed=0)
        for p, w in zip(model.parameters(), start):
            p.data = float(w)  # micrograd's biases start as the int 0
        opt = optim.SGD(model.parameters(), lr=1.0)
        schedule = optim.LinearLR(opt, 1.0, 0.1, 100)
        xs = data.columns(X) if batched else [[cg.Value(v) for v in row] for row in X]
        got = []
        for _ in range(steps):
            total = demo_loss(model, xs, y if batched else [float(v) for v in y])
            opt.zero_grad()
            total.backward()
            opt.step()
            schedule.step()
            got.append(total.data)
        np.testing.assert_allclose(got, expected_losses, rtol=0, atol=1e-9, err_msg=f"batched={batched}")
        np.testing.assert_allclose(datas(model.parameters()), expected_weights, rtol=0, atol=1e-9)


def micrograd_notebook(Value, MLP, steps):
    """micrograd's demo notebook (demo.ipynb) as written, on the given Value and MLP: from
    random.seed(1337), each step's loss and accuracy, then the final weights."""
    import random

    from sklearn.datasets import make_moons

    np.random.seed(1337)
    random.seed(1337)
    X, y = make_moons(n_samples=100, noise=0.1)
    y = y * 2 - 1
    model = MLP(2, [16, 16, 1])

    def loss():
        inputs = [list(map(Value, xrow)) for xrow in X]
        scores = list(map(model, inputs))
        losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y, scores)]
        data_loss = sum(losses) * (1.0 / len(losses))
        alpha = 1e-4
        reg_loss = alpha * sum(p * p for p in model.parameters())
        total_loss = data_loss + reg_loss
        accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y, scores)]
        return total_loss, sum(accuracy) / len(accuracy)

    history = []
    for k in range(steps):
        total_loss, acc = loss()
        model.zero_grad()
        total_loss.backward()
        learning_rate = 1.0 - 0.9 * k / 100
        for p in model.parameters():
            p.data -= learning_rate * p.grad
        history.append((total_loss.data, acc))
    return history, [p.data for p in model.parameters()]


def test_micrograds_notebook_on_chaingrad_gives_micrograds_numbers():
    # random.seed(1337) then MLP(2, [16, 16, 1]): micrograd's very weights, so its very losses
    ours, our_weights = micrograd_notebook(cg.Value, nn.MLP, 2)
    theirs, their_weights = micrograd_notebook(micrograd.engine.Value, micrograd.nn.MLP, 2)
    assert [a for _, a in ours] == [a for _, a in theirs]
    np.testing.assert_allclose([loss for loss, _ in ours], [loss for loss, _ in theirs], rtol=1e-12)
    np.testing.assert_allclose(our_weights, their_weights, rtol=1e-12, atol=1e-15)
    assert ours[0][0] == pytest.approx(0.8958441028683222, rel=1e-12)  # as micrograd's notebook prints


def test_micrograds_spellings_of_neuron_and_layer():
    import random

    assert nn.Neuron(3, nonlin=False).activation is None and nn.Neuron(3, False).nonlin is False
    assert nn.Neuron(3).nonlin and nn.Layer(2, 4, nonlin=False).neurons[0].activation is None
    assert nn.Layer(2, 4, activation="tanh").neurons[3].activation == "tanh"
    random.seed(5)
    a = nn.MLP(2, [3, 1])
    random.seed(5)
    theirs = micrograd.nn.MLP(2, [3, 1])
    assert [p.data for p in a.parameters()] == [p.data for p in theirs.parameters()]
    assert repr(a) == repr(theirs)
    b = nn.MLP(2, [3, 1], seed=5)  # seed= keeps its meaning: its own generator, Python's random untouched
    state = random.getstate()
    assert [p.data for p in nn.MLP(2, [3, 1], seed=5).parameters()] == [p.data for p in b.parameters()]
    assert random.getstate() == state


# ---------------------------------------------------------------------------
# Acceptance: a digits classifier
# ---------------------------------------------------------------------------


def test_digits_classifier_reaches_95_percent():
    X, y = data.load_digits()
    X_train, X_test, y_train, y_test = data.train_test_split(X, y, test_size=0.25, seed=0)
    torch.manual_seed(0)  # PyTorch's default initialisation suits 64 inputs better than uniform(-1, 1)
    layers = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    model = nn.MLP.from_torch(layers)
    epochs, per_epoch = 8, math.ceil(len(X_train) / 32)
    opt = optim.Adam(model.parameters(), lr=0.02)
    schedule = optim.CosineAnnealingLR(opt, T_max=epochs * per_epoch)
    for epoch in range(epochs):
        for Xb, yb in data.batches(X_train, y_train, batch_size=32, seed=epoch):
            loss = losses.cross_entropy(model(data.columns(Xb)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
    with cg.no_grad():
        logits = np.stack([o.data for o in model(data.columns(X_test))])
    assert np.mean(logits.argmax(axis=0) == y_test) >= 0.95


# ---------------------------------------------------------------------------
# The GPT blocks
# ---------------------------------------------------------------------------


def matrix(rows):
    return torch.tensor([[v.data for v in row] for row in rows], requires_grad=True)


def torch_gpt_loss(model, tokens):
    """The same GPT in PyTorch float64: all positions at once with a causal mask, no cache.
    Returns the loss and, for every chaingrad weight matrix, the tensor standing for it."""
    tensors = {
        id(m.weight): matrix(m.weight)
        for m in [model.wte, model.wpe, model.lm_head]
        + [lin for b in model.layers for lin in (b.attn.q, b.attn.k, b.attn.v, b.attn.o, b.fc1, b.fc2)]
    }

    def w(module):
        return tensors[id(module.weight)]

    def rms(x):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-5)

    inputs, targets = torch.tensor(tokens[:-1]), torch.tensor(tokens[1:])
    T = len(inputs)
    x = rms(w(model.wte)[inputs] + w(model.wpe)[:T])
    for block in model.layers:
        nh = block.attn.n_head
        h = rms(x)
        q, k, v = (h @ w(lin).T for lin in (block.attn.q, block.attn.k, block.attn.v))
        q, k, v = (t.view(T, nh, -1).transpose(0, 1) for t in (q, k, v))
        att = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), -math.inf).softmax(-1)
        x = x + (att @ v).transpose(0, 1).reshape(T, -1) @ w(block.attn.o).T
        x = x + torch.relu(rms(x) @ w(block.fc1).T) @ w(block.fc2).T
    loss = torch.nn.functional.cross_entropy(x @ w(model.lm_head).T, targets)
    return loss, tensors


@pytest.mark.parametrize(
    "config, tokens",
    [
        (dict(vocab_size=27, seed=1), [26, 4, 12, 12, 0, 26]),
        (dict(vocab_size=7, n_embd=8, n_head=2, n_layer=2, block_size=5, seed=2), [6, 1, 2, 3, 2, 6]),
    ],
)
def test_gpt_loss_and_gradients_match_torch(config, tokens):
    model = nn.GPT(**config)
    loss = model.loss(tokens)
    loss.backward()
    expected, tensors = torch_gpt_loss(model, tokens)
    expected.backward()
    assert loss.data == pytest.approx(expected.item(), abs=1e-12)
    modules = [model.wte, model.wpe, model.lm_head] + [
        lin for b in model.layers for lin in (b.attn.q, b.attn.k, b.attn.v, b.attn.o, b.fc1, b.fc2)
    ]
    assert sum(len(m.weight) * len(m.weight[0]) for m in modules) == len(model.parameters())
    for m in modules:
        got = [[v.grad for v in row] for row in m.weight]
        np.testing.assert_allclose(
            got, tensors[id(m.weight)].grad.numpy(), rtol=0, atol=1e-10, err_msg=repr(m)
        )


def test_gpt_parameter_names_and_count():
    model = nn.GPT(27, seed=0)
    state = model.state_dict()
    assert len(model.parameters()) == 27 * 16 * 2 + 16 * 16 + 16 * 16 * 4 + 2 * 16 * 64  # microgpt's 4192
    assert (
        len(state["wte.weight.0"]) == 16
        and "layers.0.attn.q.weight.15" in state
        and "lm_head.weight.26" in state
    )


def test_gpt_state_round_trip(tmp_path):
    a, b = (
        nn.GPT(5, n_embd=4, n_head=2, block_size=4, seed=1),
        nn.GPT(5, n_embd=4, n_head=2, block_size=4, seed=2),
    )
    tokens = [4, 1, 2, 4]
    assert a.loss(tokens).data != b.loss(tokens).data
    a.save(tmp_path / "gpt.json")
    b.load(tmp_path / "gpt.json")
    assert b.loss(tokens).data == a.loss(tokens).data
    wider = nn.GPT(5, n_embd=6, n_head=2, block_size=4)
    before = wider.state_dict()
    with pytest.raises(ValueError, match=r"does not fit this GPT: n_embd is 4 in the file, 6 here"):
        wider.load(tmp_path / "gpt.json")
    assert wider.state_dict() == before


def test_gpt_blocks_match_torch():
    x = [cg.Value(v) for v in [0.5, -1.0, 2.0, 0.25]]
    out = nn.RMSNorm(4)(x)
    xt = torch.tensor([v.data for v in x])
    np.testing.assert_allclose(
        [o.data for o in out], torch.nn.functional.rms_norm(xt, (4,), eps=1e-5), rtol=1e-12
    )
    lin = nn.Linear(4, 3, bias=True, seed=0)
    lin.bias[1].data = 0.5
    tl = torch.nn.Linear(4, 3)
    with torch.no_grad():
        tl.weight.copy_(matrix(lin.weight))
        tl.bias.copy_(torch.tensor([b.data for b in lin.bias]))
        np.testing.assert_allclose([o.data for o in lin(x)], tl(xt).numpy(), rtol=1e-12)
    assert len(lin.parameters()) == 15 and len(nn.Linear(4, 3, bias=False).parameters()) == 12
    # bias=True by default, as torch.nn.Linear: the same number of parameters
    assert len(nn.Linear(4, 3).parameters()) == sum(p.numel() for p in torch.nn.Linear(4, 3).parameters())
    emb = nn.Embedding(5, 3, seed=0)
    assert emb(2) is emb.weight[2]
    with pytest.raises(IndexError, match="out of range"):
        emb(5)
    weights = [v.data for row in nn.Linear(100, 100, seed=0).weight for v in row]
    assert np.std(weights) == pytest.approx(0.08, rel=0.05)


def test_attention_attends_over_the_cache():
    attn = nn.CausalSelfAttention(4, 2, seed=0)
    cache = ([], [])
    xs = [[cg.Value(v) for v in row] for row in [[1.0, 0.0, -1.0, 0.5], [0.2, 0.3, 0.4, -0.5]]]
    first = attn(xs[0], cache)
    assert len(cache[0]) == len(cache[1]) == 1
    # With one position, attention returns o(v(x)) whatever q and k are.
    np.testing.assert_allclose([o.data for o in first], [o.data for o in attn.o(attn.v(xs[0]))], rtol=1e-12)
    attn(xs[1], cache)
    assert len(cache[0]) == 2


def test_gpt_input_errors():
    model = nn.GPT(5, n_embd=4, n_head=2, block_size=3, seed=0)
    with pytest.raises(ValueError, match="2 to 4 tokens"):
        model.loss([1])
    with pytest.raises(ValueError, match="2 to 4 tokens"):
        model.loss([1, 2, 3, 4, 1])
    with pytest.raises(ValueError, match="1 to 3 tokens"):
        model.forward([1, 2, 3, 4])
    with pytest.raises(ValueError, match="not a token id"):
        model.loss([1, 5])
    with pytest.raises(TypeError, match="list of token ids"):
        model.loss("abc")
    for bad in (0, True):  # as the torch twin: True is no temperature
        with pytest.raises(ValueError, match="temperature"):
            model.generate(0, temperature=bad)
    with pytest.raises(ValueError, match="max_len"):
        model.generate(0, max_len=4)


def test_generate_samples_under_no_grad_and_is_reproducible():
    model = nn.GPT(6, n_embd=4, n_head=2, block_size=8, seed=0)
    a = model.generate(5, rng=random.Random(3))
    b = model.generate(5, rng=random.Random(3))
    assert a == b and len(a) == 8 and all(0 <= t < 6 for t in a)
    assert len(model.generate([5, 1, 2], rng=random.Random(3))) == 6  # what fits after a 3-token prompt
    assert model.generate(5, max_len=3, rng=random.Random(3)) == a[:3]
    stopped = model.generate(5, rng=random.Random(3), stop=a[2])
    assert stopped == a[: a.index(a[2])]
    assert all(p.grad == 0 for p in model.parameters())


def test_gpt_learns_names():
    names = data.load_names()
    tok = data.CharTokenizer(names)
    random.Random(0).shuffle(names)
    model = nn.GPT(tok.vocab_size, n_embd=8, n_head=2, block_size=12, seed=0)
    opt = optim.Adam(model.parameters(), lr=0.01, betas=(0.85, 0.99))
    steps = 250
    schedule = optim.LinearLR(opt, 1.0, 0.1, steps)
    docs = [tok.encode(name)[: model.block_size + 1] for name in names]
    for tokens in docs[:steps]:
        loss = model.loss(tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    with cg.no_grad():
        held_out = np.mean([model.loss(tokens).data for tokens in docs[-50:]])
    assert held_out < math.log(tok.vocab_size) - 0.4


def test_a_numpy_integer_seed_draws_what_the_int_draws_and_a_bad_seed_is_named():
    assert nn.MLP(2, [3, 1], seed=np.int64(3)).state_dict() == nn.MLP(2, [3, 1], seed=3).state_dict()
    for bad in (True, 1.5, "3"):
        with pytest.raises(TypeError, match=r"seed must be an int, a random\.Random or None"):
            nn.MLP(2, [3, 1], seed=bad)


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


# ---------------------------------------------------------------------------
# Several outputs: a list whose backward() says to reduce it first
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", [lambda: nn.MLP(2, [3, 2], seed=0), lambda: nn.Layer(2, 2, seed=0)], ids=["MLP", "Layer"]
)
def test_backward_on_several_outputs_says_to_reduce_them_first(model):
    m = model()
    outputs = m([1.0, 2.0])
    assert isinstance(outputs, list) and len(outputs) == 2
    with pytest.raises(TypeError, match=r"list of 2 outputs: reduce it first, e\.g\. cg\.sum\(outputs\)"):
        outputs.backward()
    assert all(p.grad == 0.0 for p in m.parameters())
    cg.sum(outputs).backward()  # as the error says
    reference = model()
    cg.sum(list(reference([1.0, 2.0]))).backward()
    assert [p.grad for p in m.parameters()] == [p.grad for p in reference.parameters()]


def test_several_outputs_are_a_list_in_every_other_way():
    m = nn.MLP(2, [3, 2], seed=0)
    outputs = m([1.0, 2.0])
    assert outputs == list(outputs) and outputs[-1] is [*outputs][-1]
    copied = pickle.loads(pickle.dumps(outputs))
    assert type(copied) is nn.Outputs and [o.data for o in copied] == [o.data for o in outputs]
    layer = nn.Layer(2, 2, seed=1)
    assert [o.data for o in nn.Layer(2, 2, seed=1)(outputs)] == [o.data for o in layer(list(outputs))]
    assert m([1.0, 2.0]).__class__.__name__ == "Outputs" and type(m([1.0, 2.0])[0]) is cg.Value


@pytest.mark.parametrize("std", [math.nan, math.inf, -0.1, "0.1"])
@pytest.mark.parametrize("cls", [nn.Linear, nn.Embedding])
def test_a_bad_std_is_refused(cls, std):
    error = TypeError if isinstance(std, str) else ValueError
    with pytest.raises(error, match="std must be"):
        cls(3, 2, std=std)


def test_linear_has_a_bias_by_default_as_torch_and_it_learns():
    lin = nn.Linear(3, 2, seed=0)
    assert lin.bias is not None and [b.data for b in lin.bias] == [0.0, 0.0]
    assert lin.architecture()["bias"] is True and "bias=True" in repr(lin)
    x = [0.5, -1.0, 2.0]
    cg.sum(lin(x)).backward()
    t = torch.nn.Linear(3, 2)
    with torch.no_grad():
        t.weight.copy_(matrix(lin.weight))
        t.bias.zero_()
    t(torch.tensor(x)).sum().backward()
    assert [b.grad for b in lin.bias] == t.bias.grad.tolist()
    gpt = nn.GPT(5, n_embd=4, n_head=2, block_size=3)
    linears = [
        gpt.lm_head,
        *(m for b in gpt.layers for m in (b.fc1, b.fc2, b.attn.q, b.attn.k, b.attn.v, b.attn.o)),
    ]
    assert all(m.bias is None for m in linears), "the GPT's layers have no bias, as microgpt's"
    with pytest.raises(TypeError, match="bias must be True or False"):
        nn.Linear(3, 2, bias="yes")
