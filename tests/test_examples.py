"""The examples run: examples/lecture.ipynb from top to bottom. (The README's Python blocks are run by
test_readme.py, the docs pages' by test_docs.py.)"""

import copy
import re
from pathlib import Path

import nbformat
import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "lecture.ipynb"


run_notebook = load_script("examples/run_notebook.py")


@pytest.fixture(scope="module")
def committed():
    return nbformat.read(NOTEBOOK, as_version=4)


@pytest.fixture(scope="module")
def twice(committed, tmp_path_factory):
    """A fresh run of the notebook with every code cell run twice in a row: (first runs, second runs).

    Runs in an empty folder of its own; the folder is returned to check that nothing was written there.
    """
    nb = copy.deepcopy(committed)
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type == "code":
            cells.append(copy.deepcopy(cell))
    nb.cells = cells
    folder = tmp_path_factory.mktemp("notebook")
    run_notebook.execute(nb, cwd=folder)
    code = [c for c in nb.cells if c.cell_type == "code"]
    first, second = copy.deepcopy(nb), copy.deepcopy(nb)
    first.cells, second.cells = code[0::2], code[1::2]
    return first, second, folder


def printed(nb, tag):
    """The printed output of the one cell with this tag."""
    (cell,) = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def outputs_of(nb, mime):
    return [o.data[mime] for c in nb.cells for o in c.get("outputs", []) if mime in o.get("data", {})]


def test_the_notebook_is_committed_with_its_outputs_and_pictures(committed):
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code) and all(c.outputs for c in code[1:])
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert len(outputs_of(committed, "image/svg+xml")) == 6  # the graphs
    assert len(outputs_of(committed, "image/png")) == 3  # f(x), the loss curve, the decision boundary
    assert len(outputs_of(committed, "text/html")) == 2  # the stepper pages
    # the MLP's graph is drawn after backward: its parameters show gradients, not all 0.0000
    (mlp,) = [c for c in code if "cg.nn.MLP(3, [4, 4, 1]" in c.source and "draw_dot" in c.source]
    (svg,) = [o.data["image/svg+xml"] for o in mlp.outputs if "image/svg+xml" in o.get("data", {})]
    grads = re.findall(r">grad (?:&#45;)?(\d+\.\d{4})<", svg)  # Graphviz writes - as &#45;
    assert len(grads) == 60 and sum(g != "0.0000" for g in grads) > 40


def test_a_fresh_run_prints_what_the_committed_notebook_shows(committed, twice):
    first, _, folder = twice
    assert run_notebook.text_outputs(first) == run_notebook.text_outputs(committed)
    assert list(folder.iterdir()) == []  # the notebook writes no files


def test_every_cell_run_again_gives_the_same_output(twice):
    first, second, _ = twice
    assert run_notebook.text_outputs(second) == run_notebook.text_outputs(first)
    assert len(outputs_of(second, "image/svg+xml")) == len(outputs_of(first, "image/svg+xml"))


def test_the_notebook_checks_itself_against_backward_pytorch_and_exp(twice):
    first, _, _ = twice
    assert "by hand == backward(): True" in printed(first, "check-grads")
    assert "the loss went down: True" in printed(first, "check-training")
    text = "".join(t for cell in run_notebook.text_outputs(first) for _, t in cell)
    assert "same gradients as PyTorch: True" in text
    assert "same gradients: True" in text  # tanh from exp
    assert "a.grad = 2.0" in text  # a + a
    assert "step 99: loss" in text and "accuracy 100%" in text
