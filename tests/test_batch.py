"""The batch axis: a Value holding one number per sample behaves like the samples run one by one."""

import itertools
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from refusals import assert_refused

import chaingrad as cg
from chaingrad import Value
from chaingrad.layers import affine_layers

ACTIVATIONS = ["relu", "tanh", "sigmoid", None]


def random_net(rng, sizes, activation):
    """Weights as Values, and a forward pass through cg.affine layers (linear last layer)."""
    layers = [
        ([[Value(v) for v in row] for row in rng.normal(size=(o, i))], [Value(v) for v in rng.normal(size=o)])
        for i, o in itertools.pairwise(sizes)
    ]
    params = [p for W, b in layers for row in W for p in row] + [p for _, b in layers for p in b]

    def forward(xs):
        for k, (W, b) in enumerate(layers):
            xs = cg.affine(W, xs, b, activation if k < len(layers) - 1 else None)
        return xs

    return params, forward


def per_sample_and_batch(params, forward, loss_of, X):
    """(mean loss, mean grads) over per-sample runs, and (loss, grads) of one batched run."""
    for p in params:
        p.grad = 0.0
    total = 0.0
    for row in X:
        loss = loss_of(forward([Value(v) for v in row]))
        loss.backward()
        total += loss.data
    per_sample = (total / len(X), [p.grad / len(X) for p in params])
    for p in params:
        p.grad = 0.0
    loss = cg.batch_mean(loss_of(forward([Value(X[:, j]) for j in range(X.shape[1])])))
    loss.backward()
    return per_sample, (loss.data, [p.grad for p in params])


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    batch=st.integers(1, 9),
    sizes=st.lists(st.integers(1, 5), min_size=2, max_size=4),
    activation=st.sampled_from(ACTIVATIONS),
)
def test_batch_gradient_is_the_mean_of_per_sample_gradients(seed, batch, sizes, activation):
    rng = np.random.default_rng(seed)
    params, forward = random_net(rng, sizes, activation)
    X = rng.normal(size=(batch, sizes[0]))

    def loss_of(outs):
        return cg.sum([(o - 0.5) ** 2 for o in outs]).tanh() + cg.logsumexp(outs)

    (loss1, grads1), (loss2, grads2) = per_sample_and_batch(params, forward, loss_of, X)
    assert loss2 == pytest.approx(loss1, rel=1e-12, abs=1e-12)
    assert grads2 == pytest.approx(grads1, rel=1e-12, abs=1e-12)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 6), classes=st.integers(2, 5))
def test_batched_cross_entropy_with_one_target_per_sample(seed, batch, classes):
    rng = np.random.default_rng(seed)
    params, forward = random_net(rng, [3, 4, classes], "tanh")
    X = rng.normal(size=(batch, 3))
    targets = rng.integers(0, classes, size=batch)
    for p in params:
        p.grad = 0.0
    total = 0.0
    for row, t in zip(X, targets):
        loss = cg.cross_entropy(forward([Value(v) for v in row]), int(t))
        loss.backward()
        total += loss.data
    expected = [p.grad / batch for p in params]
    for p in params:
        p.grad = 0.0
    loss = cg.batch_mean(cg.cross_entropy(forward([Value(X[:, j]) for j in range(3)]), targets))
    loss.backward()
    assert loss.data == pytest.approx(total / batch, rel=1e-12)
    assert [p.grad for p in params] == pytest.approx(expected, rel=1e-12, abs=1e-13)


