"""Issue 3's GPT workload: microgpt's training run on chaingrad's fused GPT vs on the naive engine.

Both sides train the same model (1 layer, n_embd 16, 4 heads, block size
16) from the same initial weights on the same names, one name per step,
with Adam (betas 0.85, 0.99) and a learning rate decaying linearly from
0.01. The naive side is written the way microgpt writes it: every sum of
products a chain of + and * nodes, softmax from exp, + and /, the loss
-log(prob). The per-step losses must agree to 1e-9.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Sequence
from typing import Any

import chaingrad as cg

from . import earlier, naive
from .common import CLOCK, Mismatch, Row, count_nodes, faster, size, whole_runs

N_EMBD, N_HEAD, N_LAYER, BLOCK_SIZE = 16, 4, 1, 16
LR, BETAS, EPS = 0.01, (0.85, 0.99), 1e-8
SEED = 42
BASELINE = "naive engine (a node per + and *)"
BEFORE_COMMIT = "3c6bce4"  # before the reference engine was written as code (issue 22's baseline)


def _matrices(n_layer: int) -> dict[str, str]:
    """microgpt's matrix names, each with the chaingrad parameters it copies, in chaingrad's order."""
    names = {"wte": "wte.weight", "wpe": "wpe.weight"}
    for i in range(n_layer):
        for ours, theirs in [
            ("attn_wq", "attn.q"),
            ("attn_wk", "attn.k"),
            ("attn_wv", "attn.v"),
            ("attn_wo", "attn.o"),
            ("mlp_fc1", "fc1"),
            ("mlp_fc2", "fc2"),
        ]:
            names[f"layer{i}.{ours}"] = f"layers.{i}.{theirs}.weight"
    names["lm_head"] = "lm_head.weight"
    return names


def linear(x: Sequence[naive.Value], w: list[list[naive.Value]]) -> list[naive.Value]:
    """Each row's dot product with x, as a chain of + and * nodes."""
    out = []
    for row in w:
        total = 0.0
        for wi, xi in zip(row, x):
            total += wi * xi
        out.append(total)
    return out


def softmax(logits: Sequence[naive.Value]) -> list[naive.Value]:
    """exp(x - max) / sum, with one node per exp, + and /."""
    m = max(x.data for x in logits)
    exps = [(x - m).exp() for x in logits]
    total = sum(exps)
    return [e / total for e in exps]


def rmsnorm(x: Sequence[naive.Value]) -> list[naive.Value]:
    """x / sqrt(mean(x^2) + 1e-5)."""
    scale = (sum(xi * xi for xi in x) / len(x) + 1e-5) ** -0.5
    return [xi * scale for xi in x]


class NaiveGPT:
    """microgpt's model and Adam on the naive engine, starting from the given weights."""

    def __init__(self, weights: dict[str, list[list[float]]], n_head: int, n_layer: int) -> None:
        self.w = {name: [[naive.Value(x) for x in row] for row in m] for name, m in weights.items()}
        self.n_head, self.n_layer = n_head, n_layer
        self.params = [p for m in self.w.values() for row in m for p in row]
        self.m = [0.0] * len(self.params)
        self.v = [0.0] * len(self.params)
        self.t = 0

    @classmethod
    def like(cls, model: cg.nn.GPT) -> NaiveGPT:
        """A naive copy of a chaingrad GPT, weight by weight, matched by parameter name."""
        state = model.state_dict()  # one entry per matrix row: "wte.weight.0", ...
        weights = {}
        for name, prefix in _matrices(len(model.layers)).items():
            rows = weights[name] = []
            while f"{prefix}.{len(rows)}" in state:
                rows.append(state.pop(f"{prefix}.{len(rows)}"))
        if state:
            raise ValueError(f"NaiveGPT has no place for chaingrad's parameters {sorted(state)[:5]}")
        return cls(weights, model.layers[0].attn.n_head, len(model.layers))

    def logits(self, token: int, pos: int, keys: list, values: list) -> list[naive.Value]:
        """The next-token logits at one position; appends its keys and values to the caches."""
        w = self.w
        x = rmsnorm([t + p for t, p in zip(w["wte"][token], w["wpe"][pos])])
        for li in range(self.n_layer):
            residual = x
            x = rmsnorm(x)
            q = linear(x, w[f"layer{li}.attn_wq"])
            keys[li].append(linear(x, w[f"layer{li}.attn_wk"]))
            values[li].append(linear(x, w[f"layer{li}.attn_wv"]))
            hd = len(q) // self.n_head
            heads = []
            for hs in range(0, len(q), hd):
                scores = [sum(q[j] * k[j] for j in range(hs, hs + hd)) / hd**0.5 for k in keys[li]]
                weights = softmax(scores)
                heads += [sum(a * v[j] for a, v in zip(weights, values[li])) for j in range(hs, hs + hd)]
            x = [a + b for a, b in zip(linear(heads, w[f"layer{li}.attn_wo"]), residual)]
            residual = x
            h = [hi.relu() for hi in linear(rmsnorm(x), w[f"layer{li}.mlp_fc1"])]
            x = [a + b for a, b in zip(linear(h, w[f"layer{li}.mlp_fc2"]), residual)]
        return linear(x, w["lm_head"])

    def loss(self, tokens: Sequence[int]) -> naive.Value:
        """Mean over positions of -log(softmax(logits)[next token])."""
        keys, values = [[] for _ in range(self.n_layer)], [[] for _ in range(self.n_layer)]
        n = len(tokens) - 1
        losses = [-softmax(self.logits(tokens[p], p, keys, values))[tokens[p + 1]].log() for p in range(n)]
        return (1 / n) * sum(losses)

    def train_step(self, tokens: Sequence[int], lr: float) -> float:
        """Forward, backward and one Adam step; returns the loss."""
        loss = self.loss(tokens)
        loss.backward()
        self.t += 1
        b1, b2 = BETAS
        for i, p in enumerate(self.params):
            self.m[i] = b1 * self.m[i] + (1 - b1) * p.grad
            self.v[i] = b2 * self.v[i] + (1 - b2) * p.grad**2
            m_hat = self.m[i] / (1 - b1**self.t)
            v_hat = self.v[i] / (1 - b2**self.t)
            p.data -= lr * m_hat / (v_hat**0.5 + EPS)
            p.grad = 0.0
        return loss.data


