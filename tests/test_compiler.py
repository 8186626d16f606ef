"""cg.compile (compiler.py, and the tapes in _core.c / _tape.c): a compiled function's values and gradients
are the uncompiled function's, bit for bit, on random functions and on every nn module; what a tape cannot
replay is refused while tracing; the node mixes with the rest of chaingrad."""

from __future__ import annotations

import math
import pickle
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chaingrad as cg
from chaingrad import nn
from chaingrad.compiler import Compiled

compiled_core = pytest.mark.skipif(cg.backend != "compiled", reason="tapes are the compiled core's")


def bits(x: float) -> bytes | str:
    """x's bits; every nan is "nan" (IEEE-754 leaves a nan's sign open, and a compiler may take the
    operands of + in either order: tests/twins.py says more)."""
    return "nan" if x != x else struct.pack("<d", x)


def value_and_grads(out, params):
    for p in params:
        p.grad = 0.0
    out.backward()
    return [bits(out.data)] + [bits(p.grad) for p in params]


# -- random functions ---------------------------------------------------------------------------------

UNARY = ["exp", "tanh", "sigmoid", "sqrt", "abs", "sin", "cos", "log", "relu", "neg"]
BINARY = ["+", "-", "*", "/", "**"]
FUSED = ["sum", "mean", "dot", "logsumexp", "softmax", "log_softmax", "cross_entropy"]


def random_program(rng: random.Random, n_ops: int) -> list[tuple]:
    """A function as a list of steps, each reading earlier results (or constants) by index."""
    steps = []
    for k in range(n_ops):
        avail = 4 + k  # two params, two arguments, then the results so far
        kind = rng.choice(["unary", "binary", "binary", "const", "fused"])
        pick = lambda: rng.randrange(avail)  # noqa: E731
        if kind == "unary":
            steps.append(("unary", rng.choice(UNARY), pick()))
        elif kind == "binary":
            steps.append(("binary", rng.choice(BINARY), pick(), pick()))
        elif kind == "const":
            steps.append(
                ("const", rng.choice(BINARY), pick(), rng.choice([2.0, -0.5, 3, 0.0]), rng.random() < 0.5)
            )
        else:
            n = rng.randint(1, 4)
            steps.append(
                (
                    "fused",
                    rng.choice(FUSED),
                    [pick() for _ in range(n)],
                    [pick() for _ in range(n)],
                    rng.randrange(n),
                )
            )
    return steps


def run_program(steps, p, q, x, y):
    pool = [p, q, x if isinstance(x, cg.Value) else cg.Value(x), y]  # a number given: a leaf either way
    for s in steps:
        if s[0] == "unary":
            a = pool[s[2]]
            out = -a if s[1] == "neg" else getattr(a, s[1])()
        elif s[0] in ("binary", "const"):
            a = pool[s[2]]
            b = pool[s[3]] if s[0] == "binary" else s[3]
            if s[0] == "const" and s[4]:
                a, b = b, a
            out = {
                "+": lambda: a + b,
                "-": lambda: a - b,
                "*": lambda: a * b,
                "/": lambda: a / b,
                "**": lambda: a**b,
            }[s[1]]()
        else:
            xs, ys, i = [pool[j] for j in s[2]], [pool[j] for j in s[3]], s[4]
            name = s[1]
            if name == "dot":
                out = cg.dot(xs, ys, ys[0])
            elif name in ("softmax", "log_softmax"):
                out = getattr(cg, name)(xs)[i]
            elif name == "cross_entropy":
                out = cg.cross_entropy(xs, i)
            else:
                out = getattr(cg, name)(xs)
        pool.append(out)
    return cg.sum(pool[-3:]) if len(pool) > 6 else pool[-1] * 1.0


@compiled_core
@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_functions_compiled_equal_uncompiled_bit_for_bit(seed):
    rng = random.Random(seed)
    steps = random_program(rng, rng.randint(1, 14))
    p, q = cg.Value(rng.uniform(-2, 2)), cg.Value(rng.uniform(-2, 2))

    def f(x, y):
        return run_program(steps, p, q, x, y)

    compiled = cg.compile(f)
    for _ in range(40):  # 150 functions x 40 points: thousands of replays of one tape each
        x, y = rng.uniform(-3, 3), cg.Value(rng.choice([rng.uniform(-3, 3), 0.0, 1.0]))
        p.data, q.data = rng.uniform(-2, 2), rng.uniform(-2, 2)
        expected = value_and_grads(f(x, y), [p, q, y])
        assert value_and_grads(compiled(x, y), [p, q, y]) == expected
    assert len(compiled.tapes) == 1  # one structure: traced once, replayed after


