"""The graph picture: a Value's computation graph as DOT text, rendered to SVG or PNG (public as
chaingrad.viz, which also holds the stepper).

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

`cg.viz.stepper(root)`, the page that backpropagates through this picture one node at a time, lives
in chaingrad.stepper, which builds on this module.

Rendering uses a system Graphviz `dot` when one is on PATH, otherwise the
`graphviz-pure` program (`pip install graphviz-pure`; from a checkout,
`pip install -e ".[viz]"`), which takes the same flags.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
from collections import deque
from pathlib import Path
from typing import Any

from ._backend import Value
from .engine import arguments, topological_order
from .numerics import is_array as _is_array

__all__ = [
    "FORMATS",
    "RANKDIRS",
    "Drawing",
    "RenderError",
    "draw_dot",
    "render",
    "to_dot",
    "topological_order",
]

FORMATS = {".svg": "svg", ".png": "png"}
"""The picture formats `Drawing.save` writes: file extension -> renderer format."""
RANKDIRS = ("LR", "RL", "TB", "BT")
"""The layout directions: left to right (the default), right to left, top to bottom, bottom to top."""
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
    names: dict[Value, str] | None = None,
) -> tuple[str, dict[Value, int]]:
    """The DOT text, and the number of each drawn value (its node is v<number>).

    `grads` replaces the grad shown on a value; `width` gives a value's box room for that many
    characters (the stepper's page changes a grad's text as it steps); `names` replaces the labels.
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
        label = node.label if names is None else names[node]
        if label:
            fields.insert(0, _short(label))
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
