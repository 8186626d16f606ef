"""Grade a learner's own micrograd: `chaingrad check engine.py` and `cg.check(Value)` run a curriculum of
checks, in the order of Karpathy's lecture, on the learner's `Value` class (and `Neuron`, `Layer`, `MLP`
where defined), each against chaingrad's own results and a numerical slope.

Each check runs in a child process of its own (forked), with a time limit: an infinite loop, a
RecursionError or a crash in the learner's code is a failed check, never a hang, and the learner's
file is imported, never changed. A failing check says which op or idea went wrong, the smallest
expression that shows it, the expected and actual value of every gradient, the lecture's idea in a
sentence or two, and draws that small graph with the learner's numbers and the wrong gradients
highlighted.
"""

from __future__ import annotations

import ast
import contextlib
import html
import importlib
import importlib.util
import io
import itertools
import math
import multiprocessing
import operator
import os
import random
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TIMEOUT", "Check", "Report", "check", "check_path"]

TIMEOUT = 5.0
"""Seconds each check may take before it counts as a hang (an infinite loop, say)."""
REL = 1e-9  # how close a learner's number must be to chaingrad's (the same formulas, maybe in another order)
SLOPE_STEP = 1e-6  # h of the central difference (f(x + h) - f(x - h)) / 2h
MAX_PICTURE_NODES = 40  # nodes of the learner's graph drawn for a failing check
DEEP = 5000  # nodes in the deep-graph check: far beyond Python's default recursion limit of 1000

_PACKAGE = str(Path(__file__).resolve().parent)  # frames from here are chaingrad's, not the learner's


# ---------------------------------------------------------------------------
# The results.
# ---------------------------------------------------------------------------


@dataclass
class Gradient:
    """One value of a check's graph: its data and grad as the learner's engine and chaingrad give them."""

    name: str
    expected: float | None
    actual: float | None
    slope: float | None = None  # the numerical slope d(output)/d(name), for a leaf
    ok: bool = True


@dataclass
class Check:
    """The verdict of one check: `passed` (a skipped check passes), which op or idea it is about
    (`idea`), what it found (`message`), and for a failing one the details that explain it."""

    name: str
    idea: str
    passed: bool
    message: str
    skipped: bool = False
    advice: str = ""  # a note that is not a failure (deep graphs, ops not defined)
    expression: str = ""
    lesson: str = ""  # the lecture's idea behind the check
    gradients: list[Gradient] = field(default_factory=list)
    where: str = ""  # the learner's line where an exception came from
    graph: dict[str, Any] | None = None  # the learner's graph, for the picture
    picture: str = ""  # the picture's file, once written
    svg: str = ""  # the picture itself, once drawn

    def to_json(self) -> dict[str, Any]:
        """The check as JSON-ready data (without the graph and the picture's text)."""
        data = asdict(self)
        del data["graph"], data["svg"]
        return data


# ---------------------------------------------------------------------------
# Expressions, evaluated on any engine's Values: each sub-expression's node is kept by its text.
# ---------------------------------------------------------------------------

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_BINARY[ast.Pow] = operator.pow


class _Program:
    """A small program: assignments `p = a*b` and a last line, the output. Evaluated with `make(name,
    number)` making each leaf, it gives the output and every named node (the leaves, each assigned name,
    each sub-expression) in the order they were made."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tree = ast.parse(source)

    def run(
        self, make: Callable[[str, float], Any], leaves: dict[str, float]
    ) -> tuple[Any, list[tuple[str, Any]]]:
        env = {name: make(name, value) for name, value in leaves.items()}
        named: list[tuple[str, Any]] = list(env.items())
        seen = {id(v) for v in env.values()}

        def name(text: str, v: Any) -> Any:
            if id(v) not in seen and not isinstance(v, (int, float)):
                seen.add(id(v))
                named.append((text, v))
            return v

        def ev(node: ast.AST) -> Any:
            if isinstance(node, ast.Constant):
                return node.value
            if isinstance(node, ast.Name):
                return env[node.id]
            text = ast.get_source_segment(self.source, node) or ast.unparse(node)
            if isinstance(node, ast.BinOp):
                return name(text, _BINARY[type(node.op)](ev(node.left), ev(node.right)))
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
                operand = node.operand
                if isinstance(operand, ast.Constant):
                    return -operand.value
                return name(text, -ev(operand))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                return name(text, getattr(ev(node.func.value), node.func.attr)())
            raise ValueError(f"the grader cannot evaluate {text!r}")

        *assignments, last = self.tree.body
        for statement in assignments:
            assert isinstance(statement, ast.Assign)
            target = statement.targets[0]
            assert isinstance(target, ast.Name)
            value = ev(statement.value)
            env[target.id] = value
            if id(value) in seen:  # the assigned name replaces the text it was made from
                named[next(i for i, (_, v) in enumerate(named) if v is value)] = (target.id, value)
            else:
                name(target.id, value)
        assert isinstance(last, ast.Expr)
        out = ev(last.value)
        return out, named


def _chaingrad(program: _Program, leaves: dict[str, float]) -> tuple[Any, list[tuple[str, Any]]]:
    """The program on chaingrad's Values, backpropagated: the oracle."""
    from ._backend import Value

    out, named = program.run(lambda n, x: Value(float(x), label=n), leaves)
    out.backward()
    return out, named


def _float(x: Any) -> float | None:
    try:
        return float(x)
    except Exception:
        return None


def _same(actual: float | None, expected: float | None, rel: float = REL) -> bool:
    if actual is None or expected is None:
        return actual is expected
    if math.isnan(expected):
        return math.isnan(actual)
    return math.isclose(actual, expected, rel_tol=rel, abs_tol=1e-12)


