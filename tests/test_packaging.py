"""Packaging: the sdist and the wheel carry what they should (license, py.typed, the stepper's assets;
the tests whole, the examples and the docs), the metadata says MIT, and pytest runs from an unpacked sdist."""

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def project_files():
    """The checkout's files as a fresh clone would have them (with uncommitted edits), no build leftovers."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return [f for f in listed if (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """An sdist, and a wheel built from that sdist (as pip builds from one), with the installed setuptools.

    Built from a copy of the project's files: a checkout's own egg-info (left by `pip install -e`)
    would otherwise add every file it once listed, hiding a MANIFEST.in that forgets some.
    """
    tree, out = tmp_path_factory.mktemp("tree"), tmp_path_factory.mktemp("dist")
    for name in project_files():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tree / name)
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(tree)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sdist,) = out.glob("chaingrad-*.tar.gz")
    (wheel,) = out.glob("chaingrad-*.whl")
    return sdist, wheel


def sdist_files(sdist):
    with tarfile.open(sdist) as tar:
        return {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}


def test_the_sdist_carries_the_tests_examples_docs_and_license(dist):
    sdist, _ = dist
    files = sdist_files(sdist)
    for folder in ("tests/", "examples/", "docs/", "bench/", "src/chaingrad/"):
        expected = {f for f in project_files() if f.startswith(folder)}
        assert expected and expected <= files, f"{folder}: missing {sorted(expected - files)}"
    for name in ("LICENSE", "CHANGELOG.md", "README.md", "mkdocs.yml", "pyproject.toml", "setup.py"):
        assert name in files
    for name in ("_core.c", "_collector.c", "_collector.h", "_kernels.c", "_kernels.h", "_value.h"):
        assert f"src/chaingrad/{name}" in files, "the compiled core's source"
    assert not [f for f in files if f.endswith((".so", ".pyd"))], "no built module in the sdist"
    assert not [f for f in files if f.endswith((".pyc", ".pyo"))]


def test_the_wheel_ships_py_typed_the_assets_and_says_mit(dist):
    _, wheel = dist
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(z.read(metadata).decode())
    for name in ("py.typed", "assets/stepper.js", "assets/stepper.css", "assets/names.txt"):
        assert f"chaingrad/{name}" in names
    assert [n for n in names if n.startswith("chaingrad/_core.") and n.endswith((".so", ".pyd"))], "compiled"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert meta["License-Expression"] == "MIT"
    assert not [c for c in meta.get_all("Classifier") if c.startswith("License ::")]  # the SPDX field says it
    assert "Typing :: Typed" in meta.get_all("Classifier") and "backpropagation" in meta["Keywords"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_pytest_runs_from_an_unpacked_sdist(dist, tmp_path):
    sdist, _ = dist
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    (unpacked,) = tmp_path.iterdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(unpacked / "src"),
        "CHAINGRAD_PURE": "1",  # the unpacked sdist's C source is not built: its reference engine runs
    }  # the sdist's own chaingrad, not this checkout's
    where = subprocess.run(
        [sys.executable, "-c", "import chaingrad; print(chaingrad.__file__)"],
        cwd=unpacked, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(unpacked)
    tests = [
        "tests/test_readme.py",  # reads README.md
        "tests/test_cli.py::test_graph_prints_value_and_gradients_and_draws_them",  # conftest's helpers
        "tests/test_docs.py::test_the_reference_names_only_public_modules",  # docs/
        "tests/test_examples.py::test_the_notebook_is_committed_with_its_outputs_and_pictures",  # examples/
    ]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *tests],
        cwd=unpacked, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"^\d+ passed in ", done.stdout, re.M), done.stdout[-500:]  # all passed, none skipped


def test_a_fresh_venv_with_the_wheel_runs_the_compiled_core(dist, tmp_path):
    _, wheel = dist
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    code = (
        "import chaingrad as cg\n"
        "x = cg.Value(2.0); y = (x * 3 + 1).tanh(); y.backward()\n"
        "m = cg.nn.MLP(2, [4, 1], seed=0); out = m([0.5, -1.0]); out.backward()\n"
        "print(cg.backend, type(y).__module__, x.grad == (1 - y.data ** 2) * 3)\n"
    )
    env = {**os.environ, "CHAINGRAD_PURE": "0"}  # whichever backend this suite runs on
    ran = subprocess.run(
        [str(python), "-W", "error", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert ran.stdout.split() == ["compiled", "chaingrad._core", "True"], ran.stderr
