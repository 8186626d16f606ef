"""Workloads run on each backend by test_twins.py: every float they make, as its exact bits.

`python tests/twins.py NAME SEED COUNT` prints, as JSON, the bits (a hex string per float) of every
data and grad of every node of COUNT random graphs (or training runs) made from SEED. test_twins.py
runs it once with the compiled core and once with CHAINGRAD_PURE=1 and compares the two outputs.
"""

from __future__ import annotations

import json
import math
import random
import struct
import sys

import numpy as np

import chaingrad as cg
from chaingrad import Value

EDGES = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    -2.5,
    3.0,
    1e-320,
    -4e-310,
    1e308,
    -1e308,
    709.7,
    -745.0,
    math.inf,
    -math.inf,
]
EDGES += [math.nan, 2.0**-1074, 1e-16, 40.0]
UNARY = ["__neg__", "exp", "log", "tanh", "sigmoid", "relu", "sqrt", "abs", "sin", "cos"]
BINARY = ["__add__", "__sub__", "__mul__", "__truediv__", "__pow__"]
REFLECTED = ["__radd__", "__rsub__", "__rmul__", "__rtruediv__", "__rpow__"]


def bits(x: object) -> object:
    """The exact bits of a float (or of each entry of a batch); other things as their repr.

    Every nan is "nan": IEEE-754 leaves a nan result's sign and payload open, and C compilers (CPython's
    float ops included) may take the operands of + and * in either order, which picks one of two nans.
    Signed zeros, infinities and every other bit count.
    """
    if isinstance(x, Value):
        return ["Value", bits(x.data)]
    if isinstance(x, np.ndarray):
        return [bits(float(v)) for v in x.ravel()]
    if isinstance(x, float):
        return "nan" if x != x else struct.pack("<d", x).hex()
    return repr(x)


def nodes(root: Value) -> list[Value]:
    """Every node under root, in a deterministic order (no recursion)."""
    order, seen, stack = [], set(), [root]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            order.append(node)
            stack.extend(reversed(node._prev))
    return order


def record(root: Value) -> list[object]:
    return [
        [str(n._op), bits(n.data), bits(n.grad), bits(n._local) if n._local else None] for n in nodes(root)
    ]


def number(rng: random.Random) -> float:
    r = rng.random()
    if r < 0.35:
        return rng.choice(EDGES)
    if r < 0.45:
        return float(rng.randint(-3, 3))
    return rng.gauss(0, 2) * 10 ** rng.randint(-3, 3)


def constant(rng: random.Random) -> object:
    x = number(rng)
    return int(x) if rng.random() < 0.2 and math.isfinite(x) and abs(x) < 10 else x


def leaf(rng: random.Random) -> Value:
    """A leaf; one in five holds an int, as micrograd's Value(0) biases do (v.data = 0), some past 2**53."""
    v = Value(number(rng))
    if rng.random() < 0.2:
        v.data = rng.choice([0, 1, -3, 2**53 + 1, -(2**60) - 3])
    return v


def graph(rng: random.Random) -> list[object]:
    """A random graph of every op and operand form, with its backward; its record."""
    vs = [leaf(rng) for _ in range(rng.randint(1, 4))]
    for _ in range(rng.randint(3, 25)):
        r = rng.random()
        a = rng.choice(vs)
        if r < 0.25:
            v = getattr(a, rng.choice(UNARY))()
        elif r < 0.45:
            v = getattr(a, rng.choice(BINARY))(rng.choice(vs))
        elif r < 0.6:
            v = getattr(a, rng.choice(BINARY))(constant(rng))
        elif r < 0.7:
            v = getattr(a, rng.choice(REFLECTED))(constant(rng))
        else:
            xs = [rng.choice(vs) for _ in range(rng.randint(1, 5))]
            k = rng.randrange(len(xs))
            kind = rng.randrange(9)
            if kind == 0:
                v = cg.sum(xs, start=rng.choice([0.0, rng.choice(vs)]))
            elif kind == 1:
                v = cg.mean(xs)
            elif kind == 2:
                other = [rng.choice(vs) if rng.random() < 0.5 else number(rng) for _ in xs]
                if all(not isinstance(o, Value) for o in other) or rng.random() < 0.5:
                    other = [rng.choice(vs) for _ in xs]
                v = cg.dot(xs, other, start=rng.choice([0, rng.choice(vs)]))
            elif kind == 3:
                v = cg.dot([number(rng) for _ in xs], xs)
            elif kind == 4:
                v = cg.logsumexp(xs)
            elif kind == 5:
                v = cg.softmax(xs)[k]
            elif kind == 6:
                v = cg.log_softmax(xs)[k]
            elif kind == 7:
                v = cg.cross_entropy(xs, k)
            else:
                v = cg.affine(
                    [xs, xs[::-1]], xs, [rng.choice(vs), rng.choice(vs)], rng.choice(["relu", "tanh", None])
                )[0]
        vs.append(v)
    out = cg.sum(vs[-3:]) if len(vs) > 3 else vs[-1]
    out.backward()
    if rng.random() < 0.3:
        out.backward()  # twice: leaves accumulate, intermediates are recomputed
    return record(out)