class FusedGPT:
    """chaingrad's GPT with cg.optim.Adam: the side being measured."""

    def __init__(self, model: cg.nn.GPT) -> None:
        self.model = model
        self.opt = cg.optim.Adam(model.parameters(), lr=LR, betas=BETAS, eps=EPS)

    def train_step(self, tokens: Sequence[int], lr: float) -> float:
        """Forward, backward and one Adam step; returns the loss."""
        self.opt.lr = lr
        loss = self.model.loss(tokens)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.data


class UncompiledGPT(FusedGPT):
    """The same GPT and Adam, its loss run op by op (GPT.loss's function without cg.compile)."""

    def train_step(self, tokens: Sequence[int], lr: float) -> float:
        self.opt.lr = lr
        m = self.model
        loss = cg.nn._loss.__wrapped__(m, [m.wte(t) for t in tokens[:-1]], tokens[1:])
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.data


class EarlierGPT(FusedGPT):
    """The same GPT and Adam on the compiled core as it was at 3c6bce4 (issue 22's baseline), its loss op
    by op: the model built there and given these weights."""

    def __init__(self, model: cg.nn.GPT) -> None:
        before = earlier.at(BEFORE_COMMIT, compiled=True)
        a = model.architecture()
        twin = before.nn.GPT(a["vocab_size"], a["n_embd"], a["n_head"], a["n_layer"], a["block_size"])
        for mine, theirs in zip(model.parameters(), twin.parameters(), strict=True):
            theirs.data = mine.data
        self.model = twin
        self.opt = before.optim.Adam(twin.parameters(), lr=LR, betas=BETAS, eps=EPS)


class TorchGPT:
    """The same model in PyTorch eager (model.to_torch(), float64, one thread), torch.optim.Adam."""

    def __init__(self, model: cg.nn.GPT) -> None:
        import torch

        torch.set_num_threads(1)
        self.torch = torch
        self.model = model.to_torch(dtype=torch.float64)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR, betas=BETAS, eps=EPS)

    def train_step(self, tokens: Sequence[int], lr: float) -> float:
        torch = self.torch
        for group in self.opt.param_groups:
            group["lr"] = lr
        t = torch.tensor(tokens)
        loss = self.model(t[:-1], t[1:])
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item()


def names_as_tokens(count: int, seed: int = SEED) -> tuple[list[list[int]], int]:
    """The first `count` shuffled names as [BOS, ..., BOS] cut to the block, and the vocabulary's size."""
    names = list(cg.data.load_names())
    tok = cg.data.CharTokenizer(names)
    random.Random(seed).shuffle(names)
    return [tok.encode(name)[: BLOCK_SIZE + 1] for name in names[:count]], tok.vocab_size


def train_both(steps: int, repeats: int = 1) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Train both sides `steps` steps from the same initial weights, whole runs alternating;
    (the losses of each step, the mean CPU seconds of a whole run) per side."""
    docs, vocab = names_as_tokens(steps)

    def side(make: Callable[[cg.nn.GPT], Any]) -> Callable[[], Callable[[int], float]]:
        def fresh() -> Callable[[int], float]:
            trained = make(cg.nn.GPT(vocab, N_EMBD, N_HEAD, N_LAYER, BLOCK_SIZE, seed=SEED))
            return lambda step: trained.train_step(docs[step], LR * (1 - step / steps))

        return fresh

    sides = {
        "chaingrad": side(FusedGPT),  # GPT.loss: cg.compile's tape per length
        "uncompiled": side(UncompiledGPT),
        "before": side(EarlierGPT),
        "pytorch": side(TorchGPT),
        "naive": side(NaiveGPT.like),
    }
    results = whole_runs(sides, steps, dict.fromkeys(sides, repeats))
    return {name: r[0] for name, r in results.items()}, {name: r[1] for name, r in results.items()}


def check_same(losses: dict[str, list[float]], tol: float = 1e-9) -> float:
    """Raise Mismatch unless the two sides' losses agree to tol at every step; the largest gap."""
    gaps = [abs(a - b) for a, b in zip(losses["chaingrad"], losses["naive"])]
    for step, gap in enumerate(gaps):
        if not gap <= tol:
            raise Mismatch(
                f"gpt: at step {step} the losses differ by {gap:.3g}: "
                f"chaingrad {losses['chaingrad'][step]!r}, naive {losses['naive'][step]!r}"
            )
    return max(gaps)


