"""The stepper: a page that backpropagates through a graph's picture one node's `_backward()` at a time,
showing at each step the local gradient (its formula and its value) and the `+=` it makes.

The steps are computed in Python on the real graph: every grad is saved, each node's `_backward()`
is called in reverse topological order from a fresh start, and every grad is restored afterwards. The
local gradients are read from the nodes (`_local`, one per input in `_prev`); an op whose backward is
a rule of its own (`/`, `log`, `relu`, `**`) keeps none, and for it the page computes the local
gradient from the op's formula with its inputs' data (the table FORMULAS). The page is self-contained
and reached as `cg.viz.stepper(root)`.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ._backend import Value
from .graph import _check, _dot, _number, _short, _visible, arguments, render, topological_order
from .numerics import is_array as _is_array

__all__ = [
    "FORMULAS",
    "MAX_STEPPER_VALUES",
    "PAGE_SUFFIXES",
    "Contribution",
    "Local",
    "Step",
    "Stepper",
    "stepper",
]

PAGE_SUFFIXES = (".html", ".htm")
"""The file extensions `Stepper.save` writes a page to."""
MAX_STEPPER_VALUES = 1000  # values a stepper page draws by default (it draws every one)
MAX_HEADING = 120  # characters of the expression in the page's heading


# ---------------------------------------------------------------------------
# Local gradients: d(node)/d(input), as a formula, the formula with the numbers, and the value.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Local:
    """One input's local gradient d(node)/d(input): `formula` in names (`1 - o²`), `worked` with the
    numbers put in (`1 - 0.7071²`; "" when that adds nothing), and `value`. A formula of "" means the
    op has none the stepper knows (a fused or user-defined op), and `value` is then the engine's."""

    formula: str
    worked: str
    value: Any

    def text(self) -> str:
        """The local gradient written out: `1 - o² = 1 - 0.7071² = 0.5000`."""
        parts = [p for p in (self.formula, self.worked) if p]
        if self.value is not None and not _is_literal(self.formula):  # "1", not "1 = 1.0000"
            parts.append(_number(self.value))
        return " = ".join(dict.fromkeys(parts))


