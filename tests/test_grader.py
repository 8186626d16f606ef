"""`chaingrad check` / `cg.check`: micrograd's own engine passes; copies of it with the mistakes learners
make fail on the right check and explain it; a learner's code that hangs or crashes is a failed check
within the time limit."""

import json
import time
from pathlib import Path

import micrograd.engine
import micrograd.nn
import pytest
from conftest import run_command

import chaingrad as cg
from chaingrad import grader

ENGINE = Path(micrograd.engine.__file__).read_text()
TANH = """
    def tanh(self):
        t = (math.exp(2 * self.data) - 1) / (math.exp(2 * self.data) + 1)
        out = Value(t, (self,), 'tanh')

        def _backward():
            self.grad += (1 - t**2) * out.grad
        out._backward = _backward

        return out

    def exp(self):
        out = Value(math.exp(self.data), (self,), 'exp')

        def _backward():
            self.grad += out.data * out.grad
        out._backward = _backward

        return out

    def backward(self):
"""


def engine(tmp_path, *edits, name="engine.py"):
    """A copy of micrograd 0.1.0's engine.py with each (old, new) edit applied, written to tmp_path."""
    source = "import math\n" + ENGINE
    for old, new in edits:
        assert old in source, f"micrograd's engine no longer has {old!r}"
        source = source.replace(old, new, 1)
    path = tmp_path / name
    path.write_text(source)
    return path


def verdicts(report):
    return {c.name: c for c in report.checks}


@pytest.fixture
def default_recursion_limit():
    """Python's default limit, as in a fresh process: the checks' children inherit this process's."""
    import sys

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    yield
    sys.setrecursionlimit(old)


def test_micrograds_own_engine_and_nn_pass_every_check(default_recursion_limit):
    report = grader.check_path(["micrograd.engine", "micrograd.nn"])
    assert report.passed, str(report)
    by_name = verdicts(report)
    assert not by_name["a small MLP's loss and gradients"].skipped  # its MLP was really checked
    assert not by_name["a neuron's output and gradients"].skipped
    assert not by_name["a layer's outputs and gradients"].skipped
    assert by_name["tanh(a)"].skipped and "no tanh() method" in by_name["tanh(a)"].message
    deep = by_name[f"a graph {grader.DEEP} nodes deep"]
    assert deep.passed and "RecursionError" in deep.advice  # micrograd's build_topo recurses: advice only
    classes = cg.check(micrograd.engine.Value, micrograd.nn.Neuron, micrograd.nn.Layer, micrograd.nn.MLP)
    assert classes.passed and [c.name for c in classes.checks] == [c.name for c in report.checks]


def test_a_copy_with_tanh_and_exp_added_passes_their_checks_too(tmp_path):
    report = grader.check_path(str(engine(tmp_path, ("    def backward(self):\n", TANH))))
    assert report.passed, str(report)
    by_name = verdicts(report)
    for name in ("tanh(a)", "gradient of tanh(a)", "exp(a)", "the lecture's neuron, tanh made of exp"):
        assert not by_name[name].skipped and by_name[name].passed


# Each mutant: the mistake, the edit that makes it, and the check that must be the first to fail.
MUTANTS = {
    "= instead of +=": (
        [("            self.grad += out.grad\n            other.grad += out.grad",
          "            self.grad = out.grad\n            other.grad = out.grad")],
        "a node used twice: a + a",
    ),
    "mul backward uses its own data": (
        [("            self.grad += other.data * out.grad", "            self.grad += self.data * out.grad")],
        "gradient of a * b",
    ),
    "wrong tanh derivative": (
        [("    def backward(self):\n", TANH), ("(1 - t**2) * out.grad", "(1 - t) * out.grad")],
        "gradient of tanh(a)",
    ),
    "missing reflected op": (
        [("    def __rmul__(self, other): # other * self\n        return self * other\n", "")],
        "2.5 * a",
    ),
    "reflected sub the wrong way round": (
        [("        return other + (-self)", "        return self + (-other)")],
        "1.5 - a",
    ),
    "grad not seeded to 1": (
        [("        self.grad = 1\n        for v in reversed(topo):", "        for v in reversed(topo):")],
        "backward() sets the output's own grad to 1",
    ),
    "naive recursion instead of a topological order": (
        [("        # topological order all of the children in the graph",
          "        self.grad = 1\n        self._walk()\n\n    def _walk(self):\n        self._backward()\n"
          "        for child in self._prev:\n            child._walk()\n\n    def _unused(self):")],
        "c used directly and through c * c",
    ),
    "a _backward never attached": (
        [("            other.grad += self.data * out.grad\n        out._backward = _backward\n",
          "            other.grad += self.data * out.grad\n")],
        "gradient of a * b",
    ),
    "relu's gradient flows where relu is off": (
        [("(out.data > 0) * out.grad", "1 * out.grad")],
        "gradient of relu(a), a < 0",
    ),
}  # fmt: skip