def training(rng: random.Random) -> list[object]:
    """A few training steps of an MLP on one sample at a time, with one of the optimizers and losses."""
    act = rng.choice(["relu", "tanh", "sigmoid"])
    model = cg.nn.MLP(3, [6, 5, 2], act, seed=rng.randrange(10**6))
    params = model.parameters()
    make = rng.choice(
        [
            lambda: cg.optim.SGD(
                params, lr=0.1, momentum=rng.choice([0.0, 0.9]), weight_decay=rng.choice([0.0, 1e-3])
            ),
            lambda: cg.optim.SGD(params, lr=0.05, momentum=0.8, nesterov=True),
            lambda: cg.optim.Adam(params, lr=0.01, betas=(0.85, 0.99), weight_decay=rng.choice([0.0, 1e-2])),
            lambda: cg.optim.AdamW(params, lr=0.01),
        ]
    )
    opt = make()
    xs = [[number(rng) if rng.random() < 0.1 else rng.gauss(0, 1) for _ in range(3)] for _ in range(4)]
    ys = [rng.randrange(2) for _ in xs]
    out = []
    for _ in range(5):
        inputs = xs if rng.random() < 0.5 else [[Value(x) for x in row] for row in xs]
        scores = [model(x) for x in inputs]
        loss = rng.choice(
            [
                lambda: cg.losses.cross_entropy(scores, ys),
                lambda: cg.losses.hinge([s[0] for s in scores], [2.0 * y - 1 for y in ys]),
                lambda: cg.losses.mse([s[1] for s in scores], [float(y) for y in ys]),
            ]
        )() + 1e-4 * cg.losses.l2(params)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append([bits(loss.data), [bits(p.data) for p in params], [bits(p.grad) for p in params]])
    return out


def gpt(rng: random.Random) -> list[object]:
    """Steps of the names GPT with Adam, as `chaingrad demo names` trains it."""
    model = cg.nn.GPT(8, n_embd=8, n_head=2, n_layer=1, block_size=6, seed=rng.randrange(10**6))
    opt = cg.optim.Adam(model.parameters(), lr=0.01, betas=(0.85, 0.99))
    out = []
    for _ in range(2):
        tokens = [rng.randrange(8) for _ in range(rng.randint(2, 7))]
        loss = model.loss(tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append([bits(loss.data), [bits(p.data) for p in model.parameters()]])
    sample = model.generate(0, rng=random.Random(1), max_len=4)
    return [out, sample]


def higher(rng: random.Random) -> list[object]:
    """Second and third derivatives of random compositions (create_graph)."""
    ops = [
        lambda v: v.tanh(),
        lambda v: v * v,
        lambda v: v.exp(),
        lambda v: v.sigmoid(),
        lambda v: 1.0 / (v + 3.0),
    ]
    chosen = [rng.choice(ops) for _ in range(3)]

    def f(x):
        for g in chosen:
            x = g(x)
        return x

    x = rng.gauss(0, 1)
    d1, d2 = cg.grad(f), cg.grad(cg.grad(f))
    return [
        bits(f(Value(x)).data),
        bits(d1(x).data),
        bits(d2(x).data),
        bits(cg.grad(cg.grad(cg.grad(f)))(x).data),
    ]


def batched(rng: random.Random) -> list[object]:
    """A training step of a batched MLP (the batch axis is NumPy, but the nodes are the backend's)."""
    X = np.array([[rng.gauss(0, 1) for _ in range(2)] for _ in range(7)])
    y = np.array([rng.choice([-1.0, 1.0]) for _ in range(7)])
    model = cg.nn.MLP(2, [5, 1], rng.choice(["relu", "tanh"]), seed=rng.randrange(10**6))
    loss = cg.losses.hinge(model(cg.data.columns(X)), y) + 1e-4 * cg.losses.l2(model.parameters())
    loss.backward()
    return [bits(loss.data), [bits(p.grad) for p in model.parameters()]]


WORKLOADS = {"graph": graph, "training": training, "gpt": gpt, "higher": higher, "batched": batched}


def main(name: str, seed: int, count: int) -> list[object]:
    rng = random.Random(seed)
    return [cg.backend] + [WORKLOADS[name](rng) for _ in range(count)]


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
