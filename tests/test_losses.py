"""chaingrad.losses: values and gradients against PyTorch float64, per sample and batched, and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import same

import chaingrad as cg
from chaingrad import losses

rng = np.random.default_rng(0)
SCORES = np.concatenate([rng.normal(scale=3, size=6), [0.0, 1.0, -1.0, 40.0, -40.0, 1000.0, -1000.0]])
N = len(SCORES)

# name: (our loss, targets, torch's loss of (outputs, targets))
CASES = {
    "hinge": (losses.hinge, rng.choice([-1.0, 1.0], N), lambda s, y: torch.relu(1 - y * s).mean()),
    "mse": (losses.mse, rng.normal(size=N), F.mse_loss),
    "bce": (losses.binary_cross_entropy_with_logits, rng.uniform(size=N), F.binary_cross_entropy_with_logits),
    "bce hard labels": (
        losses.binary_cross_entropy_with_logits,
        rng.integers(0, 2, N).astype(float),
        F.binary_cross_entropy_with_logits,
    ),
}


def torch_value_and_grad(torch_loss, outputs, targets):
    s = torch.tensor(outputs, dtype=torch.float64, requires_grad=True)
    out = torch_loss(s, torch.tensor(targets, dtype=torch.float64))
    out.backward()
    return out.item(), s.grad.numpy()


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("batched", [False, True])
def test_matches_torch(name, batched):
    loss, targets, torch_loss = CASES[name]
    expected, expected_grad = torch_value_and_grad(torch_loss, SCORES, targets)
    if batched:
        score = cg.Value(SCORES)
        out = loss(score, targets)
        out.backward()
        grad = score.grad
    else:
        scores = [cg.Value(s) for s in SCORES]
        out = loss(scores, list(targets))
        out.backward()
        grad = [s.grad for s in scores]
    assert type(out.data) is float
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)


def test_bce_gradient_at_zero_is_sigmoid_minus_target():
    x = cg.Value(0.0)
    losses.binary_cross_entropy_with_logits([x], [1.0]).backward()
    assert x.grad == -0.5


def test_bce_is_one_node_per_sample_and_differentiates_twice():
    x = cg.Value(0.7)
    out = losses.binary_cross_entropy_with_logits([x], [0.2])
    assert out._prev[0]._op == "bce_with_logits"
    xt = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(
        F.binary_cross_entropy_with_logits(xt, torch.tensor(0.2, dtype=torch.float64)), xt, create_graph=True
    )
    g.backward()
    out.backward(create_graph=True)
    assert x.grad.data == pytest.approx(g.item(), rel=1e-12)
    x.grad.backward()
    assert x.grad.data == pytest.approx(g.item() + xt.grad.item(), rel=1e-12)  # leaves accumulate


@pytest.mark.parametrize("batched", [False, True])
def test_cross_entropy_matches_torch(batched):
    logits = rng.normal(scale=2, size=(5, 4))
    logits[0, 2] = 1000.0
    targets = np.array([2, 0, 3, 3, 1])
    lt = torch.tensor(logits, requires_grad=True)
    F.cross_entropy(lt, torch.tensor(targets)).backward()
    if batched:
        values = [cg.Value(logits[:, j]) for j in range(4)]
        out = losses.cross_entropy(values, targets)
        out.backward()
        grad = np.stack([v.grad for v in values], axis=1)
    else:
        values = [[cg.Value(x) for x in row] for row in logits]
        out = losses.cross_entropy(values, [int(t) for t in targets])
        out.backward()
        grad = np.array([[v.grad for v in row] for row in values])
    np.testing.assert_allclose(out.data, F.cross_entropy(lt, torch.tensor(targets)).item(), rtol=1e-12)
    np.testing.assert_allclose(grad, lt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_l2_is_one_dot_node_with_torchs_gradient():
    xs = rng.normal(size=7)
    params = [cg.Value(x) for x in xs]
    out = losses.l2(params)
    assert out._op == "dot"
    out.backward()
    t = torch.tensor(xs, requires_grad=True)
    (t * t).sum().backward()
    np.testing.assert_allclose(out.data, (t * t).sum().item(), rtol=1e-12)
    np.testing.assert_allclose([p.grad for p in params], t.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: losses.hinge([cg.Value(1.0)], [1.0, -1.0]), ValueError, "1 outputs but 2 targets"),
        (lambda: losses.mse([], []), ValueError, "no samples"),
        (lambda: losses.hinge(1.0, [1.0]), TypeError, "outputs must be"),
        (lambda: losses.mse(cg.Value(np.zeros(3)), np.zeros(4)), ValueError, r"\[3, 4\]"),
        (lambda: losses.cross_entropy([[cg.Value(1.0), cg.Value(2.0)]], [2]), IndexError, "out of range"),
        (
            lambda: losses.cross_entropy([cg.Value(np.zeros(2))] * 3, np.array([0, 1, 2])),
            ValueError,
            "3 targets",
        ),
        (lambda: losses.l2([]), ValueError, "empty"),
        (
            lambda: losses.mse([cg.Value(1.0)], [np.ones(3)]),
            TypeError,
            "mse\\(\\): target 0 is an array, but per-sample outputs take one target each",
        ),
        (
            lambda: losses.hinge(cg.Value(np.ones(2)), np.array(["a", "b"])),
            TypeError,
            "hinge\\(\\): the targets of a batch are numbers, not an array of <U1",
        ),
    ],
)
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize(
    "x, t", [(math.inf, 0.0), (math.inf, 0.5), (math.inf, 1.0), (-math.inf, 0.0), (-math.inf, 1.0)]
)
def test_bce_at_an_infinite_logit_is_what_torch_gives(x, t):
    want = F.binary_cross_entropy_with_logits(
        torch.tensor(x, dtype=torch.float64), torch.tensor(t, dtype=torch.float64)
    )
    got = losses.binary_cross_entropy_with_logits([cg.Value(x)], [t]).data
    assert same(got, want.item())  # inf where the loss is infinite, nan where torch gives nan


def test_a_batch_takes_its_targets_as_a_list_too_and_bad_targets_are_named():
    scores = np.array([0.5, -1.0, 2.0])
    targets = [1.0, -1.0, 0.5]
    as_list, as_array = cg.Value(scores), cg.Value(scores)
    losses.mse(as_list, targets).backward()
    losses.mse(as_array, np.array(targets)).backward()
    assert as_list.grad.tolist() == as_array.grad.tolist()
    logits = [cg.Value(np.array([0.1, 0.2])), cg.Value(np.array([0.3, -0.2])), cg.Value(np.array([1.0, 0.0]))]
    by_list, by_array = losses.cross_entropy(logits, [0, 2]), losses.cross_entropy(logits, np.array([0, 2]))
    assert by_list.data == by_array.data
    with pytest.raises(TypeError, match="mse\\(\\): targets must be a list, one per output, not NoneType"):
        losses.mse([cg.Value(1.0)], None)
    with pytest.raises(TypeError, match="batch_mean\\(\\) takes one Value holding a batch, not a list"):
        cg.batch_mean([1.0, 2.0])


# ---------------------------------------------------------------------------
# hinge: labels are -1 or 1
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ys, found",
    [
        ([0.0, 1.0, 1.0, 0.0], "found 0.0"),
        ([1, -1, 2, 0.5], "found 0.5, 2.0"),
        (np.array([0, 1, 1]), "found 0"),
        (np.array([1.0, -1.0, 3.0]), "found 3.0"),
        ([cg.Value(0.0), cg.Value(1.0), cg.Value(-1.0)], "found 0.0"),
    ],
    ids=["0/1 floats", "other numbers", "0/1 int array", "float array", "Values"],
)
def test_hinge_names_labels_that_are_not_minus_one_or_one_and_says_to_map_them(ys, found):
    batched = isinstance(ys, np.ndarray)
    scores = cg.Value(np.linspace(-1, 1, len(ys))) if batched else [cg.Value(0.1 * i) for i in range(len(ys))]
    with pytest.raises(ValueError, match=f"labels must be -1 or 1, {found}; map 0/1 labels to -1/1 first"):
        losses.hinge(scores, ys)


def test_hinge_on_minus_one_and_one_labels_matches_torchs_margin_loss():
    ys = [1.0, -1.0, np.float64(-1.0), 1]
    scores = [cg.Value(x) for x in (0.3, -2.0, 0.5, 1.5)]
    loss = losses.hinge(scores, ys)
    loss.backward()
    st = torch.tensor([0.3, -2.0, 0.5, 1.5], dtype=torch.float64, requires_grad=True)
    expected = torch.relu(1 - torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64) * st).mean()
    expected.backward()
    assert loss.data == pytest.approx(expected.item(), rel=1e-15)
    assert [s.grad for s in scores] == pytest.approx(st.grad.tolist(), rel=1e-15)


def test_a_models_outputs_go_into_a_loss_as_a_plain_list_does():
    model = cg.nn.MLP(2, [3, 3], seed=0)
    outputs = model([0.5, -1.0])
    assert type(outputs) is cg.nn.Outputs
    a, b = losses.cross_entropy([outputs], [2]), losses.cross_entropy([list(outputs)], [2])
    assert a.data == b.data
    assert losses.mse(outputs, [0.0, 1.0, 2.0]).data == losses.mse(list(outputs), [0.0, 1.0, 2.0]).data