def _snapshot(root: Any, names: dict[int, str], expected: dict[int, float | None]) -> dict[str, Any]:
    """The learner's graph as plain data (it crosses from the child process): each node's name, data,
    grad, op and inputs, and the grad chaingrad expects where it knows one."""
    nodes, order, queue = {}, [], [root]
    while queue and len(order) < MAX_PICTURE_NODES:
        v = queue.pop(0)
        if id(v) in nodes:
            continue
        children = list(getattr(v, "_prev", ()) or ())
        nodes[id(v)] = {
            "name": names.get(id(v), ""),
            "data": _float(getattr(v, "data", None)),
            "grad": _float(getattr(v, "grad", None)),
            "op": str(getattr(v, "_op", "") or ""),
            "inputs": [id(c) for c in children],
            "expected": expected.get(id(v)),
        }
        order.append(id(v))
        queue.extend(children)
    return {"root": id(root), "nodes": {str(k): nodes[k] for k in order}}


# ---------------------------------------------------------------------------
# The curriculum.
# ---------------------------------------------------------------------------

NEURON = (("x1", 2.0), ("w1", -3.0), ("x2", 0.0), ("w2", 1.0), ("b", 6.8813735870195432))
A, B = 3.0, -2.0  # different sizes and signs, so that a local gradient taken from the wrong input shows


@dataclass(frozen=True)
class _Spec:
    name: str
    idea: str
    kind: str  # "forward", "backward", or a function's name for the checks written as code
    program: str = ""
    leaves: tuple[tuple[str, float], ...] = (("a", A), ("b", B))
    lesson: str = ""
    hint: str = ""  # what to do when the op itself is missing
    needs: str = ""  # a method the check needs; skipped with a note when the class has none
    optional: bool = False  # a form micrograd leaves out (2 ** a, a ** b): skipped with a note if refused


LESSONS = {
    "Value": "A Value wraps one number in .data and starts with .grad = 0: the gradient of the output "
    "with respect to it, unknown until backward() runs.",
    "+": "d(a + b)/da = 1 and d(a + b)/db = 1: a plus node routes its gradient unchanged to both inputs.",
    "-": "a - b is a + (-b): d/da = 1, d/db = -1.",
    "*": "d(a*b)/da = b and d(a*b)/db = a: each input's local gradient is the OTHER input's data.",
    "neg": "-a is a * -1: d(-a)/da = -1.",
    "/": "a / b is a * b**-1: d/da = 1/b, d/db = -a/b².",
    "**": "d(a**n)/da = n * a**(n-1), for a number n; d(n**a)/da = n**a * log(n).",
    "tanh": "d tanh(x)/dx = 1 - tanh(x)²: computed from the output t as 1 - t**2.",
    "exp": "d exp(x)/dx = exp(x): the local gradient is the output's own data.",
    "relu": "d relu(x)/dx = 1 where x > 0, else 0: relu passes the gradient through or stops it.",
    "log": "d log(x)/dx = 1/x.",
    "reflected": "Python turns 2 * a into a.__rmul__(2) when int's own * does not know a Value: define "
    "__radd__, __rsub__, __rmul__ and __rtruediv__ so that numbers work on either side.",
    "seed": "backward() starts by setting the output's own grad to 1 (d out/d out = 1); every other "
    "gradient is that 1 times local gradients along the way.",
    "used twice": "A value used twice gets gradient from both uses: each _backward must ADD to an input's "
    "grad (+=), not set it (=), or the second use overwrites the first.",
    "several paths": "A node must send its gradient on only after every node that uses it has sent it "
    "theirs: backward() visits nodes in reverse topological order. Recursing into the inputs right away "
    "sends a partial gradient, and sends it again for each path.",
    "zero_grad": "Gradients add up (+=) across backward() calls: zero every parameter's grad before each "
    "new backward, or the step uses the sum of all earlier gradients.",
    "neuron": "A neuron computes act(w·x + b); its parameters() are the w's and b, each getting a "
    "gradient from the loss.",
    "layer": "A layer is neurons side by side, each with its own w's and b, all fed the same inputs.",
    "mlp": "An MLP is layers of neurons; the loss (here the sum of squared errors) backpropagates to "
    "every weight and bias.",
    "deep graphs": "A recursive build_topo needs one Python stack frame per node on the longest path: "
    "past about 1000 (sys.getrecursionlimit()) it raises RecursionError. An iterative walk has no limit.",
}

_REFLECTED = "Python calls {method} on your Value when the number comes first: define {method}."


def _forward(name: str, idea: str, program: str, **kw: Any) -> _Spec:
    return _Spec(name, idea, "forward", program, lesson=LESSONS.get(idea, ""), **kw)


def _backward(name: str, idea: str, program: str, **kw: Any) -> _Spec:
    return _Spec(name, idea, "backward", program, lesson=LESSONS.get(kw.pop("lesson_of", idea), ""), **kw)


def _one(name: str, value: float) -> tuple[tuple[str, float], ...]:
    return ((name, value),)


