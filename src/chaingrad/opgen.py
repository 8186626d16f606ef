"""From the engine's op table to code: each row's Op, and the Value methods that apply it.

The table is text: rows of `op | methods | forward | formulas`, one formula per
input, separated by commas (engine.py has it). `define` makes a row's Op from
its formulas, and writes the row's Value methods: on single numbers, which is
the common case, a method has the row's formulas written into its code (below,
METHOD), so that `x * y` is one call with no lookup of a formula; anything else
(batches, a mode on) goes to the engine's general `apply`. For an op with a
rule it writes the op's backward the same way (CHAIN). The written code can be
read with `inspect.getsource(Value.__mul__)`, and shows in tracebacks and pdb.
This module imports nothing of chaingrad: `define` gets the engine's names.
"""

from __future__ import annotations

import ast
import linecache
from collections.abc import Callable
from typing import Any

__all__ = ["compile_function", "define", "for_floats", "formulas", "rows"]

METHOD = {  # a method's code, by the kind of its arguments: x op y, y op x (reflected), op x
    "x, y": """def method(self, other):
    x = self.data
    if type(other) is Value:
        y = other.data
        if type(x) is float and type(y) is float and not (modes.ever_on and mode()):
            out = {forward}; {node}node._prev = (self, other); node._local = {local}; return node
    elif type(other) in NUMBER and type(x) is float and not (modes.ever_on and mode()):
        y = float(other); out = {forward}; {node}node._prev = (self,); node._local = {local_x}
        node._context = (self, y); return node
    return _operator(OP, self, other)""",
    "y, x": """def method(self, other):
    y = self.data
    if type(other) in NUMBER and type(y) is float and not (modes.ever_on and mode()):
        x = float(other); out = {forward}; {node}node._prev = (self,); node._local = {local_y}
        node._context = (x, self); return node
    return _operator(OP, other, self)""",
    "x": """def method(self):
    x = self.data
    if type(x) is float and not (modes.ever_on and mode()):
        out = {forward}; {node}node._prev = (self,); node._local = {local}; return node
    return apply(OP, self)""",
}
NODE = "node = new(Value); node.data = out; node.grad = 0.0; node._op = OP; "
CHAIN = """def chain(node, g):
    if type(g) is float:
        {args}, = node._context or node._prev; out = node.data
        {data}
        {adds}
    else:
        add(node, OP.rule(node, g))"""  # a rule op's backward; on single numbers, its formulas written in

# How a few of numerics' functions read when every argument is a float: the same results, without a
# call (a zero divisor, the only case where `/` raises, goes to div itself).
FLOAT_FORMS = {
    "div": "({0} / {1} if {1} else div({0}, {1}))",
    "where": "({1} if {0} else {2})",
    "is_zero": "({0} == 0)",
    "relu": "(0.0 if {0} < 0 else {0})",
}


def define(
    name: str, methods: str, forward: str, grads: str, rules: bool, engine: dict[str, Any], write: bool = True
) -> None:
    """Make the op of one table row and give engine's Value its methods (rules: formulas are shares of g).
    With write=False (the compiled core has the methods) only the op is made, with its backward."""
    inputs, names = ("x, y" if "y" in forward else "x"), {**engine, "NUMBER": (float, int)}
    op = names["OP"] = engine["Op"](
        name,
        eval(f"lambda {inputs}: {forward}", names),
        None if rules else eval(f"lambda {inputs}, out: ({grads},)", names),
        _rule(eval(f"lambda g, {inputs}, out: ({grads},)", names), engine["Value"]) if rules else None,
    )
    each = [for_floats(g) for g in formulas(grads)]
    if rules:
        xs, args = inputs.split(", "), [f"{x}_" for x in inputs.split(", ")]
        data = "; ".join(f"{x} = {a}.data if isinstance({a}, Value) else {a}" for x, a in zip(xs, args))
        adds = "\n        ".join(f"if isinstance({a}, Value): {a}.grad += {s}" for a, s in zip(args, each))
        source = CHAIN.format(args=", ".join(args), data=data, adds=adds)
        op.chain = compile_function(source, f"<chaingrad op {name}: backward>", names, "chain")
        local = dict.fromkeys(("local", "local_x", "local_y"), "None; node._context = None")
    else:
        local = {"local": f"({', '.join(each)},)", "local_x": f"({each[0]},)", "local_y": f"({each[-1]},)"}
    for method, kind in zip(
        methods.split() if write else (), ("x, y", "y, x") if inputs == "x, y" else ("x", "x")
    ):
        source = METHOD[kind].format(forward=for_floats(forward), node=NODE, **local)
        fn = compile_function(source, f"<chaingrad op {name}: Value.{method}>", names, "method")
        fn.__name__, fn.__qualname__, fn.__doc__ = method, f"Value.{method}", f"{forward}: the op {name!r}."
        setattr(engine["Value"], method, fn)


def _rule(shares: Callable[..., tuple[Any, ...]], Value: type) -> Callable[..., list[Any]]:
    """A row's share formulas as Op.rule: rule(node, g) gives each of node's inputs its share of g."""

    def rule(node: Any, g: Any, differentiable: bool = False) -> list[Any]:
        args = node._ctx or node._prev
        xs = args if differentiable else [a.data if isinstance(a, Value) else a for a in args]
        out = node if differentiable else node.data
        return [s for a, s in zip(args, shares(g, *xs, out)) if isinstance(a, Value)]

    return rule


def rows(table: str) -> list[list[str]]:
    """The table's rows (below its header line) as [op, methods, forward, formulas]; a row whose first
    cell is empty continues the formulas of the row above."""
    out: list[list[str]] = []
    for line in table.strip().splitlines()[1:]:
        cells = [c.strip() for c in line.split("|")]
        if cells[0]:
            out.append(cells)
        else:
            out[-1][3] += " " + cells[3]
    return out


def formulas(text: str) -> list[str]:
    """The comma-separated formulas of a row, one per input (commas inside calls do not split)."""
    return [ast.unparse(e) for e in ast.parse(f"({text},)", mode="eval").body.elts]


def for_floats(expr: str) -> str:
    """expr with the calls of FLOAT_FORMS written out, for code that runs on floats only."""

    class Inline(ast.NodeTransformer):
        def visit_Call(self, call: ast.Call) -> ast.AST:
            self.generic_visit(call)
            if isinstance(call.func, ast.Name) and call.func.id in FLOAT_FORMS:
                form = FLOAT_FORMS[call.func.id].format(*map(ast.unparse, call.args))
                return ast.parse(form, mode="eval").body
            return call

    return ast.unparse(Inline().visit(ast.parse(expr, mode="eval")))


def compile_function(source: str, filename: str, namespace: dict[str, Any], name: str) -> Callable[..., Any]:
    """Run source (which defines `name`) in namespace and return that function, keeping its text in
    linecache under filename so that tracebacks, pdb and inspect.getsource can show it."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)
    return namespace.pop(name)
