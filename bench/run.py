"""Run every benchmark side by side with its baseline and print one table of ratios.

python bench/run.py              # the full run, a few minutes
python bench/run.py --quick      # smaller sizes and fewer repeats, under a minute
python bench/run.py --only chain --markdown
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import `bench` from the repository root, and let
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # no bench/ module shadow the stdlib

from bench.common import Row, machine

# Each workload is a module in bench/ with `run(quick) -> list[Row]`; add one line here for a new one.
WORKLOADS = [
    "chain",
    "softmax_ce",
    "gpt",
    "moons",
    "microgpt",
    "compile",
]

RATIO = "ratio: how many times better chaingrad is (costs: baseline / chaingrad; rates: chaingrad / baseline)"
COLUMNS = ("workload", "measure", "chaingrad", "baseline", "compared with", "ratio", "target", "met")


def _number(x: float) -> str:
    """Three significant digits, without exponents for the sizes a table shows."""
    if x == 0 or not math.isfinite(x):
        return str(x)
    digits = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:,.{digits}f}"


def _cells(row: Row) -> tuple[str, ...]:
    met = "" if row.met is None else ("met" if row.met else "NOT met")
    return (
        row.workload,
        row.measure,
        _number(row.ours),
        _number(row.baseline),
        row.against,
        f"{_number(row.ratio)}x",
        row.target,
        met,
    )


def table(rows: list[Row], markdown: bool = False) -> str:
    """The rows as an aligned text table, or as a Markdown table."""
    lines = [COLUMNS, *map(_cells, rows)]
    if markdown:
        out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        out += ["| " + " | ".join(cells) + " |" for cells in lines[1:]]
        return "\n".join(out)
    widths = [max(len(cells[i]) for cells in lines) for i in range(len(COLUMNS))]
    text = ["  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the chosen workloads and print the table; 1 if any workload failed."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (< 1 minute)")
    parser.add_argument(
        "--only", choices=WORKLOADS, metavar="NAME", help=f"run one of: {', '.join(WORKLOADS)}"
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)

    rows: list[Row] = []
    failed = []
    for name in [args.only] if args.only else WORKLOADS:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            rows += importlib.import_module(f"bench.{name}").run(quick=args.quick)
        except Exception:
            failed.append(name)
            traceback.print_exc()
        print(f"  {name} took {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    mode = "quick" if args.quick else "full"
    print(f"chaingrad benchmarks ({mode} run): {machine()}\n")
    print(table(rows, args.markdown))
    print(f"\n{RATIO}")
    if failed:
        print(f"\nFAILED: {', '.join(failed)} (see the errors above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