CURRICULUM: tuple[_Spec, ...] = (
    _Spec("making a Value and reading .data and .grad", "Value", "_making", lesson=LESSONS["Value"]),
    _forward("a + b", "+", "a + b"),
    _forward("a + 1.5", "+", "a + 1.5"),
    _forward("1.5 + a", "reflected", "1.5 + a", hint=_REFLECTED.format(method="__radd__")),
    _forward("a * b", "*", "a * b"),
    _forward("a * 2.5", "*", "a * 2.5"),
    _forward("2.5 * a", "reflected", "2.5 * a", hint=_REFLECTED.format(method="__rmul__")),
    _forward("-a", "neg", "-a", hint="define __neg__ (return self * -1)"),
    _forward("a - b", "-", "a - b", hint="define __sub__ (return self + (-other))"),
    _forward("a - 1.5", "-", "a - 1.5", hint="define __sub__ (return self + (-other))"),
    _forward("1.5 - a", "reflected", "1.5 - a", hint=_REFLECTED.format(method="__rsub__")),
    _forward("a / b", "/", "a / b", hint="define __truediv__ (return self * other**-1)"),
    _forward("a / 2.5", "/", "a / 2.5", hint="define __truediv__ (return self * other**-1)"),
    _forward("2.5 / a", "reflected", "2.5 / a", hint=_REFLECTED.format(method="__rtruediv__")),
    _forward("a ** 2", "**", "a ** 2", hint="define __pow__ for a number exponent"),
    _forward("a ** -1.5", "**", "a ** -1.5", hint="define __pow__ for a number exponent"),
    _forward("2 ** a", "**", "2 ** a", optional=True, needs="__rpow__"),
    _forward("a ** b", "**", "a ** b", optional=True),
    _forward("tanh(a)", "tanh", "a.tanh()", leaves=_one("a", 0.5), needs="tanh"),
    _forward("exp(a)", "exp", "a.exp()", leaves=_one("a", 0.5), needs="exp"),
    _forward("relu(a), a > 0", "relu", "a.relu()", leaves=_one("a", 1.5), needs="relu"),
    _forward("relu(a), a < 0", "relu", "a.relu()", leaves=_one("a", -1.5), needs="relu"),
    _forward("log(a)", "log", "a.log()", leaves=_one("a", 1.5), needs="log"),
    _Spec("backward() sets the output's own grad to 1", "seed", "_seed", "a * b", lesson=LESSONS["seed"]),
    _backward("gradient of a + b", "+", "a + b"),
    _backward("gradient of a * b", "*", "a * b"),
    _backward("gradient of -a", "neg", "-a"),
    _backward("gradient of a - b", "-", "a - b"),
    _backward("gradient of a / b", "/", "a / b"),
    _backward("gradient of a ** 2", "**", "a ** 2"),
    _backward("gradient of a ** -1.5", "**", "a ** -1.5"),
    _backward("gradient of 1.5 - a", "reflected", "1.5 - a", lesson_of="-"),
    _backward("gradient of 2.5 * a", "reflected", "2.5 * a", lesson_of="*"),
    _backward("gradient of 2.5 / a", "reflected", "2.5 / a", lesson_of="/"),
    _backward("gradient of 2 ** a", "**", "2 ** a", optional=True, needs="__rpow__"),
    _backward("gradient of a ** b", "**", "a ** b", optional=True),
    _backward("gradient of tanh(a)", "tanh", "a.tanh()", leaves=_one("a", 0.5), needs="tanh"),
    _backward("gradient of exp(a)", "exp", "a.exp()", leaves=_one("a", 0.5), needs="exp"),
    _backward("gradient of relu(a), a > 0", "relu", "a.relu()", leaves=_one("a", 1.5), needs="relu"),
    _backward("gradient of relu(a), a < 0", "relu", "a.relu()", leaves=_one("a", -1.5), needs="relu"),
    _backward("gradient of log(a)", "log", "a.log()", leaves=_one("a", 1.5), needs="log"),
    _backward("a node used twice: a + a", "used twice", "a + a", leaves=_one("a", A)),
    _backward("a node used twice: a * a", "used twice", "a * a", leaves=_one("a", A)),
    _backward("c used directly and through c * c", "several paths", "c = a * b\nc + c * c"),
    _backward("a node reached by several paths", "several paths", "p = a * b\nq = p + a\np * q"),
    _backward("a neuron: n reached by several paths", "several paths", "n = x1*w1 + x2*w2 + b\nn * n + n",
              leaves=NEURON),
    _backward("the lecture's neuron, tanh made of exp", "several paths",
              "n = x1*w1 + x2*w2 + b\ne = (2*n).exp()\n(e - 1) / (e + 1)", leaves=NEURON, needs="exp"),
    _Spec("zero_grad between runs", "zero_grad", "_zero_grad", "a * b + a", lesson=LESSONS["zero_grad"]),
    _Spec("a neuron's output and gradients", "neuron", "_neuron", lesson=LESSONS["neuron"]),
    _Spec("a layer's outputs and gradients", "layer", "_layer", lesson=LESSONS["layer"]),
    _Spec("a small MLP's loss and gradients", "mlp", "_mlp", lesson=LESSONS["mlp"]),
    _Spec(f"a graph {DEEP} nodes deep", "deep graphs", "_deep", lesson=LESSONS["deep graphs"]),
)  # fmt: skip


# ---------------------------------------------------------------------------
# Running one check (in the child process).
# ---------------------------------------------------------------------------


class _Failed(Exception):
    """A check's verdict, raised from deep inside it."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


def _leaf(Value: type) -> Callable[[str, float], Any]:
    return lambda name, x: Value(x)


def _run_learner(
    program: _Program, Value: type, leaves: dict[str, float]
) -> tuple[Any, list[tuple[str, Any]]]:
    return program.run(_leaf(Value), leaves)


def _slope(program: _Program, Value: type, leaves: dict[str, float], leaf: str) -> float | None:
    """d(output)/d(leaf) by central differences of the learner's own forward pass."""
    h = SLOPE_STEP * max(1.0, abs(leaves[leaf]))
    try:
        up = _float(program.run(_leaf(Value), {**leaves, leaf: leaves[leaf] + h})[0].data)
        down = _float(program.run(_leaf(Value), {**leaves, leaf: leaves[leaf] - h})[0].data)
    except Exception:
        return None
    return None if up is None or down is None else (up - down) / (2 * h)


def _forward_check(spec: _Spec, ns: dict[str, Any]) -> dict[str, Any]:
    program, leaves = _Program(spec.program), dict(spec.leaves)
    expected, _ = _chaingrad(program, leaves)
    try:
        out, _ = _run_learner(program, ns["Value"], leaves)
    except (TypeError, AssertionError, AttributeError) as e:
        if spec.optional:
            return {
                "passed": True,
                "skipped": True,
                "message": f"skipped: your Value does not do {spec.program} "
                f"({type(e).__name__}: {e}); micrograd's does not either",
                "advice": spec.lesson,
            }
        if _learner_frame(e) is None:  # Python's own error: the op is missing
            raise _Failed(f"{spec.program} fails: {type(e).__name__}: {e}. {spec.hint}".strip()) from None
        raise
    data = _float(getattr(out, "data", None))
    if data is None:
        raise _Failed(f"{spec.program} gave {out!r:.80}, not a Value with a number in .data")
    want = float(expected.data)
    if not _same(data, want):
        raise _Failed(
            f"{spec.program} = {data!r}, expected {want!r}",
            gradients=[Gradient(spec.program, want, data, ok=False)],
        )
    return {"passed": True, "message": f"{spec.program} = {data:.6g}"}


