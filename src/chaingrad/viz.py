"""Graph pictures: a Value's computation graph as DOT text, rendered to SVG or PNG, and the stepper,
an interactive page that backpropagates through that picture one node at a time.

As in micrograd's trace_graph notebook, every value is a record showing its
label (when set), `data` and `grad` to 4 decimals, and every op is a small
ellipse with edges input -> op -> output. A fused op (sum, dot, softmax,
cross_entropy, ...) is one ellipse with many inputs. Constant inputs (the 2
in `x * 2`) are drawn as plain text. A batched value shows its first three
entries and the batch size (a fused layer's matrix: its first entries and shape).

Large graphs stay usable: the walk is iterative, and only the `max_nodes`
values nearest the root (and at most `max_depth` steps away) are drawn; a
note says how many were left out, and an op whose inputs were cut shows how
many it lost. When a value is used both near the root and far from it (a
weight used at every step of a long chain), the long edges would make the
layout slow; then such a use shows as a gray reference (the value's label,
or its data) instead of an edge.

`stepper(root)` computes its steps in Python on the real graph (saving every grad, calling each
node's `_backward()` in reverse topological order from a fresh start, then restoring every grad)
and shows them on the same picture with a small script of its own; the page is self-contained.

Rendering uses a system Graphviz `dot` when one is on PATH, otherwise the
`graphviz-pure` program (`pip install graphviz-pure`; from a checkout,
`pip install -e ".[viz]"`), which takes the same flags.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sysconfig
from collections import deque
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ._backend import Value
from .engine import arguments, topological_order
from .numerics import is_array as _is_array

__all__ = [
    "FORMATS",
    "Contribution",
    "Drawing",
    "RenderError",
    "Step",
    "Stepper",
    "draw_dot",
    "render",
    "stepper",
    "to_dot",
    "topological_order",
]

FORMATS = {".svg": "svg", ".png": "png"}
"""The picture formats `Drawing.save` writes: file extension -> renderer format."""
RANKDIRS = ("LR", "RL", "TB", "BT")
TIMEOUT = 60.0  # seconds one rendering may take
MAX_CONSTANTS = 8  # constant inputs drawn per op; the rest are counted
MAX_LABEL = 40  # characters of a user label shown
MAX_SKIPPED = 1000  # ranks skipped by edges in all, beyond which long edges become references
# Courier: the renderer sizes boxes by its metrics, and every browser has Courier or a monospace
# font of the same width (0.6 em), so the text fits its box wherever the SVG is shown.
FONT = "Courier"
CHAR_WIDTH = 0.6 * 14  # points per character at the default 14 pt


class RenderError(RuntimeError):
    """No renderer was found, or it failed."""


# ---------------------------------------------------------------------------
# Text: numbers to 4 decimals, and escaping for DOT strings and record fields.
# ---------------------------------------------------------------------------


def _number(x: Any) -> str:
    if isinstance(x, Value):  # a gradient made by backward(create_graph=True)
        x = x.data
    if isinstance(x, float):
        return f"{x:.4f}"
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)  # a class index, as cross_entropy's target
    if _is_array(x):
        head = ", ".join(f"{v:.4f}" for v in x.flat[:3])
        size = f"batch of {len(x)}" if x.ndim == 1 else "shape " + "x".join(map(str, x.shape))
        return f"{head}{', ...' if x.size > 3 else ''} ({size})"
    return repr(x)


def _visible(text: str) -> str:
    # Control characters would reach the renderer as layout; show them as escapes.
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _text(text: str) -> str:
    """`text` inside a DOT string, showing as it is."""
    return _visible(text).replace("\\", "\\\\").replace('"', '\\"')


def _quoted(text: str) -> str:
    return f'"{_text(text)}"'


def _record(fields: list[str]) -> str:
    """A record label with one field per string (in a record, { } | < > are syntax)."""
    escaped = ("".join("\\" + ch if ch in "{}|<>" else ch for ch in _text(f)) for f in fields)
    return '"{' + "|".join(escaped) + '}"'


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 3] + "..."


# ---------------------------------------------------------------------------
# The graph as DOT text.
# ---------------------------------------------------------------------------


def _nearest(root: Value, max_nodes: int | None, max_depth: int | None) -> tuple[dict[Value, int], int]:
    """The values to draw, breadth first from root, each with its depth; and how many lead to root."""
    drawn = {root: 0}
    seen = {root}
    queue = deque([(root, 0)])
    while queue:
        node, depth = queue.popleft()
        for child in node._prev:
            if child not in seen:
                seen.add(child)
                queue.append((child, depth + 1))
                fits = max_nodes is None or len(drawn) < max_nodes
                if fits and (max_depth is None or depth < max_depth):
                    drawn[child] = depth + 1
    return drawn, len(seen)


def _skipped_ranks(root: Value, drawn: dict[Value, int]) -> int:
    """How many ranks the drawn edges skip in all, with each value ranked by its longest path to root.

    Graphviz lays out a skipped rank as one more hidden node, so this says how slow the layout gets.
    """
    waiting = dict.fromkeys(drawn, 0)  # how many of a value's users are not ranked yet
    for node in drawn:
        for child in set(node._prev):
            if child in drawn:
                waiting[child] += 1
    rank = dict.fromkeys(drawn, 0)
    ready = [root]
    while ready:
        node = ready.pop()
        for child in set(node._prev):
            if child in drawn:
                rank[child] = max(rank[child], rank[node] + 1)
                waiting[child] -= 1
                if not waiting[child]:
                    ready.append(child)
    return sum(rank[c] - rank[n] - 1 for n in drawn for c in set(n._prev) if c in drawn)


def _check(root: Any, rankdir: str, max_nodes: int | None, max_depth: int | None) -> None:
    if not isinstance(root, Value):
        raise TypeError(f"draw a Value's graph: got {type(root).__name__} {root!r:.60}")
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir must be one of {', '.join(RANKDIRS)}, not {rankdir!r}")
    for name, limit, least in (("max_nodes", max_nodes, 1), ("max_depth", max_depth, 0)):
        if limit is not None and (type(limit) is not int or limit < least):
            raise ValueError(f"{name} must be None or an int >= {least}, not {limit!r}")


def to_dot(
    root: Value, rankdir: str = "LR", max_nodes: int | None = 200, max_depth: int | None = None
) -> str:
    """The DOT text of the graph that leads to root (at most max_nodes values; None: all)."""
    _check(root, rankdir, max_nodes, max_depth)
    return _dot(root, rankdir, max_nodes, max_depth)[0]


def _dot(
    root: Value,
    rankdir: str,
    max_nodes: int | None,
    max_depth: int | None,
    grads: dict[Value, Any] | None = None,
    width: dict[Value, int] | None = None,
) -> tuple[str, dict[Value, int]]:
    """The DOT text, and the number of each drawn value (its node is v<number>).

    `grads` replaces the grad shown on a value; `width` gives a value's box room for that many
    characters (the stepper's page changes a grad's text as it steps).
    """
    depth, total = _nearest(root, max_nodes, max_depth)
    number = {node: i for i, node in enumerate(depth)}
    # Edges that skip many ranks make Graphviz's layout slow (a weight used at every
    # step of a long chain). Then only edges into the next rank are drawn; other uses
    # of a value, farther from the root than where it is drawn, show as references.
    nearby = None if _skipped_ranks(root, depth) <= MAX_SKIPPED else depth
    lines = [
        "digraph chaingrad {",
        f"  graph [rankdir={rankdir}, fontname={FONT}];",
        f"  node [shape=record, fontname={FONT}];",
        f"  edge [fontname={FONT}];",
    ]
    for node, i in number.items():
        grad = node.grad if grads is None else grads[node]
        fields = [f"data {_number(node.data)}", f"grad {_number(grad)}"]
        if node.label:
            fields.insert(0, _short(node.label))
        size = ""
        if width is not None:
            size = f", width={(width[node] * CHAR_WIDTH + 16) / 72:.2f}"  # points to inches, with margins
        lines.append(f"  v{i} [label={_record(fields)}{size}];")
        if node._prev:
            lines += _op_lines(node, number, nearby)
    if total > len(number):
        limits = ", ".join(
            f"{name}={limit}"
            for name, limit in (("max_nodes", max_nodes), ("max_depth", max_depth))
            if limit is not None
        )
        note = f"{len(number)} of {total} values shown; {total - len(number)} left out ({limits})"
        lines.append(f"  note [shape=note, label={_quoted(note)}];")
    lines.append("}")
    return "\n".join(lines) + "\n", number


def _op_lines(node: Value, number: dict[Value, int], nearby: dict[Value, int] | None) -> list[str]:
    """The op that made `node`, with its inputs: drawn values, references, constants, a count of the rest.

    With `nearby` (depths), only an input one step deeper than `node` gets an edge; others are references.
    """
    i = number[node]
    lines = [
        f"  o{i} [label={_quoted(str(node._op))}, shape=ellipse, margin=0.05];",
        f"  o{i} -> v{i};",
    ]
    uses: dict[Value, int] = {}  # a value used twice (x * x) gets one edge, marked x2
    constants = []
    hidden = 0
    for arg in arguments(node):
        if isinstance(arg, Value):
            if arg in number:
                uses[arg] = uses.get(arg, 0) + 1
            else:
                hidden += 1
        elif len(constants) < MAX_CONSTANTS:
            constants.append(arg)
        else:
            hidden += 1
    for arg, n in uses.items():
        j = number[arg]
        times = f" [label={_quoted(f'x{n}')}]" if n > 1 else ""
        if nearby is None or nearby[arg] == nearby[node] + 1:
            lines.append(f"  v{j} -> o{i}{times};")
        else:
            name = _short(arg.label or f"data {_number(arg.data)}")
            lines.append(f"  r{i}_{j} [label={_quoted(name)}, shape=plaintext, fontcolor=gray40];")
            lines.append(f"  r{i}_{j} -> o{i} [style=dashed]{times};")
    for j, c in enumerate(constants):
        lines.append(f"  c{i}_{j} [label={_quoted(_number(c))}, shape=plaintext];")
        lines.append(f"  c{i}_{j} -> o{i};")
    if hidden:
        more = f"... {hidden} more input{'s' if hidden > 1 else ''}"
        lines.append(f"  m{i} [label={_quoted(more)}, shape=plaintext, fontcolor=gray40];")
        lines.append(f"  m{i} -> o{i} [style=dashed];")
    return lines


# ---------------------------------------------------------------------------
# Rendering.
# ---------------------------------------------------------------------------


def _renderer() -> list[str]:
    """The command that turns DOT on stdin into a picture on stdout."""
    # A virtualenv's scripts (or pip's --user ones) are often not on PATH when its python runs directly.
    scripts = (
        sysconfig.get_path("scripts"),
        sysconfig.get_path("scripts", sysconfig.get_preferred_scheme("user")),
    )
    found = (
        shutil.which("dot")
        or shutil.which("graphviz-pure")
        or shutil.which("graphviz-pure", path=os.pathsep.join(scripts))
    )
    if not found:
        raise RenderError(
            "no Graphviz renderer found to draw the graph: run `pip install graphviz-pure` (from a "
            'checkout of chaingrad: `pip install -e ".[viz]"`) or install Graphviz so that `dot` is on PATH; '
            "to_dot() gives the DOT text without one"
        )
    return [found]


def render(source: str, fmt: str = "svg") -> bytes:
    """Render DOT text to SVG or PNG bytes with Graphviz or graphviz-pure."""
    if fmt not in FORMATS.values():
        raise ValueError(f"fmt must be one of {', '.join(FORMATS.values())}, not {fmt!r}")
    command = [*_renderer(), f"-T{fmt}"]
    try:
        done = subprocess.run(command, input=source.encode(), capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RenderError(
            f"{command[0]} took more than {TIMEOUT:g} s to draw the graph; draw fewer nodes with max_nodes"
        ) from None
    except OSError as e:
        raise RenderError(f"could not run {command[0]}: {e}") from None
    if done.returncode != 0 or not done.stdout:
        stderr = done.stderr.decode(errors="replace").strip()
        raise RenderError(f"{command[0]} failed (exit code {done.returncode}): {stderr or 'no output'}")
    return done.stdout


class Drawing:
    """A drawn graph: shows inline in Jupyter and saves as SVG or PNG; `.source` is its DOT text."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._svg: str | None = None

    def __repr__(self) -> str:
        values = len(re.findall(r"^  v\d+ \[", self.source, re.M))
        return f"<Drawing of a graph with {values} values: show it in Jupyter or .save('graph.svg')>"

    def _repr_svg_(self) -> str:
        if self._svg is None:
            self._svg = render(self.source, "svg").decode()
        return self._svg

    def save(self, path: str | Path) -> Path:
        """Write the picture to path, as SVG or PNG by its extension."""
        path = Path(path)
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            kind = repr(path.suffix) if path.suffix else "a file without an extension"
            raise ValueError(f"cannot save a graph as {kind}: use one of {', '.join(FORMATS)}")
        picture = self._repr_svg_().encode() if fmt == "svg" else render(self.source, fmt)
        path.write_bytes(picture)
        return path


