"""The examples run: the README's Python blocks, and examples/lecture.ipynb from top to bottom."""

import contextlib
import io
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "lecture.ipynb"


def test_the_readme_python_examples_run_and_print_what_they_say(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    blocks = [b for b in blocks if "torchrun" not in b]  # the DDP snippet: run by test_bridge.py
    assert len(blocks) == 4
    printed, spaces = [], []
    for block in blocks:
        out, space = io.StringIO(), {}
        with contextlib.redirect_stdout(out):
            exec(compile(block, "README.md", "exec"), space)
        printed.append(out.getvalue().split())
        spaces.append(space)
    y, dx, dw = map(float, printed[0])
    assert (round(y, 4), round(dx, 4), round(dw, 4)) == (-0.9999, -0.0005, 0.0004)
    assert (tmp_path / "y.svg").read_text().startswith("<?xml")
    softplus, sigmoid = map(float, printed[1])
    assert f"{softplus:.3f} {sigmoid:.3f}" == "0.974 0.622"  # as the README's comment says

    # the batch block: its loss and gradients are the means of the per-sample ones
    batch = spaces[2]
    cg, model, X, y = batch["cg"], batch["model"], batch["X"], batch["y"]
    params = model.parameters()
    batch_grads = [p.grad for p in params]
    model.zero_grad()
    per_sample = cg.losses.hinge([model([cg.Value(a), cg.Value(b)]) for a, b in X], list(2 * y - 1))
    per_sample.backward()
    assert batch["loss"].data == pytest.approx(per_sample.data, rel=1e-12)
    assert batch_grads == pytest.approx([p.grad for p in params], rel=1e-9, abs=1e-12)

    assert printed[3] == ["12.0"]


@pytest.fixture(scope="module")
def notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def tagged(nb, tag):
    """The printed output of the one cell with this tag."""
    (cell,) = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def test_the_notebook_is_committed_without_outputs(notebook):
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_the_lecture_notebook_runs_and_backprop_by_hand_agrees_with_backward(notebook, tmp_path):
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    assert "by hand == backward(): True" in tagged(notebook, "check-grads")
    assert "the loss went down: True" in tagged(notebook, "check-training")
    graphs = [o for c in notebook.cells for o in c.get("outputs", []) if "image/svg+xml" in o.get("data", {})]
    assert len(graphs) == 4 and all("<svg" in o.data["image/svg+xml"] for o in graphs)
    assert list(tmp_path.iterdir()) == []
