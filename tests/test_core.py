"""The compiled core (chaingrad._core) where it differs from the reference engine in how, not what: its
free list of nodes, the nodes it keeps out of the collector's sight (the cycles: test_collector.py), its
install beside engine.py's op table and layers' activations, and its loops over many Values (one signal
that Python must do the work, keyword arguments). The tests that need the core are skipped without it; the
others run on both engines (on the reference engine they check the same promises, which it keeps without
tricks)."""

from __future__ import annotations

import gc
import os
import re
import struct
import subprocess
import sys
import tracemalloc
from array import array
from pathlib import Path

import numpy as np
import pytest
from twins import record

import chaingrad as cg
from chaingrad import Value, engine
from chaingrad.numerics import ACTIVATIONS

# ---------------------------------------------------------------------------
# Memory: freed nodes kept for reuse, nodes of numbers only out of the collector's sight
# ---------------------------------------------------------------------------


def _blocks_left_by(make_garbage, times=300):
    """Memory blocks still allocated after `times` calls of make_garbage() and a collection."""
    make_garbage()
    gc.collect()
    before = sys.getallocatedblocks()
    for _ in range(times):
        make_garbage()
    gc.collect()
    return sys.getallocatedblocks() - before


def _grads_that_are_graphs():
    x = Value(0.5)
    y = (x * x).tanh() * x + x.exp()  # x.grad's graph reaches x again, through y
    y.backward(create_graph=True)
    x.grad.backward()


def _micrograd_closures():
    a, b = Value(2.0), Value(-3.0)
    out = Value(a.data * b.data, (a, b), "*")

    def _backward():  # the closure holds out, and out holds the closure
        a.grad += b.data * out.grad
        b.grad += a.data * out.grad

    out._backward = _backward
    (out * a + 1.0).backward()


class _Remembering(Value):
    """A Value that keeps a list of the nodes made from it: a cycle through its __dict__."""

    def __init__(self, data):
        super().__init__(data)
        self.users = []


def _a_subclass_that_remembers_its_users():
    a = _Remembering(1.5)
    b = a * 2.0 + 1.0
    a.users.append(b)
    b.backward()


def _grads_holding_their_node():
    x = Value(1.0)
    y = x * 3.0 + x
    y.grad = [y]  # odd, but allowed: a cycle y -> list -> y
    z = y * y
    z._ctx = {"z": z}


def _an_empty_context_filled_later():
    x = Value(2.0)
    y = x * x
    y._ctx = {}  # empty, so CPython does not track the dict yet
    z = y + 1.0
    y._ctx["z"] = z  # now y -> dict -> z -> y


@pytest.mark.parametrize(
    "make_garbage",
    [
        _grads_that_are_graphs,
        _micrograd_closures,
        _a_subclass_that_remembers_its_users,
        _grads_holding_their_node,
        _an_empty_context_filled_later,
    ],
)
def test_the_collector_frees_graphs_with_reference_cycles(make_garbage):
    # The compiled engine keeps nodes that hold only numbers and inputs out of the collector's
    # sight; a node that comes to hold anything else must be seen, or its cycle is never freed.
    assert _blocks_left_by(make_garbage) < 100


def _nodes_of_every_state():
    """Nodes holding everything a node can hold, then freed: labels, Value grads, contexts, closures."""
    x = Value(0.5, label="x")
    y = (x * x).tanh() * x + x.exp()
    y.backward(create_graph=True)
    y.label = "y"
    y._ctx = {"y": [y]}
    _micrograd_closures()
    _grads_holding_their_node()


