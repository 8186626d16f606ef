"""The README: CI runs its test command exactly as written; its main command trains what the README says
and writes the pictures it names; its figures are what the code gives; its batch example runs under the
install it names; its links resolve."""

import contextlib
import io
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_command

from chaingrad import demos

ROOT = Path(__file__).resolve().parent.parent


def _command(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```bash\n(.+?)\n```", text)
    assert match, f"README.md has no {marker} block"
    return match.group(1)


def test_ci_runs_exactly_the_readmes_test_command():
    # .ci/run's own extraction, run as CI runs it: a change to its awk or to the README's block breaks this
    ci = (ROOT / ".ci" / "run").read_text()
    (extract,) = re.findall(r"^cmd=\$\(.*\)$", ci, re.M)
    found = subprocess.run(
        ["bash", "-c", f'{extract}\nprintf %s "$cmd"'], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert found == _command("test-command")
    assert 'bash -euo pipefail -c "$cmd"' in ci  # and runs it


def test_the_test_command_installs_the_test_extra_and_runs_the_suite_on_both_engines():
    steps = _command("test-command").split(" && ")
    assert steps[:2] == ["python3 -m venv .venv", '.venv/bin/pip install -q -e ".[test]"']
    assert steps[2:] == [
        ".venv/bin/python -m pytest -q -n 2",
        "CHAINGRAD_PURE=1 .venv/bin/python -m pytest -q -n 2",
    ]


def test_the_main_command_runs_the_moons_demo_which_writes_the_pictures_the_readme_names(in_tmp, capsys):
    steps = _command("main-command").split(" && ")
    assert steps[:2] == ["python3 -m venv .venv", '.venv/bin/pip install -q -e ".[demo]"']
    program, *argv = steps[2].split()
    assert program == ".venv/bin/chaingrad" and argv == ["demo", "moons"]
    # one step of it (test_demos.py checks the README's figures for the whole run)
    code, out, _ = run_command([*argv, "--steps", "1"], capsys)
    assert code == 0 and "per-sample mode, as micrograd" in out
    assert "writes its pictures to `chaingrad-out/`" in " ".join((ROOT / "README.md").read_text().split())
    written = sorted(p.name for p in (in_tmp / "chaingrad-out").iterdir())
    assert written == ["moons-boundary.png", "moons-loss.png"]
    # the demo extra installs what the demo imports
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["demo"]
    assert set(demos.REQUIRED.values()) <= {re.match(r"[A-Za-z0-9_.-]+", p).group() for p in extra}


def test_the_readme_is_about_a_thousand_words_and_its_links_and_pictures_exist():
    readme = (ROOT / "README.md").read_text()
    assert 800 <= len(readme.split()) <= 1200
    targets = re.findall(r"\]\(([^)#]+)\)", readme)
    assert "docs/moons.png" in targets and "docs/graph.svg" in targets
    missing = [t for t in targets if not t.startswith("http") and not (ROOT / t).exists()]
    assert not missing, f"README.md links to {missing}"


# Runs code with only the standard library, chaingrad and the given packages importable.
ONLY = """
import importlib.abc, sys

allowed = set(sys.stdlib_module_names) | {"chaingrad", "_distutils_hack"} | set(sys.argv[1].split(","))


class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in allowed:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the extra)", name=name)


sys.meta_path.insert(0, NotInstalled())
exec(sys.stdin.read())
"""


def test_the_batch_example_runs_with_only_what_the_batch_extra_installs():
    text = (ROOT / "README.md").read_text()
    section = text.split("## What it has")[1].split("\n## ")[0]
    (code,) = [
        textwrap.dedent(c) for c in re.findall(r"```python\n(.+?)```", section, re.S)
    ]  # in a list item
    assert 'pip install -e ".[batch]"' in section
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["batch"]
    packages = [re.match(r"[A-Za-z0-9_.-]+", p).group().lower().replace("-", "_") for p in extra]
    run = subprocess.run(
        [sys.executable, "-c", ONLY, ",".join(packages)], input=code, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


def python_blocks(text):
    """The Python blocks of a Markdown text, dedented (one sits in a list item)."""
    return [textwrap.dedent(b) for b in re.findall(r"^ *```python\n(.*?)^ *```", text, re.S | re.M)]


def test_the_readme_python_examples_run_and_print_what_they_say(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert len(blocks) == 2
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

    # the batch block: its loss and gradients are the means of the per-sample ones, as its comment says
    batch = spaces[1]
    cg, model, X, y = batch["cg"], batch["model"], batch["X"], batch["y"]
    params = model.parameters()
    batch_grads = [p.grad for p in params]
    model.zero_grad()
    per_sample = cg.losses.hinge([model([cg.Value(a), cg.Value(b)]) for a, b in X], list(2 * y - 1))
    per_sample.backward()
    assert batch["loss"].data == pytest.approx(per_sample.data, rel=1e-12)
    assert batch_grads == pytest.approx([p.grad for p in params], rel=1e-9, abs=1e-12)


def test_the_readme_says_how_many_tests_the_suite_has():
    said = " ".join((ROOT / "README.md").read_text().split())
    assert "runs the suite, about 1,750 tests, once on each engine" in said
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    collected = int(re.search(r"^(\d+) tests? collected", done.stdout, re.M).group(1))
    assert 1650 <= collected <= 1850, collected  # about 1,750