# -- nn modules ---------------------------------------------------------------------------------------


def assert_same(fn, make_args, params, n=25, seed=0):
    rng = random.Random(seed)
    compiled = cg.compile(fn)
    for _ in range(n):
        args = make_args(rng)
        assert value_and_grads(compiled(*args), params) == value_and_grads(fn(*args), params)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", None])
def test_an_mlp_compiled_equals_uncompiled(activation):
    model = nn.MLP(3, [8, 8, 1], activation=activation, seed=1) if activation else nn.MLP(3, [8, 1], seed=1)
    assert_same(
        lambda x, t: (model(x) - t) ** 2,
        lambda rng: ([rng.uniform(-2, 2) for _ in range(3)], rng.choice([-1, 1])),
        model.parameters(),
    )


def test_linear_rmsnorm_attention_and_block_compiled_equal_uncompiled():
    lin, norm, block = nn.Linear(4, 4, seed=2), nn.RMSNorm(4), nn.Block(4, 2, seed=3)
    params = lin.parameters() + block.parameters()

    def f(xs):
        caches = ([], [])
        out = None
        for x in xs:
            out = block(norm(lin(x)), caches)
        return cg.logsumexp(out)

    assert_same(f, lambda rng: ([[rng.uniform(-1, 1) for _ in range(4)] for _ in range(3)],), params)


def test_gpt_loss_is_compiled_and_equals_its_uncompiled_self():
    model = nn.GPT(11, n_embd=8, n_head=2, block_size=6, seed=4)
    params = model.parameters()
    rng = random.Random(5)
    for _ in range(30):
        tokens = [rng.randrange(11) for _ in range(rng.randint(2, 7))]  # repeated letters included
        uncompiled = nn._loss.__wrapped__(model, [model.wte(t) for t in tokens[:-1]], tokens[1:])
        loss = model.loss(tokens)
        if cg.backend == "compiled":
            assert loss._op.startswith("compiled")
        assert value_and_grads(loss, params) == value_and_grads(uncompiled, params)


def test_training_with_a_mean_over_compiled_calls_gives_the_uncompiled_losses():
    """micrograd's moons loop, one sample at a time, compiled per sample: the same losses, step by step."""
    rng = random.Random(6)
    data = [([rng.uniform(-1, 1), rng.uniform(-1, 1)], rng.choice([-1, 1])) for _ in range(16)]

    def losses(compile_it):
        model = nn.MLP(2, [8, 8, 1], seed=7)
        hinge = lambda x, y: (1 + -y * model(x)).relu()  # noqa: E731
        f = cg.compile(hinge) if compile_it else hinge
        opt = cg.optim.SGD(model.parameters(), lr=0.1)
        out = []
        for _ in range(5):
            loss = cg.mean([f(x, y) for x, y in data]) + 1e-4 * cg.sum([p * p for p in model.parameters()])
            opt.zero_grad()
            loss.backward()
            opt.step()
            out.append(bits(loss.data))
        return out

    assert losses(True) == losses(False)


# -- what a call is -----------------------------------------------------------------------------------


@compiled_core
def test_numbers_are_inputs_and_closed_over_values_are_read_at_every_call():
    w = cg.Value(2.0)
    f = cg.compile(lambda x, k: (w * x + k).tanh())
    a = f(0.5, 1)
    w.data = -1.0  # an optimizer's step between calls
    b = f(0.25, 3)
    assert len(f.tapes) == 1
    assert a.data == math.tanh(2.0 * 0.5 + 1) and b.data == math.tanh(-1.0 * 0.25 + 3)
    b.backward()
    assert w.grad == (1 - math.tanh(2.75) ** 2) * 0.25


@compiled_core
def test_a_value_put_in_a_closed_over_place_is_read_once_the_tapes_are_cleared():
    # docs/compile.md: the tape reads the objects the trace read; a new Value in their place is seen
    # once the tapes are cleared and the next call traces again
    model = cg.nn.MLP(2, [3, 1], seed=0)
    f = cg.compile(lambda x: model(x))
    f([1.0, 2.0])
    model.layers[0].neurons[0].w[0] = cg.Value(5.0)
    f.tapes.clear()
    assert f([1.0, 2.0]).data == model([1.0, 2.0]).data and len(f.tapes) == 1


