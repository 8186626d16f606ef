"""chaingrad.optim: parity with torch.optim for the same gradients, schedules, and errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import assert_close

import chaingrad as cg
from chaingrad import optim

N, STEPS = 6, 20

OPTIMIZERS = {
    "sgd": (optim.SGD, torch.optim.SGD, dict(lr=0.1)),
    "sgd momentum": (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
    "sgd nesterov": (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    "sgd weight decay": (optim.SGD, torch.optim.SGD, dict(lr=0.1, weight_decay=0.05)),
    "sgd all": (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.5, weight_decay=0.1, nesterov=True)),
    "adam": (optim.Adam, torch.optim.Adam, dict(lr=0.01)),
    "adam microgpt": (optim.Adam, torch.optim.Adam, dict(lr=0.01, betas=(0.85, 0.99), eps=1e-8)),
    "adam weight decay": (
        optim.Adam,
        torch.optim.Adam,
        dict(lr=0.02, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1),
    ),
    "adamw": (optim.AdamW, torch.optim.AdamW, dict(lr=0.01)),
    "adamw weight decay": (
        optim.AdamW,
        torch.optim.AdamW,
        dict(lr=0.05, betas=(0.7, 0.95), weight_decay=0.3),
    ),
}


def pair(name, seed=0):
    """Our optimizer and torch's on the same starting parameters."""
    ours_cls, torch_cls, kwargs = OPTIMIZERS[name]
    start = np.random.default_rng(seed).normal(size=N)
    params = [cg.Value(x) for x in start]
    tensor = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    return params, ours_cls(params, **kwargs), tensor, torch_cls([tensor], **kwargs)


def feed(params, tensor, grads):
    for p, g in zip(params, grads):
        p.grad = float(g)
    tensor.grad = torch.tensor(grads, dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_matches_torch_for_the_same_gradients(name):
    params, ours, tensor, theirs = pair(name)
    rng = np.random.default_rng(1)
    for step in range(STEPS):
        feed(params, tensor, rng.normal(size=N) * (1 + step % 3))
        ours.step()
        theirs.step()
        np.testing.assert_allclose(
            [p.data for p in params], tensor.detach().numpy(), rtol=0, atol=1e-12, err_msg=f"step {step}"
        )


@pytest.mark.parametrize("name", ["sgd momentum", "adam", "adamw"])
def test_state_dict_holds_torchs_buffers_as_plain_values(name):
    params, ours, tensor, theirs = pair(name)
    rng = np.random.default_rng(2)
    for _ in range(3):
        feed(params, tensor, rng.normal(size=N))
        ours.step()
        theirs.step()
    state = ours.state_dict()
    assert json.loads(json.dumps(state)) == state
    assert state["steps"] == 3 and state["lr"] == OPTIMIZERS[name][2]["lr"]
    expected = theirs.state[tensor]
    for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
        if key in expected:
            np.testing.assert_allclose(state[key], expected[key].numpy(), rtol=1e-12)


def test_zero_grad_and_a_mutable_lr():
    params = [cg.Value(1.0), cg.Value(2.0)]
    opt = optim.SGD(params, lr=0.5)
    (params[0] * params[1]).backward()
    opt.lr = 0.0
    opt.step()
    assert [p.data for p in params] == [1.0, 2.0]
    opt.lr = 0.5
    opt.step()
    assert [p.data for p in params] == [0.0, 1.5]
    opt.zero_grad()
    assert [p.grad for p in params] == [0.0, 0.0]


def test_int_data_is_a_number_not_a_batch():
    p = cg.Value(1.0)
    p.data = 0  # as micrograd's biases are
    p.grad = 2.0
    optim.SGD([p], lr=0.5).step()
    assert p.data == -1.0


# ---------------------------------------------------------------------------
# Steps after backward(create_graph=True), and eps = 0
# ---------------------------------------------------------------------------

COEFFICIENTS = [0.5, -1.0, 2.0, 0.25, -0.75, 1.5]


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True:UserWarning")
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_step_after_create_graph_steps_on_the_gradients_values_as_torch_does(name):
    # After backward(create_graph=True) each grad is a Value (torch: a tensor with a graph).
    params, ours, tensor, theirs = pair(name)
    for step in range(4):
        ours.zero_grad()
        theirs.zero_grad()
        cg.sum([c * p**3 for c, p in zip(COEFFICIENTS, params)]).backward(create_graph=True)
        (torch.tensor(COEFFICIENTS) * tensor**3).sum().backward(create_graph=True)
        assert all(isinstance(p.grad, cg.Value) for p in params)
        ours.step()
        with torch.no_grad():
            theirs.step()
        assert all(type(p.data) is float for p in params), f"step {step} made a parameter a Value"
        np.testing.assert_allclose(
            [p.data for p in params], tensor.detach().numpy(), rtol=0, atol=1e-12, err_msg=f"step {step}"
        )
    assert all(
        type(x) is float for x in ours.state_dict().get("exp_avg", ours.state_dict().get("momentum_buffer"))
    )


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), lambda ps: optim.AdamW(ps)])
def test_a_model_steps_after_create_graph_then_runs_and_saves(make, tmp_path):
    model = cg.nn.MLP(2, [4, 1], seed=1)
    opt = make(model.parameters())
    loss = model([0.5, -1.0]) ** 2
    loss.backward(create_graph=True)
    opt.step()
    assert all(type(p.data) is float for p in model.parameters())
    model.zero_grad()
    (model([0.5, -1.0]) ** 2).backward()  # the next forward and backward work
    opt.step()
    model.save(tmp_path / "m.json")
    assert cg.nn.MLP(2, [4, 1], seed=2).load(tmp_path / "m.json").state_dict() == model.state_dict()


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_eps_0_gives_what_torch_gives_on_zero_and_underflowing_gradients(name):
    # PyTorch accepts eps=0; a gradient that has always been 0 gives 0 / 0 = nan, one whose square
    # underflows to 0 gives an infinity, and the others step as usual.
    ours_cls, torch_cls, _ = OPTIMIZERS[name]
    start = [1.0, 2.0, 3.0, -1.0, 0.5, -2.0]
    params = [cg.Value(x) for x in start]
    tensor = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    ours = ours_cls(params, lr=0.1, eps=0)
    theirs = torch_cls([tensor], lr=0.1, eps=0)
    for grads in (
        [0.0, 1e-200, -1e-200, 0.5, -0.0, 0.0],
        [0.0, 1.0, 1.0, 0.0, 0.0, 2.0],
        [1.0, 0.0, 0.0, -3.0, 0.0, 0.0],
    ):
        feed(params, tensor, grads)
        ours.step()
        theirs.step()
        assert_close([p.data for p in params], tensor.detach().numpy(), rel=1e-12, what=str(grads))
    assert math.isnan(params[0].data) and params[1].data == -math.inf and params[2].data == math.inf