@pytest.mark.parametrize("mistake", MUTANTS)
def test_each_mistake_fails_on_its_own_check_and_explains_it(mistake, tmp_path):
    edits, first = MUTANTS[mistake]
    report = grader.check_path(str(engine(tmp_path, *edits)))
    assert not report.passed
    failing = report.failed[0]
    assert failing.name == first, f"{mistake}: the first failure is {failing.name!r}\n{report}"
    assert verdicts(report)["making a Value and reading .data and .grad"].passed
    assert verdicts(report)["a + b"].passed
    assert failing.message and failing.lesson and failing.idea
    text = str(report)
    assert f"FAIL [{failing.idea}] {failing.name}" in text and "the idea:" in text


def test_a_gradient_that_never_reaches_the_inputs_says_where_to_look(tmp_path):
    edits, first = MUTANTS["a _backward never attached"]
    c = verdicts(grader.check_path(str(engine(tmp_path, *edits))))[first]
    assert "out._backward = _backward" in c.message and "No gradient reached the inputs" in c.message


def test_a_failing_gradient_lists_every_gradient_with_its_slope_and_draws_the_graph(tmp_path):
    edits, _ = MUTANTS["= instead of +="]
    report = grader.check_path(str(engine(tmp_path, *edits)))
    c = verdicts(report)["a node used twice: a + a"]
    assert c.expression == "a + a" and c.idea == "used twice" and "+=" in c.lesson
    rows = {g.name: g for g in c.gradients}
    assert (rows["a"].expected, rows["a"].actual, rows["a"].ok) == (2.0, 1.0, False)
    assert rows["a"].slope == pytest.approx(2.0, rel=1e-6)  # the learner's own forward pass says 2
    assert rows["a + a"].ok and rows["a + a"].actual == 1.0
    written = report.save_pictures(tmp_path / "pictures")
    assert c.picture and Path(c.picture) in written
    svg = Path(c.picture).read_text()
    assert svg.lstrip().startswith("<?xml") or "<svg" in svg
    assert "expected 2" in svg and "#f8d0cc" in svg  # the wrong grad, highlighted, beside the right one
    assert "grad 1" in svg
    assert "picture: " in str(report)


