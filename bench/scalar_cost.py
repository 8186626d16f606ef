"""What the batch axis costs the scalar path: the chain workload with and without the batch checks.

chaingrad's single-number fast paths carry two things only because `data`
may be a batch: a type check per op in forward (is either operand a float?)
and, in backward, a type check per node (is its gradient a float?) plus
NumPy's error state set once per call when NumPy is loaded. The baseline is
the same engine with those lines taken out (a scalar-only copy of `_binary`
and of the backward loop), run on the same chain in the same process.
"""

from __future__ import annotations

import gc

import numpy  # noqa: F401 - loaded, as in a program that also uses batches

from chaingrad import engine

from .chain import OPS_PER_STEP, build
from .common import CLOCK, Mismatch, alternate, faster, size


def _binary_scalar_only(op, x, y):
    """engine._binary without the batch checks: every data is a float."""
    if type(x) is engine.Value:
        xd = x.data
        yd, const = (y.data, -1) if type(y) is engine.Value else (float(y), 1)
    else:
        xd, yd, const = float(x), y.data, 0
    out = op.forward(xd, yd)
    local = op.local(xd, yd, out)
    node = engine._new(engine.Value)
    node.data, node.grad, node.label, node._op = out, 0.0, "", op
    if const < 0:
        node._prev, node._local, node._ctx = (x, y), local, None
    else:
        node._prev = (y,) if const == 0 else (x,)
        node._local = (local[1 - const],)
        node._ctx = (xd, y) if const == 0 else (x, yd)
    return node


def _backward_scalar_only(root: engine.Value) -> None:
    """Value.backward without the batch checks: no NumPy error state, every gradient a float."""
    gc.disable()
    try:
        order = engine._topo(root)
        for node in order:
            node.grad = 0.0
        root.grad = 1.0
        for node in order:
            g = node.grad
            for child, local in zip(node._prev, node._local):
                child.grad += local * g
    finally:
        gc.enable()


def _trial(steps: int, scalar_only: bool):
    def trial() -> dict[str, float]:
        real = engine._binary
        if scalar_only:
            engine._binary = _binary_scalar_only
        try:
            gc.collect()
            t0 = CLOCK()
            out, leaves = build(engine.Value, steps)
            t1 = CLOCK()
        finally:
            engine._binary = real
        (_backward_scalar_only if scalar_only else engine.Value.backward)(out)
        t2 = CLOCK()
        trial.result = [out.data] + [leaf.grad for leaf in leaves]  # type: ignore[attr-defined]
        return {"forward": t1 - t0, "backward": t2 - t1}

    return trial


def run(quick: bool = False, steps: int | None = None, repeats: int | None = None) -> list:
    """Rows: forward and backward ns per op, chaingrad as it is vs with the batch checks taken out."""
    steps = size(steps, 500 if quick else 2000)
    repeats = size(repeats, 3 if quick else 7)
    ours, bare = _trial(steps, False), _trial(steps, True)
    t = alternate({"chaingrad": ours, "scalar only": bare}, repeats)
    if ours.result != bare.result:
        raise Mismatch("scalar_cost: the scalar-only copy computed something else")
    ns = 1e9 / (steps * OPS_PER_STEP)
    return [
        faster("scalar_cost", f"{part}, ns per op, with batch support", t["chaingrad"][part] * ns,
               t["scalar only"][part] * ns, "the same engine, batch checks removed", target=">= 0.95x")
        for part in ("forward", "backward")
    ]  # fmt: skip