# ---------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------

SCHEDULES = {
    "linear": (
        optim.LinearLR,
        torch.optim.lr_scheduler.LinearLR,
        dict(start_factor=0.25, end_factor=0.9, total_iters=7),
    ),
    "linear default": (optim.LinearLR, torch.optim.lr_scheduler.LinearLR, {}),
    "cosine": (
        optim.CosineAnnealingLR,
        torch.optim.lr_scheduler.CosineAnnealingLR,
        dict(T_max=10, eta_min=0.01),
    ),
    "step": (optim.StepLR, torch.optim.lr_scheduler.StepLR, dict(step_size=3, gamma=0.5)),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedules_drive_the_optimizer_like_torch(name):
    ours_cls, torch_cls, kwargs = SCHEDULES[name]
    params, ours, tensor, theirs = pair("adam")
    ours_sched, theirs_sched = ours_cls(ours, **kwargs), torch_cls(theirs, **kwargs)
    rng = np.random.default_rng(3)
    for step in range(25):
        assert ours.lr == pytest.approx(theirs.param_groups[0]["lr"], rel=1e-12, abs=1e-15), f"step {step}"
        feed(params, tensor, rng.normal(size=N))
        ours.step()
        theirs.step()
        ours_sched.step()
        theirs_sched.step()
    np.testing.assert_allclose([p.data for p in params], tensor.detach().numpy(), rtol=0, atol=1e-12)


def test_a_step_schedule_that_overflows_gives_an_infinite_lr_as_torchs_does():
    opt = optim.SGD([cg.Value(0.0)], lr=0.1)
    theirs = torch.optim.SGD([torch.zeros(1)], lr=0.1)
    ours_sched = optim.StepLR(opt, step_size=1, gamma=1e300)
    theirs_sched = torch.optim.lr_scheduler.StepLR(theirs, step_size=1, gamma=1e300)
    for _ in range(3):
        theirs.step()  # as torch wants it, before its schedule's step
        ours_sched.step()
        theirs_sched.step()
        assert opt.lr == theirs.param_groups[0]["lr"]
    assert opt.lr == math.inf


def test_linear_lr_is_micrograds_demo_schedule():
    opt = optim.SGD([cg.Value(0.0)], lr=1.0)
    schedule = optim.LinearLR(opt, start_factor=1.0, end_factor=0.1, total_iters=100)
    for k in range(100):
        assert opt.lr == pytest.approx(1.0 - 0.9 * k / 100, rel=1e-12)
        schedule.step()


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def values(n=2):
    return [cg.Value(float(i)) for i in range(n)]


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: optim.SGD([], lr=0.1), ValueError, "empty parameter list"),
        (lambda: optim.Adam(iter([])), ValueError, "empty parameter list"),
        (lambda: optim.SGD([cg.Value(1.0), 2.0], lr=0.1), TypeError, "parameter 1 is float"),
        (lambda: optim.SGD(cg.Value(1.0), lr=0.1), TypeError, "list of Values"),
        (lambda: optim.SGD([cg.Value(np.array([1.0, 2.0]))], lr=0.1), ValueError, "holds a batch"),
        (lambda: optim.SGD([v := cg.Value(1.0), v], lr=0.1), ValueError, "more than once"),
        (lambda: optim.SGD(values(), lr=-0.1), ValueError, "lr must be in"),
        (lambda: optim.SGD(values(), lr="0.1"), TypeError, "lr must be a number"),
        (lambda: optim.SGD(values(), lr=0.1, momentum=1.0), ValueError, "momentum"),
        (lambda: optim.SGD(values(), lr=0.1, momentum=-0.5), ValueError, "momentum"),
        (lambda: optim.SGD(values(), lr=0.1, nesterov=True), ValueError, "nesterov"),
        (lambda: optim.SGD(values(), lr=0.1, weight_decay=-1), ValueError, "weight_decay"),
        (lambda: optim.Adam(values(), lr=-1e-3), ValueError, "lr"),
        (lambda: optim.Adam(values(), betas=(1.0, 0.9)), ValueError, r"betas\[0\]"),
        (lambda: optim.Adam(values(), betas=(0.9, -0.1)), ValueError, r"betas\[1\]"),
        (lambda: optim.Adam(values(), betas=0.9), TypeError, "betas"),
        (lambda: optim.AdamW(values(), eps=-1.0), ValueError, "eps"),
        (lambda: optim.LinearLR(torch.optim.SGD([torch.zeros(1)], lr=0.1)), TypeError, "chaingrad optimizer"),
        (lambda: optim.CosineAnnealingLR(optim.SGD(values(), lr=0.1), T_max=0), ValueError, "T_max"),
        (lambda: optim.StepLR(optim.SGD(values(), lr=0.1), step_size=1.5), ValueError, "step_size"),
        (lambda: optim.LinearLR(optim.SGD(values(), lr=0.1), start_factor=0), ValueError, "start_factor"),
    ],
)
def test_bad_arguments_are_clear_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_a_failed_schedule_leaves_the_lr_alone():
    opt = optim.SGD(values(), lr=0.3)
    with pytest.raises(ValueError):
        optim.StepLR(opt, step_size=0)
    assert opt.lr == 0.3


