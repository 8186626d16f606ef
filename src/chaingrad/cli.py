"""The `chaingrad` command: `chaingrad graph EXPR` draws an expression's graph with its gradients;
`chaingrad demo moons|digits|names` trains a small model and draws what it learned.

Each subcommand is a subparser that sets `run(args, parser)` (its work) and
`parser` (itself, for error messages), so more subcommands (the demos) plug in
as further `_add_...(commands)` functions. Usage errors exit with code 2
and an argparse-style message; a failure while running exits with code 1.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import keyword
import sys
import tempfile
import unicodedata
from collections.abc import Callable, Sequence
from math import inf
from pathlib import Path
from typing import Any

from . import __version__, demos
from ._backend import Value
from .numerics import div, exp, log, power, relu, sigmoid, sqrt, tanh
from .viz import FORMATS, PAGE_SUFFIXES, RANKDIRS, RenderError, draw_dot, stepper

__all__ = ["main"]

# The Value methods an expression may call, as f(x) or x.f(); each works on numbers too.
FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "exp": exp,
    "log": log,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "relu": relu,
    "sqrt": sqrt,
    "abs": abs,
}
# div and power give IEEE-754 results (inf, nan) where Python's float ops would raise.
OPERATORS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda x, y: x + y,
    ast.Sub: lambda x, y: x - y,
    ast.Mult: lambda x, y: x * y,
    ast.Div: div,
    ast.Pow: power,
}
MAX_EXPRESSION = 500  # characters; keeps parsing and evaluation shallow
ALLOWED = "numbers, --var names, + - * / **, and the functions " + ", ".join(FUNCTIONS)


class ExpressionError(ValueError):
    """An expression uses something outside the whitelist."""


def evaluate(expression: str, variables: dict[str, Any]) -> Any:
    """The value of a small arithmetic expression, parsed with `ast` and never eval'd."""
    if len(expression) > MAX_EXPRESSION:
        raise ExpressionError(
            f"the expression is {len(expression)} characters long; at most {MAX_EXPRESSION}"
        )
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as e:
        raise ExpressionError(f"not a valid expression: {e.msg}") from None
    except (ValueError, RecursionError, MemoryError) as e:  # a null byte; too deeply nested
        raise ExpressionError(f"not a valid expression: {e or type(e).__name__}") from None
    try:
        return _eval(tree.body, variables)
    except RecursionError:
        raise ExpressionError("the expression is nested too deeply") from None


def _eval(node: ast.AST, variables: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        try:
            return float(node.value)  # a float, so that 9 ** 9 ** 9 is inf rather than a huge int
        except OverflowError:
            return inf
    if isinstance(node, ast.Name):
        if node.id in variables:
            return variables[node.id]
        if node.id in FUNCTIONS:
            raise ExpressionError(f"{node.id} is a function: call it, as {node.id}(x) or x.{node.id}()")
        raise ExpressionError(f"unknown name {node.id!r}: give its value with --var {node.id}=NUMBER")
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        return OPERATORS[type(node.op)](_eval(node.left, variables), _eval(node.right, variables))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand, variables)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
        return _eval(node.operand, variables)
    if isinstance(node, ast.Call):
        name, argument = _call(node)
        return FUNCTIONS[name](_eval(argument, variables))
    raise ExpressionError(f"{_kind(node)} is not allowed: {ast.unparse(node):.60}; only {ALLOWED}")


def _call(call: ast.Call) -> tuple[str, ast.AST]:
    """The function and its input, for f(x) and x.f() where f is one of FUNCTIONS."""
    func = call.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    if name not in FUNCTIONS:
        raise ExpressionError(
            f"calling {ast.unparse(func):.60} is not allowed; the functions are {', '.join(FUNCTIONS)}"
        )
    if call.keywords:
        raise ExpressionError(f"{name}() takes no keyword arguments")
    if isinstance(func, ast.Attribute):
        if call.args:
            raise ExpressionError(f".{name}() takes no arguments")
        return name, func.value
    if len(call.args) != 1 or isinstance(call.args[0], ast.Starred):
        raise ExpressionError(f"{name}() takes exactly one argument")
    return name, call.args[0]