def draw_dot(
    root: Value, rankdir: str = "LR", max_nodes: int | None = 200, max_depth: int | None = None
) -> Drawing:
    """The picture of the graph that leads to root; shows in Jupyter, `.save("g.svg")` writes it."""
    return Drawing(to_dot(root, rankdir, max_nodes, max_depth))


# ---------------------------------------------------------------------------
# The stepper: backpropagation one node at a time, in a page of its own.
# ---------------------------------------------------------------------------

PAGE_SUFFIXES = (".html", ".htm")
MAX_STEPPER_VALUES = 1000  # values a stepper page draws by default (it draws every one)


@dataclass(frozen=True)
class Contribution:
    """What one step added to one input's grad: `grad += local * out.grad`."""

    input: int  # the input's number in the picture (its node is v<input>)
    name: str
    uses: int  # how many times the node takes this input (x * x: 2)
    local: Any  # d(node)/d(input), summed over the uses; None where it cannot be told
    added: Any  # what the step added to the input's grad
    grad: Any  # the input's grad after the step


@dataclass(frozen=True)
class Step:
    """One node's `_backward()`: its number in the picture, its op, its grad, and what it sent on."""

    node: int
    name: str
    op: str
    grad: Any  # d(root)/d(node), complete when its turn comes
    contributions: tuple[Contribution, ...]

    def lines(self) -> list[str]:
        """The chain-rule products of this step, with the numbers, one line per input."""
        lines = [f"each input: input.grad += local * {self.name}.grad"]
        for c in self.contributions:
            batched = _is_array(self.grad) and not _is_array(c.added)
            if c.local is None:
                product = _number(c.added)
            elif batched:  # a single number fed every sample: its gradient sums over the batch
                product = f"sum over the batch of {_number(c.local)} * {_number(self.grad)}"
            else:
                product = f"{_number(c.local)} * {_number(self.grad)}"
            line = f"{c.name}.grad += {product}  ->  {c.name}.grad = {_number(c.grad)}"
            if c.uses > 1:
                line += f"  ({c.name} is used {c.uses} times here: the local is the sum of its uses)"
            lines.append(line)
        return lines


