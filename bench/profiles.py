"""Where chaingrad's time goes: cProfile of chaingrad's side of a workload, top functions by own time.

    python bench/profiles.py chain        # or softmax_ce, gpt, moons, moons_batch

cProfile adds a cost to every Python call, so read the shares, not the totals.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import `bench` from the repository root, and let
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # no bench/ module shadow the stdlib

import chaingrad as cg
from bench import chain, gpt, moons, softmax_ce

# Each target prepares its inputs (not profiled) and returns the work to profile.


def _chain() -> Callable[[], None]:
    return lambda: chain.build(cg.Value, 5000)[0].backward()


def _softmax_ce() -> Callable[[], None]:
    data = softmax_ce.problems(2000)
    return lambda: softmax_ce.losses_and_grads(softmax_ce.fused, data)


def _gpt() -> Callable[[], None]:
    docs, vocab = gpt.names_as_tokens(20)
    side = gpt.FusedGPT(cg.nn.GPT(vocab, seed=gpt.SEED))
    return lambda: [side.train_step(tokens, gpt.LR) for tokens in docs]


def _moons(batch: bool) -> Callable[[], Callable[[], None]]:
    def prepare() -> Callable[[], None]:
        side = moons.sides(micrograd=False)["chaingrad batch" if batch else "chaingrad"]
        return lambda: [side.step(k) for k in range(200 if batch else 5)]

    return prepare


TARGETS: dict[str, Callable[[], Callable[[], object]]] = {
    "chain": _chain,
    "softmax_ce": _softmax_ce,
    "gpt": _gpt,
    "moons": _moons(batch=False),
    "moons_batch": _moons(batch=True),
}


def main(argv: list[str] | None = None) -> None:
    """Profile one workload's chaingrad side and print the functions that take the most own time."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workload", choices=TARGETS)
    parser.add_argument("--top", type=int, default=15, help="how many functions to show")
    args = parser.parse_args(argv)
    profiler = cProfile.Profile()
    profiler.runcall(TARGETS[args.workload]())
    pstats.Stats(profiler).strip_dirs().sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
