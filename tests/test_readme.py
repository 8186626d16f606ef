"""The README's commands: CI runs the test command exactly as the README gives it."""

import re
import subprocess
from pathlib import Path

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