@compiled_core
def test_a_new_structure_traces_again_and_the_cache_is_bounded():
    f = cg.compile(lambda xs: cg.sum([x * x for x in xs]), max_tapes=3)
    for n in range(1, 7):
        assert f([1.0] * n).data == n
    assert len(f.tapes) == 3
    assert f(["a"] * 0 + [2.0, 3.0]).data == 13.0
    g = cg.compile(lambda x, how: x * 2 if how == "double" else x * 3)  # a str: part of the key, by value
    assert (g(1.0, "double").data, g(1.0, "triple").data) == (2.0, 3.0)


@compiled_core
def test_the_same_value_in_two_places_is_read_from_each_place():
    a, b = cg.Value(2.0), cg.Value(5.0)
    f = cg.compile(lambda x, y: x * 10 + y)
    assert f(a, a).data == 22.0
    out = f(a, b)
    out.backward()
    assert (out.data, a.grad, b.grad) == (25.0, 10.0, 1.0)


@pytest.mark.parametrize("n", [3, 30])  # a few arguments, and more than the core compares pairwise
def test_values_given_in_several_places_or_also_closed_over_add_their_shares_in_order(n):
    rng = random.Random(n)
    params = [cg.Value(rng.uniform(-1, 1)) for _ in range(4)]

    def f(xs):
        return (
            cg.sum([(x * params[i % 4]).tanh() * params[(i + 1) % 4] for i, x in enumerate(xs)]) * params[0]
        )

    compiled = cg.compile(f)
    others = [cg.Value(rng.uniform(-1, 1)) for _ in range(3)]
    for _ in range(20):
        xs = [rng.choice(params + others) for _ in range(n)]  # repeats, and closed-over Values given
        assert value_and_grads(compiled(xs), params + others) == value_and_grads(f(xs), params + others)


@compiled_core
def test_the_node_has_the_inputs_it_read_and_its_op_names_the_function():
    w = cg.Value(3.0)

    def scaled(x):
        return w * x

    out = cg.compile(scaled)(cg.Value(2.0))
    assert (
        out._op
        == "compiled test_the_node_has_the_inputs_it_read_and_its_op_names_the_function.<locals>.scaled"
    )
    assert len(out._prev) == 2 and w in out._prev


# -- refused, or run uncompiled -------------------------------------------------------------------------


@compiled_core
@pytest.mark.parametrize(
    "body, what",
    [
        (lambda x: x * 2 if x.data > 0 else x, "reads .data of"),
        (lambda x: x * 2 if x > 0 else x, "compares"),
        (lambda x: x * 2 if x else x, "bool()"),
        (lambda x: cg.Value(x.item()) * 2, ".item()"),
    ],
)
def test_a_branch_on_a_traced_value_is_refused_naming_the_line(body, what):
    f = cg.compile(body)
    with pytest.raises(TypeError, match=rf"cg.compile: the function .*{what}.*test_compiler.py, line \d+"):
        f(1.5)
    assert not cg._backend.tracing()  # and the tracing is off again


@compiled_core
def test_ops_without_a_kernel_are_refused():
    softplus = cg.Op(
        "softplus_compile_test", lambda x: cg.log(1 + cg.exp(x)), lambda x, out: (cg.sigmoid(x),)
    )
    with pytest.raises(TypeError, match="cannot replay a node of op 'softplus_compile_test'"):
        cg.compile(lambda x: softplus(x) * 2)(1.0)

    def by_hand(x):
        out = cg.Value(x.exp().data if False else 2.0, (x,), "custom")
        out._backward = lambda: None
        return out

    with pytest.raises(TypeError, match="cannot replay"):
        cg.compile(by_hand)(1.0)


@compiled_core
def test_what_is_not_a_value_or_structure_is_refused():
    with pytest.raises(TypeError, match="returns one Value"):
        cg.compile(lambda x: [x, x])(1.0)
    with pytest.raises(TypeError, match="not hashable"):
        cg.compile(lambda x, d: x)(1.0, {1, 2})
    with pytest.raises(TypeError, match="takes a function"):
        cg.compile(3)
    with pytest.raises(ValueError, match="max_tapes"):
        cg.compile(lambda x: x, max_tapes=0)


