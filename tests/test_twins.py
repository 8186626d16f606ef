"""The compiled core and the reference engine are twins: the same workloads give the same bits.

Each workload of twins.py runs twice, in a process with the compiled core and in one with
CHAINGRAD_PURE=1, and every float they made (every node's data and grad, every loss, parameter and
optimizer step) must be bit for bit the same. Skipped where the compiled core was not built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import chaingrad as cg

HERE = Path(__file__).resolve().parent


def run(workload: str, seed: int, count: int, pure: bool) -> list[object]:
    env = {**os.environ, "CHAINGRAD_PURE": "1" if pure else "0"}
    done = subprocess.run(
        [sys.executable, str(HERE / "twins.py"), workload, str(seed), str(count)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def compiled_available() -> bool:
    done = subprocess.run(
        [sys.executable, "-c", "import chaingrad; print(chaingrad.backend)"],
        env={**os.environ, "CHAINGRAD_PURE": "0"}, capture_output=True, text=True,
    )  # fmt: skip
    return done.stdout.strip() == "compiled"


pytestmark = pytest.mark.skipif(not compiled_available(), reason="the compiled core is not built here")


def first_difference(a: object, b: object, where: str = "") -> str | None:
    if type(a) is not type(b):
        return f"{where}: {a!r:.200} != {b!r:.200}"
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            if (d := first_difference(x, y, f"{where}[{i}]")) is not None:
                return d
        return None
    return None if a == b else f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize(
    "workload, seed, count",
    [
        ("graph", 1, 1500),
        ("graph", 2, 1500),
        ("training", 3, 40),
        ("gpt", 4, 3),
        ("higher", 5, 200),
        ("batched", 6, 30),
    ],
)
def test_the_compiled_core_gives_the_reference_engines_bits(workload, seed, count):
    compiled, pure = run(workload, seed, count, pure=False), run(workload, seed, count, pure=True)
    assert (compiled[0], pure[0]) == ("compiled", "python")
    assert first_difference(compiled[1:], pure[1:]) is None, first_difference(compiled[1:], pure[1:])


def test_this_process_runs_the_backend_its_environment_asks_for():
    assert cg.backend == ("python" if os.environ.get("CHAINGRAD_PURE", "") not in ("", "0") else "compiled")


def test_help_reads_the_same_on_both_backends():
    # a learner's help(cg.dot) is the reference function's docstring, whichever backend runs
    names = ["dot", "sum", "mean", "logsumexp", "softmax", "log_softmax", "cross_entropy", "affine"]
    names += ["Value"]  # help(cg.Value) explains data, grad, label, _prev and _op on both
    code = f"import json, chaingrad as cg; print(json.dumps([getattr(cg, n).__doc__ for n in {names!r}]))"
    docs = {}
    for pure in ("0", "1"):
        env = {**os.environ, "CHAINGRAD_PURE": pure}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        docs[pure] = json.loads(done.stdout)
    assert all(doc and len(doc) > 20 for doc in docs["1"])
    assert docs["0"] == docs["1"]
    assert all(f"`{word}`" in docs["0"][-1] for word in ("data", "grad", "label", "_prev", "_op"))