def _kind(node: ast.AST) -> str:
    kinds = {
        ast.Constant: "a constant that is not a number",
        ast.Attribute: "attribute access",
        ast.BinOp: "this operator",
        ast.UnaryOp: "this operator",
        ast.Compare: "a comparison",
        ast.BoolOp: "and/or",
        ast.IfExp: "if/else",
        ast.Subscript: "indexing",
        ast.Lambda: "a lambda",
        ast.ListComp: "a comprehension",
        ast.SetComp: "a comprehension",
        ast.DictComp: "a comprehension",
        ast.GeneratorExp: "a generator",
        ast.JoinedStr: "an f-string",
        ast.NamedExpr: "assignment",
    }
    return kinds.get(type(node), f"the syntax {type(node).__name__!r}")


# ---------------------------------------------------------------------------
# Argument types: each turns a bad option into an argparse error (exit code 2).
# ---------------------------------------------------------------------------


def _variable(text: str) -> tuple[str, float]:
    """NAME=NUMBER, as given to --var. NAME is NFKC-normalised, as Python's parser reads the names in
    EXPR: `--var ｘ=2` is the x of 'ｘ + 1'."""
    given, equals, number = text.partition("=")
    given = given.strip()
    if not equals:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=NUMBER")
    name = unicodedata.normalize("NFKC", given)
    if not given.isidentifier() or not name.isidentifier() or keyword.iskeyword(name):
        raise argparse.ArgumentTypeError(f"{given!r} is not a valid variable name")
    if name in FUNCTIONS:
        raise argparse.ArgumentTypeError(f"{name!r} is a function name; choose another variable name")
    try:
        return name, float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the value of {name} is not a number: {number!r}") from None


def _variables(texts: Sequence[str]) -> list[tuple[str, float]]:
    """Every --var, in order; two that name the same variable (after NFKC) are an error."""
    out, spelled = [], {}
    for text in texts:
        try:
            name, number = _variable(text)
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(f"argument --var: {e}") from None
        given = text.partition("=")[0].strip()
        if name in spelled:
            if spelled[name] == given:
                raise argparse.ArgumentTypeError(f"--var {given} is given twice")
            raise argparse.ArgumentTypeError(
                f"--var {spelled[name]} and --var {given} are the same variable {name!r} "
                "(Python reads names in NFKC form)"
            )
        spelled[name] = given
        out.append((name, number))
    return out


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that can collect one repeatable option itself, in one pass.

    argparse before Python 3.13 takes time quadratic in the number of options given (CPython issue
    gh-116159): 30,000 `--var` took 23 s. A parser whose `repeated` is set to an option declared with
    action="append" and no type takes that option (`--var X`, `--var=X`, unambiguous abbreviations)
    out of the arguments before argparse sees the rest, and sets its destination to the values in
    order, the strings argparse would have collected.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        self.long_options: list[str] = []
        self.repeated: str | None = None
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.long_options += [s for s in action.option_strings if s.startswith("--")]
        return action

    def _means(self, head: str, option: str) -> bool:
        """Whether head is option or, as argparse allows, an abbreviation of no other option."""
        if head == option:
            return True
        return (
            self.allow_abbrev
            and len(head) > 2
            and [o for o in self.long_options if o.startswith(head)] == [option]
        )

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self.repeated is None or args is None:
            return super().parse_known_args(args, namespace)
        option = self.repeated
        args, rest, values, i = list(args), [], [], 0
        while i < len(args):
            arg = args[i]
            head, equals, value = arg.partition("=")
            if arg == "--":  # everything after it is positional
                rest += args[i:]
                break
            if arg.startswith("--") and self._means(head, option):
                if equals:
                    values.append(value)
                    i += 1
                    continue
                if i + 1 < len(args) and not args[i + 1].startswith("-"):
                    values.append(args[i + 1])
                    i += 2
                    continue
            rest.append(arg)  # anything else, and a malformed option for argparse to report
            i += 1
        namespace, extras = super().parse_known_args(rest, namespace)
        dest = option.lstrip("-").replace("-", "_")
        setattr(namespace, dest, values + list(getattr(namespace, dest) or []))
        return namespace, extras


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
        variables = {name: Value(number, label=name) for name, number in _variables(args.var)}
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    try:
        out = evaluate(args.expression, variables)
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
    graph.set_defaults(run=_graph, parser=graph)
    graph.repeated = "--var"  # collected in one pass; _graph reads them with _variables


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
    top = _Parser(
        prog="chaingrad", description="chaingrad: a scalar autodiff engine; see what backprop does."
    )
    top.add_argument("--version", action="version", version=f"chaingrad {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_graph(commands)
    _add_demo(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `chaingrad` command on argv (default: sys.argv[1:]); return its exit code.

    Usage errors raise SystemExit(2) with an argparse-style message, as argparse does.
    """
    args = build_parser().parse_args(argv)
    return args.run(args, args.parser)
