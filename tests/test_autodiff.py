"""Higher-order derivatives and the functional API, checked against PyTorch float64."""

import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

import chaingrad as cg
from chaingrad.autodiff import grad, hessian, hvp, value_and_grad

ROOT = Path(__file__).resolve().parent.parent

# (name, chaingrad function, torch function, points)
UNARY = [
    ("x**5", lambda x: x**5, lambda x: x**5, [-1.3, 0.7, 2.0]),
    ("exp", lambda x: x.exp(), torch.exp, [-2.0, 0.3, 1.5]),
    ("log", lambda x: x.log(), torch.log, [0.2, 1.0, 3.5]),
    ("tanh", lambda x: x.tanh(), torch.tanh, [-1.2, 0.1, 0.9]),
    ("sigmoid", lambda x: x.sigmoid(), torch.sigmoid, [-3.0, 0.0, 2.5]),
    ("sqrt", lambda x: x.sqrt(), torch.sqrt, [0.3, 1.0, 4.0]),
    ("sin", lambda x: x.sin(), torch.sin, [-2.0, 0.0, 0.7, 3.1]),
    ("cos", lambda x: cg.cos(x), torch.cos, [-1.5, 0.0, 0.4, 2.5]),
    ("x**y const base", lambda x: 2.5**x, lambda x: 2.5**x, [-1.0, 0.5]),
    ("1/x", lambda x: 1 / x, lambda x: 1 / x, [-2.0, 0.4]),
    (
        "composition",
        lambda x: (x * x + 1).log() * x.tanh() - (x / (1 + x.exp())).sqrt(),
        lambda x: torch.log(x * x + 1) * torch.tanh(x) - torch.sqrt(x / (1 + torch.exp(x))),
        [0.3, 1.7],
    ),
]


def torch_derivatives(f, x0, order):
    """f(x0) and its first `order` derivatives by repeated torch.autograd.grad."""
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    y = f(x)
    out = [y.item()]
    for _ in range(order):
        (y,) = torch.autograd.grad(y, x, create_graph=True)
        out.append(y.item())
    return out


@pytest.mark.parametrize("name,f,tf,points", UNARY, ids=[u[0] for u in UNARY])
def test_up_to_third_derivative_matches_torch(name, f, tf, points):
    d1, d2, d3 = grad(f), grad(grad(f)), grad(grad(grad(f)))
    for x0 in points:
        expected = torch_derivatives(tf, x0, 3)
        got = [f(cg.Value(x0)).data, d1(x0).data, d2(x0).data, d3(x0).data]
        assert got == pytest.approx(expected, rel=1e-10, abs=1e-12), (name, x0)


def test_backward_create_graph_gives_the_same_third_derivative():
    x = cg.Value(0.8)
    (x.tanh() * x.exp()).backward(create_graph=True)
    g1 = x.grad
    x.grad = 0.0
    g1.backward(create_graph=True)
    g2 = x.grad
    x.grad = 0.0
    g2.backward()
    assert x.grad == pytest.approx(grad(grad(grad(lambda v: v.tanh() * v.exp())))(0.8).data, rel=1e-12)