def test_json_and_exit_status(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_command(["check", "micrograd.engine", "--json"], capsys)
    assert code == 0, err
    checks = json.loads(out)["checks"]
    assert len(checks) == len(grader.CURRICULUM)
    for c in checks:
        assert {"name", "idea", "passed", "message", "skipped"} <= set(c) and c["passed"] is True
    edits, _ = MUTANTS["mul backward uses its own data"]
    code, out, err = run_command(["check", str(engine(tmp_path, *edits)), "--json"], capsys)
    assert code == 1
    failed = [c for c in json.loads(out)["checks"] if not c["passed"]]
    assert failed[0]["name"] == "gradient of a * b" and failed[0]["idea"] == "*"
    assert failed[0]["picture"] and Path(failed[0]["picture"]).is_file()
    code, out, _ = run_command(["check", str(tmp_path / "engine.py")], capsys)
    assert code == 1 and "FAIL [*] gradient of a * b" in out


def test_a_learner_engine_that_hangs_fails_within_the_time_limit(tmp_path):
    path = engine(
        tmp_path,
        ("    def __rtruediv__(self, other): # other / self\n",
         "    def __rtruediv__(self, other): # other / self\n        while True:\n            pass\n"),
    )  # fmt: skip
    start = time.monotonic()
    report = grader.check_path(str(path), timeout=1.0)
    elapsed = time.monotonic() - start
    hung = [c for c in report.failed if "did not finish within 1 s" in c.message]
    assert [c.name for c in hung] == ["2.5 / a", "gradient of 2.5 / a"]
    assert [c.name for c in report.failed] == [c.name for c in hung]  # the rest still ran
    assert elapsed < 30


def test_an_exception_in_the_learners_code_shows_the_learners_line(tmp_path):
    path = engine(tmp_path, ("    def __neg__(self): # -self\n        return self * -1",
                             "    def __neg__(self): # -self\n        return -self"))  # fmt: skip
    report = grader.check_path(str(path), timeout=10.0)
    c = verdicts(report)["-a"]
    assert not c.passed and "RecursionError" in c.message
    assert str(path) in c.where and "return -self" in c.where
    mul = "        out = Value(self.data * other.data, (self, other), '*')"
    path = engine(tmp_path, (mul, mul.replace("other.data,", "other.data / 0,")))
    c = verdicts(grader.check_path(str(path)))["a * b"]
    assert "ZeroDivisionError" in c.message and "/ 0" in c.where and ", line " in c.where


@pytest.mark.parametrize(
    "source, message",
    [
        ("class Value:\n    def __init__(self, data)\n", "SyntaxError"),
        ("raise RuntimeError('broken at import')\n", "broken at import"),
        ("while True:\n    pass\n", "did not finish within 1 s"),
        ("import os\nos._exit(3)\n", "crashed"),
        ("class Valeu:\n    pass\n", "no class Value found"),
    ],
    ids=["syntax error", "exception", "infinite loop", "exit", "no Value"],
)
def test_code_that_does_not_import_is_one_failed_check(source, message, tmp_path, capsys):
    path = tmp_path / "mine.py"
    path.write_text(source)
    report = grader.check_path(str(path), timeout=1.0)
    (c,) = report.checks
    assert not c.passed and message in c.message + c.where
    assert path.read_text() == source  # imported, never changed
    code, out, _ = run_command(["check", str(path), "--timeout", "1"], capsys)
    assert code == 1 and message in out


def test_the_learners_prints_do_not_reach_the_output(tmp_path, capsys):
    path = engine(
        tmp_path, ("        self.grad = 1\n", "        print('debugging!')\n        self.grad = 1\n")
    )
    code, out, _ = run_command(["check", str(path), "--json"], capsys)
    assert code == 0 and "debugging!" not in out
    json.loads(out)


def test_check_in_jupyter_shows_html_with_the_picture_inline(tmp_path):
    namespace = {}
    edits, _ = MUTANTS["mul backward uses its own data"]
    exec(compile(engine(tmp_path, *edits).read_text(), "<notebook cell>", "exec"), namespace)
    report = cg.check(namespace["Value"], timeout=5)
    assert not report.passed and report.failed[0].name == "gradient of a * b"
    page = report._repr_html_()
    assert "<svg" in page and "FAIL" in page and "expected" in page
    assert repr(report).startswith("chaingrad check of ")


def test_bad_arguments_are_clear_errors(capsys):
    with pytest.raises(TypeError, match="class itself"):
        cg.check(micrograd.engine.Value(1.0))
    with pytest.raises(TypeError, match=r"check_path\('engine.py'\)"):
        cg.check("engine.py")
    with pytest.raises(ValueError, match="timeout"):
        cg.check(micrograd.engine.Value, timeout=0)
    code, _, err = run_command(["check", "x.py", "--timeout", "-1"], capsys)
    assert code == 2 and "--timeout" in err


def test_the_curriculum_follows_the_lecture():
    ideas = [spec.idea for spec in grader.CURRICULUM]
    order = ["Value", "+", "*", "tanh", "seed", "used twice", "several paths", "zero_grad", "neuron", "layer"]
    order.append("mlp")
    positions = [ideas.index(i) for i in order]
    assert positions == sorted(positions)
    assert ideas[-1] == "deep graphs"
    names = [spec.name for spec in grader.CURRICULUM]
    assert len(set(names)) == len(names)
    forms = {spec.program for spec in grader.CURRICULUM if spec.kind == "forward"}
    for form in ("a + 1.5", "1.5 + a", "2.5 * a", "-a", "1.5 - a", "2.5 / a", "a ** 2", "2 ** a"):
        assert form in forms


NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "build_your_own.ipynb"


def test_the_notebook_is_committed_with_its_outputs_and_a_fresh_run_prints_the_same(tmp_path):
    import nbformat
    from conftest import load_script

    run_notebook = load_script("examples/run_notebook.py")
    committed = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in committed.cells if cell.cell_type == "code"]
    checking = [cell for cell in code if "cg.check(" in cell.source]
    assert len(checking) == 6 and all(cell.outputs for cell in checking)  # after each step, with outputs
    html = [o.data["text/html"] for cell in code for o in cell.outputs if "text/html" in o.get("data", {})]
    assert any("<svg" in h and "expected 2" in h for h in html)  # step 3's bug, drawn inline
    fresh = run_notebook.execute(nbformat.read(NOTEBOOK, as_version=4), cwd=tmp_path)
    assert run_notebook.text_outputs(fresh) == run_notebook.text_outputs(committed)
    text = "".join(t for cell in run_notebook.text_outputs(fresh) for _, t in cell)
    assert "52 checks, 1 passed, 33 failed" in text and "48 passed, 0 failed" in text
    assert list(tmp_path.iterdir()) == []  # the notebook writes no files


