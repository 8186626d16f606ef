"""Issue 3's workload: softmax + cross-entropy over 27 logits, forward + backward, fused vs unfused.

Fused: `cg.cross_entropy(logits, t)`, one node. Unfused: the same loss
written as such code usually is, with chaingrad's primitive ops: subtract
the max, exp each logit, add the exps up with +, divide each by the total
to get the probabilities, and take -log of the target's.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import chaingrad as cg
from chaingrad import Value

from .common import Mismatch, Row, alternate, faster, size, timed

CLASSES = 27


def fused(logits: Sequence[Value], target: int) -> Value:
    """The loss as one cross_entropy node."""
    return cg.cross_entropy(logits, target)


def unfused(logits: Sequence[Value], target: int) -> Value:
    """The loss composed from exp, +, / and log, stabilised by subtracting the max."""
    m = max(x.data for x in logits)
    exps = [(x - m).exp() for x in logits]
    total = exps[0]
    for e in exps[1:]:
        total = total + e
    probs = [e / total for e in exps]
    return -probs[target].log()


def problems(count: int, seed: int = 0) -> list[tuple[list[float], int]]:
    """`count` random logit vectors (spread like an untrained model's, and wider) with targets."""
    rng = random.Random(seed)
    return [
        ([rng.gauss(0.0, rng.choice((0.1, 1.0, 5.0))) for _ in range(CLASSES)], rng.randrange(CLASSES))
        for _ in range(count)
    ]


def losses_and_grads(loss_fn: Callable, data: list[tuple[list[float], int]]) -> list[list[float]]:
    """For each problem, the loss followed by the gradient of every logit."""
    out = []
    for xs, t in data:
        logits = [Value(x) for x in xs]
        loss = loss_fn(logits, t)
        loss.backward()
        out.append([loss.data] + [x.grad for x in logits])
    return out


def check_same(data: list[tuple[list[float], int]]) -> float:
    """Raise Mismatch unless both forms give the same loss and logit gradients to 1e-12; the largest gap."""
    worst = 0.0
    for a, b in zip(losses_and_grads(fused, data), losses_and_grads(unfused, data)):
        for i, (x, y) in enumerate(zip(a, b)):
            gap = abs(x - y) / max(1.0, abs(y))
            if gap > 1e-12:
                what = "loss" if i == 0 else f"gradient of logit {i - 1}"
                raise Mismatch(f"softmax_ce: {what} differs: fused {x!r}, unfused {y!r}")
            worst = max(worst, gap)
    return worst


def _trial(loss_fn: Callable, data: list[tuple[list[float], int]]) -> dict[str, float]:
    leaves = [[Value(x) for x in xs] for xs, _ in data]

    def forward_backward() -> None:
        for logits, (_, t) in zip(leaves, data):
            loss_fn(logits, t).backward()

    return {"fwd+bwd": timed(forward_backward)[1]}


def run(quick: bool = False, count: int | None = None, repeats: int | None = None) -> list[Row]:
    """Time forward + backward of both forms on the same logits."""
    count = size(count, 200 if quick else 1000)
    repeats = size(repeats, 5 if quick else 11)
    data = problems(count)
    check_same(data)
    t = alternate({"fused": lambda: _trial(fused, data), "unfused": lambda: _trial(unfused, data)}, repeats)
    us = {name: 1e6 * s["fwd+bwd"] / count for name, s in t.items()}
    return [
        faster(
            "softmax_ce",
            f"fwd+bwd, µs per loss ({CLASSES} logits)",
            us["fused"],
            us["unfused"],
            "unfused chaingrad ops",
        )
    ]