def _copy(x: Any) -> Any:
    # A batched grad may be updated in place by the next step: keep what it was.
    return x.copy() if _is_array(x) else x


def _usable(x: Any) -> bool:
    """Whether x is a number a product can be divided by: nonzero and finite (every entry, for a batch)."""
    if isinstance(x, float):
        return x != 0.0 and math.isfinite(x)
    return _is_array(x) and bool(((x != 0) & (abs(x) < math.inf)).all())


def _local(node: Value, child: Value, added: Any) -> Any:
    """d(node)/d(child), summed over child's uses: what the step added, divided by node.grad.

    Where that cannot be divided out (node.grad is 0, or a batch summed into a single number), the
    engine's own record of local gradients, when it keeps one; otherwise None.
    """
    g = node.grad
    summed = _is_array(g) and not _is_array(added)
    if _usable(g) and not summed:
        return added / g
    local = getattr(node, "_local", None)
    if isinstance(local, tuple) and len(local) == len(node._prev):
        parts = [d for arg, d in zip(node._prev, local) if arg is child]
        if all(isinstance(d, float) or _is_array(d) for d in parts):
            return parts[0] if len(parts) == 1 else sum(parts[1:], parts[0])
    return None


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
            inputs = list(dict.fromkeys(node._prev))  # a value used twice (x * x) is one input, used twice
            before = [_copy(c.grad) for c in inputs]
            node._backward()
            contributions = []
            for child, old in zip(inputs, before):
                new = _copy(child.grad)
                added = new - old
                uses = sum(arg is child for arg in node._prev)
                local = _local(node, child, added)
                contributions.append(Contribution(number[child], names[child], uses, local, added, new))
            steps.append(
                Step(number[node], names[node], str(node._op), _copy(node.grad), tuple(contributions))
            )
    finally:
        for v, g in saved:
            v.grad = g
    return steps


