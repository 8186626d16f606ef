"""Shared test helpers: IEEE-aware comparison, a PyTorch float64 oracle, and counting live Values."""

from __future__ import annotations

import contextlib
import gc
import math
import os
import shutil
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest
import torch

import chaingrad as cg


def same(actual: Any, expected: Any, rel: float = 1e-12, abs_tol: float = 0.0) -> bool:
    """Equal to `rel` (and `abs_tol`); nan matches only nan, an infinity only the same infinity."""
    a, b = float(actual), float(expected)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


def assert_close(
    actual: Any, expected: Any, rel: float = 1e-12, abs_tol: float = 0.0, what: str = ""
) -> None:
    """assert `same` entry by entry for numbers, lists and 1-D arrays."""
    a, b = np.atleast_1d(np.asarray(actual, dtype=float)), np.atleast_1d(np.asarray(expected, dtype=float))
    assert a.shape == b.shape, f"{what}: shape {a.shape} != expected {b.shape}"
    bad = [(i, x, y) for i, (x, y) in enumerate(zip(a, b)) if not same(x, y, rel, abs_tol)]
    assert not bad, f"{what}: (index, got, expected) {bad[:5]}"


def torch_value_and_grads(f: Callable[..., Any], xs: Sequence[float]) -> tuple[float, list[float]]:
    """f's value and d f / d x for each x, computed by PyTorch in float64."""
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    out = f(*ts)
    out.backward()
    return out.item(), [0.0 if t.grad is None else t.grad.item() for t in ts]


def cg_value_and_grads(f: Callable[..., Any], xs: Sequence[float]) -> tuple[float, list[float]]:
    """f's value and d f / d x for each x, computed by chaingrad."""
    vs = [cg.Value(x) for x in xs]
    out = f(*vs)
    out.backward()
    return out.data, [v.grad for v in vs]


def _referents(o: Any) -> list[Any]:
    """What o refers to, for finding Values: a function's closure and defaults, not its globals."""
    kind = type(o)  # not isinstance: that reads o.__class__, which some objects warn about
    if kind is types.FunctionType:
        return [*(o.__closure__ or ()), *(o.__defaults__ or ()), *(o.__kwdefaults__ or {}).values()]
    if issubclass(kind, (type, types.ModuleType)):
        return []
    return gc.get_referents(o)


def values_reachable(objects: Sequence[Any], depth: int | None = 1) -> set[int]:
    """The ids of the Values among `objects`, among what they refer to (`depth` steps, or all the
    way), and under those Values' inputs.

    The compiled engine leaves a node that holds only numbers and its inputs untracked by the
    collector, as CPython does a tuple of numbers, so `gc.get_objects()` lists only some Values:
    the rest are found from what refers to them, and from their consumers' inputs.
    """
    found: dict[int, Any] = {}
    seen: set[int] = set()
    layer, steps = list(objects), 0
    while layer and (depth is None or steps <= depth):
        further = []
        for o in layer:
            if issubclass(type(o), cg.Value):
                found[id(o)] = o
            elif id(o) not in seen:
                seen.add(id(o))
                further.extend(_referents(o))
        layer, steps = further, steps + 1
    stack = list(found.values())
    while stack:
        for child in stack.pop()._prev:
            if id(child) not in found:
                found[id(child)] = child
                stack.append(child)
    return set(found)


def values_alive() -> int:
    """How many Values the program can reach."""
    return len(values_reachable(gc.get_objects()))


@contextlib.contextmanager
def no_value_left(*using: Any) -> Iterator[None]:
    """Fail if a Value made inside the block is still alive at its end (a half-built node kept by a
    traceback, say). `using`: what the block works on, whose Values are not new."""
    gc.collect(0)
    gc.disable()  # so that every object made from here on stays in generation 0
    try:
        old = values_reachable(gc.get_objects(0), depth=3) | values_reachable(using, depth=None)
        yield
        left = values_reachable(gc.get_objects(0), depth=3) - old
        assert not left, f"{len(left)} Values made in the block are still alive"
    finally:
        gc.enable()


# A user-defined op, shared by the tests of ops, engine and gradcheck:
# softplus(x) = log(1 + e^x), whose derivative is sigmoid(x).
SOFTPLUS = cg.Op("test_softplus", lambda x: cg.log(1.0 + cg.exp(x)), lambda x, out: (cg.sigmoid(x),))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty folder of the test's own, so what a command writes by default lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load_script(path: str) -> Any:
    """A script of the project (its path from the repository root: "docs/make_pictures.py"), as a module."""
    import importlib.util
    from pathlib import Path

    file = Path(__file__).resolve().parent.parent / path
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_command(argv, capsys):
    """(exit code, stdout, stderr) of `chaingrad *argv`, run in this process."""
    from chaingrad import cli

    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# The browser tests (the stepper page, the docs site) drive Debian's chromium through Playwright. Where
# either is missing they skip, unless CHAINGRAD_REQUIRE_BROWSER=1 (as in CI) turns the skip into a failure.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = 'Playwright is not installed (pip install -e ".[test]")'
    if missing is None and not os.access(CHROMIUM, os.X_OK):
        missing = f"no Chromium at {CHROMIUM} (on Debian: apt-get install chromium)"
    if missing:
        if os.environ.get("CHAINGRAD_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{missing}, and CHAINGRAD_REQUIRE_BROWSER=1 requires the browser tests to run")
        pytest.skip(f"{missing}: the browser tests are skipped")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    errors = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    yield tab
    context.close()
    assert errors == [], "the page's script failed"
