"""The `chaingrad` command: `chaingrad graph EXPR` draws an expression's graph with its gradients;
`chaingrad demo moons|digits|names` trains a small model and draws what it learned; `chaingrad check
engine.py` grades a learner's own Value class (chaingrad.grader).

Each subcommand is a subparser that sets `run(args, parser)` (its work) and
`parser` (itself, for error messages), so more subcommands (the demos) plug in
as further `_add_...(commands)` functions. Usage errors exit with code 2
and an argparse-style message; a failure while running exits with code 1.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__, demos
from ._backend import Value
from .expressions import ALLOWED, ExpressionError, evaluate, parse_variables
from .viz import FORMATS, PAGE_SUFFIXES, RANKDIRS, RenderError, draw_dot, stepper

__all__ = ["main"]


def _whole(text: str, low: int, high: int | None = None) -> int:
    """text as an int in low .. high (unbounded above when high is None)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < low or (high is not None and n > high):
        bounds = f"at least {low}" if high is None else f"in {low} .. {high}"
        raise argparse.ArgumentTypeError(f"must be {bounds}, got {n}")
    return n


def _count(text: str) -> int:
    """A positive integer up to a billion, as given to --steps (a billion steps would take days)."""
    return _whole(text, 1, 10**9)


def _seed(text: str) -> int:
    """A seed in 0 .. 2**32 - 1, the range NumPy's generators take."""
    return _whole(text, 0, 2**32 - 1)


def _folder(text: str) -> Path:
    """A folder, which need not exist yet."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a folder")
    return path


def _picture(text: str) -> Path:
    """A file name ending in .svg or .png."""
    path = Path(text)
    if path.suffix.lower() not in FORMATS:
        raise argparse.ArgumentTypeError(f"{text!r} must end in one of {', '.join(FORMATS)}")
    return path


def _page(text: str) -> Path:
    """A file name ending in .html."""
    path = Path(text)
    if path.suffix.lower() not in PAGE_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text!r} must end in .html")
    return path


# ---------------------------------------------------------------------------
# Subcommands.
# ---------------------------------------------------------------------------


def _graph(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        variables = {name: Value(number, label=name) for name, number in parse_variables(args.var)}
    except ExpressionError as e:  # one bad NAME=NUMBER is argparse's "argument --var: ..." error
        parser.error(str(e) if str(e).startswith("--var") else f"argument --var: {e}")
    try:
        out = evaluate(args.expression, variables, name_nodes=True)
    except ExpressionError as e:
        parser.error(f"EXPR: {e}")
    if not isinstance(out, Value):
        out = Value(out)  # an expression of numbers alone is a graph of one node
    out.backward()
    print(f"{args.expression.strip()} = {out.data!r}")
    for name, v in variables.items():
        print(f"d/d{name} = {v.grad!r}")
    picture = args.output
    if picture is None and args.html is None:
        picture = Path("graph.svg")
    try:
        if picture is not None:
            print(f"graph written to {draw_dot(out, rankdir=args.rankdir).save(picture)}")
        if args.html is not None:
            page = stepper(out, rankdir=args.rankdir).save(args.html)
            print(f"backprop page written to {page}: open it in a browser and press Step")
    except (RenderError, OSError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    return 0


def _add_graph(commands: Any) -> None:
    graph = commands.add_parser(
        "graph",
        help="draw an expression's graph with data and gradients",
        description="Evaluate EXPR, run backward, print the gradients and draw the graph. EXPR may use "
        f"{ALLOWED}, e.g. 'tanh(x*w + b)' or '(x*2).exp()'.",
    )
    graph.add_argument(
        "expression",
        metavar="EXPR",
        help="the expression, e.g. 'tanh(x*w + b)' (write ' -x' for one that starts with -)",
    )
    graph.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=NUMBER",
        help="a variable and its value (repeat for each)",
    )
    graph.add_argument(
        "-o",
        "--output",
        type=_picture,
        metavar="FILE",
        help="the picture to write, .svg or .png (default: graph.svg, unless only --html is given)",
    )
    graph.add_argument(
        "--html",
        type=_page,
        metavar="FILE",
        help="write an interactive page (.html) that steps through backprop node by node",
    )
    graph.add_argument("--rankdir", choices=RANKDIRS, default="LR", help="layout direction (default: LR)")
    # argparse before Python 3.13 takes time quadratic in the options given (CPython gh-116159): 1,000
    # --var take 0.02 s, 30,000 took 14 s. A real expression has a handful of variables, so argparse
    # collects them as it is.
    graph.set_defaults(run=_graph, parser=graph)


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from . import grader

    report = grader.check_path(args.paths, timeout=args.timeout)
    note = ""
    if report.failed:
        try:
            report.save_pictures(args.pictures)
        except RenderError as e:  # the verdicts stand without their pictures
            note = f"no pictures of the failing checks: {e}"
        except OSError as e:
            note = f"cannot write the pictures to {args.pictures}: {e}"
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report)
    if note:
        print(f"{parser.prog}: {note}", file=sys.stderr)
    return 0 if report.passed else 1


def _seconds(text: str) -> float:
    """A positive number of seconds, at most a day."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < seconds <= 86400:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 86400 seconds, got {text}")
    return seconds