def test_batched_layer_matches_torch():
    rng = np.random.default_rng(7)
    W, b, X = rng.normal(size=(4, 3)), rng.normal(size=4), rng.normal(size=(6, 3))
    cw = [[Value(v) for v in row] for row in W]
    cb = [Value(v) for v in b]
    xs = [Value(X[:, j]) for j in range(3)]
    outs = cg.affine(cw, xs, cb, "tanh")
    cg.batch_mean(cg.sum([o * o for o in outs])).backward()

    tw = torch.tensor(W, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    tx = torch.tensor(X, requires_grad=True)
    tout = torch.tanh(tx @ tw.T + tb)
    (tout * tout).sum(dim=1).mean().backward()
    assert np.stack([o.data for o in outs], axis=1) == pytest.approx(tout.detach().numpy(), rel=1e-12)
    assert [p.grad for row in cw for p in row] == pytest.approx(tw.grad.flatten().tolist(), rel=1e-12)
    assert [p.grad for p in cb] == pytest.approx(tb.grad.tolist(), rel=1e-12)
    assert np.stack([x.grad for x in xs], axis=1) == pytest.approx(tx.grad.numpy(), rel=1e-12)


def test_a_shared_input_gets_the_sum_over_the_batch():
    w = Value(0.5)
    x = Value(np.array([1.0, 2.0, 3.0]))
    cg.batch_sum(w * x).backward()
    assert type(w.grad) is float
    assert w.grad == 6.0
    assert x.grad.tolist() == [0.5, 0.5, 0.5]


def test_an_ndarray_on_the_left_gives_a_value():
    score = Value(np.array([0.5, -1.0]))
    y = np.array([1.0, -1.0])
    for out in (y * score, y + score, y - score, y / score, y**score):
        assert isinstance(out, Value)
        assert out.data.shape == (2,)


def test_backward_on_a_batch_says_to_reduce_it_first():
    v = Value(np.array([1.0, 2.0])) * 3
    with pytest.raises(ValueError, match="reduce it first"):
        v.backward()


def test_batches_of_different_sizes_name_both_sizes():
    a, b = Value(np.ones(3)), Value(np.ones(5))
    for combine in (lambda: a + b, lambda: cg.dot([a, b], [1.0, 2.0]), lambda: cg.softmax([a, b])):
        with pytest.raises(ValueError, match=r"\[3, 5\]"):
            combine()


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
    "custom op": lambda a, b: cg.Op("test_batch_add", lambda x, y: x + y, lambda x, y, out: (1.0, 1.0))(a, b),
}


@pytest.mark.parametrize("combine", MISMATCHED)
def test_batches_of_different_sizes_are_refused_by_every_op(combine):
    # test_batches_of_different_sizes_name_both_sizes checks +, dot with a constant and softmax.
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


def test_batch_data_must_be_one_dimensional_and_non_empty():
    with pytest.raises(ValueError, match="1-D"):
        Value(np.ones((2, 2)))
    with pytest.raises(ValueError, match="at least one sample"):
        Value(np.array([]))


def _bits(x):
    """A float or an array as the exact bits of each entry, -0.0 and nan payloads included."""
    return np.asarray(x, dtype=float).tobytes()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    batch=st.integers(1, 5),
    sizes=st.lists(st.integers(1, 4), min_size=2, max_size=5),
    activation=st.sampled_from(ACTIVATIONS),
    used=st.integers(0, 15),
    scale=st.sampled_from([1.0, 1e-300, 1e200]),
)
def test_all_layers_as_one_node_give_the_layers_one_after_the_other_bit_for_bit(
    seed, batch, sizes, activation, used, scale
):
    # affine_layers (an MLP on a batch) is one node; its composition is one affine node per layer.
    # Same data, same grads, to the bit, with outputs that nothing consumes and values that overflow.
    rng = np.random.default_rng(seed)
    layers = [
        (
            [[Value(v) for v in row] for row in rng.normal(size=(o, i)) * scale],
            [Value(v) for v in rng.normal(size=o)],
        )
        for i, o in itertools.pairwise(sizes)
    ]
    params = [p for W, b in layers for row in W for p in row] + [p for _, b in layers for p in b]
    acts = [activation if k < len(layers) - 1 else "tanh" for k in range(len(layers))]
    X = rng.normal(size=(sizes[0], batch))
    results = []
    for fused in (True, False):
        for p in params:
            p.grad = 0.0
        xs = [Value(x) for x in X]
        if fused:
            outs = affine_layers([(W, b, a) for (W, b), a in zip(layers, acts)], xs)
        else:
            outs = xs
            for (W, b), a in zip(layers, acts):
                outs = cg.affine(W, outs, b, a)
        consumed = [o for k, o in enumerate(outs) if used >> k & 1] or outs[:1]
        cg.batch_sum(cg.sum([o * o for o in consumed])).backward()
        results.append([_bits(o.data) for o in outs] + [_bits(v.grad) for v in params + xs])
    assert results[0] == results[1]


def test_all_layers_take_any_sequence_of_inputs_and_refuse_a_non_sequence():
    layers = [([[Value(2.0), Value(1.0)]], [Value(0.5)], "relu"), ([[Value(3.0)]], None, None)]
    for xs in ([1.0, 4.0], (1.0, 4.0), iter([1.0, 4.0]), [Value(np.array([1.0])), Value(np.array([4.0]))]):
        (out,) = affine_layers(layers, xs)
        assert float(np.sum(out.data)) == 3.0 * (2.0 * 1.0 + 1.0 * 4.0 + 0.5)
    with pytest.raises(TypeError, match="affine"):
        affine_layers(layers, 5)


def test_an_mlp_on_a_batch_is_one_node_below_its_outputs():
    model = cg.nn.MLP(3, [4, 4, 2], seed=0)
    outs = model(cg.data.columns(np.ones((5, 3))))
    (layer,) = {o._prev[0] for o in outs}
    assert layer._op == "affine" and len(layer._prev) == len(model.parameters()) + 3


