"""The demos behind `chaingrad demo`: train a small model under a progress bar, then draw what it learned.

- `moons`: micrograd's demo, an MLP separating two half moons (hinge loss, SGD).
- `digits`: a classifier of the 8x8 handwritten digits (cross-entropy, Adam, mini-batches).
- `names`: microgpt, a character-level GPT trained on a list of names, which then invents new ones.

Ctrl-C stops training cleanly: a demo still draws what it has learned so far.
Every picture is written atomically (a temp file in the same folder, then
`os.replace`), so a folder never holds a half-written PNG. NumPy, scikit-learn,
matplotlib and tqdm (the `demo` extra) are imported when a demo runs.
"""

from __future__ import annotations

import importlib.util
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import data, losses, nn, optim
from .files import atomic_write
from .modes import no_grad

__all__ = ["DEMOS", "Run", "digits", "missing_packages", "moons", "names"]

REQUIRED = {"numpy": "numpy", "sklearn": "scikit-learn", "matplotlib": "matplotlib", "tqdm": "tqdm"}
FIGSIZE, DPI = (6.4, 4.8), 100  # every picture is 640 x 480 pixels


def missing_packages() -> list[str]:
    """The packages of the `demo` extra that are not installed."""
    return [package for module, package in REQUIRED.items() if importlib.util.find_spec(module) is None]


@dataclass
class Run:
    """What a demo did: its per-step metrics, how long training took, what it found and wrote."""

    name: str
    steps: int  # asked for
    history: list[dict[str, float]]  # one entry per completed step
    seconds: float
    lines: list[str] = field(default_factory=list)  # the results, one line each
    paths: list[Path] = field(default_factory=list)
    # when training changed engines part-way: (engine, completed steps, seconds) of each part, in order
    parts: list[tuple[str, int, float]] = field(default_factory=list)
    continued_on: str = ""  # and what each step of the second part saw

    @property
    def losses(self) -> list[float]:
        """The training loss at each completed step."""
        return [h["loss"] for h in self.history]

    @property
    def interrupted(self) -> bool:
        """Whether Ctrl-C stopped training before the last step."""
        return len(self.history) < self.steps

    def summary(self) -> str:
        """A few lines for the terminal: how training went, the results, and the files written."""
        done = len(self.history)
        per_step = f" ({1000 * self.seconds / done:.1f} ms per step)" if done else ""
        if self.parts:  # each engine's own step time: an average over both would describe neither
            per_step = "; ".join(
                f"{n} in {engine}" + (f" at {1000 * s / n:.1f} ms per step" if n else "")
                for engine, n, s in self.parts
            )
            per_step = f" ({per_step})"
        head = f"{self.name}: {done} steps in {self.seconds:.2f} s{per_step}"
        if self.interrupted:
            head = (
                f"{self.name}: stopped by Ctrl-C at step {done} of {self.steps}, after {self.seconds:.2f} s"
            )
        written = [f"  {p}" for p in self.paths]
        return "\n".join([head, *self.lines, "wrote:", *written])


def _progress(steps: int, desc: str) -> Any:
    """A tqdm progress bar over range(steps), on stderr."""
    from tqdm import tqdm

    return tqdm(range(steps), desc=desc, unit="step", dynamic_ncols=True)


def _train(name: str, steps: int, step: Callable[[int], dict[str, float]]) -> Run:
    """Call step(k) for k = 0 .. steps - 1 under a progress bar showing its metrics; Ctrl-C ends early."""
    history: list[dict[str, float]] = []
    bar = _progress(steps, name)
    start = time.perf_counter()
    try:
        for k in bar:
            history.append(step(k))
            bar.set_postfix_str(" ".join(f"{m}={v:.4f}" for m, v in history[-1].items()), refresh=False)
    except KeyboardInterrupt:
        pass  # keep the completed steps; the caller draws what the model has learned so far
    finally:
        seconds = time.perf_counter() - start
        bar.close()
    return Run(name, steps, history, seconds)


# ---------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------


def _figure() -> tuple[Any, Any]:
    # A bare Figure renders with Agg and touches no pyplot state or GUI backend.
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="tight")
    return fig, fig.add_subplot()