def _add_check(commands: Any) -> None:
    check = commands.add_parser(
        "check",
        help="grade your own micrograd Value class (and Neuron, Layer, MLP) against chaingrad",
        description="Run the lecture's curriculum of checks on the Value class defined in PATH (a .py "
        "file or an importable module; give a second PATH for the file with Neuron, Layer, MLP). Each "
        "check runs in a child process with a time limit; a failing check explains which op or idea is "
        "wrong and draws its small graph. Exit status 0 when every check passes, 1 otherwise.",
    )
    check.add_argument(
        "paths", nargs="+", metavar="PATH", help="engine.py, or a module such as micrograd.engine"
    )
    check.add_argument("--json", action="store_true", help='print {"checks": [...]} instead of text')
    check.add_argument(
        "--timeout",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="seconds each check may take (default: %(default)s)",
    )
    check.add_argument(
        "--pictures",
        type=_folder,
        default=Path("chaingrad-check"),
        metavar="DIR",
        help="folder for the pictures of failing checks (default: %(default)s)",
    )
    check.set_defaults(run=_check, parser=check)


def _demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    missing = demos.missing_packages()
    if missing:
        print(
            f"{parser.prog}: error: the demos need {', '.join(missing)}: pip install {' '.join(missing)} "
            '(or, from a checkout of chaingrad, pip install -e ".[demo]")',
            file=sys.stderr,
        )
        return 1
    if getattr(args, "continue_in_torch", 0):
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            print(
                f'{parser.prog}: error: --continue-in-torch needs PyTorch: pip install "chaingrad[torch]"',
                file=sys.stderr,
            )
            return 1
    try:  # find out now, not after training, whether the pictures can be written
        args.out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=args.out).close()
    except OSError as e:
        print(f"{parser.prog}: error: cannot write to {args.out}: {e.strerror or e}", file=sys.stderr)
        return 1
    options = {name: getattr(args, name) for name in args.options}
    try:
        run = demos.DEMOS[args.demo](**options)
    except KeyboardInterrupt:  # outside training (loading data, drawing): nothing more to show
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    print(run.summary())
    return 130 if run.interrupted else 0  # 128 + SIGINT, as shells report a Ctrl-C


def _add_demo(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="train a small model and draw what it learned",
        description="Train a small model with a progress bar, print a summary and write pictures. "
        "Ctrl-C stops training early and still writes them.",
    )
    kinds = demo.add_subparsers(dest="demo", metavar="DEMO", required=True)
    for name, fn in demos.DEMOS.items():
        defaults = inspect.signature(fn).parameters
        doc = inspect.getdoc(fn) or name  # python -OO drops docstrings
        sub = kinds.add_parser(name, help=doc.splitlines()[0], description=doc)
        sub.add_argument(
            "--steps",
            type=_count,
            default=defaults["steps"].default,
            help="training steps (default: %(default)s)",
        )
        sub.add_argument(
            "--seed", type=_seed, default=defaults["seed"].default, help="random seed (default: %(default)s)"
        )
        sub.add_argument(
            "--out",
            type=_folder,
            default=defaults["out"].default,
            metavar="DIR",
            help="folder for the pictures, created if needed (default: %(default)s)",
        )
        options = ["steps", "seed", "out"]
        if "batch" in defaults:
            sub.add_argument(
                "--batch",
                action="store_true",
                help="train on all samples at once through the batch axis (default: one sample at a time)",
            )
            options.append("batch")
        if "continue_in_torch" in defaults:
            sub.add_argument(
                "--continue-in-torch",
                type=_count,
                default=0,
                metavar="STEPS",
                help="then train STEPS steps in PyTorch on batches of names (needs the torch extra)",
            )
            options.append("continue_in_torch")
        sub.set_defaults(run=_demo, parser=sub, options=options)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `chaingrad` command."""
    top = argparse.ArgumentParser(
        prog="chaingrad", description="chaingrad: a scalar autodiff engine; see what backprop does."
    )
    top.add_argument("--version", action="version", version=f"chaingrad {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_graph(commands)
    _add_check(commands)
    _add_demo(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `chaingrad` command on argv (default: sys.argv[1:]); return its exit code.

    Usage errors raise SystemExit(2) with an argparse-style message, as argparse does.
    """
    args = build_parser().parse_args(argv)
    return args.run(args, args.parser)