@pytest.mark.parametrize("name", ["sgd momentum", "adam", "adamw"])
@pytest.mark.parametrize(
    ("attr", "bad", "error", "message"),
    [
        ("grad", None, TypeError, r"grad is NoneType None, not a number"),
        ("grad", "x", TypeError, r"grad is str 'x', not a number"),
        ("grad", np.array([1.0, 2.0]), TypeError, r"grad is ndarray .* not a number"),
        ("grad", True, TypeError, r"grad is bool True, not a number"),
        ("grad", 10**400, ValueError, r"grad 1000.* is too large for a float"),
        ("data", "x", TypeError, r"data is str 'x', not a number"),
        ("data", 10**400, ValueError, r"data 1000.* is too large for a float"),
    ],
)
def test_a_bad_grad_or_data_on_a_later_parameter_is_named_and_nothing_changes(
    name, attr, bad, error, message
):
    ours, _, kwargs = OPTIMIZERS[name]
    ps = [cg.Value(1.0), cg.Value(2.0), cg.Value(3.0)]
    opt = ours(ps, **kwargs)
    for p in ps:
        p.grad = 0.5
    opt.step()
    ps[0].grad, ps[1].grad, ps[2].grad = 1.0, 0.25, 0.0
    setattr(ps[2], attr, bad)
    before = json.dumps(opt.state_dict()), [p.data for p in ps]
    with pytest.raises(error, match="parameter 2's " + message):
        opt.step()
    assert (json.dumps(opt.state_dict()), [p.data for p in ps]) == before
    ps[2].grad, ps[2].data = 0.0, 3.0  # and the optimizer goes on as if the failed step had not been tried
    opt.step()
    assert opt.steps == 2
