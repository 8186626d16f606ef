"""Other chaingrads to compare with, in the same process: an earlier commit's, and today's reference.

`at("3c6bce4")` extracts `src/chaingrad` of that commit (with `git archive`)
into a temporary folder and imports it as its own package, `chaingrad_3c6bce4`,
beside today's chaingrad: its reference engine. `at("3c6bce4", compiled=True)`
also builds that commit's core there (its `_core.c`, and the other C files of
the package where it has them), with the flags of today's setup.py,
and imports it as `chaingrad_3c6bce4_compiled`: its compiled core. It needs a
git checkout of chaingrad (and, compiled, a C compiler); without one, `at`
raises LookupError saying so. `reference()` imports a second copy of today's
chaingrad, `chaingrad_reference`, with CHAINGRAD_PURE=1: its pure Python
engine, beside the compiled one (which a process loads once).
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


def at(commit: str, compiled: bool = False) -> ModuleType:
    """The chaingrad package of `commit`, imported as `chaingrad_<commit>` (its reference engine), or
    with compiled=True as `chaingrad_<commit>_compiled`, its own compiled core built for it."""
    name = f"chaingrad_{commit}" + ("_compiled" if compiled else "")
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
    if compiled:
        _build_core(Path(folder.name), name)
    sys.path.insert(0, folder.name)
    pure = os.environ.pop("CHAINGRAD_PURE", None)
    if not compiled:
        os.environ["CHAINGRAD_PURE"] = "1"
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(folder.name)
        os.environ.pop("CHAINGRAD_PURE", None)
        if pure is not None:
            os.environ["CHAINGRAD_PURE"] = pure


def _build_core(folder: Path, name: str) -> None:
    """Build the core of folder/name into folder/name, with the compiler flags of today's setup.py: every C
    file of the package, one extension (3c6bce4 has one, _core.c; later commits the kernels apart)."""
    import contextlib

    from setuptools import Distribution, Extension

    flags = ["-O2", "-ffp-contract=off", "-fno-fast-math", "-std=c99", "-fvisibility=hidden"]  # as setup.py's
    sources = sorted(str(c) for c in (folder / name).glob("*.c"))
    ext = Extension(f"{name}._core", sources, extra_compile_args=flags)
    dist = Distribution({"ext_modules": [ext], "script_name": "setup.py"})
    command = dist.get_command_obj("build_ext")
    command.build_lib, command.build_temp = str(folder), str(folder / "build")
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            command.ensure_finalized()
            command.run()
    except Exception as e:  # no compiler, or that commit's C does not build here
        raise LookupError(f"cannot build chaingrad's core at {name}: {e}") from None


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