def test_a_node_made_after_others_were_freed_carries_nothing_of_theirs():
    # The compiled core reuses freed nodes; whatever an old node held must be gone from the new one.
    for _ in range(50):
        _nodes_of_every_state()
    fresh = [Value(1.5), Value(2.0) * 3.0, -Value(4.0), Value(1.0) + Value(2.0)]
    assert [v.data for v in fresh] == [1.5, 6.0, -4.0, 3.0]
    for v in fresh:
        assert (v.grad, v.label) == (0.0, "")
        assert type(v.grad) is float
    assert fresh[0]._ctx is None and fresh[1]._ctx == (fresh[1]._prev[0], 3.0)
    assert [v._op for v in fresh] == ["", "*", "neg", "+"]
    assert [len(v._prev) for v in fresh] == [0, 1, 1, 2]
    if cg.backend == "compiled":  # nodes of numbers only stay out of the collector's sight
        assert not any(gc.is_tracked(v) for v in fresh)
    fresh[3].backward()
    assert [p.grad for p in fresh[3]._prev] == [1.0, 1.0]


def test_freed_nodes_kept_for_reuse_are_bounded_and_a_full_collection_frees_them():
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        v = Value(1.0)
        for _ in range(200_000):
            v = v * 1.0
        built = tracemalloc.get_traced_memory()[0] - start
        del v
        kept = tracemalloc.get_traced_memory()[0] - start
        gc.collect()
        left = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert kept < built / 2, f"{kept} of {built} bytes still held after the graph was freed"
    assert left < 2**16, f"{left} bytes still held after a full collection"


# ---------------------------------------------------------------------------
# Install: beside the op table it mirrors and the activations layers take
# ---------------------------------------------------------------------------


def _install_in_a_fresh_process(setup: str, entry: str, errors: str = "RuntimeError") -> str:
    """What _core.install says, in a process of its own, of the interface with `entry` replaced by the
    variable of that name that `setup` makes: "installed", or "refused: " and the error (of `errors`)."""
    code = (
        "import types\n"
        "from chaingrad import _backend, _core, engine\n"
        f"{setup}\n"
        f"interface = types.SimpleNamespace(**{{**vars(_backend._INTERFACE), {entry!r}: {entry}}})\n"
        "try:\n"
        "    _core.install(interface)\n"
        "    print('installed')\n"
        f"except ({errors}) as e:\n"
        "    print('refused:', e)\n"
    )
    env = {**os.environ, "CHAINGRAD_PURE": "1"}  # so that importing chaingrad does not install it first
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


TABLES = {
    "as it is": "primitives = engine.PRIMITIVES",
    "two ops swapped": "p = list(engine.PRIMITIVES); p[0], p[1] = p[1], p[0]; primitives = tuple(p)",
    "an op missing": "primitives = engine.PRIMITIVES[:-1]",
    "/ with local gradients": (
        "fake = str.__new__(engine.Op, '/'); fake.forward, fake.local, fake.rule = engine.DIV.forward, "
        "(lambda x, y, out: (1 / y, -out / y)), None\n"
        "primitives = tuple(fake if op.name == '/' else op for op in engine.PRIMITIVES)"
    ),
    "* taking one input": (
        "fake = str.__new__(engine.Op, '*'); fake.forward, fake.local, fake.rule = (lambda x: x), "
        "(lambda x, out: (1.0,)), None\n"
        "primitives = tuple(fake if op.name == '*' else op for op in engine.PRIMITIVES)"
    ),
}


@pytest.mark.parametrize("table", TABLES.values(), ids=TABLES)
def test_the_compiled_core_installs_only_beside_the_op_table_it_mirrors(table):
    # At import the core checks its table against engine.PRIMITIVES (names, order, arity, local gradients
    # or a rule); a mismatch is an error, after which chaingrad runs the reference engine with a warning.
    pytest.importorskip("chaingrad._core", reason="the compiled core was not built")
    said = _install_in_a_fresh_process(table, "primitives")
    if table == TABLES["as it is"]:
        assert said == "installed"
    else:
        assert said.startswith("refused:") and "core" in said, said