def test_the_docs_page_shows_what_the_grader_prints(tmp_path):
    page = (Path(__file__).resolve().parent.parent / "docs" / "check.md").read_text()
    shown = page.split("```text\n")[1].split("```")[0]
    shown = " ".join(line for line in shown.splitlines() if "picture:" not in line)
    edits, _ = MUTANTS["= instead of +="]
    printed = str(grader.check_path(str(engine(tmp_path, *edits))))
    printed = " ".join(line for line in printed.splitlines() if "picture:" not in line)
    assert " ".join(shown.split()) in " ".join(printed.split())


def test_a_name_that_is_no_file_and_no_module_says_what_to_give(capsys):
    (c,) = grader.check_path("no_such_engine_anywhere").checks
    assert not c.passed and "no module named 'no_such_engine_anywhere'" in c.message
    (c,) = grader.check_path("missing.py").checks
    assert not c.passed and c.message == "no such file: missing.py"


def test_two_learners_files_of_the_same_name_never_meet(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    for folder, edits in ((good, []), (bad, MUTANTS["mul backward uses its own data"][0])):
        engine(folder, *edits)
        (folder / "nn.py").write_text("from engine import Value\n")
    first = grader.check_path([str(good / "nn.py")])  # imports its folder's engine as "engine"
    second = grader.check_path([str(bad / "nn.py")])  # its own folder's engine, not the first one's
    assert first.passed and not second.passed


def test_a_deep_graph_that_overflows_the_stack_or_runs_too_long_is_advice_not_failure(tmp_path):
    deeper = ("import math\n", "import math, sys\nsys.setrecursionlimit(20_000)\n")  # the usual advice
    slow = engine(
        tmp_path,
        deeper,
        ("        build_topo(self)\n", "        build_topo(self)\n        if len(topo) > 1000:\n"
         "            while True:\n                pass\n"),
    )  # fmt: skip
    deep = verdicts(grader.check_path(str(slow), timeout=1.0))[f"a graph {grader.DEEP} nodes deep"]
    assert deep.passed and "did not finish within 1 s" in deep.advice and "build_topo" in deep.advice
    wrong = engine(
        tmp_path,
        deeper,
        ("        build_topo(self)\n", "        build_topo(self)\n        topo = topo[-9:]\n"),
    )
    deep = verdicts(grader.check_path(str(wrong)))[f"a graph {grader.DEEP} nodes deep"]
    assert not deep.passed and "x.grad = 0" in deep.message  # wrong numbers do fail it


def test_without_fork_the_checks_run_in_threads(monkeypatch, tmp_path, default_recursion_limit):
    # Windows has no fork: each check then runs in a thread with the same time limit (a hang is left
    # running in the background, so this test only shows that the verdicts are the same).
    import multiprocessing

    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    from_file = grader.check_path(str(engine(tmp_path)))
    edits, first = MUTANTS["mul backward uses its own data"]
    report = grader.check_path(str(engine(tmp_path, *edits, name="mutant.py")))
    assert report.failed[0].name == first
    threaded = cg.check(micrograd.engine.Value)
    assert from_file.passed and threaded.passed and len(from_file.checks) == len(threaded.checks)


NN = Path(micrograd.nn.__file__).read_text()


@pytest.mark.parametrize(
    "old, new, first, message",
    [
        ("return self.w + [self.b]", "return self.w", "a neuron's output and gradients", "expected 4"),
        ("act.relu() if self.nonlin else act", "act.relu() * 2 if self.nonlin else act",
         "a neuron's output and gradients", "matches none of these activations"),
        ("p.grad = 0", "p.grad = p.grad", "zero_grad between runs", "still have a grad"),
    ],
    ids=["bias left out of parameters()", "an activation nobody uses", "zero_grad that does nothing"],
)  # fmt: skip
def test_a_learners_nn_fails_on_its_own_check(old, new, first, message, tmp_path):
    assert old in NN
    (tmp_path / "nn.py").write_text(NN.replace(old, new))
    report = grader.check_path(["micrograd.engine", str(tmp_path / "nn.py")])
    assert report.failed[0].name == first and message in report.failed[0].message, str(report)