def _name(v: Value) -> str:
    """How the page names a value: its label (in parentheses unless a plain name), or else its data."""
    if not v.label:
        return f"(data {_number(v.data)})"
    label = _short(_visible(v.label))
    return label if label.isidentifier() else f"({label})"


def _json_for_html(data: Any) -> str:
    # Inside <script>, "</script>" or "<!--" in a label would end the script; escape < > & everywhere.
    text = json.dumps(data, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class Stepper:
    """An interactive page of a graph's backpropagation: Step, Back and Reset through it, node by node.

    It shows the same picture as `draw_dot`. The page starts with every grad at 0 and the output's at 1;
    each Step applies one node's `_backward()` (in reverse topological order), highlights that node and
    the inputs it sends gradient to, and shows the products it added. Shows inline in Jupyter;
    `.save("backprop.html")` writes a self-contained page (no network needed). `.steps` holds the
    steps themselves, computed on the real graph when the stepper was made.
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
        names = {v: _name(v) for v in order}
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
            v: max(len(t) for t in [*texts[i], f"data {_number(v.data)}", _short(v.label)])
            for v, i in number.items()
        }
        start = {v: self.start[i] for v, i in number.items()}
        self.source: str = _dot(root, rankdir, None, None, grads=start, width=widest)[0]
        self.root_name = names[root]
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
            title = f'Step {k} of {len(self.steps)}: the "{step.op}" node that made {step.name}'
            steps.append(
                {
                    "node": step.node,
                    "inputs": [c.input for c in step.contributions],
                    "title": f"{title}, whose grad is {_number(step.grad)}",
                    "lines": step.lines(),
                    "changes": changes,
                }
            )
        r = self.root_name
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
        """The page's HTML fragment: the picture, the buttons, the explanation and the script.

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
        return (
            f'<div class="cg-stepper" id="{uid}" tabindex="0">\n'
            f"<style>{style}</style>\n"
            '<div class="cg-controls">'
            '<button type="button" class="cg-back">Back</button> '
            '<button type="button" class="cg-step">Step</button> '
            '<button type="button" class="cg-reset">Reset</button> '
            '<span class="cg-counter"></span></div>\n'
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
        title = html.escape(f"chaingrad: backpropagation through {self.root_name}, step by step")
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
    """An interactive page that steps through root's backpropagation one node's `_backward()` at a time.

    Shows inline in Jupyter; `.save("backprop.html")` writes it. Computing it leaves every grad of the
    graph as it was.
    """
    return Stepper(root, rankdir, max_nodes)
