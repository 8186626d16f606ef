"""`chaingrad demo`: each demo trains end to end, prints a summary, writes valid PNGs atomically, stops
cleanly on Ctrl-C, and rejects bad options with exit code 2."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_command
from PIL import Image

import chaingrad as cg
from chaingrad import demos, optim

ROOT = Path(__file__).resolve().parent.parent

PNG = b"\x89PNG\r\n\x1a\n"
FILES = {
    "moons": ["moons-boundary.png", "moons-loss.png"],
    "digits": ["digits-loss.png", "digits-confusion.png"],
    "names": ["names-loss.png"],
}
FEW = {"moons": 5, "digits": 10, "names": 3}  # steps: enough to show training works, quick to run


pytestmark = pytest.mark.usefixtures("in_tmp")  # default outputs land in a tmp folder


def written(out):
    """The paths listed after 'wrote:' in a summary."""
    return [line.strip() for line in out.split("wrote:\n", 1)[1].splitlines()]


def assert_pictures(folder, names):
    """Exactly these PNGs are in folder (no temp files), each a valid 640 x 480 image that anyone
    may read whom the umask allows (a bare mkstemp file would be private)."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)
    (folder / "plain").touch()
    mode = (folder / "plain").stat().st_mode
    (folder / "plain").unlink()
    for name in names:
        path = folder / name
        assert path.stat().st_mode == mode
        assert path.read_bytes()[:8] == PNG
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.size == (640, 480)


@pytest.mark.parametrize("demo", list(FILES))
def test_each_demo_trains_and_writes_its_pictures(demo, tmp_path, capsys):
    code, out, _ = run_command(["demo", demo, "--steps", str(FEW[demo]), "--out", "pics"], capsys)
    assert code == 0
    assert out.startswith(f"{demo}: {FEW[demo]} steps in ") and " ms per step)" in out
    assert written(out) == [str(tmp_path.joinpath("pics", f).relative_to(tmp_path)) for f in FILES[demo]]
    assert_pictures(tmp_path / "pics", FILES[demo])


def test_moons_default_folder_and_seed_are_micrograds_demo(tmp_path, capsys):
    code, out, _ = run_command(["demo", "moons", "--steps", "1"], capsys)
    assert code == 0
    assert "per-sample mode" in out
    assert "final loss 0.8958, training accuracy 50%" in out  # micrograd's demo notebook, step 0
    assert_pictures(tmp_path / "chaingrad-out", FILES["moons"])


def test_moons_batch_mode_is_the_same_math_as_per_sample_mode(tmp_path):
    per_sample = demos.moons(steps=5, seed=3, out=tmp_path)
    batched = demos.moons(steps=5, seed=3, out=tmp_path, batch=True)
    assert per_sample.losses[0] != per_sample.losses[-1]  # it trained
    assert batched.losses == pytest.approx(per_sample.losses, rel=0, abs=1e-9)
    assert [h["accuracy"] for h in batched.history] == [h["accuracy"] for h in per_sample.history]
    assert "batch mode" in batched.summary() and "per-sample mode" in per_sample.summary()
    assert demos.moons(steps=5, seed=4, out=tmp_path).losses != per_sample.losses  # the seed matters


def test_names_samples_names_and_digits_reports_test_accuracy(capsys):
    code, out, _ = run_command(["demo", "names", "--steps", "2", "--out", "."], capsys)
    assert code == 0
    samples = [line for line in out.splitlines() if line[:5].strip().rstrip(".").isdigit()]
    assert len(samples) == 20
    code, out, _ = run_command(["demo", "digits", "--steps", "2", "--out", "."], capsys)
    assert code == 0
    assert "test accuracy " in out and " of 450)" in out


OPTIMIZER = {"moons": optim.SGD, "digits": optim.Adam, "names": optim.Adam}


