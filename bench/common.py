"""What every benchmark shares: a result row, fair alternating timing, and the machine's description."""

from __future__ import annotations

import datetime
import gc
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Row:
    """One line of the results table: chaingrad's number next to a baseline's."""

    workload: str
    measure: str  # what is compared, with its unit
    ours: float  # chaingrad's number
    baseline: float  # the baseline's number
    against: str  # the baseline's name
    ratio: float  # how many times better chaingrad is (>1 means chaingrad wins)
    target: str = ""  # the target for this ratio or number, as text
    met: bool | None = None  # whether the target is met; None when there is no target

    def __post_init__(self) -> None:
        # targets read ">= 8x" (on the ratio) or "<= 250 B" (on chaingrad's number)
        if self.target and self.met is None:
            op, amount = self.target.split()[:2]
            if op == ">=" and amount.endswith("x"):
                self.met = self.ratio >= float(amount[:-1])
            elif op == "<=":
                self.met = self.ours <= float(amount)
            else:
                raise ValueError(f"cannot read the target {self.target!r}")


class Mismatch(AssertionError):
    """The two sides of a paired workload computed different results, so timing them means nothing."""


def faster(workload: str, measure: str, ours: float, baseline: float, against: str, **kw) -> Row:
    """A row for a cost (time, bytes, nodes), where smaller is better."""
    return Row(workload, measure, ours, baseline, against, baseline / ours, **kw)


def higher(workload: str, measure: str, ours: float, baseline: float, against: str, **kw) -> Row:
    """A row for a rate (nodes per second), where larger is better."""
    return Row(workload, measure, ours, baseline, against, ours / baseline, **kw)


def size(given: int | None, default: int) -> int:
    """A workload's size or repeat count: the given positive int, or the default when None."""
    if given is None:
        return default
    if isinstance(given, bool) or not isinstance(given, int) or given < 1:
        raise ValueError(f"a benchmark size must be a positive int, got {given!r}")
    return given


def count_nodes(root: Any, children: str = "_prev") -> int:
    """How many nodes the graph under root holds, leaves and constants included."""
    seen = {id(root)}
    stack = [root]
    while stack:
        for child in getattr(stack.pop(), children):
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)
    return len(seen)


# CPU time of this process: on a shared machine, wall time also counts the
# time other processes hold the CPU, which has nothing to do with either side.
CLOCK = time.process_time
CLOCK_NAME = "CPU time of the process (time.process_time)"


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """Run fn once, the collector on as in any program; (result, seconds). The garbage that other
    runs left is collected first, outside the timing: each run starts as a fresh program would."""
    gc.collect()
    t0 = CLOCK()
    result = fn()
    return result, CLOCK() - t0


Trial = Callable[[], dict[str, float]]


def alternate(trials: dict[str, Trial], repeats: int) -> dict[str, dict[str, float]]:
    """Run each side's trial `repeats` times, alternating which side goes first; the total of each timing.

    A trial returns named timings in seconds (e.g. forward and backward), so
    a drift in the machine's speed hits both sides alike.
    """
    totals: dict[str, dict[str, float]] = {name: {} for name in trials}
    names = list(trials)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            for key, seconds in trials[name]().items():
                totals[name][key] = totals[name].get(key, 0.0) + seconds
    return totals


def whole_runs(
    sides: dict[str, Callable[[], Callable[[int], Any]]], steps: int, repeats: dict[str, int]
) -> dict[str, tuple[list[Any], float]]:
    """Train each side from scratch `repeats[name]` times, `steps` steps a run, alternating which side
    goes first: (the results of its first run's steps, the mean CPU seconds of a whole run).

    sides[name]() makes a fresh side (not timed) and returns its step(k). A run is timed as a user
    lives it: every step back to back, the collector on, the first step's one-time costs included.
    """
    out: dict[str, tuple[list[Any], float]] = {}
    totals = dict.fromkeys(sides, 0.0)
    names = list(sides)
    for r in range(max(repeats.values())):
        for name in names if r % 2 == 0 else names[::-1]:
            if r >= repeats[name]:
                continue
            step = sides[name]()
            gc.collect()
            t0 = CLOCK()
            results = [step(k) for k in range(steps)]
            totals[name] += CLOCK() - t0
            out.setdefault(name, (results, 0.0))
    return {name: (results, totals[name] / repeats[name]) for name, (results, _) in out.items()}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or platform's guess where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """One line naming the Python, the machine and the date, for the table's header."""
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.machine()}, {os.cpu_count()} CPUs, {cpu_model()}, "
        f"{datetime.date.today().isoformat()}; clock: {CLOCK_NAME}"
    )