def _backward_check(spec: _Spec, ns: dict[str, Any], only_seed: bool = False) -> dict[str, Any]:
    Value = ns["Value"]
    program, leaves = _Program(spec.program), dict(spec.leaves)
    _, expected = _chaingrad(program, leaves)
    try:
        out, named = _run_learner(program, Value, leaves)
    except (TypeError, AssertionError, AttributeError) as e:
        if spec.optional:
            return {
                "passed": True,
                "skipped": True,
                "message": f"skipped: your Value does not do {spec.program}",
            }
        if _learner_frame(e) is None:
            raise _Failed(
                f"{_display(spec.program)} fails before backward(): {type(e).__name__}: {e}"
            ) from None
        raise
    if not callable(getattr(out, "backward", None)):
        raise _Failed("your Value has no backward() method yet")
    names = {id(v): n for n, v in named}
    out.backward()
    want = dict(zip((n for n, _ in expected), (float(v.grad) for _, v in expected)))
    rows = []
    for (name, v), (_, ev) in zip(named, expected):
        actual = _float(getattr(v, "grad", None))
        slope = _slope(program, Value, leaves, name) if name in leaves else None
        rows.append(Gradient(name, float(ev.grad), actual, slope, _same(actual, float(ev.grad), 1e-7)))
    graph = _snapshot(out, names, {id(v): want[n] for n, v in named})
    seed = _float(getattr(out, "grad", None))
    if seed != 1.0:
        raise _Failed(
            f"after {_display(spec.program)}.backward(), the output's grad is {seed!r}, not 1: backward() "
            "must start by setting self.grad = 1",
            gradients=rows,
            graph=graph,
            idea="seed",
            lesson=LESSONS["seed"],
        )
    if only_seed:
        return {"passed": True, "message": "the output's grad is 1 after backward()"}
    wrong = [r for r in rows if not r.ok]
    if wrong:
        listed = ", ".join(f"{r.name}.grad = {_show(r.actual)} (expected {_show(r.expected)})" for r in wrong)
        message = f"wrong gradients for {_display(spec.program)}: {listed}"
        inputs = [r for r in rows if r.name in leaves]
        if all(r.actual == 0.0 for r in inputs) and any(r.expected for r in inputs):
            # Nothing reached the inputs at all: the op's _backward never ran, or was never attached.
            message += (
                ". No gradient reached the inputs: does the op attach its function (out._backward = "
                "_backward), and does backward() call v._backward() for every node?"
            )
        raise _Failed(message, gradients=rows, graph=graph)
    leaf_grads = ", ".join(f"d/d{r.name} = {r.expected:.6g}" for r in rows if r.name in leaves)
    return {"passed": True, "message": f"{_display(spec.program)}: {leaf_grads}", "gradients": rows}


def _display(program: str) -> str:
    return "; ".join(line.strip() for line in program.splitlines())


def _show(x: float | None) -> str:
    return "missing" if x is None else f"{x:.6g}"


def _making(spec: _Spec, ns: dict[str, Any]) -> dict[str, Any]:
    Value = ns["Value"]
    for x in (3.0, -2, 0.5):
        v = Value(x)
        if _float(getattr(v, "data", None)) != float(x):
            raise _Failed(f"Value({x!r}).data is {getattr(v, 'data', 'missing')!r}, expected {x!r}")
        if _float(getattr(v, "grad", None)) != 0.0:
            raise _Failed(f"Value({x!r}).grad is {getattr(v, 'grad', 'missing')!r}, expected 0")
    return {"passed": True, "message": "Value(3.0).data == 3.0 and .grad == 0"}


def _seed(spec: _Spec, ns: dict[str, Any]) -> dict[str, Any]:
    return _backward_check(spec, ns, only_seed=True)


def _zero_grad(spec: _Spec, ns: dict[str, Any]) -> dict[str, Any]:
    Value = ns["Value"]
    program, leaves = _Program(spec.program), dict(spec.leaves)
    params = {n: Value(x) for n, x in leaves.items()}

    def run() -> list[float | None]:
        out, _ = program.run(lambda n, x: params[n], leaves)
        out.backward()
        return [_float(p.grad) for p in params.values()]

    first = run()
    second = run()  # no zeroing: the grads add up
    for p in params.values():
        p.grad = 0
    third = run()
    if any(not _same(t, f) for t, f in zip(third, first)):
        raise _Failed(
            f"after setting every grad to 0, backward() of {spec.program} gave {third}, not {first} as the "
            "first time: a backward() must not depend on what an earlier one left behind"
        )
    doubled = all(_same(s, 2 * f) for s, f in zip(second, first))
    note = "" if doubled else f" (without zeroing, the second run gave {second})"
    message = f"the same gradients after zeroing; without zeroing they add up to twice as much{note}"
    mlp = ns.get("MLP")
    if mlp is not None and callable(getattr(mlp, "zero_grad", None)):
        model = mlp(2, [3, 1])
        out = model([1.0, -2.0])
        out = out[0] if isinstance(out, list) else out
        out.backward()
        model.zero_grad()
        left = [p for p in model.parameters() if _float(p.grad) != 0.0]
        if left:
            raise _Failed(
                f"after model.zero_grad(), {len(left)} of {len(model.parameters())} parameters still "
                f"have a grad (the first: {left[0].grad!r})"
            )
        message += "; MLP.zero_grad() zeroes every parameter"
    return {"passed": True, "message": message}


ACTIVATIONS = ("tanh", "relu", "linear")


