"""Other chaingrads to compare with, in the same process: an earlier commit's, and today's reference.

`at("f872046")` extracts `src/chaingrad` of that commit (with `git archive`)
into a temporary folder and imports it as its own package, `chaingrad_f872046`,
beside today's chaingrad. It needs a git checkout of chaingrad; without one,
`at` raises LookupError saying so. `reference()` imports a second copy of
today's chaingrad, `chaingrad_reference`, with CHAINGRAD_PURE=1: its pure
Python engine, beside the compiled one (which a process loads once).
"""

from __future__ import annotations

import importlib
import io
import os
import shutil
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


def reference() -> ModuleType:
    """Today's chaingrad with its reference engine (CHAINGRAD_PURE=1), imported as chaingrad_reference."""
    name = "chaingrad_reference"
    if name in sys.modules:
        return sys.modules[name]
    import chaingrad

    folder = tempfile.TemporaryDirectory(prefix="chaingrad-reference-")
    _folders.append(folder)
    shutil.copytree(
        Path(chaingrad.__file__).parent,
        Path(folder.name) / name,
        ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"),
    )
    sys.path.insert(0, folder.name)
    pure = os.environ.get("CHAINGRAD_PURE")
    os.environ["CHAINGRAD_PURE"] = "1"
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(folder.name)
        if pure is None:
            del os.environ["CHAINGRAD_PURE"]
        else:
            os.environ["CHAINGRAD_PURE"] = pure