def test_no_grad_on_a_batched_layer_gives_the_same_numbers_and_no_graph():
    rng = np.random.default_rng(1)
    _, forward = random_net(rng, [2, 3, 2], "relu")
    xs = [Value(rng.normal(size=4)) for _ in range(2)]
    with_graph = [o.data for o in forward(xs)]
    with cg.no_grad():
        outs = forward(xs)
    assert all(o._prev == () for o in outs)
    assert [o.data.tolist() for o in outs] == [d.tolist() for d in with_graph]


def test_gradcheck_and_anomaly_work_on_batched_graphs():
    x = Value(np.array([0.3, -0.7, 1.2]), label="x")
    w = Value(0.8, label="w")
    assert cg.gradcheck(lambda x, w: cg.batch_mean((x * w).tanh() * x), [x, w])
    with cg.detect_anomaly(), pytest.raises(cg.AnomalyError, match="log"):
        (x - 0.3).log()


def test_affine_errors():
    x = [Value(1.0), Value(2.0)]
    with pytest.raises(ValueError, match="weight row 0 has 1 entries for 2 inputs"):
        cg.affine([[Value(1.0)]], x)
    with pytest.raises(ValueError, match="activation"):
        cg.affine([[1.0, 2.0]], x, activation="gelu")
    with pytest.raises(ValueError, match="1 biases for 2 rows"):
        cg.affine([[1.0, 2.0], [3.0, 4.0]], x, [0.0])


def test_the_scalar_engine_runs_where_numpy_cannot_be_imported():
    code = (
        "import sys; sys.modules['numpy'] = None\n"  # any `import numpy` now raises ImportError
        "import chaingrad as cg\n"
        "m = cg.nn.MLP(2, [4, 1], seed=0)\n"
        "scores = [m([0.5, -1.0]), m([1.0, 2.0])]\n"
        "loss = cg.losses.hinge(scores, [1.0, -1.0]) + 1e-4 * cg.losses.l2(m.parameters())\n"
        "loss.backward()\n"
        "cg.optim.SGD(m.parameters(), lr=0.1).step()\n"
        "print(cg.softmax([1.0, 2.0])[0].data, cg.autodiff.grad(lambda x: x.tanh())(0.0).data)\n"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [repr(1 / (1 + np.e)), "1.0"]


def _torch_twin(model):
    """The same MLP in PyTorch float64, and its parameters in chaingrad's order (weights row by row, bias)."""
    net = model.to_torch()
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    return net, linears


def _torch_grads_in_our_order(linears):
    out = []
    for lin in linears:
        for row, b in zip(lin.weight.grad.tolist(), lin.bias.grad.tolist()):
            out += [*row, b]
    return out


def test_moons_demo_in_batch_form_matches_torch_step_by_step():
    X, y = cg.data.make_moons(100, noise=0.1, seed=5)
    y = 2.0 * y - 1
    model = cg.nn.MLP(2, [16, 16, 1], seed=5)
    net, linears = _torch_twin(model)
    tparams = [p for lin in linears for p in (lin.weight, lin.bias)]
    tX, ty = torch.tensor(X), torch.tensor(y)
    for k in range(5):
        lr = 1.0 - 0.9 * k / 100
        loss = cg.losses.hinge(model(cg.data.columns(X)), y) + 1e-4 * cg.losses.l2(model.parameters())
        model.zero_grad()
        loss.backward()
        tloss = torch.relu(1 - ty * net(tX)[:, 0]).mean() + 1e-4 * sum((p * p).sum() for p in tparams)
        net.zero_grad()
        tloss.backward()
        assert loss.data == pytest.approx(tloss.item(), rel=1e-12)
        assert [p.grad for p in model.parameters()] == pytest.approx(
            _torch_grads_in_our_order(linears), rel=1e-10, abs=1e-14
        )
        for p in model.parameters():
            p.data -= lr * p.grad
        with torch.no_grad():
            for p in tparams:
                p -= lr * p.grad


def test_digits_classifier_in_batch_form_matches_torch_with_adam():
    X, y = cg.data.load_digits()
    X, y = X[:64], y[:64]
    model = cg.nn.MLP(64, [32, 10], seed=2)
    net, linears = _torch_twin(model)
    opt = cg.optim.Adam(model.parameters(), lr=0.01)
    topt = torch.optim.Adam(net.parameters(), lr=0.01)
    for Xb, yb in cg.data.batches(X, y, batch_size=32, shuffle=True, seed=0):
        loss = cg.losses.cross_entropy(model(cg.data.columns(Xb)), yb)
        opt.zero_grad()
        loss.backward()
        tloss = torch.nn.functional.cross_entropy(net(torch.tensor(Xb)), torch.tensor(yb))
        topt.zero_grad()
        tloss.backward()
        assert loss.data == pytest.approx(tloss.item(), rel=1e-12)
        assert [p.grad for p in model.parameters()] == pytest.approx(
            _torch_grads_in_our_order(linears), rel=1e-9, abs=1e-14
        )
        opt.step()
        topt.step()
    ours = [p.data for p in model.parameters()]
    theirs = [
        v for lin in linears for row, b in zip(lin.weight.tolist(), lin.bias.tolist()) for v in (*row, b)
    ]
    assert ours == pytest.approx(theirs, rel=1e-10, abs=1e-12)


# A batch gives, bit for bit, what each of its samples gives alone: values and gradients, every op,
# on thousands of fresh random inputs each run (the seed is in the message), with the special values.
SAMPLES = 3000
SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -3.0, 20.31041457938472, 709.7, -745.0, 1e300, -1e-300, 5e-324]
SPECIAL += [float("inf"), float("-inf"), float("nan")]