def _is_literal(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _num(x: Any) -> str:
    """A number inside a formula: a negative one in parentheses, as in `1 - (-0.9999)²`."""
    text = _number(x)
    return f"({text})" if text.startswith("-") else text


def _sq(name: str) -> str:
    return f"{name}²"


# Each formula takes the op's arguments (names, data), the node's name and data, and the position of one
# argument; it gives that argument's local gradient as (formula, worked, value). Value and names are
# those of the arguments with constants in their places: for `x * 2`, names ["x", "2"].
Formula = Callable[[list[str], list[Any], str, Any, int], tuple[str, str, Any]]


def _add(n: list[str], d: list[Any], o: str, out: Any, i: int) -> tuple[str, str, Any]:
    return "1", "", 1.0


def _sub(n: list[str], d: list[Any], o: str, out: Any, i: int) -> tuple[str, str, Any]:
    return ("1", "", 1.0) if i == 0 else ("-1", "", -1.0)


def _mul(n: list[str], d: list[Any], o: str, out: Any, i: int) -> tuple[str, str, Any]:
    j = 1 - i  # the other factor
    return n[j], "", d[j]


def _div(n: list[str], d: list[Any], o: str, out: Any, i: int) -> tuple[str, str, Any]:
    x, y = d
    if i == 0:
        return f"1 / {n[1]}", f"1 / {_num(y)}", 1.0 / y if y else math.copysign(math.inf, y)
    return f"-{n[0]} / {_sq(n[1])}", f"-{_num(x)} / {_num(y)}²", -x / (y * y) if y else math.nan


def _pow(n: list[str], d: list[Any], o: str, out: Any, i: int) -> tuple[str, str, Any]:
    x, y = d
    if i == 0:
        try:
            value = y * math.pow(x, y - 1)
        except (ValueError, OverflowError):  # a negative base to a fractional power; too large
            value = math.nan
        return f"{n[1]} * {n[0]}**({n[1]} - 1)", f"{_num(y)} * {_num(x)}**({_num(y)} - 1)", value
    return f"{o} * log({n[0]})", f"{_num(out)} * log({_num(x)})", out * math.log(x) if x > 0 else math.nan


def _neg(n: list[str], d: list[Any], o: str, out: Any, i: int) -> tuple[str, str, Any]:
    return "-1", "", -1.0


def _exp(n: list[str], d: list[Any], o: str, out: Any, i: int) -> tuple[str, str, Any]:
    return f"exp({n[0]}) = {o}", "", out


def _tanh(n: list[str], d: list[Any], o: str, out: Any, i: int) -> tuple[str, str, Any]:
    return f"1 - {_sq(o)}", f"1 - {_num(out)}²", 1.0 - out * out


def _sigmoid(n: list[str], d: list[Any], o: str, out: Any, i: int) -> tuple[str, str, Any]:
    return f"{o} * (1 - {o})", f"{_num(out)} * (1 - {_num(out)})", out * (1.0 - out)


def _log(n: list[str], d: list[Any], o: str, out: Any, i: int) -> tuple[str, str, Any]:
    x = d[0]
    return f"1 / {n[0]}", f"1 / {_num(x)}", 1.0 / x if x else math.inf


def _relu(n: list[str], d: list[Any], o: str, out: Any, i: int) -> tuple[str, str, Any]:
    x = d[0]
    return f"1 if {n[0]} > 0 else 0", f"1 if {_num(x)} > 0 else 0", 1.0 if x > 0 else 0.0


def _sqrt(n: list[str], d: list[Any], o: str, out: Any, i: int) -> tuple[str, str, Any]:
    return f"1 / (2 * {o})", f"1 / (2 * {_num(out)})", 0.5 / out if out else math.inf


def _abs(n: list[str], d: list[Any], o: str, out: Any, i: int) -> tuple[str, str, Any]:
    x = d[0]
    return f"sign({n[0]})", f"sign({_num(x)})", 1.0 if x > 0 else -1.0 if x < 0 else 0.0


FORMULAS: dict[str, Formula] = {
    "+": _add,
    "-": _sub,
    "*": _mul,
    "/": _div,
    "**": _pow,
    "neg": _neg,
    "exp": _exp,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "log": _log,
    "relu": _relu,
    "sqrt": _sqrt,
    "abs": _abs,
}
"""The display formula of each op's local gradients, by op name: how the page explains a step."""


def _locals(node: Value, names: dict[Value, str], name: str) -> list[Local]:
    """d(node)/d(input) for each input in node._prev, in order.

    The value is the engine's own (`node._local`) where the node keeps one; otherwise, for an op with a
    rule of its own, the op's formula computed with its inputs' data. Batches: the formula, no numbers.
    """
    args = arguments(node)
    arg_names = [names[a] if isinstance(a, Value) else _constant(a) for a in args]
    arg_data = [a.data if isinstance(a, Value) else a for a in args]
    positions = [i for i, a in enumerate(args) if isinstance(a, Value)]  # the argument of each input
    kept = getattr(node, "_local", None)
    kept = kept if isinstance(kept, tuple) and len(kept) == len(node._prev) else None
    formula = FORMULAS.get(str(node._op)) if len(args) <= 2 else None
    batched = any(_is_array(x) for x in [*arg_data, node.data])
    out: list[Local] = []
    for k, position in enumerate(positions):
        engine_value = kept[k] if kept is not None and _usable_local(kept[k]) else None
        if formula is None:
            out.append(Local("", "", engine_value))
            continue
        names_ = [_operand(n) for n in arg_names]
        if batched:  # the formula in names; its value per sample is the engine's (None: a rule's)
            try:
                text = formula(names_, [1.0] * len(args), _operand(name), 1.0, position)[0]
            except IndexError:  # the engine did not say where the constants are
                text = ""
            out.append(Local(text, "", engine_value))
            continue
        try:
            text, worked, value = formula(names_, arg_data, _operand(name), node.data, position)
        except (ArithmeticError, TypeError, ValueError, IndexError):  # no formula fits these arguments
            text, worked, value = "", "", None
        if engine_value is not None:
            value = engine_value  # the same number, as the engine computed it
        out.append(Local(text, worked, value))
    return out


def _usable_local(x: Any) -> bool:
    return isinstance(x, float) or _is_array(x)


def _constant(c: Any) -> str:
    return f"{c:g}" if isinstance(c, float) else repr(c)


def _operand(name: str) -> str:
    """A name as an operand in a formula or before `.grad`: in parentheses unless it is one word, a
    number, or a call such as `tanh(n)` or `Value(2.0)`."""
    return name if _is_atom(name) else f"({name})"


def _is_atom(name: str) -> bool:
    if name.isidentifier() or name.replace(".", "", 1).replace("-", "", 1).isdigit():
        return True
    head, paren, _ = name.partition("(")
    if not (paren and head.isidentifier() and name.endswith(")")):
        return False
    depth = 0
    for k, ch in enumerate(name[len(head) :]):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:  # the call's own parenthesis closes here: it must be the last character
            return k == len(name) - len(head) - 1
    return False


# ---------------------------------------------------------------------------
# The steps.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Contribution:
    """What one step added to one input's grad: `input.grad += local * node.grad`."""

    input: int  # the input's number in the picture (its node is v<input>)
    name: str
    uses: int  # how many times the node takes this input (x * x: 2)
    local: Any  # d(node)/d(input), summed over the uses; None where the op has no known formula
    added: Any  # what the step added to the input's grad
    grad: Any  # the input's grad after the step
    formula: str = ""  # the local gradient written out: "1 - o² = 1 - 0.7071² = 0.5000"


@dataclass(frozen=True)
class Step:
    """One node's `_backward()`: its number in the picture, its op, its grad, and what it sent on."""

    node: int
    name: str
    op: str
    grad: Any  # d(root)/d(node), complete when its turn comes
    contributions: tuple[Contribution, ...]

    def lines(self) -> list[str]:
        """The chain-rule products of this step, with the numbers: per input, the `+=` line and the
        local gradient's formula beside it."""
        node = _operand(self.name)
        lines = [f"each input: input.grad += local * {node}.grad"]
        for c in self.contributions:
            who = _operand(c.name)
            batched = _is_array(self.grad) and not _is_array(c.added)
            if c.local is None:
                product = _number(c.added)
            elif batched:  # a single number fed every sample: its gradient sums over the batch
                product = f"sum over the batch of {_number(c.local)} * {_number(self.grad)}"
            else:
                product = f"{_number(c.local)} * {_number(self.grad)}"
            lines.append(f"{who}.grad += {product}  ->  {who}.grad = {_number(c.grad)}")
            if c.formula:
                lines.append(f"    local d({self.name})/d({c.name}) = {c.formula}")
            elif c.local is None:
                lines.append(f"    (the {self.op} op's own rule gives this share directly)")
            if c.uses > 1:
                lines.append(f"    ({who} is used {c.uses} times here: the local is the sum of its uses)")
        return lines


def _copy(x: Any) -> Any:
    # A batched grad may be updated in place by the next step: keep what it was.
    return x.copy() if _is_array(x) else x


def _summed(parts: Sequence[Local]) -> tuple[Any, str]:
    """The local gradient of an input used several times (x * x): the sum of its uses, written out."""
    values = [p.value for p in parts]
    value = None if any(v is None for v in values) else sum(values[1:], values[0])
    if len(parts) == 1:
        return value, parts[0].text() if parts[0].formula else ""
    if not all(p.formula for p in parts):
        return value, ""
    formula = " + ".join(p.formula for p in parts)
    worked = " + ".join(p.worked or _number(p.value) for p in parts) if value is not None else ""
    return value, Local(formula, worked, value).text()


def _run_steps(
    root: Value, order: list[Value], number: dict[Value, int], names: dict[Value, str]
) -> list[Step]:
    """Backpropagate from root node by node, recording each step; every grad is restored afterwards."""
    saved = [(v, v.grad) for v in order]
    steps = []
    try:
        for v in order:
            v.grad = 0.0
        root.grad = 1.0
        for node in reversed(order):
            if not node._prev:
                continue
            locals_ = _locals(node, names, names[node])
            inputs = list(dict.fromkeys(node._prev))  # a value used twice (x * x) is one input, used twice
            before = [_copy(c.grad) for c in inputs]
            node._backward()
            contributions = []
            for child, old in zip(inputs, before):
                new = _copy(child.grad)
                parts = [loc for arg, loc in zip(node._prev, locals_) if arg is child]
                local, formula = _summed(parts)
                contributions.append(
                    Contribution(number[child], names[child], len(parts), local, new - old, new, formula)
                )
            steps.append(
                Step(number[node], names[node], str(node._op), _copy(node.grad), tuple(contributions))
            )
    finally:
        for v, g in saved:
            v.grad = g
    return steps


# ---------------------------------------------------------------------------
# Names: each value by its label, or else by the expression that made it; never two alike.
# ---------------------------------------------------------------------------

_INFIX = {"+": 1, "-": 1, "*": 2, "/": 2, "**": 4}  # precedence: a lower operand gets parentheses
_ATOM = 9


def _expression(op: str, args: list[tuple[str, int]]) -> tuple[str, int]:
    """The text of op applied to named arguments (name, precedence), and its own precedence."""
    if op in _INFIX and len(args) == 2:
        p = _INFIX[op]
        (a, pa), (b, pb) = args
        # a - (b - c), a / (b * c), (a ** b) ** c: the right side also needs them at equal precedence
        left = a if pa > p or (pa == p and op != "**") else f"({a})"
        right = b if pb > p or (pb == p and op in ("+", "*")) else f"({b})"
        space = " " if p == 1 else ""
        return f"{left}{space}{op}{space}{right}", p
    if op == "neg" and len(args) == 1:
        a, pa = args[0]
        return (f"-{a}" if pa >= 3 else f"-({a})"), 3
    inside = ", ".join(a for a, _ in args)
    return f"{op}({inside})", _ATOM


def _label_precedence(label: str) -> int:
    return _ATOM if _is_atom(label) else 0


def _names(order: list[Value]) -> tuple[dict[Value, str], dict[Value, str]]:
    """Each value's name (its label, or the expression that made it from its inputs' names; a leaf
    without a label by its data) with `#2`, `#3` added where two would read alike; and each value's
    whole expression from the leaves."""
    names: dict[Value, str] = {}
    precedence: dict[Value, int] = {}
    whole: dict[Value, tuple[str, int]] = {}
    taken: dict[str, int] = {}
    for v in order:  # inputs first
        if not v._prev:
            text = _short(_visible(v.label)) if v.label else f"Value({_constant(v.data)})"
            p = _label_precedence(text) if v.label else _ATOM
            whole[v] = (text, p)
        else:
            args = arguments(v)
            op = str(v._op)
            mine = [
                (names[a], precedence[a]) if isinstance(a, Value) else (_constant(a), _ATOM) for a in args
            ]
            full = [whole[a] if isinstance(a, Value) else (_constant(a), _ATOM) for a in args]
            whole[v] = _expression(op, full)
            if v.label:
                text, p = _short(_visible(v.label)), _label_precedence(_short(_visible(v.label)))
            else:
                text, p = _expression(op, mine)
                if len(text) > 40:
                    text, p = _short(text), 0
        count = taken.get(text, 0) + 1
        taken[text] = count
        if count > 1:
            text, p = f"{text} #{count}", 0
        names[v], precedence[v] = text, p
    return names, {v: text for v, (text, _) in whole.items()}


def _json_for_html(data: Any) -> str:
    # Inside <script>, "</script>" or "<!--" in a label would end the script; escape < > & everywhere.
    text = json.dumps(data, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


LEGEND = (
    ("cg-key-node", "the node whose _backward() runs in this step, and the op that made it"),
    ("cg-key-input", "its inputs, each receiving local * node.grad"),
    ("cg-key-flow", "the way the gradient flows: from the node back to its inputs"),
    ("cg-key-changed", "a grad that this step changed"),
)


class Stepper:
    """An interactive page of a graph's backpropagation: Step, Back and Reset through it, node by node.

    It shows the graph as `draw_dot` does, every value named (by its label, or the expression that made
    it). The page starts with every grad at 0 and the output's at 1; each Step applies one node's
    `_backward()` (in reverse topological order), highlights that node and the inputs it sends gradient
    to, and shows the products it added with each local gradient's formula and value. Shows inline in
    Jupyter; `.save("backprop.html")` writes a self-contained page (no network needed). `.steps` holds
    the steps themselves, computed on the real graph when the stepper was made.
    """

    def __init__(self, root: Value, rankdir: str = "LR", max_nodes: int | None = MAX_STEPPER_VALUES) -> None:
        _check(root, rankdir, max_nodes, None)
        if not isinstance(root.data, float):
            raise ValueError(
                f"the stepper backpropagates from a single number, but this Value holds a batch of "
                f"{len(root.data)} samples; reduce it first with cg.batch_mean(v) or cg.batch_sum(v)"
            )
        order = topological_order(root)
        if max_nodes is not None and len(order) > max_nodes:
            raise ValueError(
                f"this graph has {len(order)} values and the stepper's page draws every one of them "
                f"(max_nodes={max_nodes}): step through a smaller graph (one neuron, one sample), "
                "or pass a larger max_nodes (or None)"
            )
        names, whole = _names(order)
        _, number = _dot(root, rankdir, None, None)
        self.steps: tuple[Step, ...] = tuple(_run_steps(root, order, number, names))
        self.names: tuple[str, ...] = tuple(names[v] for v in number)
        self.start: tuple[Any, ...] = tuple(1.0 if v is root else 0.0 for v in number)
        ends = dict(enumerate(self.start))
        texts = {i: [f"grad {_number(g)}"] for i, g in ends.items()}
        for step in self.steps:
            for c in step.contributions:
                ends[c.input] = c.grad
                texts[c.input].append(f"grad {_number(c.grad)}")
        self.final: tuple[Any, ...] = tuple(ends[i] for i in range(len(number)))
        # Each box is drawn wide enough for the longest text it will show.
        widest = {
            v: max(len(t) for t in [*texts[i], f"data {_number(v.data)}", _short(names[v])])
            for v, i in number.items()
        }
        start = {v: self.start[i] for v, i in number.items()}
        self.source: str = _dot(root, rankdir, None, None, grads=start, width=widest, names=names)[0]
        self.root_name = names[root]
        expression = whole[root]
        if len(expression) > MAX_HEADING:
            expression = expression[: MAX_HEADING - 3] + "..."
        self.expression: str = (
            expression if expression == self.root_name else f"{self.root_name} = {expression}"
        )
        """The heading's expression: the output's name and what it is made of, from the leaves."""
        self._svg: str | None = None

    def __repr__(self) -> str:
        return (
            f"<Stepper through backprop from {self.root_name}: {len(self.names)} values, "
            f"{len(self.steps)} steps; show it in Jupyter or .save('backprop.html')>"
        )

    def grads(self, steps: int) -> tuple[Any, ...]:
        """Every value's grad (in picture order) after the first `steps` steps."""
        if type(steps) is not int or not 0 <= steps <= len(self.steps):
            raise ValueError(f"steps must be an int in 0 .. {len(self.steps)}, not {steps!r}")
        grads = list(self.start)
        for step in self.steps[:steps]:
            for c in step.contributions:
                grads[c.input] = c.grad
        return tuple(grads)

    def _data(self) -> dict[str, Any]:
        steps, before = [], [f"grad {_number(g)}" for g in self.start]
        for k, step in enumerate(self.steps, 1):
            changes = []
            for c in step.contributions:
                after = f"grad {_number(c.grad)}"
                changes.append([c.input, before[c.input], after])
                before[c.input] = after
            title = f"Step {k} of {len(self.steps)}: the {step.op} node that made {step.name}"
            steps.append(
                {
                    "node": step.node,
                    "inputs": [c.input for c in step.contributions],
                    "title": f"{title}, whose grad is {_number(step.grad)}",
                    "lines": step.lines(),
                    "changes": changes,
                }
            )
        r = _operand(self.root_name)
        return {
            "root": 0,  # the root is drawn first
            "start": [f"grad {_number(g)}" for g in self.start],
            "steps": steps,
            "intro": [
                f"Start: every grad is 0, except the output's: {r}.grad = 1 (d{r}/d{r}).",
                f"Press Step (or the right arrow key) to apply the first node's _backward(); "
                f"{len(self.steps)} steps in all, in reverse topological order.",
            ],
            "done": f"Done: every grad is now d{r}/d(value), what {r}.backward() gives.",
        }

    def _svg_inline(self) -> str:
        if self._svg is None:
            svg = render(self.source, "svg").decode()
            self._svg = svg[svg.index("<svg") :]  # no XML prolog or doctype inside HTML
        return self._svg

    def html(self, document_keys: bool = False) -> str:
        """The page's HTML fragment: the heading, the buttons, the legend, the explanation, the picture
        and the script.

        With `document_keys` the arrow keys work anywhere on the page; otherwise (in Jupyter,
        whose own keys they are) only while the stepper has the focus (click it).
        """
        data = self._data()
        data["keys"] = "document" if document_keys else "self"
        digest = hashlib.sha1(self.source.encode()).hexdigest()[:10]
        uid = f"cg-stepper-{digest}-{next(_ids)}"
        assets = resources.files("chaingrad") / "assets"
        style = (assets / "stepper.css").read_text(encoding="utf-8")
        script = (assets / "stepper.js").read_text(encoding="utf-8")
        legend = "".join(
            f'<span class="cg-key"><span class="cg-swatch {cls}"></span>{html.escape(text)}</span>'
            for cls, text in LEGEND
        )
        return (
            f'<div class="cg-stepper" id="{uid}" tabindex="0">\n'
            f"<style>{style}</style>\n"
            f'<div class="cg-heading">Backpropagation through <code>{html.escape(self.expression)}</code>'
            "</div>\n"
            '<div class="cg-controls">'
            '<button type="button" class="cg-back">Back</button> '
            '<button type="button" class="cg-step">Step</button> '
            '<button type="button" class="cg-reset">Reset</button> '
            '<span class="cg-counter"></span></div>\n'
            f'<div class="cg-legend">{legend}</div>\n'
            '<div class="cg-explain"><div class="cg-title"></div><pre class="cg-lines"></pre></div>\n'
            f'<div class="cg-graph">{self._svg_inline()}</div>\n'
            f'<script type="application/json" class="cg-data">{_json_for_html(data)}</script>\n'
            f"<script>\n{script}\nchaingradStepper(document.getElementById({json.dumps(uid)}));\n</script>\n"
            "</div>\n"
        )

    def _repr_html_(self) -> str:
        return self.html()

    def page(self) -> str:
        """The whole self-contained HTML page, as `.save()` writes it."""
        title = html.escape(f"chaingrad: backpropagation through {self.expression}, step by step")
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{title}</title>\n</head>\n<body>\n{self.html(document_keys=True)}</body>\n</html>\n"
        )

    def save(self, path: str | Path) -> Path:
        """Write the page to path (.html), a file any browser opens without a network."""
        path = Path(path)
        if path.suffix.lower() not in PAGE_SUFFIXES:
            kind = repr(path.suffix) if path.suffix else "a file without an extension"
            raise ValueError(f"cannot save a stepper page as {kind}: use .html")
        path.write_text(self.page(), encoding="utf-8")
        return path


_ids = itertools.count(1)  # each page fragment gets its own element id, so several can share a notebook


def stepper(root: Value, rankdir: str = "LR", max_nodes: int | None = MAX_STEPPER_VALUES) -> Stepper:
    """An interactive page that steps through root's backpropagation one node's `_backward()` at a time,
    showing each local gradient's formula and value beside the `+=` it makes.

    Shows inline in Jupyter; `.save("backprop.html")` writes it. Computing it leaves every grad of the
    graph as it was.
    """
    return Stepper(root, rankdir, max_nodes)