def _activate(act: Any, kind: str) -> Any:
    return act.tanh() if kind == "tanh" else act.relu() if kind == "relu" else act


def _mirror(
    params: list[Any], sizes: list[int], kinds: tuple[str, ...]
) -> tuple[list[Any], Callable[[list[float]], Any]]:
    """A chaingrad MLP with the learner's parameters (micrograd's layout: per layer, per neuron, the w's
    then b) and these activations, one per layer."""
    from ._backend import Value

    mine = [Value(float(p.data)) for p in params]
    it = iter(mine)
    layers = [
        [([next(it) for _ in range(nin)], next(it)) for _ in range(nout)]
        for nin, nout in itertools.pairwise(sizes)
    ]

    def forward(x: list[float]) -> Any:
        xs: list[Any] = list(x)
        for layer, kind in zip(layers, kinds):
            outs = []
            for w, b in layer:
                act = b
                for wi, xi in zip(w, xs):
                    act = act + wi * xi
                outs.append(_activate(act, kind))
            xs = outs
        return xs[0] if len(xs) == 1 else xs

    return mine, forward


def _squared_error(outs: Any, ys: Any) -> Any:
    """sum of (out - y)**2 over a model's outputs (one Value, or a list of them) and their targets."""
    outs = outs if isinstance(outs, list) else [outs]
    ys = ys if isinstance(ys, list) else [ys]
    if len(outs) != len(ys):
        raise _Failed(f"the model gave {len(outs)} outputs; expected {len(ys)}")
    total = None
    for out, y in zip(outs, ys):
        term = (out - y) ** 2
        total = term if total is None else total + term
    return total


def _model_check(
    model: Any, sizes: list[int], samples: list[tuple[list[float], Any]], what: str
) -> dict[str, Any]:
    params = list(model.parameters())
    count = sum((nin + 1) * nout for nin, nout in itertools.pairwise(sizes))
    if len(params) != count:
        raise _Failed(
            f"{what}.parameters() has {len(params)} Values; expected {count} (each neuron's w's and b)"
        )

    def learner_loss() -> Any:
        loss = None
        for x, y in samples:
            term = _squared_error(model(x), y)
            loss = term if loss is None else loss + term
        return loss

    loss = learner_loss()
    data = _float(loss.data)
    hidden = len(sizes) - 2
    tried = []
    for kinds in [(k,) * hidden + (last,) for k in ("tanh", "relu") for last in ACTIVATIONS]:
        mine, forward = _mirror(params, sizes, kinds)
        expected = None
        for x, y in samples:
            term = _squared_error(forward(x), y)
            expected = term if expected is None else expected + term
        tried.append(f"{'/'.join(kinds)}: {expected.data:.6g}")
        if _same(data, float(expected.data), 1e-7):
            break
    else:
        raise _Failed(
            f"{what}'s loss is {data!r}, which matches none of these activations (one per layer, "
            f"with parameters() as w's then b per neuron): {'; '.join(tried)}"
        )
    expected.backward()
    loss.backward()
    rows = [
        Gradient(f"parameter {i}", float(m.grad), _float(p.grad))
        for i, (p, m) in enumerate(zip(params, mine))
    ]
    for r in rows:
        r.ok = _same(r.actual, r.expected, 1e-7)
    wrong = [r for r in rows if not r.ok]
    if wrong:
        raise _Failed(f"{len(wrong)} of {len(rows)} gradients of {what}'s loss are wrong", gradients=rows)
    return {
        "passed": True,
        "message": f"{what}'s loss {data:.6g} ({'/'.join(kinds)}) and its {len(rows)} "
        "gradients match chaingrad's",
    }


def _neuron(spec: _Spec, ns: dict[str, Any]) -> dict[str, Any]:
    neuron = ns.get("Neuron")
    if neuron is None:
        return {"passed": True, "skipped": True, "message": "skipped: no Neuron class given"}
    random.seed(1)
    return _model_check(neuron(3), [3, 1], [([2.0, 3.0, -1.0], 1.0)], "your Neuron")


def _layer(spec: _Spec, ns: dict[str, Any]) -> dict[str, Any]:
    layer = ns.get("Layer")
    if layer is None:
        return {"passed": True, "skipped": True, "message": "skipped: no Layer class given"}
    random.seed(2)
    return _model_check(layer(3, 2), [3, 2], [([2.0, 3.0, -1.0], [1.0, -1.0])], "your Layer")


def _mlp(spec: _Spec, ns: dict[str, Any]) -> dict[str, Any]:
    mlp = ns.get("MLP")
    if mlp is None:
        return {"passed": True, "skipped": True, "message": "skipped: no MLP class given"}
    random.seed(1)
    xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
    return _model_check(mlp(3, [4, 4, 1]), [3, 4, 4, 1], list(zip(xs, [1.0, -1.0, -1.0, 1.0])), "your MLP")


def _deep(spec: _Spec, ns: dict[str, Any]) -> dict[str, Any]:
    Value = ns["Value"]
    x = Value(0.5)
    y = x
    for _ in range(DEEP):
        y = y + 1.0
    try:
        y.backward()
    except RecursionError:
        return {
            "passed": True,
            "message": "advice only",
            "advice": f"backward() on a chain of {DEEP} nodes raised "
            "RecursionError: " + LESSONS["deep graphs"] + " chaingrad's backward() walks the graph with a "
            "stack of its own (see chaingrad.viz.topological_order).",
        }
    if not _same(_float(x.grad), 1.0):
        raise _Failed(
            f"backward() through {DEEP} additions gave x.grad = {x.grad!r}, expected 1",
            gradients=[Gradient("x", 1.0, _float(x.grad), ok=False)],
        )
    return {"passed": True, "message": f"backward() through {DEEP} nodes works"}


_CODE_CHECKS: dict[str, Callable[[_Spec, dict[str, Any]], dict[str, Any]]] = {
    "_making": _making,
    "_seed": _seed,
    "_zero_grad": _zero_grad,
    "_neuron": _neuron,
    "_layer": _layer,
    "_mlp": _mlp,
    "_deep": _deep,
}


