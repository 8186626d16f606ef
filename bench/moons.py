"""micrograd's moons demo, whole training runs: micrograd, chaingrad (per sample, batched), PyTorch.

The demo: make_moons(n_samples=100, noise=0.1) after numpy.random.seed(1337),
MLP(2, [16, 16, 1]), hinge loss + 1e-4 * L2, SGD with lr = 1.0 - 0.9 * k / 100,
100 steps. Every side starts from micrograd's own initial weights; the inputs
are the rows of floats, passed as micrograd's notebook passes them (micrograd
wraps each in Values every step, chaingrad takes the floats). Every step's loss
must agree across sides (to 1e-9), or the timings mean nothing.
"""

from __future__ import annotations

import gc
import random
import sys

from bench.common import CLOCK, Mismatch, faster, size, whole_runs

STEPS = 100  # the demo's schedule length, for the learning rate
BEFORE_COMMIT = "3c6bce4"  # before the reference engine was written as code (issue 21's baseline)


def _data() -> tuple[list[list[float]], list[float]]:
    import numpy as np
    from sklearn.datasets import make_moons

    np.random.seed(1337)
    X, y = make_moons(n_samples=100, noise=0.1)
    return X.tolist(), [float(2 * v - 1) for v in y]


def _lr(k: int) -> float:
    return 1.0 - 0.9 * k / STEPS


class Micrograd:
    """micrograd 0.1.0's demo, as its notebook runs it (samples one at a time)."""

    def __init__(self, X: list[list[float]], y: list[float]):
        from micrograd import nn

        random.seed(1337)
        self.model, self.X, self.y = nn.MLP(2, [16, 16, 1]), X, y

    def step(self, k: int) -> float:
        from micrograd.engine import Value

        scores = [self.model(list(map(Value, row))) for row in self.X]
        losses = [(1 + -yi * s).relu() for yi, s in zip(self.y, scores)]
        loss = sum(losses) * (1.0 / len(losses)) + 1e-4 * sum(p * p for p in self.model.parameters())
        self.model.zero_grad()
        loss.backward()
        for p in self.model.parameters():
            p.data -= _lr(k) * p.grad
        return loss.data


class Chaingrad:
    """The same demo with chaingrad's nn, losses and optim; `batch` runs all 100 samples as one batch."""

    def __init__(
        self, X: list[list[float]], y: list[float], weights: list[float], batch: bool, cg=None, compiled=""
    ):
        if cg is None:
            import chaingrad as cg

        self.cg = cg
        self.model = cg.nn.MLP(2, [16, 16, 1])
        for p, w in zip(self.model.parameters(), weights):
            p.data = w
        self.params = self.model.parameters()  # once, as the PyTorch side keeps its list
        self.opt = cg.optim.SGD(self.params, lr=1.0)
        if batch:
            import numpy as np

            self.inputs = [cg.data.columns(np.array(X))]
            self.y = np.array(y)
        else:
            self.inputs = X  # rows of floats
            self.y = y
        # cg.compile: "sample" compiles the per-sample loss (a call per sample, their mean as usual),
        # "step" the whole step's data loss (one call per step); both the same ops as hinge() runs
        model = self.model
        self.sample_loss = (
            cg.compile(lambda x, y: cg.relu(1 - y * model(x))) if compiled == "sample" else None
        )
        self.data_loss = (
            cg.compile(lambda X, y: cg.mean([cg.relu(1 - yi * model(x)) for x, yi in zip(X, y)]))
            if compiled == "step"
            else None
        )

    def step(self, k: int) -> float:
        cg = self.cg
        reg = 1e-4 * cg.losses.l2(self.params)
        if self.sample_loss is not None:
            loss = cg.mean([self.sample_loss(x, y) for x, y in zip(self.inputs, self.y)]) + reg
        elif self.data_loss is not None:
            loss = self.data_loss(self.inputs, self.y) + reg
        else:
            scores = [self.model(x) for x in self.inputs]
            scores = scores[0] if len(scores) == 1 else scores
            loss = cg.losses.hinge(scores, self.y) + reg
        self.opt.zero_grad()
        loss.backward()
        self.opt.lr = _lr(k)
        self.opt.step()
        return loss.data


class Torch:
    """The same demo in PyTorch 2.13 eager mode: CPU, float64, one thread."""

    def __init__(self, X: list[list[float]], y: list[float], weights: list[float]):
        import torch

        torch.set_num_threads(1)
        self.torch = torch
        self.layers = []
        it = iter(weights)
        for nin, nout in [(2, 16), (16, 16), (16, 1)]:
            rows = [[next(it) for _ in range(nin + 1)] for _ in range(nout)]  # each neuron: weights, bias
            W = torch.tensor([r[:-1] for r in rows], dtype=torch.float64, requires_grad=True)
            b = torch.tensor([r[-1] for r in rows], dtype=torch.float64, requires_grad=True)
            self.layers.append((W, b))
        self.params = [t for pair in self.layers for t in pair]
        self.X = torch.tensor(X, dtype=torch.float64)
        self.y = torch.tensor(y, dtype=torch.float64)

    def step(self, k: int) -> float:
        torch = self.torch
        h = self.X
        for i, (W, b) in enumerate(self.layers):
            h = h @ W.T + b
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        loss = torch.relu(1 - self.y * h[:, 0]).mean() + 1e-4 * sum((p * p).sum() for p in self.params)
        for p in self.params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in self.params:
                p -= _lr(k) * p.grad
        return loss.item()