@pytest.mark.parametrize("demo", list(FILES))
@pytest.mark.parametrize("at", [0, 2])
def test_ctrl_c_in_training_stops_cleanly_and_still_draws(demo, at, tmp_path, capsys, monkeypatch):
    step = OPTIMIZER[demo].step
    calls = []

    def interrupted_step(self):
        calls.append(1)
        if len(calls) > at:  # as if Ctrl-C came in the middle of step `at`
            raise KeyboardInterrupt
        step(self)

    monkeypatch.setattr(OPTIMIZER[demo], "step", interrupted_step)
    code, out, err = run_command(["demo", demo, "--steps", "50", "--out", "pics"], capsys)
    assert code == 130
    assert out.startswith(f"{demo}: stopped by Ctrl-C at step {at} of 50")
    assert "Traceback" not in err
    assert_pictures(tmp_path / "pics", FILES[demo])


def test_ctrl_c_while_saving_leaves_no_file(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()

    def interrupted(f, **kwargs):
        f.write(PNG)  # half a picture, then Ctrl-C
        raise KeyboardInterrupt

    fig.savefig = interrupted
    with pytest.raises(KeyboardInterrupt):
        demos._save(fig, tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "moons", "--steps", "0"], "argument --steps: must be in 1 .. 1000000000, got 0"),
        (["demo", "moons", "--steps", "-5"], "argument --steps: must be in 1 .. 1000000000, got -5"),
        (["demo", "moons", "--steps", "9" * 23], "argument --steps: must be in 1 .. 1000000000, got 9999"),
        (["demo", "names", "--steps", "1.5"], "argument --steps: '1.5' is not a whole number"),
        (["demo", "digits", "--steps", "ten"], "argument --steps: 'ten' is not a whole number"),
        (["demo", "moons", "--steps"], "expected one argument"),
        (["demo", "moons", "--seed", "-1"], "argument --seed: must be in 0 .. 4294967295, got -1"),
        (["demo", "moons", "--seed", str(2**32)], "argument --seed: must be in 0 .. 4294967295"),
        (["demo", "moons", "--out", "a-file"], "argument --out: 'a-file' exists and is not a folder"),
        (["demo", "digits", "--batch"], "unrecognized arguments: --batch"),
        (["demo", "mnist"], "invalid choice: 'mnist'"),
        (["demo"], "required: DEMO"),
    ],
)
def test_bad_options_are_argparse_errors_with_exit_code_2(argv, message, tmp_path, capsys):
    (tmp_path / "a-file").write_text("keep")
    code, out, err = run_command(argv, capsys)
    assert code == 2
    assert err.startswith("usage: chaingrad") and "error: " in err and message in err
    assert out == ""
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]  # nothing written


def test_an_unwritable_folder_fails_before_training(tmp_path, capsys):
    (tmp_path / "a-file").write_text("keep")
    code, out, err = run_command(["demo", "names", "--out", "a-file/pics"], capsys)
    assert code == 1
    assert err.startswith("chaingrad demo names: error: cannot write to a-file/pics")
    assert out == ""


def test_missing_demo_packages_say_how_to_install_them(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demos, "missing_packages", lambda: ["matplotlib", "tqdm"])
    code, out, err = run_command(["demo", "moons"], capsys)
    assert (code, out) == (1, "")
    assert "need matplotlib, tqdm: pip install matplotlib tqdm" in err
    assert 'from a checkout of chaingrad, pip install -e ".[demo]"' in err
    assert list(tmp_path.iterdir()) == []


def test_help_lists_the_demos_and_their_defaults(capsys):
    code, out, _ = run_command(["demo", "--help"], capsys)
    assert code == 0 and all(demo in out for demo in FILES)
    code, out, _ = run_command(["demo", "names", "--help"], capsys)
    assert code == 0 and "(default: 1000)" in out and "(default: 42)" in out and "--batch" not in out
    code, out, _ = run_command(["demo", "moons", "--help"], capsys)
    assert code == 0 and "(default: 100)" in out and "--batch" in out


# ---------------------------------------------------------------------------
# What the pictures say
# ---------------------------------------------------------------------------


@pytest.fixture
def figures(monkeypatch):
    """The figures the demos save, by file name (still written, as always)."""
    saved = {}
    save = demos._save

    def keep(fig, path):
        saved[path.name] = fig
        return save(fig, path)

    monkeypatch.setattr(demos, "_save", keep)
    return saved


def legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_batch_mode_writes_its_own_pictures_beside_the_per_sample_ones(tmp_path, capsys):
    code, out, _ = run_command(["demo", "moons", "--batch", "--steps", "2", "--out", "pics"], capsys)
    assert code == 0
    assert written(out) == ["pics/moons-batch-boundary.png", "pics/moons-batch-loss.png"]
    assert run_command(["demo", "moons", "--steps", "1", "--out", "pics"], capsys)[0] == 0
    assert_pictures(tmp_path / "pics", [*FILES["moons"], "moons-batch-boundary.png", "moons-batch-loss.png"])


@pytest.mark.parametrize("batch", [False, True], ids=["per sample", "batch"])
def test_the_moons_boundary_has_axes_a_legend_and_the_drawn_models_accuracy(
    batch, tmp_path, figures, monkeypatch
):
    drawn = {}
    boundary = demos._decision_boundary

    def keep(model, X, y, path):
        drawn.update(model=model, X=X, y=y)
        return boundary(model, X, y, path)

    monkeypatch.setattr(demos, "_decision_boundary", keep)
    demos.moons(steps=3, seed=5, out=tmp_path, batch=batch)
    name = "moons-batch" if batch else "moons"
    (ax,) = figures[f"{name}-boundary.png"].axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x1", "x2")
    X, y = drawn["X"], drawn["y"]
    assert legend(ax) == [f"class -1 ({np.sum(y == -1)} points)", f"class +1 ({np.sum(y == 1)} points)"]
    for collection, label in zip(ax.collections[-2:], (-1, 1)):  # each class's points, as labelled
        assert np.array_equal(collection.get_offsets(), X[y == label])
    with torch.no_grad():  # the drawn model's accuracy, by PyTorch
        scores = drawn["model"].to_torch()(torch.tensor(X, dtype=torch.float64)).numpy().ravel()
    accuracy = np.mean((scores > 0) == (y > 0))
    assert ax.get_title() == f"moons: the MLP's decision boundary (training accuracy {accuracy:.0%})"

    (ax,) = figures[f"{name}-loss.png"].axes
    assert ax.get_title() == "moons: training loss (hinge loss + 1e-4 * L2)"
    assert ax.get_ylabel() == "hinge loss + 1e-4 * L2" and ax.get_xlabel() == "step"
    each = "all 100 samples at once" if batch else "the 100 samples, one at a time"
    assert legend(ax) == [f"at each step, on {each}"]