def _learner_frame(e: BaseException) -> str | None:
    """The learner's line the exception came from (the innermost frame outside chaingrad and Python's
    own library), as `File "...", line N, in f: code`."""
    stdlib = os.path.dirname(os.__file__)
    for frame in reversed(traceback.extract_tb(e.__traceback__)):
        f = frame.filename
        if f.startswith(_PACKAGE) or f.startswith(stdlib) or "site-packages" + os.sep + "_pytest" in f:
            continue
        return f'File "{f}", line {frame.lineno}, in {frame.name}: {(frame.line or "").strip()}'
    return None


def _run_spec(spec: _Spec, ns: dict[str, Any]) -> dict[str, Any]:
    """One check's result as plain data; every failure is caught here."""
    try:
        if spec.needs and not hasattr(ns["Value"], spec.needs):
            what = f"{spec.needs}() method" if not spec.needs.startswith("__") else spec.needs
            return {
                "passed": True,
                "skipped": True,
                "message": f"skipped: your Value has no {what}",
                "advice": spec.lesson,
            }
        if spec.kind == "forward":
            return _forward_check(spec, ns)
        if spec.kind == "backward":
            return _backward_check(spec, ns)
        return _CODE_CHECKS[spec.kind](spec, ns)
    except _Failed as f:
        details = dict(f.details)
        return {"passed": False, "message": str(f), **details}
    except RecursionError as e:
        return {
            "passed": False,
            "message": f"RecursionError in your code: {e}",
            "where": _learner_frame(e) or "",
        }
    except Exception as e:
        where = _learner_frame(e) or ""
        return {"passed": False, "message": f"your code raised {type(e).__name__}: {e}", "where": where}


# ---------------------------------------------------------------------------
# Isolation: each check in a forked child with a time limit.
# ---------------------------------------------------------------------------


def _in_child(work: Callable[[], dict[str, Any]], send: Any, forked: bool = True) -> None:
    out = io.StringIO()
    if forked:
        # For good, not just around work(): nothing the learner's code leaves running (a thread, an
        # atexit function) may write into the report; multiprocessing flushed the parent's streams.
        sys.stdout = sys.stderr = out
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):  # the learner's prints
            result = work()
    except BaseException as e:  # even SystemExit from the learner's module is a verdict
        result = {
            "passed": False,
            "message": f"your code raised {type(e).__name__}: {e}",
            "where": _learner_frame(e) or "",
        }
    try:
        send.send(result)
    except Exception as e:  # a result that does not pickle
        send.send({"passed": False, "message": f"the check's result could not be read: {e}"})
    finally:
        send.close()


def _isolated(work: Callable[[], dict[str, Any]], timeout: float) -> dict[str, Any]:
    """work() in a forked child process, killed after `timeout` seconds; or, where there is no fork
    (Windows), in a thread, abandoned after `timeout` seconds."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return _in_thread(work, timeout)
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    import warnings

    with warnings.catch_warnings():  # Python 3.12+ warns about fork in a process with threads (Jupyter)
        warnings.simplefilter("ignore", DeprecationWarning)
        child = ctx.Process(target=_in_child, args=(work, send), daemon=True)
        child.start()
    send.close()
    try:
        if recv.poll(timeout):
            try:
                return recv.recv()
            except EOFError:
                child.join(1.0)
                return {
                    "passed": False,
                    "message": f"your code crashed the Python process "
                    f"(exit code {child.exitcode}): a C extension, os._exit, or a stack overflow",
                }
        return {
            "passed": False,
            "message": f"did not finish within {timeout:g} s: an infinite loop? "
            "(a while loop whose condition never changes, or a _backward that calls backward())",
        }
    finally:
        recv.close()
        if child.is_alive():
            child.kill()
        child.join(5.0)


def _in_thread(work: Callable[[], dict[str, Any]], timeout: float) -> dict[str, Any]:
    box: list[dict[str, Any]] = []

    def run() -> None:
        class Pipe:
            def send(self, r: dict[str, Any]) -> None:
                box.append(r)

            def close(self) -> None:
                pass

        _in_child(work, Pipe(), forked=False)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if box:
        return box[0]
    return {"passed": False, "message": f"did not finish within {timeout:g} s: an infinite loop?"}


# ---------------------------------------------------------------------------
# Loading the learner's code.
# ---------------------------------------------------------------------------

CLASSES = ("Value", "Neuron", "Layer", "MLP")


def _load(sources: Iterable[str]) -> dict[str, Any]:
    """The classes defined by the given files (.py) or importable modules; later sources add to earlier."""
    ns: dict[str, Any] = {}
    for source in sources:
        path = Path(source)
        if source.endswith(".py") or path.is_file():
            if not path.is_file():
                raise _Failed(f"no such file: {source}")
            folder = str(path.resolve().parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)  # so that its own imports (from engine import Value) work
            name = f"_chaingrad_learner_{path.stem}_{uuid.uuid4().hex[:8]}"
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            try:
                module = importlib.import_module(source)
            except ModuleNotFoundError as e:
                if e.name is None or not source.startswith(e.name):
                    raise  # the module was found; something it imports was not
                raise _Failed(
                    f"no file {source} and no module named {source!r}: give the path of a .py file "
                    "(engine.py) or the name of a module Python can import (micrograd.engine)"
                ) from None
        ns.update({k: getattr(module, k) for k in CLASSES if isinstance(getattr(module, k, None), type)})
    if "Value" not in ns:
        raise _Failed(
            "no class Value found: define `class Value:` in the file (or pass the module that does)"
        )
    return ns


def _load_here(sources: list[str]) -> dict[str, Any]:
    """_load in this process, once a child has shown that it finishes: what the code prints is dropped,
    and sys.path and sys.modules are left as they were (the classes keep their modules alive), so that
    two learners' files named engine.py never meet."""
    path, modules = list(sys.path), set(sys.modules)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return _load(sources)
    finally:
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            del sys.modules[name]