def graph_sizes(tokens: Sequence[int], vocab: int) -> dict[str, int]:
    """How many nodes the loss graph of one name holds on each side."""
    model = cg.nn.GPT(vocab, N_EMBD, N_HEAD, N_LAYER, BLOCK_SIZE, seed=SEED)
    naive_loss = NaiveGPT.like(model).loss(tokens)
    uncompiled = cg.nn._loss.__wrapped__(model, [model.wte(t) for t in tokens[:-1]], tokens[1:])  # its nodes
    return {"chaingrad": count_nodes(uncompiled), "naive": count_nodes(naive_loss, "_children")}


def rows(losses: dict[str, list[float]], seconds: dict[str, float], nodes: dict[str, int]) -> list[Row]:
    """The table rows for a training run; raises Mismatch if the losses differ."""
    gap = check_same(losses)
    if losses["uncompiled"] != losses["chaingrad"]:
        raise Mismatch("gpt: the compiled loss differs from the uncompiled one (they must agree bit for bit)")
    before_gap = max(abs(a - b) for a, b in zip(losses["before"], losses["uncompiled"]))
    if not before_gap <= 1e-9:  # the same model; the last bit may differ (Adam's loop was rewritten since)
        raise Mismatch(f"gpt: the core at {BEFORE_COMMIT} gives losses {before_gap:.3g} away from today's")
    torch_gap = max(abs(a - b) for a, b in zip(losses["chaingrad"], losses["pytorch"]))
    if not torch_gap <= 1e-9:
        raise Mismatch(f"gpt: chaingrad and PyTorch losses differ by {torch_gap:.3g}")
    steps = len(losses["chaingrad"])
    compiled = cg.backend == "compiled"
    return [
        faster(
            "gpt",
            f"train, s per run of {steps} steps, one name a step, Adam (losses within {torch_gap:.0e})",
            seconds["chaingrad"],
            seconds["pytorch"],
            "PyTorch 2.13 eager, float64, 1 thread",
            target=">= 3x" if compiled else "",
        ),
        faster(
            "gpt",
            f"train, s per run of {steps} steps, op by op (GPT.loss without cg.compile)",
            seconds["uncompiled"],
            seconds["before"],
            f"the compiled core at {BEFORE_COMMIT}",
            target=">= 0.9x" if compiled else "",  # issue 22: as fast as it was, within 10%
        ),
        faster(
            "gpt",
            f"train, s per run of {steps} steps: GPT.loss under cg.compile (losses bit for bit)",
            seconds["chaingrad"],
            seconds["uncompiled"],
            "the same, op by op",
        ),
        faster(
            "gpt",
            f"train, s per run of {steps} steps, one name a step (losses within {gap:.0e})",
            seconds["chaingrad"],
            seconds["naive"],
            BASELINE,
            target=">= 40x",
        ),
        faster("gpt", "graph nodes for one name", nodes["chaingrad"], nodes["naive"], BASELINE),
    ]


def steady(steps: int) -> dict[str, float]:
    """CPU seconds a step, once every length has its tape: each side trains `steps` names, then the same
    names again, timed (chaingrad's GPT.loss traces a length the first time it meets it; PyTorch warms)."""
    docs, vocab = names_as_tokens(steps)
    out = {}
    for name, make in (("chaingrad", FusedGPT), ("pytorch", TorchGPT)):
        side = make(cg.nn.GPT(vocab, N_EMBD, N_HEAD, N_LAYER, BLOCK_SIZE, seed=SEED))
        for tokens in docs:
            side.train_step(tokens, LR)
        gc.collect()
        t0 = CLOCK()
        for tokens in docs:
            side.train_step(tokens, LR)
        out[name] = (CLOCK() - t0) / steps
    return out


def run(quick: bool = False, steps: int | None = None, repeats: int | None = None) -> list[Row]:
    """Train both sides on the same names and compare the CPU time of whole runs."""
    steps = size(steps, 6 if quick else 60)
    losses, seconds = train_both(steps, size(repeats, 1 if quick else 2))
    docs, vocab = names_as_tokens(1)
    warm = steady(steps)
    return [
        *rows(losses, seconds, graph_sizes(docs[0], vocab)),
        faster("gpt", "train, s per step once each length has its tape (the same names again)",
               warm["chaingrad"], warm["pytorch"], "PyTorch 2.13 eager, float64, 1 thread",
               target=">= 3x" if cg.backend == "compiled" else ""),
    ]  # fmt: skip