def test_mixed_partials_match_torch():
    def f(x, y):
        return x**3 * (y * 2).tanh() + (x * y).exp()

    def tf(x, y):
        return x**3 * torch.tanh(y * 2) + torch.exp(x * y)

    x0, y0 = 0.7, -0.4
    dxdy = grad(grad(f, argnums=0), argnums=1)(x0, y0).data
    dydx = grad(grad(f, argnums=1), argnums=0)(x0, y0).data
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(y0, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(tf(x, y), x, create_graph=True)
    (gxy,) = torch.autograd.grad(gx, y)
    assert dxdy == pytest.approx(gxy.item(), rel=1e-10)
    assert dydx == pytest.approx(gxy.item(), rel=1e-10)


FUSED = [
    ("softmax", lambda xs: cg.softmax(xs)[1] * 3.0, lambda t: torch.softmax(t, 0)[1] * 3.0),
    ("log_softmax", lambda xs: cg.log_softmax(xs)[2], lambda t: torch.log_softmax(t, 0)[2]),
    ("logsumexp", cg.logsumexp, lambda t: torch.logsumexp(t, 0)),
    (
        "cross_entropy",
        lambda xs: cg.cross_entropy(xs, 0),
        lambda t: torch.nn.functional.cross_entropy(t[None], torch.tensor([0])),
    ),
    ("mean", lambda xs: cg.mean([x * x for x in xs]), lambda t: (t * t).mean()),
    ("dot", lambda xs: cg.dot(xs, [x.tanh() for x in xs]), lambda t: torch.dot(t, torch.tanh(t))),
]


@pytest.mark.parametrize("name,f,tf", FUSED, ids=[u[0] for u in FUSED])
def test_fused_ops_have_second_derivatives(name, f, tf):
    x0 = [0.3, -1.1, 2.0]
    v = [0.5, -1.0, 0.25]
    got = hvp(f, x0, v)
    t = torch.tensor(x0, dtype=torch.float64)
    _, expected = torch.autograd.functional.hvp(tf, t, torch.tensor(v, dtype=torch.float64))
    assert got == pytest.approx(expected.tolist(), rel=1e-10, abs=1e-12)


def small_mlp(seed=0):
    """Weights of a 2-4-1 tanh network, and the same network in chaingrad and torch."""
    rng = np.random.default_rng(seed)
    w1, b1, w2, b2 = rng.normal(size=(4, 2)), rng.normal(size=4), rng.normal(size=4), rng.normal()
    flat = [*w1.ravel(), *b1, *w2, b2]

    def net(params, x):
        w1_, b1_, w2_, b2_ = params[:8], params[8:12], params[12:16], params[16]
        hidden = [cg.dot(w1_[2 * i : 2 * i + 2], x, b1_[i]).tanh() for i in range(4)]
        return cg.dot(w2_, hidden, b2_)

    def tnet(params, x):
        h = torch.tanh(params[:8].reshape(4, 2) @ x + params[8:12])
        return params[12:16] @ h + params[16]

    return flat, net, tnet


def test_hvp_on_an_mlp_loss_matches_torch():
    flat, net, tnet = small_mlp()
    xs = [[0.5, -1.0], [1.5, 0.3], [-0.7, 0.9]]
    ys = [1.0, -1.0, 0.5]

    def loss(params):
        return cg.mean([(net(params, x) - y) ** 2 for x, y in zip(xs, ys)])

    def tloss(params):
        return sum((tnet(params, torch.tensor(x, dtype=torch.float64)) - y) ** 2 for x, y in zip(xs, ys)) / 3

    v = list(np.random.default_rng(1).normal(size=len(flat)))
    got = hvp(loss, flat, v)
    _, expected = torch.autograd.functional.hvp(
        tloss, torch.tensor(flat, dtype=torch.float64), torch.tensor(v, dtype=torch.float64)
    )
    assert got == pytest.approx(expected.tolist(), rel=1e-10, abs=1e-12)


def test_gradient_penalty_on_an_mlp_matches_torch():
    """loss = f(x) + ||d f / d x||^2, differentiated with respect to the weights."""
    flat, net, tnet = small_mlp(seed=3)
    x0 = [0.4, -0.8]
    params = [cg.Value(p) for p in flat]

    def penalised(x1, x2):
        out = net(params, [x1, x2])
        g1, g2 = grad(lambda a, b: net(params, [a, b]), argnums=(0, 1))(x1, x2)
        return out + g1 * g1 + g2 * g2

    penalised(*x0).backward()

    tp = torch.tensor(flat, dtype=torch.float64, requires_grad=True)
    tx = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    out = tnet(tp, tx)
    (gx,) = torch.autograd.grad(out, tx, create_graph=True)
    (out + (gx * gx).sum()).backward()
    assert [p.grad for p in params] == pytest.approx(tp.grad.tolist(), rel=1e-10, abs=1e-12)


def test_value_and_grad_returns_the_value_and_a_tuple_for_several_argnums():
    value, (gx, gy) = value_and_grad(lambda x, y: x * y + y, argnums=(0, 1))(3.0, 4.0)
    assert (value.data, gx.data, gy.data) == (16.0, 4.0, 4.0)


def test_gradients_do_not_touch_grad_fields():
    x = cg.Value(2.0)
    x.grad = 5.0
    assert grad(lambda v: v * v)(x).data == 4.0
    assert x.grad == 5.0


def test_an_argument_that_does_not_reach_the_output_gets_zero():
    gx, gy = grad(lambda x, y: x * 2, argnums=(0, 1))(1.0, 7.0)
    assert (gx.data, gy.data) == (2.0, 0.0)
    assert grad(grad(lambda x: x * 3))(1.0).data == 0.0


def test_grad_errors():
    with pytest.raises(TypeError, match="must return a Value"):
        grad(lambda x: 3.0)(1.0)
    with pytest.raises(ValueError, match="batch of 2 samples"):
        grad(lambda x: x * cg.Value(np.array([1.0, 2.0])))(1.0)
    with pytest.raises(IndexError, match="out of range"):
        grad(lambda x: x, argnums=1)(1.0)
    with pytest.raises(ValueError, match="v has 1 entries"):
        hvp(lambda p: p[0] * p[1], [1.0, 2.0], [1.0])


def test_a_custom_rule_is_differentiated_again():
    # rule(g, x, y, out): each argument's share of g; for higher derivatives it is given Values
    mul = cg.Op("rule_mul", lambda x, y: x * y, rule=lambda g, x, y, out: (g * y, g * x))
    d2 = grad(grad(lambda a, b: mul(a, b) * a), argnums=1)(2.0, 3.0)  # d/db d/da (a*b*a) = 2a

    def tf(a, b):
        return a * b * a

    a, b = (torch.tensor(v, dtype=torch.float64) for v in (2.0, 3.0))
    expected = torch.func.grad(torch.func.grad(tf), argnums=1)(a, b).item()
    assert d2.data == expected == 4.0


def test_functional_derivatives_inside_no_grad_are_the_same_as_outside():
    def f(x):
        return x**3 * cg.Value(2.0).exp()

    def tf(t):
        return t**3 * torch.tensor(2.0, dtype=torch.float64).exp()

    def cube(xs):
        return xs[0] ** 3 * xs[1]

    outside = grad(f)(1.5).data, value_and_grad(f)(1.5)[0].data, hessian(cube, [1.5, 2.0])
    with cg.no_grad():  # as torch.func.grad inside torch.no_grad(): the gradient still needs its graph
        inside = grad(f)(1.5).data, value_and_grad(f)(1.5)[0].data, hessian(cube, [1.5, 2.0])
        assert not cg.is_grad_enabled()  # and no_grad holds again after each call
    assert inside == outside
    with torch.no_grad():
        expected = torch.func.grad(tf)(torch.tensor(1.5, dtype=torch.float64)).item()
    assert inside[0] == pytest.approx(expected, rel=1e-15) and inside[2] == [[18.0, 6.75], [6.75, 0.0]]


def test_hessian_of_a_quadratic_form():
    a = [[2.0, 0.5], [0.5, 1.0]]

    def f(p):
        x, y = p
        return 0.5 * (a[0][0] * x * x + 2 * a[0][1] * x * y + a[1][1] * y * y)

    h = hessian(f, [0.3, -0.2])
    assert [h[0], h[1]] == [pytest.approx(a[0], rel=1e-14), pytest.approx(a[1], rel=1e-14)]


@pytest.mark.parametrize(
    ("f", "at"),
    [
        (lambda x: x[0] * x[0] + x[1].sqrt(), [1.0, -1.0]),  # nan second derivative in one coordinate
        (lambda x: x[0] * x[1] + x[1].log(), [2.0, 0.0]),  # -inf
        (lambda x: (x[0] * x[1]).exp() + x[0] ** 3, [0.5, -1.5]),
    ],
)
def test_hessian_is_torchs_even_where_a_second_derivative_is_not_finite(f, at):
    # torch.autograd.functional.hessian differentiates the whole gradient against a one-hot vector, so
    # a nan second derivative spreads along its column as 0 * nan; ours is the same computation. (Where
    # torch's own first-derivative formulas mask a branch, see the next test.)
    expected = torch.autograd.functional.hessian(f, torch.tensor(at, dtype=torch.float64)).tolist()
    got = hessian(f, at)
    assert [[repr(x) for x in row] for row in got] == [[repr(x) for x in row] for row in expected]


@pytest.mark.parametrize(
    ("f", "tf", "at", "limit"),
    [
        (lambda x: x[0] ** x[1], lambda x: x[0] ** x[1], [0.0, 2.0], [[2.0, 0.0], [0.0, 0.0]]),
        (lambda x: x[0] ** x[1], lambda x: x[0] ** x[1], [0.0, 3.0], [[0.0, 0.0], [0.0, 0.0]]),
        (
            lambda x: x[0] / x[1].relu(),
            lambda x: x[0] / torch.relu(x[1]),
            [1.0, 0.0],
            [[0.0, 0.0], [0.0, 0.0]],
        ),
    ],
    ids=["0 ** 2", "0 ** 3", "1 / relu(0)"],
)
def test_where_torch_masks_a_branch_into_nan_the_hessian_is_the_limit(f, tf, at, limit):
    # Decided (issue 24): at a base of exactly 0 and at a division by relu's 0, PyTorch's second
    # derivative runs a zero gradient through the branch its first derivative's mask left out,
    # and 0 * inf there makes every entry nan. chaingrad's masks choose the branch, so its Hessian is the
    # mathematical limit: d2/dx2 x ** 2 = 2 at 0, and x / relu(y) does not depend on x twice.
    torch_says = torch.autograd.functional.hessian(tf, torch.tensor(at, dtype=torch.float64)).tolist()
    assert any(math.isnan(v) for row in torch_says for v in row), "torch's nan, the difference documented"
    assert hessian(f, at) == limit


def test_newton_example_converges_to_the_known_minimum():
    module = runpy.run_path(str(ROOT / "examples" / "newton.py"))
    path = module["newton"]((-1.0, 1.0))
    x, y = path[-1]
    assert len(path) <= 10
    assert x == pytest.approx(-math.log(2) / 2, abs=1e-12)
    assert y == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("root", [None, np.float32(1.0), 2.0, [cg.Value(1.0)]])
def test_gradients_of_something_that_is_not_a_value_says_what_it_takes(root):
    with pytest.raises(
        TypeError,
        match=f"gradients\\(\\) takes the Value to differentiate .a loss., not {type(root).__name__}",
    ):
        cg.gradients(root)