def _loaded_ok(sources: list[str]) -> dict[str, Any]:
    try:
        ns = _load(sources)
    except _Failed as f:
        return {"passed": False, "message": str(f)}
    except SyntaxError as e:
        return {
            "passed": False,
            "message": f"SyntaxError: {e.msg}",
            "where": f'File "{e.filename}", line {e.lineno}: {(e.text or "").strip()}',
        }
    return {"passed": True, "message": "found " + ", ".join(k for k in CLASSES if k in ns)}


# ---------------------------------------------------------------------------
# The report.
# ---------------------------------------------------------------------------


class Report:
    """The checks' verdicts. `passed` is True when every check passed (advice and skips allowed);
    `str(report)` is the text `chaingrad check` prints; in Jupyter it shows as HTML with the pictures
    of failing checks inline; `.save_pictures(folder)` writes them as SVG files."""

    def __init__(self, checks: list[Check], title: str) -> None:
        self.checks = checks
        self.title = title

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        """The checks that failed, in curriculum order."""
        return [c for c in self.checks if not c.passed]

    def to_json(self) -> dict[str, Any]:
        """`{"checks": [...]}`, one object per check: name, idea, passed, skipped, message, ..."""
        return {"checks": [c.to_json() for c in self.checks]}

    def summary(self) -> str:
        """One line: how many checks passed, failed and were skipped."""
        skipped = sum(c.skipped for c in self.checks)
        passed = sum(c.passed and not c.skipped for c in self.checks)
        return (
            f"{self.title}: {len(self.checks)} checks, {passed} passed, {len(self.failed)} failed, "
            f"{skipped} skipped"
        )

    def __str__(self) -> str:
        lines = [self.summary(), ""]
        for c in self.checks:
            mark = "FAIL" if not c.passed else "skip" if c.skipped else "ok"
            lines.append(f"{mark:>4}  [{c.idea}] {c.name}")
            if c.advice and c.passed and not c.skipped:
                lines.append(f"      advice: {c.advice}")
        for c in self.failed:
            lines += ["", *_explain(c)]
        if self.failed:
            first = self.failed[0]
            lines += [
                "",
                f"Start with the first failure, [{first.idea}] {first.name}: later checks often fail "
                "for the same reason.",
            ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def draw(self) -> None:
        """Draw the picture of each failing check that has a graph (needs a Graphviz renderer)."""
        for c in self.failed:
            if c.graph and not c.svg:
                c.svg = draw_graph(c)

    def save_pictures(self, folder: str | Path) -> list[Path]:
        """Write each failing check's picture to folder (made if needed) as an SVG file; the paths."""
        self.draw()
        folder = Path(folder)
        written = []
        for i, c in enumerate(self.checks, 1):
            if c.svg:
                folder.mkdir(parents=True, exist_ok=True)
                slug = "".join(ch if ch.isalnum() else "-" for ch in c.name).strip("-")
                path = folder / f"{i:02d}-{slug[:50]}.svg"
                path.write_text(c.svg, encoding="utf-8")
                c.picture = str(path)
                written.append(path)
        return written

    def _repr_html_(self) -> str:
        # Jupyter: the summary, the first failure in full with its picture (start there), and the list of
        # checks and the other failures folded away.
        first = self.failed[:1]
        with contextlib.suppress(Exception):  # no renderer: the text says it all
            for c in first:
                if c.graph and not c.svg:
                    c.svg = draw_graph(c)
        rows = []
        for c in self.checks:
            colour = "#b3261e" if not c.passed else "#777" if c.skipped else "#1e7b34"
            mark = "FAIL" if not c.passed else "skip" if c.skipped else "ok"
            advice = f" <i>— {html.escape(c.advice)}</i>" if c.advice and not c.skipped else ""
            rows.append(
                f'<div><b style="color:{colour}">{mark}</b> [{html.escape(c.idea)}] {html.escape(c.name)}'
                f"{advice}</div>"
            )
        verdict = "every check passed" if self.passed else f"start with: {html.escape(self.failed[0].name)}"
        parts = [f"<div><b>{html.escape(self.summary())}</b> ({verdict})</div>"]
        for c in first:
            parts.append(f"<pre style='white-space:pre-wrap'>{html.escape(chr(10).join(_explain(c)))}</pre>")
            if c.svg:
                parts.append(f"<div style='overflow:auto'>{c.svg[c.svg.index('<svg') :]}</div>")
        parts.append(f"<details><summary>all {len(self.checks)} checks</summary>{''.join(rows)}</details>")
        others = self.failed[1:]
        if others:
            text = html.escape("\n\n".join("\n".join(_explain(c)) for c in others))
            parts.append(
                f"<details><summary>the other {len(others)} failure{'s' if len(others) > 1 else ''}</summary>"
                f"<pre style='white-space:pre-wrap'>{text}</pre></details>"
            )
        return '<div class="cg-check">' + "\n".join(parts) + "</div>"

    def _repr_svg_(self) -> str | None:
        """The first failing check's picture, for front ends that show SVG but not HTML."""
        first = self.failed[:1]
        if not first or not first[0].graph:
            return None
        with contextlib.suppress(Exception):
            if not first[0].svg:
                first[0].svg = draw_graph(first[0])
        return first[0].svg or None


def _explain(c: Check) -> list[str]:
    """What a failing check teaches, as lines of text."""
    lines = [f"FAIL [{c.idea}] {c.name}", f"  {c.message}"]
    if c.where:
        lines.append(f"  in your code: {c.where}")
    if c.expression:
        lines.append(f"  the smallest expression that shows it: {c.expression}")
    if c.gradients:
        lines.append(f"  {'value':<14} {'expected grad':>14} {'your grad':>14} {'slope':>14}")
        for g in c.gradients:
            slope = "" if g.slope is None else f"{g.slope:.6g}"
            flag = "" if g.ok else "   <- wrong"
            lines.append(f"  {g.name:<14} {_show(g.expected):>14} {_show(g.actual):>14} {slope:>14}{flag}")
    if c.lesson:
        lines.append(f"  the idea: {c.lesson}")
    if c.picture:
        lines.append(f"  picture: {c.picture}")
    return lines


def draw_graph(c: Check) -> str:
    """The SVG of a failing check's graph as the learner's engine built it: each value's name, data and
    grad, the wrong grads in red with the expected one beside them."""
    from .graph import _quoted, _record, render

    graph = c.graph or {}
    nodes = graph.get("nodes", {})
    lines = [
        "digraph check {",
        "  graph [rankdir=LR, fontname=Courier];",
        "  node [shape=record, fontname=Courier];",
        "  edge [fontname=Courier];",
    ]
    for key, n in nodes.items():
        fields = [f"data {_show(n['data'])}", f"grad {_show(n['grad'])}"]
        if n["name"]:
            fields.insert(0, n["name"])
        style = ""
        expected = n.get("expected")
        if expected is not None and not _same(n["grad"], expected, 1e-7):
            fields.append(f"expected {_show(expected)}")
            style = ', style=filled, fillcolor="#f8d0cc", color="#b3261e", penwidth=2'
        lines.append(f"  v{key} [label={_record(fields)}{style}];")
        if n["inputs"]:
            lines.append(f"  o{key} [label={_quoted(n['op'] or '?')}, shape=ellipse, margin=0.05];")
            lines.append(f"  o{key} -> v{key};")
            for child in dict.fromkeys(n["inputs"]):
                if str(child) in nodes:
                    lines.append(f"  v{child} -> o{key};")
    lines.append(f"  title [shape=plaintext, label={_quoted(c.name)}];")
    lines.append("}")
    return render("\n".join(lines) + "\n", "svg").decode()


# ---------------------------------------------------------------------------
# The entry points.
# ---------------------------------------------------------------------------


def _checks(run: Callable[[_Spec], dict[str, Any]]) -> list[Check]:
    out = []
    for spec in CURRICULUM:
        r = run(spec)
        gradients = [g if isinstance(g, Gradient) else Gradient(**g) for g in r.get("gradients", [])]
        failed = not r.get("passed", False)
        overflow = ("did not finish", "crashed", "RecursionError", "MemoryError")
        if failed and spec.kind == "_deep" and any(w in r.get("message", "") for w in overflow):
            # A deep graph that overflows the stack, runs out of time or crashes the process teaches the
            # same thing as a RecursionError: advice, not a failure. Only wrong numbers fail it.
            r = {"passed": True, "message": "advice only", "advice": f"{r.get('message', '')}. {spec.lesson}"}
            failed = False
        out.append(
            Check(
                name=spec.name,
                idea=r.get("idea", spec.idea),
                passed=not failed,
                message=r.get("message", ""),
                skipped=bool(r.get("skipped", False)),
                advice=r.get("advice", "") if not failed else "",
                expression=_display(spec.program) if failed and spec.program else "",
                lesson=r.get("lesson", spec.lesson) if failed else spec.lesson,
                gradients=gradients if failed else [],
                where=r.get("where", ""),
                graph=r.get("graph"),
            )
        )
    return out


def check(
    Value: type,
    Neuron: type | None = None,
    Layer: type | None = None,
    MLP: type | None = None,
    timeout: float = TIMEOUT,
) -> Report:
    """Grade your own Value class (and Neuron, Layer, MLP if you pass them) against chaingrad, in the
    lecture's order: making a Value, each operator forward, the gradients of each op, a node used twice,
    a node reached by several paths, zero_grad, a neuron and an MLP, deep graphs.

        report = cg.check(Value)      # in Jupyter, shows each check and, for a failing one, why
        report.passed                 # True when every check passed

    Each check runs in a child process with a time limit of `timeout` seconds, so an infinite loop or
    a crash is a failed check. Nothing you pass is changed in this process.
    """
    if isinstance(Value, (str, os.PathLike)):
        raise TypeError(
            f"check() takes your Value class itself; to grade a file, use "
            f"chaingrad.grader.check_path({str(Value)!r}) or, in a terminal, `chaingrad check {Value}`"
        )
    if not isinstance(Value, type):
        raise TypeError(
            f"check() takes your Value class (the class itself, not an instance): got {Value!r:.60}"
        )
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    ns = {"Value": Value, "Neuron": Neuron, "Layer": Layer, "MLP": MLP}
    ns = {k: v for k, v in ns.items() if v is not None}
    checks = _checks(lambda spec: _isolated(lambda: _run_spec(spec, ns), timeout))
    return Report(checks, f"chaingrad check of {getattr(Value, '__module__', '?')}.{Value.__name__}")


def check_path(sources: str | list[str], timeout: float = TIMEOUT) -> Report:
    """Grade the Value class (and Neuron, Layer, MLP where defined) of a .py file or importable module
    name, or of several (`["engine.py", "nn.py"]`). The files are imported first in a child process
    (a file that does not import, or hangs, is one failed check showing its line), then here to run the
    checks, each in a child of its own; they are never changed."""
    sources = [sources] if isinstance(sources, str) else list(sources)
    title = f"chaingrad check {' '.join(sources)}"
    loaded = _isolated(lambda: _loaded_ok(sources), timeout)
    if not loaded.get("passed"):
        failed = Check(
            "importing your code", "import", False, loaded.get("message", ""), where=loaded.get("where", "")
        )
        return Report([failed], title)

    if "fork" in multiprocessing.get_all_start_methods():
        ns = _load_here(sources)  # imported once; each check's child starts from it
        return Report(_checks(lambda spec: _isolated(lambda: _run_spec(spec, ns), timeout)), title)
    # Without fork the checks run in threads of this process: import in each, as the check began.
    return Report(_checks(lambda spec: _isolated(lambda: _run_spec(spec, _load(sources)), timeout)), title)