def _save(fig: Any, path: Path) -> Path:
    """Write fig to path as a PNG atomically: a temp file in the same folder, then os.replace."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))
    return path


def _loss_curve(run: Run, path: Path, loss: str, each: str, smooth: int = 0, window: str = "") -> Path:
    """The training loss (named `loss`, measured on `each` step's data) at each step.

    With smooth > 0 a bold line over it is the mean of the last `smooth` steps (`window` says what
    they cover): each step sees other samples, and the mean evens out that noise to show the trend.
    """
    fig, ax = _figure()
    ys = run.losses
    first = run.parts[0][1] if run.parts else len(ys)  # the steps of the first engine
    steps = range(1, first + 1)
    ax.plot(steps, ys[:first], lw=1, alpha=0.35 if smooth else 1, label=f"at each step, on {each}")
    if smooth:
        means = _running_means(ys[:first], smooth)
        ax.plot(steps, means, lw=2, label=f"mean of the last {smooth} steps ({window})")
    if run.parts and len(ys) > first:  # another engine took over: its steps, after a marked switch
        engine, more_each = run.parts[1][0], run.continued_on
        ax.axvline(first + 0.5, color="black", ls="--", lw=1, label=f"{engine} takes over after step {first}")
        ax.plot(
            range(first + 1, len(ys) + 1),
            ys[first:],
            lw=1.5,
            color="tab:green",
            label=f"{engine}: at each step, on {more_each}",
        )
    if ys:
        title = "the mean evens out the noise of sampling" if smooth else None
        ax.legend(  # below the axes, off the data
            loc="upper center",
            bbox_to_anchor=(0.5, -0.13),
            ncols=2 if len(ax.get_lines()) > 2 else 1,
            title=title,
            title_fontsize="small",
            fontsize="small",
        )
    else:
        ax.text(0.5, 0.5, "stopped before the first step", ha="center", transform=ax.transAxes)
    ax.set(xlabel="step", ylabel=loss, title=f"{run.name}: training loss ({loss})")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _running_means(xs: Iterable[float], n: int) -> list[float]:
    """The mean of the last n values (fewer at the start), at each position."""
    window: deque[float] = deque(maxlen=n)
    means = []
    for x in xs:
        window.append(x)
        means.append(sum(window) / len(window))
    return means


# ---------------------------------------------------------------------------
# moons: micrograd's demo
# ---------------------------------------------------------------------------


def moons(steps: int = 100, seed: int = 1337, out: Path = Path("chaingrad-out"), batch: bool = False) -> Run:
    """micrograd's demo: an MLP(2, [16, 16, 1]) learns to separate two half moons.

    100 points, hinge loss + 1e-4 * L2, SGD with the learning rate going
    linearly from 1.0 to 0.1. Per-sample mode runs the model on one sample at
    a time, as micrograd does; batch mode runs it once on all the samples
    through the batch axis. Both are the same math and give the same losses. With
    seed 1337 the data and the initial weights are micrograd's. Writes the
    decision boundary and the loss curve.
    """
    import numpy as np

    X, y = data.make_moons(n_samples=100, noise=0.1, seed=seed)
    y = 2.0 * y - 1  # labels -1, +1 for the hinge loss
    model = nn.MLP(2, [16, 16, 1], seed=seed)
    params = model.parameters()
    opt = optim.SGD(params, lr=1.0)
    inputs = data.columns(X) if batch else X.tolist()
    targets = y if batch else y.tolist()

    def step(k: int) -> dict[str, float]:
        s = model(inputs) if batch else [model(x) for x in inputs]
        loss = losses.hinge(s, targets) + 1e-4 * losses.l2(params)
        opt.zero_grad()
        loss.backward()
        opt.lr = 1.0 - 0.9 * k / steps
        opt.step()
        predicted = s.data if batch else np.array([si.data for si in s])
        return {"loss": loss.data, "accuracy": float(np.mean((predicted > 0) == (y > 0)))}

    run = _train("moons", steps, step)
    mode = "batch mode: all samples at once on the batch axis" if batch else "per-sample mode, as micrograd"
    run.lines.append(mode)
    if run.history:
        last = run.history[-1]
        run.lines.append(f"final loss {last['loss']:.4f}, training accuracy {last['accuracy']:.0%}")
    name = "moons-batch" if batch else "moons"  # each mode keeps its own pictures
    run.paths.append(_decision_boundary(model, X, y, out / f"{name}-boundary.png"))
    each = "all 100 samples at once" if batch else "the 100 samples, one at a time"
    run.paths.append(_loss_curve(run, out / f"{name}-loss.png", "hinge loss + 1e-4 * L2", each))
    return run


CLASS_COLORS = {-1: ("tab:red", "#f5c4c0"), 1: ("tab:blue", "#c2d9f2")}  # (points, region) per label


def _decision_boundary(model: nn.MLP, X: Any, y: Any, path: Path) -> Path:
    """The data points over the regions the model scores as negative and positive, in the classes' colors.

    The title gives the drawn model's accuracy on these points (labels -1 and +1).
    """
    import numpy as np

    (x0, y0), (x1, y1) = X.min(axis=0) - 1, X.max(axis=0) + 1
    xx, yy = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
    with no_grad():  # the whole grid as one batch: a single forward pass, no graph
        scores = model(data.columns(np.c_[xx.ravel(), yy.ravel()])).data
        accuracy = float(np.mean((model(data.columns(X)).data > 0) == (y > 0)))
    fig, ax = _figure()
    regions = [CLASS_COLORS[-1][1], CLASS_COLORS[1][1]]
    ax.contourf(xx, yy, scores.reshape(xx.shape), levels=[-np.inf, 0, np.inf], colors=regions)
    for label, (color, _) in CLASS_COLORS.items():
        points = X[y == label]
        ax.scatter(
            points[:, 0],
            points[:, 1],
            c=color,
            s=40,
            edgecolors="black",
            linewidths=0.5,
            label=f"class {label:+d} ({len(points)} points)",
        )
    # below the axes, so it never covers a point or the boundary
    ax.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=2, title="training data", fontsize="small"
    )
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="x1", ylabel="x2")
    ax.set_title(f"moons: the MLP's decision boundary (training accuracy {accuracy:.0%})")
    return _save(fig, path)


# ---------------------------------------------------------------------------
# digits: a cross-entropy classifier
# ---------------------------------------------------------------------------


def digits(steps: int = 1000, seed: int = 0, out: Path = Path("chaingrad-out"), batch_size: int = 32) -> Run:
    """A classifier of 8x8 handwritten digits: an MLP(64, [32, 10]) with cross-entropy.

    Adam with a cosine learning-rate decay, mini-batches of 32 on the batch
    axis, a quarter of the 1797 digits held out for testing. Prints the test
    accuracy; writes the loss curve and the confusion matrix.
    """
    import numpy as np

    X, y = data.load_digits()
    X_train, X_test, y_train, y_test = data.train_test_split(X, y, test_size=0.25, seed=seed)
    model = nn.MLP(64, [32, 10], seed=seed)
    for layer in model.layers:  # uniform(-1, 1) / sqrt(fan_in): PyTorch's range, which suits 64 inputs
        for p in layer.parameters():
            p.data /= math.sqrt(len(layer.neurons[0].w))
    opt = optim.Adam(model.parameters(), lr=0.01)
    schedule = optim.CosineAnnealingLR(opt, T_max=steps)
    stream = _epochs(X_train, y_train, batch_size, random.Random(seed))

    def step(k: int) -> dict[str, float]:
        Xb, yb = next(stream)
        logits = model(data.columns(Xb))
        loss = losses.cross_entropy(logits, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        return {"loss": loss.data, "accuracy": float(np.mean(_argmax(logits) == yb))}

    run = _train("digits", steps, step)
    with no_grad():
        predicted = _argmax(model(data.columns(X_test)))
    accuracy = float(np.mean(predicted == y_test))
    per_epoch = math.ceil(len(X_train) / batch_size)
    run.lines.append(f"{len(run.history) / per_epoch:.1f} epochs of mini-batches of {batch_size}")
    run.lines.append(f"test accuracy {accuracy:.1%} ({np.sum(predicted == y_test)} of {len(y_test)})")
    if run.history:
        run.lines.append(f"final training loss {run.losses[-1]:.4f}")
    run.paths.append(
        _loss_curve(
            run,
            out / "digits-loss.png",
            "cross-entropy",
            f"a mini-batch of {batch_size}",
            smooth=per_epoch,
            window="one epoch",
        )
    )
    run.paths.append(_confusion(y_test, predicted, accuracy, out / "digits-confusion.png"))
    return run


def _epochs(X: Any, y: Any, batch_size: int, rng: random.Random) -> Iterator[tuple[Any, Any]]:
    """Mini-batches, epoch after epoch, each epoch in a new random order."""
    while True:
        yield from data.batches(X, y, batch_size, seed=rng.getrandbits(32))


def _argmax(logits: list[Any]) -> Any:
    """The predicted class of each sample in a batch, from one batched Value per class."""
    import numpy as np

    return np.stack([v.data for v in logits]).argmax(axis=0)


def _confusion(truth: Any, predicted: Any, accuracy: float, path: Path) -> Path:
    """The 10 x 10 counts of (true digit, predicted digit) on the test set."""
    import numpy as np

    counts = np.zeros((10, 10), dtype=int)
    np.add.at(counts, (truth, predicted), 1)
    fig, ax = _figure()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, label="test digits")
    for (i, j), n in np.ndenumerate(counts):
        if n:
            ax.text(j, i, n, ha="center", va="center", color="white" if n > counts.max() / 2 else "black")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true digit")
    ax.set_title(f"digits: confusion matrix on the test set (accuracy {accuracy:.1%})")
    return _save(fig, path)


# ---------------------------------------------------------------------------
# names: microgpt
# ---------------------------------------------------------------------------


def names(
    steps: int = 1000,
    seed: int = 42,
    out: Path = Path("chaingrad-out"),
    samples: int = 20,
    temperature: float = 0.5,
    continue_in_torch: int = 0,
) -> Run:
    """microgpt: a tiny character-level GPT learns names, then invents new ones.

    1 layer, 16 channels, 4 heads, block size 16; one name per step from the
    shuffled list of names shipped with chaingrad; Adam with the learning
    rate decaying linearly from 0.01 to 0. Prints names sampled at
    temperature 0.5; writes the loss curve. With continue_in_torch=N the
    model then trains N more steps in PyTorch (the torch extra; CUDA when
    present) on batches of 32 names, and comes back to chaingrad to sample.
    """
    docs = data.load_names()
    tok = data.CharTokenizer(docs)
    rng = random.Random(seed)
    rng.shuffle(docs)
    model = nn.GPT(tok.vocab_size, n_embd=16, n_head=4, n_layer=1, block_size=16, seed=rng)
    lr = 0.01
    opt = optim.Adam(model.parameters(), lr=lr, betas=(0.85, 0.99), eps=1e-8)
    recent: deque[float] = deque(maxlen=100)

    def step(k: int) -> dict[str, float]:
        tokens = tok.encode(docs[k % len(docs)])[: model.block_size + 1]
        loss = model.loss(tokens)
        opt.zero_grad()
        loss.backward()
        opt.lr = lr * (1 - k / steps)
        opt.step()
        recent.append(loss.data)
        return {"loss": loss.data, "mean100": sum(recent) / len(recent)}

    run = _train("names", steps, step)
    if run.history:
        run.lines.append(
            f"final loss {run.history[-1]['mean100']:.4f} (mean of the last {len(recent)} steps)"
        )
    if continue_in_torch and not run.interrupted:
        model = _continue_in_torch(model, tok, docs, continue_in_torch, rng, run)
    run.paths.append(
        _loss_curve(
            run,
            out / "names-loss.png",
            "cross-entropy per character",
            "one name" if not run.parts else "one name, in chaingrad",
            smooth=100,
            window="100 names",
        )
    )
    known = set(docs)
    sampled = [
        tok.decode(model.generate(tok.bos, temperature, rng=rng, stop=tok.bos)) for _ in range(samples)
    ]
    run.lines.append(f"{samples} names sampled at temperature {temperature} (* = not in the training list):")
    run.lines.extend(
        f"  {i:2d}. {name or '(empty)'}{'' if name in known else ' *'}" for i, name in enumerate(sampled, 1)
    )
    return run


def _continue_in_torch(
    model: nn.GPT, tok: Any, docs: list[str], steps: int, rng: random.Random, run: Run
) -> nn.GPT:
    """Train model on in PyTorch, a padded batch of 32 names per step, as more steps of `run`; return the
    result in chaingrad."""
    import torch

    from .bridge import pad_batch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = model.to_torch(dtype=torch.float32 if device == "cuda" else torch.float64).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=0.01, betas=(0.85, 0.99), eps=1e-8)

    def step(k: int) -> dict[str, float]:
        batch = [tok.encode(d) for d in rng.sample(docs, 32)]
        loss = net(*pad_batch(batch, net.block_size, device=device))
        opt.zero_grad()
        loss.backward()
        opt.param_groups[0]["lr"] = 0.01 * (1 - k / steps)
        opt.step()
        return {"loss": loss.item()}

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small runs fastest on one thread, and steadily on a busy machine
    try:
        more = _train("names in PyTorch", steps, step)
    finally:
        torch.set_num_threads(threads)
    # one run of both parts, so the summary, the loss curve and a Ctrl-C read as for any demo; the
    # parts keep each engine's steps and time apart
    run.parts = [("chaingrad", len(run.history), run.seconds), ("PyTorch", len(more.history), more.seconds)]
    run.continued_on = "a batch of 32 names"
    run.steps, run.seconds, run.history = (
        run.steps + steps,
        run.seconds + more.seconds,
        run.history + more.history,
    )
    last = f", final batch loss {more.losses[-1]:.4f}" if more.history else ""
    where = f"in PyTorch on {device}, 32 names each ({more.seconds:.2f} s)"
    run.lines.append(f"the last {len(more.history)} steps {where}{last}")
    return nn.GPT.from_torch(net)


DEMOS: dict[str, Callable[..., Run]] = {"moons": moons, "digits": digits, "names": names}
