"""The model file format: a module's architecture and parameters as one JSON document, written
atomically and read back with every check a damaged or foreign file needs.

A file is `{"format": "chaingrad", "version": 2, "module": <class name>, "architecture": {...},
"state": <state_dict()>}`. Version 1 files (no architecture) still load. This module knows models
only through their methods (`state_dict`, `load_state_dict`, `architecture`), so `nn` builds on it.
"""

from __future__ import annotations

import json
import math
import os
import reprlib
from numbers import Real
from typing import Any

from .files import atomic_write, read_regular

__all__ = ["FORMAT_VERSION", "MAX_FILE_BYTES", "load", "save"]

FORMAT_VERSION = 2
"""The version of the model files `save` writes: 2 records the architecture; files of version 1 still
load, with the checks their contents allow."""
MAX_FILE_BYTES = 64 * 2**20
"""The largest model file `load` reads unless told otherwise (`max_bytes=`): 64 MiB, about 3 million
parameters at 22 bytes each."""


def _differences(file: Any, mine: Any, where: str = "") -> list[str]:
    """Where two architectures (JSON data) differ, as 'path: what the file has, what this model has'."""
    if isinstance(file, dict) and isinstance(mine, dict):
        out = []
        for key in [*mine, *(k for k in file if k not in mine)]:
            path = f"{where}.{key}" if where else str(key)
            if key not in file:
                out.append(f"{path} is not in the file")
            elif key not in mine:
                out.append(f"the file has {path}={reprlib.repr(file[key])}, which this model does not")
            else:
                out += _differences(file[key], mine[key], path)
        return out
    if isinstance(file, list) and isinstance(mine, list):
        if len(file) != len(mine):
            return [f"{where} has {len(file)} entries in the file, {len(mine)} here"]
        return [d for i, (a, b) in enumerate(zip(file, mine)) for d in _differences(a, b, f"{where}.{i}")]
    if type(file) is type(mine) and file == mine:  # mine's leaves are numbers, str or None: no recursion
        return []
    return [f"{where or 'the architecture'} is {reprlib.repr(file)} in the file, {reprlib.repr(mine)} here"]


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = {}
    for key, value in pairs:
        if key in d:
            raise _DuplicateKey(key)
        d[key] = value
    return d


def _finite(state: dict[str, Any]) -> None:
    """A ValueError naming the first entry that is not a finite number (load would refuse the file)."""
    for name, entry in state.items():
        for i, x in enumerate(entry if isinstance(entry, list) else [entry]):
            if not (isinstance(x, Real) and math.isfinite(x)):
                where = f"{name}.{i}" if isinstance(entry, list) else name
                raise ValueError(f"parameter {where!r} is {x!r:.40}, not a finite number; nothing was saved")


def save(model: Any, path: str | os.PathLike[str]) -> None:
    """Write model's architecture and parameters to a JSON file atomically: a crash leaves the old
    file or the new one. A file already there keeps its mode; a symlink stays a link and the file it
    points to is replaced. A parameter that is nan or inf is refused before anything is written."""
    state = model.state_dict()
    _finite(state)
    doc = {
        "format": "chaingrad",
        "version": FORMAT_VERSION,
        "module": type(model).__name__,
        "architecture": model.architecture(),
        "state": state,
    }
    text = json.dumps(doc)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def load(model: Any, path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES) -> Any:
    """Load a file written by `save` into model in place and return model; a bad file changes nothing.

    Only a regular file of at most max_bytes bytes is read. The file's class and architecture must be
    model's; files of version 1 (no architecture) load when their parameters fit.
    """
    raw = read_regular(path, max_bytes, advice="; load(path, max_bytes=...) reads a bigger file")
    name = os.fspath(path)
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as e:
        raise ValueError(f"{name}: not a chaingrad model file: the key {e.args[0]!r} appears twice") from None
    except (ValueError, RecursionError) as e:  # bad UTF-8 or JSON, absurd nesting or digits
        what = "empty" if not raw.strip() else f"not valid JSON, perhaps truncated ({e})"
        raise ValueError(f"{name}: not a chaingrad model file: {what}") from None
    if not isinstance(doc, dict) or doc.get("format") != "chaingrad" or "state" not in doc:
        raise ValueError(f"{name}: not a chaingrad model file (no chaingrad header)")
    version = doc.get("version")
    if "version" not in doc or isinstance(version, bool) or not isinstance(version, int):
        what = "no version" if "version" not in doc else f"version {version!r:.40}, not a whole number"
        raise ValueError(f"{name}: a chaingrad model file with {what}; it may be damaged")
    if not 1 <= version <= FORMAT_VERSION:
        newer = "; it was written by a newer chaingrad: upgrade" if version > FORMAT_VERSION else ""
        raise ValueError(
            f"{name}: model file version {version!r:.20}; "
            f"this chaingrad reads versions 1 to {FORMAT_VERSION}{newer}"
        )
    cls = type(model).__name__
    if doc.get("module") != cls:
        raise ValueError(f"{name}: holds a {reprlib.repr(doc.get('module'))}, not a {cls}")
    if version >= 2:
        if not isinstance(doc.get("architecture"), dict):
            raise ValueError(f"{name}: a version {version} model file without its architecture")
        mine = json.loads(json.dumps(model.architecture()))
        differences = _differences(doc["architecture"], mine)
        if differences:
            raise ValueError(
                f"{name}: the file's architecture does not fit this {cls}: "
                + "; ".join(differences[:5])
                + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
            )
    try:
        model.load_state_dict(doc["state"])
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{name}: {e.args[0]}") from None
    return model
