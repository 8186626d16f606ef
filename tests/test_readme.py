"""The README's commands: CI runs the test command exactly as the README gives it; the batch example
runs under the install it names."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _command(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```bash\n(.+?)\n```", text)
    assert match, f"README.md has no {marker} block"
    return match.group(1)


def test_ci_runs_the_readme_test_command():
    out = subprocess.run(
        ["awk", "/<!-- test-command -->/{getline; getline; print; exit}", "README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == _command("test-command")
    assert "pytest" in out


def test_main_command_is_present():
    assert _command("main-command")


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
    section = text.split("## A whole batch in one graph")[1].split("\n## ")[0]
    (code,) = re.findall(r"```python\n(.+?)```", section, re.S)
    assert 'pip install -e ".[batch]"' in section
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["batch"]
    packages = [re.match(r"[A-Za-z0-9_.-]+", p).group().lower().replace("-", "_") for p in extra]
    run = subprocess.run(
        [sys.executable, "-c", ONLY, ",".join(packages)], input=code, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