@compiled_core
def test_a_list_that_holds_itself_is_refused_not_walked_forever():
    loop: list = [1.0]
    loop.append(loop)
    with pytest.raises(ValueError, match="nest lists more than 100 deep"):
        cg.compile(lambda xs: cg.Value(1.0) * 2)(loop)
    deep: list = [2.0]
    for _ in range(90):  # deep, but a structure: fine
        deep = [deep]
    f = cg.compile(lambda xs: cg.Value(1.0) * 2)
    assert f(deep).data == 2.0 and f(deep).data == 2.0 and len(f.tapes) == 1


@compiled_core
def test_a_graph_with_a_cycle_is_refused_not_written_forever():
    def cycle(x):
        a = x * 2.0
        b = a + 1.0
        a.__init__(1.0, (b,))  # a's input is now b, whose input is a
        return b

    with pytest.raises(ValueError, match="the graph has a cycle"):
        cg.compile(cycle)(cg.Value(1.0))


@compiled_core
def test_higher_derivatives_and_pickling_say_what_to_do():
    out = cg.compile(lambda x: x * x)(cg.Value(3.0))
    with pytest.raises(NotImplementedError, match=r"create_graph=True.*__wrapped__"):
        out.backward(create_graph=True)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(out)


@compiled_core
def test_a_mode_turned_on_inside_the_function_is_refused():
    def f(x):
        with cg.no_grad():
            scale = x * 2  # a leaf: its number would be written into the tape
        return x * scale

    with pytest.raises(TypeError, match="turned no_grad or detect_anomaly on while it was traced"):
        cg.compile(f)(1.5)


@compiled_core
def test_another_threads_nodes_and_reads_are_its_own_while_one_traces():
    import threading

    seen = []

    def other():
        v = cg.Value(3.0) * 2
        seen.append((v.data, v > 1, bool(v)))

    def f(x):
        t = threading.Thread(target=other)
        t.start()
        t.join()
        return x * 2

    assert cg.compile(f)(1.0).data == 2.0
    assert seen == [(6.0, True, True)]


def test_modes_and_batches_run_the_function_as_it_is():
    np = pytest.importorskip("numpy")
    w = cg.Value(1.5)
    f = cg.compile(lambda x: (w * x).tanh())
    with cg.no_grad():
        assert f(0.3).data == math.tanh(1.5 * 0.3) and f(0.3)._prev == ()
    with cg.detect_anomaly():
        out = f(0.3)
        assert not out._op.startswith("compiled")
    batch = f(cg.Value(np.array([0.1, 0.2])))
    assert list(batch.data) == [math.tanh(1.5 * 0.1), math.tanh(1.5 * 0.2)]


@compiled_core
def test_a_cross_entropy_target_given_as_an_argument_is_checked_at_every_call():
    f = cg.compile(lambda xs, t: cg.cross_entropy(xs, t))
    assert f([1.0, 2.0, 3.0], 2).data == cg.cross_entropy([1.0, 2.0, 3.0], 2).data
    with pytest.raises(IndexError, match="not a class index"):
        f([1.0, 2.0, 3.0], 3)
    with pytest.raises(TypeError, match="list indices must be integers"):
        cg.compile(lambda xs, i: xs[i] * 1.0)([cg.Value(1.0), cg.Value(2.0)], 1)  # an index: refused


@pytest.mark.skipif(cg.backend == "compiled", reason="the reference engine's cg.compile")
def test_on_the_reference_engine_compile_runs_the_function_as_it_is():
    f = cg.compile(lambda x: x * 2)
    out = f(cg.Value(2.0))
    assert isinstance(f, Compiled) and out.data == 4.0 and out._op == "*" and not f.tapes


# -- re-entrancy: Python code inside the tape's backward -------------------------------------------------


class ReinitialisingGrad(float):
    """A grad whose += re-initialises the compiled node mid-backward."""

    node = None

    def __iadd__(self, other):
        if ReinitialisingGrad.node is not None:
            ReinitialisingGrad.node.__init__(0.5)
            ReinitialisingGrad.node = None
        return float(self) + other


@compiled_core
def test_a_grad_iadd_that_reinitialises_the_node_mid_backward_is_safe():
    ws = [cg.Value(float(i)) for i in range(40)]
    f = cg.compile(lambda x: cg.sum([w * x for w in ws]) * x)
    out = f(2.0)
    ws[0].grad = ReinitialisingGrad(0.0)
    ReinitialisingGrad.node = out
    out.backward()
    assert [w.grad for w in ws] == [2.0 * 2.0] * 40  # every share arrived, none twice