def _fresh_inputs(seed, n=SAMPLES):
    rng = np.random.default_rng(seed)
    wide = rng.normal(size=n) * 10.0 ** rng.integers(-3, 3, size=n)
    return np.concatenate([SPECIAL, wide[: n - len(SPECIAL)]])


def _bits(x):
    """Each float's exact bits (every nan alike: IEEE-754 leaves a nan's sign and payload open)."""
    return ["nan" if v != v else np.float64(v).tobytes().hex() for v in np.atleast_1d(np.asarray(x, float))]


UNARY_OPS = ["exp", "log", "tanh", "sigmoid", "relu", "sqrt", "abs", "sin", "cos", "__neg__"]
BINARY_OPS = ["__add__", "__sub__", "__mul__", "__truediv__", "__pow__"]
FUSED_OPS = {
    "softmax": lambda xs: cg.softmax(xs)[1],
    "log_softmax": lambda xs: cg.log_softmax(xs)[0],
    "logsumexp": cg.logsumexp,
    "cross_entropy": lambda xs: cg.cross_entropy(xs, 2),
    "sum": cg.sum,
    "mean": cg.mean,
    "dot": lambda xs: cg.dot(xs, xs[::-1]),
}


def _each_sample_alone(f, columns):
    """f on each sample alone: (the values, the gradients of each input), as bit strings."""
    values, grads = [], [[] for _ in columns]
    for sample in zip(*columns):
        leaves = [Value(float(x)) for x in sample]
        out = f(*leaves)
        out.backward()
        values += _bits(out.data)
        for g, leaf in zip(grads, leaves):
            g += _bits(leaf.grad)
    return values, grads


def _as_batch(f, columns):
    leaves = [Value(np.array(c)) for c in columns]
    out = f(*leaves)
    cg.batch_sum(out).backward()
    return _bits(out.data), [_bits(leaf.grad) for leaf in leaves]


def _first_difference(batch, alone, columns):
    for k, (b, a) in enumerate(zip(batch, alone)):
        if b != a:
            return k, [c[k] for c in columns], b, a
    return None


@pytest.mark.parametrize("op", UNARY_OPS + BINARY_OPS + list(FUSED_OPS))
def test_a_batch_gives_each_sample_what_it_gives_alone_bit_for_bit(op):
    seed = int.from_bytes(os.urandom(4), "little")
    x = _fresh_inputs(seed)
    if op in UNARY_OPS:
        f, columns = (lambda v: getattr(v, op)()), [x]
    elif op in BINARY_OPS:
        f, columns = (lambda a, b: getattr(a, op)(b)), [x, np.random.default_rng(seed + 1).permutation(x)]
    else:
        rng = np.random.default_rng(seed + 2)
        f, columns = (lambda *xs: FUSED_OPS[op](list(xs))), [x, *(rng.permutation(x) for _ in range(3))]
    batch_values, batch_grads = _as_batch(f, columns)
    alone_values, alone_grads = _each_sample_alone(f, columns)
    diff = _first_difference(batch_values, alone_values, columns)
    assert diff is None, (
        f"seed {seed}: value at sample {diff[0]}, inputs {diff[1]}: batch {diff[2]}, alone {diff[3]}"
    )
    for i, (b, a) in enumerate(zip(batch_grads, alone_grads)):
        diff = _first_difference(b, a, columns)
        assert diff is None, (
            f"seed {seed}: gradient of input {i} at sample {diff[0]}, inputs {diff[1]}: batch {diff[2]}, "
            f"alone {diff[3]}"
        )
