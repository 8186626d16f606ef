"""chaingrad as it was at an earlier commit, loaded from this repository's history, to compare with.

`at("f872046")` extracts `src/chaingrad` of that commit (with `git archive`)
into a temporary folder and imports it as its own package,
`chaingrad_f872046`, beside today's chaingrad in the same process. It needs a
git checkout of chaingrad; without one, `at` raises LookupError saying so.
"""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
_folders: list[tempfile.TemporaryDirectory] = []  # kept until the process ends: the package lives there


def at(commit: str) -> ModuleType:
    """The chaingrad package of `commit`, imported as `chaingrad_<commit>`."""
    name = f"chaingrad_{commit}"
    if name in sys.modules:
        return sys.modules[name]
    try:
        archive = subprocess.run(
            ["git", "archive", commit, "src/chaingrad"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise LookupError(
            f"cannot read chaingrad at {commit} from git (a git checkout is needed): {e}"
        ) from None
    folder = tempfile.TemporaryDirectory(prefix="chaingrad-earlier-")
    _folders.append(folder)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder.name, filter="data")
    (Path(folder.name) / "src" / "chaingrad").rename(Path(folder.name) / name)
    sys.path.insert(0, folder.name)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(folder.name)