def _statements(lines):
    """The `NAME = Op(...)` statements among lines, each one string with its whitespace collapsed."""
    found = []
    for line in lines:
        if re.match(r"[A-Z_]+ = Op\(", line):
            found.append(line)
        elif found and found[-1].count("(") > found[-1].count(")"):
            found[-1] += line  # the statement goes on (POW's rule)
    return [" ".join(statement.split()) for statement in found]


def test_the_cores_op_table_quotes_engine_py_s_table_line_by_line_in_its_order():
    # _kernels.c writes each op of the table under the line of engine.py it mirrors, then its entry: the
    # quotes must be engine.py's lines as they are, in their order, each above the entry of its op
    root = Path(__file__).resolve().parent.parent / "src" / "chaingrad"
    table = (root / "engine.py").read_text().split("# fmt: off")[1].split("# fmt: on")[0]
    kernels = (root / "_kernels.c").read_text().split("const Primitive *const PRIMITIVES")[0]  # the table
    quotes = re.findall(r"/\* ([A-Z_]+ = Op\(.*?) \*/", kernels, re.S)
    quoted = [" ".join(quote.replace("\n *", "\n").split()) for quote in quotes]
    assert quoted == _statements(table.splitlines())
    names = [quote.split(" = ")[0] for quote in quotes]
    assert [getattr(engine, name) for name in names] == list(engine.PRIMITIVES)
    entries = re.findall(r'const Primitive ([A-Z_]+) = \{"([^"]+)",', kernels)
    assert entries == [(name, getattr(engine, name).name) for name in names]
    positions = [kernels.index(f"/* {name} = Op(") for name in names]
    entry_positions = [kernels.index(f"const Primitive {name} = {{") for name in names]
    assert positions == sorted(positions)
    assert all(
        p < e < next_p for p, e, next_p in zip(positions, entry_positions, [*positions[1:], len(kernels)])
    )


ACTIVATION_MAPS = {
    "as it is": "activations = _backend._INTERFACE.activations",
    "relu applying +": "activations = {**_backend._INTERFACE.activations, 'relu': engine.ADD}",
    "relu applying the str 'relu'": "activations = {**_backend._INTERFACE.activations, 'relu': 'relu'}",
    "relu applying an op not in the table": (
        "mine = engine.Op('mine', lambda x: x, lambda x, out: (1.0,))\n"
        "activations = {**_backend._INTERFACE.activations, 'relu': mine}"
    ),
    "a tuple of names": "activations = ('relu', 'tanh', 'sigmoid', None)",
}


@pytest.mark.parametrize("activations", ACTIVATION_MAPS.values(), ids=ACTIVATION_MAPS)
def test_the_compiled_core_installs_only_with_activations_that_are_one_input_ops_of_its_table(activations):
    # layers.affine's activations reach the core through the interface, each name with the op it applies:
    # the core applies the op of its own table that is that very object, so any other is refused.
    pytest.importorskip("chaingrad._core", reason="the compiled core was not built")
    said = _install_in_a_fresh_process(activations, "activations", "RuntimeError, TypeError")
    if activations == ACTIVATION_MAPS["as it is"]:
        assert said == "installed"
    else:
        assert said.startswith("refused:") and "activation" in said, said


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_affine_on_single_numbers_makes_the_nodes_of_dot_then_the_activation(activation):
    # layers.affine's Python path on single numbers, written out: a dot per row (the bias added last),
    # then the Value method of the activation's name. The compiled core's affine knows the names and
    # their ops only from the interface (numerics.ACTIVATIONS): it must make exactly these nodes.
    def layer():
        ws = [[Value(0.5), Value(-1.25)], [Value(2.0), Value(0.75)]]
        return ws, [Value(-0.3), Value(1.7)], [Value(0.1), Value(2.0)]  # one output < 0, one > 0

    if cg.backend == "compiled":
        assert type(cg.affine).__name__ == "builtin_function_or_method"  # the core's twin runs
    ws, xs, bs = layer()
    outs = cg.affine(ws, xs, bs, activation)
    cg.sum(outs).backward()
    ws, xs, bs = layer()
    by_hand = [cg.dot(w, xs, b) for w, b in zip(ws, bs)]
    by_hand = by_hand if activation is None else [getattr(z, activation)() for z in by_hand]
    cg.sum(by_hand).backward()
    assert [record(out) for out in outs] == [record(out) for out in by_hand]
    assert [out._op for out in outs] == [activation or "dot"] * 2


