"""Small arithmetic expressions, as `chaingrad graph EXPR --var NAME=NUMBER` takes them: parsed with `ast`
and evaluated from a whitelist (numbers, variables, + - * / **, and Value's functions), never eval'd.

With `name_nodes=True` every node the expression makes is labelled with the text that made it
(`x*w`, `x*w + b`), so that pictures and the stepper can call each value by its sub-expression.
"""

from __future__ import annotations

import ast
import keyword
import unicodedata
from collections.abc import Callable, Iterable
from math import inf
from typing import Any

from ._backend import Value
from .numerics import div, exp, log, power, relu, sigmoid, sqrt, tanh

__all__ = ["ALLOWED", "FUNCTIONS", "MAX_EXPRESSION", "ExpressionError", "evaluate", "parse_variables"]

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
    """An expression, or a NAME=NUMBER variable, that cannot be used; the message says why."""


def evaluate(expression: str, variables: dict[str, Any], name_nodes: bool = False) -> Any:
    """The value of a small arithmetic expression, such as `"tanh(x*w + b)"`, with `variables` giving
    each name's value (a number or a Value).

    The expression is parsed with `ast` and only numbers, the variables, `+ - * / **` (and unary
    `-`, `+`) and the functions in FUNCTIONS (as `f(x)` or `x.f()`) are allowed; anything else raises
    ExpressionError. With `name_nodes`, each Value the expression makes gets as its label the text
    that made it; a text that occurs twice (`x*x + x*x`) names its second node `x*x #2`.
    """
    if len(expression) > MAX_EXPRESSION:
        raise ExpressionError(
            f"the expression is {len(expression)} characters long; at most {MAX_EXPRESSION}"
        )
    source = expression.strip()
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as e:
        raise ExpressionError(f"not a valid expression: {e.msg}") from None
    except (ValueError, RecursionError, MemoryError) as e:  # a null byte; too deeply nested
        raise ExpressionError(f"not a valid expression: {e or type(e).__name__}") from None
    namer = _Namer(source) if name_nodes else None
    try:
        return _Evaluator(variables, namer).eval(tree.body)
    except RecursionError:
        raise ExpressionError("the expression is nested too deeply") from None


class _Namer:
    """Labels each new node with its source text, never giving two nodes the same label."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.taken: dict[str, int] = {}

    def name(self, result: Any, node: ast.AST, inputs: Iterable[Any]) -> Any:
        # Only a node this op made is named: +x and a function of a plain number make none.
        if not isinstance(result, Value) or result.label or any(result is x for x in inputs):
            return result
        text = " ".join((ast.get_source_segment(self.source, node) or ast.unparse(node)).split())
        count = self.taken.get(text, 0) + 1
        self.taken[text] = count
        result.label = text if count == 1 else f"{text} #{count}"
        return result


class _Evaluator:
    def __init__(self, variables: dict[str, Any], namer: _Namer | None) -> None:
        self.variables = variables
        self.namer = namer

    def named(self, result: Any, node: ast.AST, *inputs: Any) -> Any:
        return result if self.namer is None else self.namer.name(result, node, inputs)

    def eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            try:
                return float(node.value)  # a float, so that 9 ** 9 ** 9 is inf rather than a huge int
            except OverflowError:
                return inf
        if isinstance(node, ast.Name):
            if node.id in self.variables:
                return self.variables[node.id]
            if node.id in FUNCTIONS:
                raise ExpressionError(f"{node.id} is a function: call it, as {node.id}(x) or x.{node.id}()")
            raise ExpressionError(f"unknown name {node.id!r}: give its value with --var {node.id}=NUMBER")
        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            left, right = self.eval(node.left), self.eval(node.right)
            return self.named(OPERATORS[type(node.op)](left, right), node, left, right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            operand = self.eval(node.operand)
            return self.named(-operand, node, operand)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
            return self.eval(node.operand)
        if isinstance(node, ast.Call):
            name, argument = _call(node)
            x = self.eval(argument)
            return self.named(FUNCTIONS[name](x), node, x)
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
# Variables, given as NAME=NUMBER.
# ---------------------------------------------------------------------------


def parse_variable(text: str) -> tuple[str, float]:
    """NAME=NUMBER as (name, number). NAME is NFKC-normalised, as Python's parser reads the names in an
    expression: `ｘ=2` is the x of `'ｘ + 1'`. Raises ExpressionError saying what is wrong."""
    given, equals, number = text.partition("=")
    given = given.strip()
    if not equals:
        raise ExpressionError(f"{text!r} is not NAME=NUMBER")
    name = unicodedata.normalize("NFKC", given)
    if not given.isidentifier() or not name.isidentifier() or keyword.iskeyword(name):
        raise ExpressionError(f"{given!r} is not a valid variable name")
    if name in FUNCTIONS:
        raise ExpressionError(f"{name!r} is a function name; choose another variable name")
    try:
        return name, float(number)
    except ValueError:
        raise ExpressionError(f"the value of {name} is not a number: {number!r}") from None


def parse_variables(texts: Iterable[str]) -> list[tuple[str, float]]:
    """Every NAME=NUMBER, in order; two that name the same variable (after NFKC) are an ExpressionError."""
    out, spelled = [], {}
    for text in texts:
        name, number = parse_variable(text)
        given = text.partition("=")[0].strip()
        if name in spelled:
            if spelled[name] == given:
                raise ExpressionError(f"--var {given} is given twice")
            raise ExpressionError(
                f"--var {spelled[name]} and --var {given} are the same variable {name!r} "
                "(Python reads names in NFKC form)"
            )
        spelled[name] = given
        out.append((name, number))
    return out
