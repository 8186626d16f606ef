"""A long chain of mixed elementwise ops on one Value: chaingrad, its reference engine, both engines as
they were at commit 3c6bce4 (before the reference engine was rewritten as code), and micrograd 0.1.0.

One step of the chain is nine user-level ops, written once and run on
either engine's Value:

    v = v * a;  v = v + b;  v = v.relu();  v = v * 0.5;  v = v - c;
    v = v / d;  v = v ** 2;  v = -v;  v = 1.5 + v

a, b, c, d are Values (as weights would be), so four ops are Value-Value,
three take a plain number and two are unary. The map has an attracting
fixed point near 1.09, so the chain neither overflows nor dies at relu.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from typing import Any

import micrograd.engine

import chaingrad
import chaingrad.engine

from . import earlier
from .common import Mismatch, Row, alternate, count_nodes, faster, size, timed

OPS_PER_STEP = 9
LEAVES = (0.8, 1.3, 0.4, 0.2, 1.1)  # v0, a, b, c, d
MICROGRAD = "micrograd 0.1.0"
REFERENCE = "the reference engine"
BEFORE, BEFORE_REFERENCE = "the compiled core at 3c6bce4", "the reference engine at 3c6bce4"
ENGINES = {
    "chaingrad": chaingrad.Value,
    REFERENCE: earlier.reference().Value,
    BEFORE: earlier.at("3c6bce4", compiled=True).Value,
    BEFORE_REFERENCE: earlier.at("3c6bce4").Value,
    MICROGRAD: micrograd.engine.Value,
}


def build(V: type, steps: int) -> tuple[Any, list[Any]]:
    """The chain of `steps` steps on engine V: (output, leaves)."""
    leaves = [V(x) for x in LEAVES]
    v, a, b, c, d = leaves
    for _ in range(steps):
        v = v * a
        v = v + b
        v = v.relu()
        v = v * 0.5
        v = v - c
        v = v / d
        v = v**2
        v = -v
        v = 1.5 + v
    return v, leaves


def bytes_per_node(V: type, n: int) -> float:
    """Bytes allocated per node of a chain of n Value * Value ops (forward only)."""
    x, w = V(1.0), V(1.0)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        v = x
        for _ in range(n):
            v = v * w
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del v
    gc.collect()  # micrograd's nodes hold cycles through their closures
    return (after - before) / n


def check_same(steps: int) -> dict[str, int]:
    """Run every engine once; raise Mismatch unless output and leaf gradients agree. Returns node counts.

    chaingrad and its reference engine must agree bit for bit; the others to 1e-9.
    """
    results, nodes = {}, {}
    for name, V in ENGINES.items():
        out, leaves = build(V, steps)
        out.backward()
        results[name] = [out.data] + [leaf.grad for leaf in leaves]
        nodes[name] = count_nodes(out)
    ours = results[REFERENCE]
    for name, theirs in results.items():
        tol = 0.0 if name == "chaingrad" else 1e-9
        for i, (x, y) in enumerate(zip(ours, theirs)):
            if not abs(x - y) <= tol * max(1.0, abs(y)):
                what = "output" if i == 0 else f"gradient of leaf {i - 1}"
                raise Mismatch(f"chain: {what} differs: {REFERENCE} {x!r}, {name} {y!r}")
    return nodes


def _trial(V: type, steps: int) -> dict[str, float]:
    (out, _), forward = timed(lambda: build(V, steps))
    _, backward = timed(out.backward)
    return {"forward": forward, "backward": backward}


def run(
    quick: bool = False, steps: int | None = None, repeats: int | None = None, mem_ops: int | None = None
) -> list[Row]:
    """Time forward and backward of the chain on every engine (totals over alternating repeats) and
    measure memory per node."""
    steps = size(steps, 500 if quick else 2000)
    repeats = size(repeats, 4 if quick else 12)
    mem_ops = size(mem_ops, 20_000 if quick else 100_000)
    compiled = chaingrad.backend == "compiled"
    engines = {n: V for n, V in ENGINES.items() if compiled or n not in ("chaingrad", BEFORE)}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20 * OPS_PER_STEP * steps))  # micrograd's topological sort recurses
    try:
        nodes = check_same(steps)
        t = alternate({name: lambda V=V: _trial(V, steps) for name, V in engines.items()}, repeats)
    finally:
        sys.setrecursionlimit(limit)
    ops = OPS_PER_STEP * steps * repeats
    mem = {name: bytes_per_node(V, mem_ops) for name, V in engines.items()}
    per_op = {name: {k: 1e9 * v / ops for k, v in times.items()} for name, times in t.items()}
    rows = []
    # issue 21's figures: the reference engine, now written as code, at most 1.5x slower than before;
    # the compiled core as fast as before, to 10%
    slower = {"forward": ">= 0.67x", "backward": ">= 0.67x"}
    pairs = [(REFERENCE, BEFORE_REFERENCE, slower), (REFERENCE, MICROGRAD, {})]
    if compiled:
        pairs[:0] = [
            ("chaingrad", BEFORE, {"forward": ">= 0.9x", "backward": ">= 0.9x"}),
            ("chaingrad", REFERENCE, {}),
        ]
    for ours, theirs, targets in pairs:
        for phase in ("forward", "backward"):
            rows.append(
                faster(
                    "chain",
                    f"{phase}, ns per op ({OPS_PER_STEP * steps} ops x {repeats}), {ours}",
                    per_op[ours][phase],
                    per_op[theirs][phase],
                    theirs,
                    target=targets.get(phase, ""),
                )
            )
    rows.append(
        faster(
            "chain",
            "graph nodes per op",
            nodes[REFERENCE] / (ops / repeats),
            nodes[MICROGRAD] / (ops / repeats),
            MICROGRAD,
        )
    )
    for name in engines:
        if name != MICROGRAD:
            rows.append(
                faster("chain", f"bytes per Value*Value node, {name}", mem[name], mem[MICROGRAD], MICROGRAD)
            )
    return rows