# ---------------------------------------------------------------------------
# The loops over many Values: NotImplemented where Python must do the work, keywords for many arguments
# ---------------------------------------------------------------------------


def _sgd(params, buffers):
    return dict(
        params=params, lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False, buffers=buffers, steps=1
    )


def _adam(params, m, v):
    return dict(
        params=params, lr=0.1, weight_decay=0.0, eps=1e-8, beta1=0.9, beta2=0.999, exp_avg=m, exp_avg_sq=v,
        step_size=0.1, bias_correction2_sqrt=1.0, decoupled=False,
    )  # fmt: skip


def test_the_loops_give_not_implemented_and_change_nothing_where_python_must_do_the_work():
    from chaingrad import _backend

    batch = Value(1.0)
    batch.data = np.array([1.0, 2.0])  # not a float: Python's loops take it
    p = Value(2.0)
    p.grad = 0.5
    params, buffers = [p, batch], array("d", [0.25, 0.0])
    m, v = array("d", [0.0, 0.0]), array("d", [0.0, 0.0])
    assert _backend.sgd_step(**_sgd(params, buffers)) is NotImplemented
    assert _backend.adam_step(**_adam(params, m, v)) is NotImplemented
    assert _backend.floats(params) is NotImplemented
    assert (p.data, p.grad) == (2.0, 0.5)
    assert (list(buffers), list(m), list(v)) == ([0.25, 0.0], [0.0, 0.0], [0.0, 0.0])
    for not_doubles in ([0.0], array("f", [0.0]), array("d", [0.0, 0.0]), b"\0" * 8):  # a list, floats, size
        assert _backend.sgd_step(**_sgd([p], not_doubles)) is NotImplemented
        assert _backend.adam_step(**_adam([p], not_doubles, array("d", [0.0]))) is NotImplemented
    same = array("d", [0.0])
    assert _backend.adam_step(**_adam([p], same, same)) is NotImplemented  # one buffer for both
    assert (p.data, p.grad) == (2.0, 0.5)
    if cg.backend == "compiled":
        assert _backend.core.zero_grad((p,)) is NotImplemented  # not a list
        assert p.grad == 0.5
        assert _backend.core.zero_grad([p]) is None and p.grad == 0.0
        p.grad = 0.5
        buffer = array("d", [0.25])
        assert _backend.sgd_step(**_sgd([p], buffer)) is None and p.data == 2.0 - 0.1 * (0.9 * 0.25 + 0.5)
        assert buffer[0] == 0.9 * 0.25 + 0.5
        assert _backend.floats([p, p]) == struct.pack("2d", p.data, p.data)


@pytest.mark.skipif(cg.backend != "compiled", reason="the compiled core's functions")
def test_the_optimizers_loops_take_their_arguments_by_keyword_only():
    from chaingrad._backend import core

    p = Value(2.0)
    p.grad = 0.5
    sgd = _sgd([p], [0.0])
    with pytest.raises(TypeError, match="by keyword"):
        core.sgd_step(*sgd.values())
    with pytest.raises(TypeError, match="by keyword"):
        core.sgd_step(**{k: x for k, x in sgd.items() if k != "steps"})
    with pytest.raises(TypeError, match=r"invalid keyword|unexpected keyword"):
        core.sgd_step(**{**{k: x for k, x in sgd.items() if k != "steps"}, "step": 1})
    adam = _adam([p], [0.0], [0.0])
    with pytest.raises(TypeError, match="by keyword"):
        core.adam_step(*adam.values())
    assert (p.data, p.grad) == (2.0, 0.5)
