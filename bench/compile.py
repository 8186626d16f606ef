"""cg.compile (issue 27): micrograd's README graph compiled against op by op, what the first (tracing)
call costs, and what a tape keeps per entry.

The README graph is micrograd's example, forward and backward, run as a user would run it in a loop:

    c = a + b;  d = a * b + b**3;  c += c + 1;  c += 1 + c + (-a);  d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu();  e = c - d;  f = e**2;  g = f / 2.0;  g += 10.0 / f

(a = -4, b = 2; g = 24.7041, dg/da = 138.8338, dg/db = 645.5773). The compiled run's results must be
bit for bit the op-by-op run's, micrograd's within 1e-12 (its ** differs in the last bit), or the
timings mean nothing. The tracing rows compare the first
call of a fresh compiled function (its trace, the tape written down, the first replay) with an
uncompiled call of the same function, forward only: the GPT's loss for one name, and the moons
demo's whole data loss.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from typing import Any

import micrograd.engine

import chaingrad as cg

from .common import Mismatch, Row, alternate, faster, size, timed


def readme_graph(a: Any, b: Any) -> Any:
    """micrograd's README example, on any engine's Values a and b; g."""
    c = a + b
    d = a * b + b**3
    c = c + (c + 1)
    c = c + (1 + c + (-a))
    d = d + (d * 2 + (b + a).relu())
    d = d + (3 * d + (b - a).relu())
    e = c - d
    f = e**2
    g = f / 2.0
    g = g + (10.0 / f)
    return g


def _readme_runs(n: int) -> dict[str, Any]:
    """Each side's trial: n forward and backward passes of the README graph, its results kept."""
    compiled = cg.compile(readme_graph)
    sides = {
        "chaingrad": (cg.Value, readme_graph),
        "compiled": (cg.Value, compiled),
        "micrograd": (micrograd.engine.Value, readme_graph),
    }
    results: dict[str, tuple[float, float, float]] = {}

    def trial(name: str) -> Any:
        V, fn = sides[name]
        a, b = V(-4.0), V(2.0)

        def run() -> tuple[float, float, float]:
            for _ in range(n):
                a.grad = 0.0
                b.grad = 0.0
                g = fn(a, b)
                g.backward()
            return g.data, a.grad, b.grad

        def one() -> dict[str, float]:
            out, seconds = timed(run)
            results[name] = out
            return {"s": seconds}

        return one

    return {name: trial(name) for name in sides}, results


def _gpt_call() -> tuple[Any, Any]:
    """(a fresh compiled GPT loss's first call, an uncompiled call), on one name of 8 tokens."""
    model = cg.nn.GPT(27, seed=1)
    tokens = [random.Random(2).randrange(27) for _ in range(8)]
    fn = cg.nn._loss.__wrapped__

    def first() -> Any:
        compiled = cg.compile(fn)
        return compiled(model, [model.wte(t) for t in tokens[:-1]], tokens[1:])

    return first, lambda: fn(model, [model.wte(t) for t in tokens[:-1]], tokens[1:])


def _moons_call() -> tuple[Any, Any]:
    """The moons demo's data loss over 100 samples, compiled afresh and uncompiled."""
    rng = random.Random(3)
    X = [[rng.uniform(-1, 2), rng.uniform(-1, 1)] for _ in range(100)]
    y = [rng.choice([-1.0, 1.0]) for _ in range(100)]
    model = cg.nn.MLP(2, [16, 16, 1], seed=4)
    for p in model.parameters():
        p.data = float(p.data)

    def loss(X: Any, y: Any) -> Any:
        return cg.mean([cg.relu(1 - yi * model(x)) for x, yi in zip(X, y)])

    return lambda: cg.compile(loss)(X, y), lambda: loss(X, y)


def _first_call(make: Any, repeats: int) -> dict[str, Any]:
    """A compiled function's first call against an uncompiled call, alternating: their seconds, the
    tape, and the bytes the uncompiled graph holds against what one call's node keeps for its backward."""
    first, plain = make()
    totals = alternate(
        {"first": lambda: {"s": timed(first)[1]}, "plain": lambda: {"s": timed(plain)[1]}}, repeats
    )
    gc.collect()
    tracemalloc.start()
    plain_out = plain()
    graph_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    compiled_out = first()
    if compiled_out.data != plain_out.data:
        raise Mismatch(f"compile: the first call gave {compiled_out.data!r}, uncompiled {plain_out.data!r}")
    return {
        "first": totals["first"]["s"] / repeats,
        "plain": totals["plain"]["s"] / repeats,
        "tape": compiled_out._ctx.tape,
        "graph bytes": graph_bytes,
    }


def run(quick: bool = False, n: int | None = None, repeats: int | None = None) -> list[Row]:
    """Rows: the README graph compiled against op by op and micrograd; the first call's cost; a tape's
    memory per entry."""
    if cg.backend != "compiled":
        return []  # cg.compile runs the function as it is on the reference engine: nothing to compare
    n = size(n, 2_000 if quick else 100_000)
    repeats = size(repeats, 2 if quick else 5)
    trials, results = _readme_runs(n)
    t = alternate(trials, repeats)
    if results["compiled"] != results["chaingrad"]:  # bit for bit
        raise Mismatch(f"README graph: compiled gave {results['compiled']}, op by op {results['chaingrad']}")
    if any(abs(x - y) > 1e-12 * abs(y) for x, y in zip(results["micrograd"], results["chaingrad"])):
        raise Mismatch(
            f"README graph: micrograd gave {results['micrograd']}, chaingrad {results['chaingrad']}"
        )
    per = {name: t[name]["s"] / (n * repeats) * 1e6 for name in t}
    rows = [
        faster("compile", "README graph, us per forward + backward", per["compiled"], per["chaingrad"],
               "chaingrad op by op", target=">= 3x"),
        faster("compile", "README graph, us per forward + backward", per["compiled"], per["micrograd"],
               "micrograd 0.1.0"),
    ]  # fmt: skip
    for what, make in (("GPT loss, a name of 8", _gpt_call), ("moons data loss, 100 samples", _moons_call)):
        r = _first_call(make, repeats)
        tape = r["tape"]
        rows += [
            faster("compile", f"{what}: s, the first call (it traces)", r["first"], r["plain"],
                   "an uncompiled call", target=">= 0.333x"),
            faster("compile", f"{what}: bytes a call keeps, {tape.entries:,} entries "
                   f"(the tape itself: {tape.bytes / tape.entries:.0f} B an entry, once)",
                   tape.run_bytes, r["graph bytes"], "the uncompiled graph"),
        ]  # fmt: skip
    return rows