def running_mean(ys, n):
    """The mean of the last n values at each position (fewer at the start), by cumulative sums."""
    sums = np.cumsum(np.concatenate([[0.0], ys]))
    ends = np.arange(1, len(ys) + 1)
    starts = np.maximum(ends - n, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


@pytest.mark.parametrize(
    ("demo", "steps", "loss", "each", "window"),
    [
        ("digits", 50, "cross-entropy", "a mini-batch of 32", 43),  # one epoch of 1347 training digits
        ("names", 3, "cross-entropy per character", "one name", 100),  # a name per step: slower
    ],
)
def test_each_loss_curve_names_its_loss_and_explains_its_smoothed_line(
    demo, steps, loss, each, window, tmp_path, figures
):
    run = demos.DEMOS[demo](steps=steps, out=tmp_path)
    (ax,) = figures[f"{demo}-loss.png"].axes
    assert ax.get_title() == f"{demo}: training loss ({loss})" and ax.get_ylabel() == loss
    raw, smooth = ax.get_lines()
    assert list(raw.get_ydata()) == run.losses
    assert smooth.get_ydata() == pytest.approx(running_mean(run.losses, window), rel=1e-12)
    assert smooth.get_linewidth() > raw.get_linewidth() and raw.get_alpha() < 1  # the mean is drawn over
    covers = "one epoch" if demo == "digits" else "100 names"
    assert legend(ax) == [f"at each step, on {each}", f"mean of the last {window} steps ({covers})"]
    assert ax.get_legend().get_title().get_text() == "the mean evens out the noise of sampling"


def below_the_axes(fig):
    """The figure's one axes and its legend's box in pixels, after checking the legend is under the
    axes and inside the picture."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    (ax,) = fig.axes
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)  # laid out as saved
    box = ax.get_legend().get_window_extent(renderer)
    assert box.y1 < ax.get_window_extent(renderer).y0  # under the plot: it covers no data
    assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.x1  # and inside the picture
    return ax, box


@pytest.mark.parametrize("demo", ["moons", "digits", "names"])
def test_every_loss_curves_legend_sits_below_the_axes(demo, tmp_path, figures):
    demos.DEMOS[demo](steps=3, out=tmp_path)
    below_the_axes(figures[f"{demo}-loss.png"])


def test_the_moons_legend_sits_below_the_axes_off_every_point(tmp_path, figures):
    demos.moons(steps=2, seed=5, out=tmp_path)
    ax, box = below_the_axes(figures["moons-boundary.png"])
    points = np.concatenate([c.get_offsets() for c in ax.collections[-2:]])
    shown = ax.transData.transform(points)  # where each point is drawn, in pixels
    inside = (
        (shown[:, 0] >= box.x0) & (shown[:, 0] <= box.x1) & (shown[:, 1] >= box.y0) & (shown[:, 1] <= box.y1)
    )
    assert not inside.any(), f"the legend covers {inside.sum()} points"


def test_the_confusion_matrix_has_a_colour_bar_for_its_counts(tmp_path, figures):
    demos.digits(steps=5, out=tmp_path)
    fig = figures["digits-confusion.png"]
    matrix, bar = fig.axes
    (image,) = matrix.images
    assert image.colorbar is not None and image.colorbar.ax is bar
    assert bar.get_ylabel() == "test digits"
    assert image.get_array().sum() == 450  # every test digit counted once


def test_the_names_plot_marks_where_pytorch_takes_over_and_the_summary_times_each_engine(tmp_path, figures):
    run = demos.names(steps=3, continue_in_torch=4, out=tmp_path, samples=1)
    (ax,) = figures["names-loss.png"].axes
    raw, smooth, switch, torch_part = ax.get_lines()
    assert list(raw.get_xdata()) == [1, 2, 3] and list(raw.get_ydata()) == run.losses[:3]
    assert list(smooth.get_ydata()) == pytest.approx(running_mean(run.losses[:3], 100), rel=1e-12)
    assert list(switch.get_xdata()) == [3.5, 3.5]  # a vertical line between the last step of each
    assert list(torch_part.get_xdata()) == [4, 5, 6, 7] and list(torch_part.get_ydata()) == run.losses[3:]
    assert legend(ax) == [
        "at each step, on one name, in chaingrad",
        "mean of the last 100 steps (100 names)",
        "PyTorch takes over after step 3",
        "PyTorch: at each step, on a batch of 32 names",
    ]
    head = run.summary().splitlines()[0]
    (chaingrad_s, torch_s) = [s for _, _, s in run.parts]
    assert [(e, n) for e, n, _ in run.parts] == [("chaingrad", 3), ("PyTorch", 4)]
    assert head == (
        f"names: 7 steps in {run.seconds:.2f} s (3 in chaingrad at {1000 * chaingrad_s / 3:.1f} ms per step; "
        f"4 in PyTorch at {1000 * torch_s / 4:.1f} ms per step)"
    )
    assert run.seconds == chaingrad_s + torch_s


@pytest.mark.skipif(
    cg.backend == "python",
    reason="the engines are bit-identical twins; on the reference engine this takes a minute",
)
def test_the_readmes_figures_are_what_the_demos_reach_at_their_defaults(tmp_path):
    readme = " ".join((ROOT / "README.md").read_text().split())
    moons = demos.moons(out=tmp_path)  # as the main command runs it
    (accuracy,) = re.findall(r"training accuracy (\d+%)", "\n".join(moons.lines))
    assert (
        f"micrograd's MLP(2, [16, 16, 1]) after 100 SGD steps separates the moons ({accuracy} training"
        in readme
    )
    (said,) = re.findall(r"digits: Adam, mini-batches, about (\d+)% test accuracy", readme)
    digits = demos.digits(out=tmp_path)  # as `chaingrad demo digits` runs it
    (reached,) = re.findall(r"test accuracy ([\d.]+)%", "\n".join(digits.lines))
    assert abs(float(reached) - int(said)) < 1, (reached, said)
