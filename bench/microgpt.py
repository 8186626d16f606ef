"""Karpathy's microgpt, with its own tiny Value class or with chaingrad's: the same program, timed whole.

microgpt trains a one-layer GPT on a list of names in pure Python, on a
40-line autograd class of its own. This module is a program of the same
shape, written for this benchmark: the same model (n_embd 16, 4 heads, one
layer, block size 16, RMSNorm, ReLU MLP), the same training (one name per
step, Adam with betas 0.85 and 0.99, lr 0.01 decaying linearly) and, above
all, the same arithmetic on Values, op by op: `sum` of products in a linear
layer, softmax from `exp` and `/`, `-log` of the target's probability. Only
the class behind `Value` changes, as for a user who replaces microgpt's
class with `from chaingrad import Value`: the program does not use any of
chaingrad's fused ops. Both runs start from the same seed, so their losses
must agree (to 1e-12) before a time is reported; a run's time is the CPU
time of all its steps, the garbage collector on, as a user runs it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from importlib import resources
from typing import Any

import chaingrad

from . import earlier, naive
from .common import CLOCK, Mismatch, Row, faster, size

# microgpt's own Value class: data, grad, children and local gradients, backward by a recursive sort.
# bench/naive.py's Value is that class (it computes exp once where microgpt computes it twice).
MicroValue = naive.Value


def train(Value: Callable[..., Any], steps: int, seed: int = 42) -> tuple[list[float], float]:
    """microgpt's training run on Value for `steps` steps: (the loss at every step, CPU seconds)."""
    rng = random.Random(seed)
    text = resources.files("chaingrad").joinpath("assets/names.txt").read_text()
    docs = [line.strip() for line in text.strip().split("\n") if line.strip()]
    rng.shuffle(docs)
    chars = sorted(set("".join(docs)))
    bos, vocab = len(chars), len(chars) + 1
    n_embd, n_head, block = 16, 4, 16
    head = n_embd // n_head

    def matrix(rows: int, cols: int, std: float = 0.08) -> list[list[Any]]:
        return [[Value(rng.gauss(0, std)) for _ in range(cols)] for _ in range(rows)]

    w = {"wte": matrix(vocab, n_embd), "wpe": matrix(block, n_embd), "lm_head": matrix(vocab, n_embd)}
    for name, rows, cols in [
        ("wq", 1, 1),
        ("wk", 1, 1),
        ("wv", 1, 1),
        ("wo", 1, 1),
        ("fc1", 4, 1),
        ("fc2", 1, 4),
    ]:
        w[name] = matrix(rows * n_embd, cols * n_embd)
    params = [p for m in w.values() for row in m for p in row]

    def linear(x, m):
        return [sum(wi * xi for wi, xi in zip(row, x)) for row in m]

    def softmax(logits):
        top = max(v.data for v in logits)
        exps = [(v - top).exp() for v in logits]
        total = sum(exps)
        return [e / total for e in exps]

    def rmsnorm(x):
        scale = (sum(xi * xi for xi in x) / len(x) + 1e-5) ** -0.5
        return [xi * scale for xi in x]

    def gpt(token, pos, keys, values):
        x = rmsnorm([t + p for t, p in zip(w["wte"][token], w["wpe"][pos])])
        residual, x = x, rmsnorm(x)
        q, k, v = linear(x, w["wq"]), linear(x, w["wk"]), linear(x, w["wv"])
        keys.append(k)
        values.append(v)
        mixed = []
        for h in range(0, n_embd, head):
            scores = [sum(q[h + j] * kt[h + j] for j in range(head)) / head**0.5 for kt in keys]
            weights = softmax(scores)
            mixed.extend(sum(weights[t] * values[t][h + j] for t in range(len(values))) for j in range(head))
        x = [a + b for a, b in zip(linear(mixed, w["wo"]), residual)]
        residual, x = x, rmsnorm(x)
        x = [a + b for a, b in zip(linear([xi.relu() for xi in linear(x, w["fc1"])], w["fc2"]), residual)]
        return linear(x, w["lm_head"])

    lr, beta1, beta2, eps = 0.01, 0.85, 0.99, 1e-8
    m, v = [0.0] * len(params), [0.0] * len(params)
    history = []
    start = CLOCK()
    for step in range(steps):
        tokens = [bos] + [chars.index(c) for c in docs[step % len(docs)]] + [bos]
        n = min(block, len(tokens) - 1)
        keys, values, losses = [], [], []
        for pos in range(n):
            probs = softmax(gpt(tokens[pos], pos, keys, values))
            losses.append(-probs[tokens[pos + 1]].log())
        loss = (1 / n) * sum(losses)
        loss.backward()
        lr_t = lr * (1 - step / steps)
        for i, p in enumerate(params):
            m[i] = beta1 * m[i] + (1 - beta1) * p.grad
            v[i] = beta2 * v[i] + (1 - beta2) * p.grad**2
            m_hat, v_hat = m[i] / (1 - beta1 ** (step + 1)), v[i] / (1 - beta2 ** (step + 1))
            p.data -= lr_t * m_hat / (v_hat**0.5 + eps)
            p.grad = 0
        history.append(loss.data)
    return history, CLOCK() - start


BEFORE = "the compiled core at 3c6bce4"  # before the reference engine was written as code (issue 22)
SIDES: dict[str, Callable[..., Any]] = {
    "its own Value": MicroValue,
    "chaingrad": chaingrad.Value,
    "chaingrad reference": earlier.reference().Value,
}
if chaingrad.backend == "compiled":
    SIDES[BEFORE] = earlier.at("3c6bce4", compiled=True).Value


def run(quick: bool = False, steps: int | None = None, turns: int | None = None) -> list[Row]:
    """Train microgpt's model `turns` times per side (alternating), each for `steps` steps; compare totals."""
    steps, turns = size(steps, 8 if quick else 60), size(turns, 1 if quick else 2)
    sides = {name: V for name, V in SIDES.items() if name != "chaingrad" or chaingrad.backend == "compiled"}
    totals = dict.fromkeys(sides, 0.0)
    losses: dict[str, list[float]] = {}
    for turn in range(turns):
        for name in list(sides) if turn % 2 == 0 else list(sides)[::-1]:
            history, seconds = train(sides[name], steps)
            losses[name], totals[name] = history, totals[name] + seconds
    own = losses["its own Value"]
    for name, history in losses.items():
        if any(abs(a - b) > 1e-12 * max(1.0, abs(b)) for a, b in zip(history, own)):
            raise Mismatch(
                f"microgpt: {name}'s losses differ from microgpt's own: {history[:3]} vs {own[:3]}"
            )
    per_step = {name: t / (steps * turns) for name, t in totals.items()}
    rows = [
        faster(
            "microgpt",
            f"s per step ({steps} steps x {turns}), reference engine",
            per_step["chaingrad reference"],
            per_step["its own Value"],
            "microgpt's own Value class",
            target=">= 1x",
        )
    ]
    if "chaingrad" in per_step:
        rows.append(
            faster(
                "microgpt",
                f"s per step ({steps} steps x {turns}), compiled core",
                per_step["chaingrad"],
                per_step["its own Value"],
                "microgpt's own Value class",
                target=">= 5x",
            )
        )
        rows.append(
            faster(
                "microgpt",
                f"s per step ({steps} steps x {turns}), compiled core",
                per_step["chaingrad"],
                per_step[BEFORE],
                BEFORE,
                target=">= 0.9x",  # issue 22: as fast as it was, within 10%
            )
        )
    return rows