def sides() -> dict[str, object]:
    """A fresh maker for every side of the demo, all starting from micrograd's initial weights."""
    X, y = _data()
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))  # micrograd's topological sort recurses
    weights = [p.data for p in Micrograd(X, y).model.parameters()]
    import chaingrad
    from bench import earlier

    before = earlier.at(BEFORE_COMMIT, compiled=chaingrad.backend == "compiled")  # the same engine, earlier
    return {
        "micrograd": lambda: Micrograd(X, y).step,
        "chaingrad": lambda: Chaingrad(X, y, weights, batch=False).step,
        "chaingrad batch": lambda: Chaingrad(X, y, weights, batch=True).step,
        "compiled per sample": lambda: Chaingrad(X, y, weights, batch=False, compiled="sample").step,
        "compiled per step": lambda: Chaingrad(X, y, weights, batch=False, compiled="step").step,
        "before": lambda: Chaingrad(X, y, weights, batch=False, cg=before).step,
        "before batch": lambda: Chaingrad(X, y, weights, batch=True, cg=before).step,
        "pytorch": lambda: Torch(X, y, weights).step,
    }


def train(steps: int, repeats: int, micrograd_repeats: int) -> dict[str, tuple[list[float], float]]:
    """(the losses, the mean CPU seconds of a whole run of `steps` steps) for each side."""
    repeat = {name: micrograd_repeats if name == "micrograd" else repeats for name in sides()}
    results = whole_runs(sides(), steps, repeat)
    for name in ("compiled per sample", "compiled per step"):  # cg.compile: the uncompiled run's losses
        if results[name][0] != results["chaingrad"][0]:
            raise Mismatch(f"moons: {name} losses differ from the uncompiled per-sample run's")
    for k in range(steps):
        ref = results["pytorch"][0][k]
        for name, (losses, _) in results.items():
            if abs(losses[k] - ref) > 1e-9 * max(1.0, abs(ref)):
                raise Mismatch(f"moons step {k}: {name} loss {losses[k]!r} but pytorch {ref!r}")
    return results


def steady(steps: int) -> dict[str, float]:
    """CPU seconds a step once a run is under way: each side's first `steps` steps (the first of which
    traces a compiled loss, and runs on micrograd's int biases until the optimizer writes floats), then
    `steps` more, timed."""
    makers = sides()
    out = {}
    for name in ("chaingrad", "compiled per sample", "compiled per step", "pytorch"):
        step = makers[name]()
        for k in range(steps):
            step(k)
        gc.collect()
        t0 = CLOCK()
        for k in range(steps):
            step(k)
        out[name] = (CLOCK() - t0) / steps
    return out


def run(quick: bool = False, steps: int | None = None, repeats: int | None = None) -> list:
    """Rows: the CPU time of a whole training run, chaingrad (per sample and batched) against
    micrograd and PyTorch."""
    steps = size(steps, 5 if quick else STEPS)
    repeats = size(repeats, 2 if quick else 3)
    t = {name: seconds for name, (_, seconds) in train(steps, repeats, 1).items()}
    note = f"s per run of {steps} steps (losses agree to 1e-9)"
    import chaingrad

    engine = "the compiled core" if chaingrad.backend == "compiled" else "the reference engine"
    target = ">= 0.9x" if chaingrad.backend == "compiled" else ">= 0.67x"  # issue 21: 10%, 1.5x slower
    before = f"{engine} at {BEFORE_COMMIT}"
    compiled = chaingrad.backend == "compiled"  # issue 27's targets (cg.compile runs as it is without it)
    warm = steady(steps)
    later = "s per step once under way"
    return [
        faster("moons", f"{later}, cg.compile per sample", warm["compiled per sample"], warm["chaingrad"],
               "chaingrad per sample, uncompiled", target=">= 10x" if compiled else ""),
        faster("moons", f"{later}, cg.compile per step", warm["compiled per step"], warm["chaingrad"],
               "chaingrad per sample, uncompiled", target=">= 10x" if compiled else ""),
        faster("moons", f"{later}, cg.compile per step", warm["compiled per step"], warm["pytorch"],
               "PyTorch 2.13 eager, 1 thread, batch", target=">= 1x" if compiled else ""),
        faster("moons", f"{note}, cg.compile per sample", t["compiled per sample"], t["chaingrad"],
               "chaingrad per sample, uncompiled", target=">= 10x" if compiled else ""),
        faster("moons", f"{note}, cg.compile per sample", t["compiled per sample"], t["pytorch"],
               "PyTorch 2.13 eager, 1 thread, batch", target=">= 1x" if compiled else ""),
        faster("moons", f"{note}, cg.compile per step", t["compiled per step"], t["chaingrad"],
               "chaingrad per sample, uncompiled", target=">= 10x" if compiled else ""),
        faster("moons", f"{note}, cg.compile per step", t["compiled per step"], t["pytorch"],
               "PyTorch 2.13 eager, 1 thread, batch", target=">= 1x" if compiled else ""),
        faster("moons", f"{note}, chaingrad per sample", t["chaingrad"], t["before"], before, target=target),
        faster("moons", f"{note}, chaingrad batch of 100", t["chaingrad batch"], t["before batch"], before,
               target=target),
        faster("moons", f"{note}, chaingrad per sample", t["chaingrad"], t["micrograd"], "micrograd 0.1.0",
               target=">= 300x" if chaingrad.backend == "compiled" else ""),
        faster("moons", f"{note}, chaingrad batch of 100", t["chaingrad batch"], t["micrograd"],
               "micrograd 0.1.0"),
        faster("moons", f"{note}, chaingrad batch of 100", t["chaingrad batch"], t["pytorch"],
               "PyTorch 2.13 eager, 1 thread", target=">= 1x" if chaingrad.backend == "compiled" else ""),
    ]  # fmt: skip
