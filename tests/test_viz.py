"""Graph pictures: what the DOT text and the rendered SVG/PNG show, limits, escaping, and errors."""

import json
import math
import re
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from conftest import load_script
from PIL import Image

import chaingrad as cg
from chaingrad import Value, viz

SVG = "{http://www.w3.org/2000/svg}"


def parse_svg(svg):
    """The rendered graph as Graphviz laid it out: {node id: [texts]} and [(tail, head)] edges."""
    root = ET.fromstring(svg)
    nodes, edges = {}, []
    for g in root.iter(f"{SVG}g"):
        title = g.find(f"{SVG}title")
        if g.get("class") == "node":
            nodes[title.text] = [t.text for t in g.iter(f"{SVG}text")]
        elif g.get("class") == "edge":
            tail, head = title.text.split("->")
            edges.append((tail, head))
    return nodes, edges


def rendered(root, **options):
    return parse_svg(viz.draw_dot(root, **options)._repr_svg_())


def records(nodes):
    """The value nodes: those showing a grad field."""
    return {k: texts for k, texts in nodes.items() if any(t.startswith("grad ") for t in texts)}


def node_showing(nodes, text):
    (found,) = [k for k, texts in nodes.items() if text in texts]
    return found


def inputs_of(edges, node):
    return [tail for tail, head in edges if head == node]


@pytest.fixture
def neuron():
    """micrograd's neuron: o = tanh(x*w + b), after backward; and the expected data and grads."""
    x, w, b = Value(2.0, label="x"), Value(-3.0, label="w"), Value(6.8813735870195432, label="b")
    xw = x * w
    xw.label = "xw"
    n = xw + b
    n.label = "n"
    o = n.tanh()
    o.label = "o"
    o.backward()
    dn = 1 - math.tanh(-6.0 + 6.8813735870195432) ** 2
    expected = {
        "x": (2.0, -3.0 * dn),
        "w": (-3.0, 2.0 * dn),
        "b": (6.8813735870195432, dn),
        "xw": (-6.0, dn),
        "n": (0.8813735870195432, dn),
        "o": (math.tanh(0.8813735870195432), 1.0),
    }
    return o, expected


def test_every_value_shows_label_data_and_grad_and_every_op_its_name(neuron):
    o, expected = neuron
    source = viz.to_dot(o)
    nodes, edges = rendered(o)
    assert len(records(nodes)) == 6
    for label, (data, grad) in expected.items():
        for text in (label, f"data {data:.4f}", f"grad {grad:.4f}"):
            assert text in source
        texts = nodes[node_showing(nodes, label)]
        assert f"data {data:.4f}" in texts and f"grad {grad:.4f}" in texts
    # edges run input -> op -> output
    x, w, b, xw, n = (node_showing(nodes, name) for name in ("x", "w", "b", "xw", "n"))
    (mul,) = inputs_of(edges, xw)
    assert nodes[mul] == ["*"] and sorted(inputs_of(edges, mul)) == sorted([x, w])
    (add,) = inputs_of(edges, n)
    assert nodes[add] == ["+"] and sorted(inputs_of(edges, add)) == sorted([xw, b])
    (tanh,) = inputs_of(edges, node_showing(nodes, "o"))
    assert nodes[tanh] == ["tanh"] and inputs_of(edges, tanh) == [n]


def test_fused_ops_are_one_op_node_with_many_inputs():
    a = [Value(float(i), label=f"a{i}") for i in range(4)]
    b = [Value(1.0 + i, label=f"b{i}") for i in range(4)]
    logits = [Value(0.5 * i, label=f"z{i}") for i in range(3)]
    loss = cg.dot(a, b, 0.25) + cg.cross_entropy(logits, 2)
    loss.backward()
    nodes, edges = rendered(loss)
    (dot,) = [k for k, t in nodes.items() if t == ["dot"]]
    assert sorted(inputs_of(edges, dot)) == sorted(
        [node_showing(nodes, f"a{i}") for i in range(4)]
        + [node_showing(nodes, f"b{i}") for i in range(4)]
        + [node_showing(nodes, "0.2500")]  # the constant start
    )
    (ce,) = [k for k, t in nodes.items() if t == ["cross_entropy"]]
    assert sorted(inputs_of(edges, ce)) == sorted(
        [node_showing(nodes, f"z{i}") for i in range(3)] + [node_showing(nodes, "2")]  # the target
    )
    p = [math.exp(0.5 * i) / sum(math.exp(0.5 * j) for j in range(3)) for i in range(3)]
    assert f"grad {p[0]:.4f}" in nodes[node_showing(nodes, "z0")]
    assert f"grad {p[2] - 1:.4f}" in nodes[node_showing(nodes, "z2")]


def test_constants_feed_their_op_and_a_value_used_twice_has_one_edge():
    x = Value(1.5, label="x")
    y = x * x - 2.5
    y.backward()
    nodes, edges = rendered(y)
    x_id = node_showing(nodes, "x")
    (sub,) = [k for k, t in nodes.items() if t == ["-"]]
    assert node_showing(nodes, "2.5000") in inputs_of(edges, sub)
    (mul,) = [k for k, t in nodes.items() if t == ["*"]]
    assert inputs_of(edges, mul) == [x_id]
    assert "x2" in viz.to_dot(y)  # the edge is marked as two uses
    assert f"grad {2 * 1.5:.4f}" in nodes[x_id]


def test_a_value_shared_nearby_keeps_all_its_edges():
    a, b = Value(-2.0, label="a"), Value(3.0, label="b")
    e = a * b
    e.label = "e"
    f = (e + 1.0) * e
    f.backward()
    nodes, edges = rendered(f)
    e_id = node_showing(nodes, "e")
    used_by = [head for tail, head in edges if tail == e_id]
    assert sorted(nodes[op][0] for op in used_by) == ["*", "+"]
    assert f"grad {2 * -6.0 + 1:.4f}" in nodes[e_id]


def test_a_batched_value_shows_its_first_entries_and_the_batch_size():
    xs = Value(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), label="xs")
    w = Value(0.5, label="w")
    loss = cg.batch_mean(xs * w)
    loss.backward()
    source = viz.to_dot(loss)
    assert "data 1.0000, 2.0000, 3.0000, ... (batch of 5)" in source
    assert "grad 0.1000, 0.1000, 0.1000, ... (batch of 5)" in source
    assert f"grad {3.0:.4f}" in source  # w's grad: the mean of xs
    nodes, _ = rendered(loss)
    assert "batch_mean" in [t for texts in nodes.values() for t in texts]


def test_a_fused_layer_shows_its_matrix_by_shape():
    weights = [[Value(0.5), Value(-1.0)], [Value(2.0), Value(0.25)], [Value(1.0), Value(1.0)]]
    xs = [Value(np.array([1.0, 2.0, 3.0, 4.0])), Value(np.array([0.0, 1.0, 0.0, 1.0]))]
    loss = cg.batch_mean(cg.sum(cg.affine(weights, xs, activation="relu")))
    loss.backward()
    nodes, _ = rendered(loss)
    shown = [t for texts in nodes.values() for t in texts]
    first_row = np.maximum(0.5 * xs[0].data - xs[1].data, 0.0)
    assert f"data {first_row[0]:.4f}, {first_row[1]:.4f}, {first_row[2]:.4f}, ... (shape 3x4)" in shown


def test_second_order_grads_show_their_data():
    x = Value(3.0, label="x")
    y = x**3
    y.backward(create_graph=True)
    assert isinstance(x.grad, Value)
    assert f"grad {3 * 3.0**2:.4f}" in viz.to_dot(y)


def test_svg_is_well_formed_and_shows_in_jupyter(neuron, tmp_path):
    from IPython.core.formatters import DisplayFormatter

    o, _ = neuron
    drawing = viz.draw_dot(o)
    path = drawing.save(tmp_path / "g.svg")
    assert path == tmp_path / "g.svg"
    assert ET.parse(path).getroot().tag == f"{SVG}svg"
    assert path.read_text() == drawing._repr_svg_()
    bundle, _ = DisplayFormatter().format(drawing)  # what Jupyter shows
    assert "<svg" in bundle["image/svg+xml"]
    assert drawing.source == viz.to_dot(o)


@pytest.mark.parametrize("name", ["g.png", "G.PNG"])
def test_png_is_a_valid_image(neuron, tmp_path, name):
    o, _ = neuron
    path = viz.draw_dot(o, rankdir="TB").save(tmp_path / name)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 10


WEIRD = [
    'a"b',
    "{x|y}",
    "<tag> & more",
    "back\\slash \\n \\l \\N",
    '"]; evil [label="pwn',
    "üñí 漢字",
    "}{|<>\"'\\",
]


@pytest.mark.parametrize("label", WEIRD)
def test_any_label_shows_as_it_is_and_cannot_change_the_graph(label):
    x = Value(1.0, label=label)
    y = x * 2.0
    y.label = label
    op = cg.Op(label, lambda v: v, lambda v, out: (1.0,))  # op names can be anything too
    z = op(y)
    z.backward()
    nodes, edges = rendered(z)
    assert len(nodes) == 6 and len(edges) == 5  # x, y, z, the constant 2, and the two ops
    shown = [t for texts in nodes.values() for t in texts]
    assert shown.count(label) == 3  # x's and y's labels, and the op's name
    assert not any("evil" in k for k in nodes)


def test_control_characters_show_as_escapes():
    x = Value(1.0, label="new\nline\ttab")
    nodes, _ = rendered(x * 2.0)
    assert "new\\nline\\ttab" in [t for texts in nodes.values() for t in texts]


def test_max_nodes_draws_the_values_nearest_the_root_and_says_how_many_were_left_out():
    y = Value(0.0, label="start")
    for _ in range(1000):
        y = y * 0.5
    y.label = "root"
    nodes, _ = rendered(y, max_nodes=50)
    assert len(records(nodes)) == 50
    assert "root" in [t for texts in nodes.values() for t in texts]
    notes = [t for texts in nodes.values() for t in texts if "left out" in t]
    assert notes == ["50 of 1001 values shown; 951 left out (max_nodes=50)"]
    assert "... 1 more input" in [t for texts in nodes.values() for t in texts]
    assert viz.to_dot(y, max_nodes=None).count("|grad ") == 1001
    assert "left out" not in viz.to_dot(y, max_nodes=None)


def test_max_depth_limits_the_steps_from_the_root():
    y = Value(0.0)
    for _ in range(10):
        y = y.tanh()
    nodes, _ = rendered(y, max_depth=3)
    assert len(records(nodes)) == 4
    assert any("7 left out (max_nodes=200, max_depth=3)" in t for texts in nodes.values() for t in texts)
    assert len(records(rendered(y, max_depth=0)[0])) == 1


def test_a_10000_node_graph_stays_usable():
    # A weight and an input used at every step: the shape that makes layouts slow.
    x, w = Value(0.5, label="x"), Value(0.9, label="w")
    y = x
    for _ in range(5000):
        y = y * w + x
    y.backward()
    assert viz.to_dot(y, max_nodes=None).count("|grad ") == 10002
    nodes, _ = rendered(y)
    assert len(records(nodes)) == 200
    shown = [t for texts in nodes.values() for t in texts]
    assert "200 of 10002 values shown; 9802 left out (max_nodes=200)" in shown
    # x is drawn once; its uses farther from the root point back to it by name
    assert len([k for k, texts in records(nodes).items() if "x" in texts]) == 1
    assert shown.count("x") > 10


def test_a_deep_chain_needs_no_recursion():
    y = Value(1.0)
    for _ in range(20_000):  # far beyond the recursion limit
        y = y + 1.0
    assert "left out" in viz.to_dot(y)


def test_no_renderer_is_a_clear_error_and_to_dot_still_works(neuron, tmp_path, monkeypatch):
    o, _ = neuron
    monkeypatch.setattr(viz.shutil, "which", lambda *args, **kwargs: None)
    drawing = viz.draw_dot(o)
    with pytest.raises(viz.RenderError, match=r"pip install graphviz-pure.*Graphviz"):
        drawing.save(tmp_path / "g.svg")
    with pytest.raises(viz.RenderError, match="to_dot"):
        drawing._repr_svg_()
    assert not (tmp_path / "g.svg").exists()
    assert "tanh" in viz.to_dot(o)


def test_the_renderer_is_found_next_to_the_interpreter(neuron, monkeypatch):
    o, _ = neuron
    monkeypatch.setenv("PATH", "")
    assert b"<svg" in viz.render(viz.to_dot(o))


def test_a_failing_renderer_is_a_clear_error_with_its_stderr(monkeypatch):
    with pytest.raises(viz.RenderError, match="syntax"):
        viz.render("digraph { a -> }")
    script = "import sys; sys.stderr.write('renderer trouble'); sys.exit(3)"
    monkeypatch.setattr(viz, "_renderer", lambda: [sys.executable, "-c", script])
    with pytest.raises(viz.RenderError, match=r"exit code 3.*renderer trouble"):
        viz.render("digraph { a }")


def test_a_hanging_renderer_times_out(monkeypatch):
    monkeypatch.setattr(viz, "_renderer", lambda: [sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(viz, "TIMEOUT", 0.5)
    with pytest.raises(viz.RenderError, match=r"took more than 0\.5 s"):
        viz.render("digraph { a }")


@pytest.mark.parametrize("name", ["g.jpg", "g.svg.txt", "g"])
def test_saving_to_another_extension_names_the_supported_ones(neuron, tmp_path, name):
    o, _ = neuron
    with pytest.raises(ValueError, match=r"\.svg, \.png"):
        viz.draw_dot(o).save(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((2.0,), TypeError),
        ((Value(1.0), "XY"), ValueError),
        ((Value(1.0), "LR", 0), ValueError),
        ((Value(1.0), "LR", 2.5), ValueError),
        ((Value(1.0), "LR", 10, -1), ValueError),
    ],
)
def test_bad_arguments_are_clear_errors(args, error):
    with pytest.raises(error, match=r"Value|rankdir|max_nodes|max_depth"):
        viz.to_dot(*args)
    with pytest.raises(error):
        viz.draw_dot(*args)


def test_render_takes_svg_or_png_only():
    with pytest.raises(ValueError, match="svg, png"):
        viz.render("digraph { a }", "pdf")


def test_viz_is_reachable_from_the_package():
    assert cg.viz.draw_dot is viz.draw_dot


# ---------------------------------------------------------------------------
# The stepper: the steps, computed in Python (the browser tests below click through the page)
# ---------------------------------------------------------------------------


def lecture_neuron():
    """The lecture's neuron o = tanh(x1*w1 + x2*w2 + b), labelled, before backward; and its values."""
    o = load_script("docs/make_pictures.py").lecture_neuron()
    return o, {v.label: v for v in viz.topological_order(o)}


def torch_neuron_grads():
    """d o / d leaf for the lecture's neuron, by PyTorch in float64."""
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in NEURON_LEAVES.items()}
    o = torch.tanh(t["x1"] * t["w1"] + t["x2"] * t["w2"] + t["b"])
    o.backward()
    return {k: x.grad.item() for k, x in t.items()}


NEURON_LEAVES = {"x1": 2.0, "x2": 0.0, "w1": -3.0, "w2": 1.0, "b": 6.8813735870195432}


def test_the_stepper_applies_each_nodes_backward_in_reverse_topological_order():
    o, v = lecture_neuron()
    s = viz.stepper(o)
    assert [(step.name, step.op) for step in s.steps] == [
        ("o", "tanh"),
        ("n", "+"),
        ("(x1*w1 + x2*w2)", "+"),
        ("(x2*w2)", "*"),  # micrograd's build_topo order: depth first, inputs in order
        ("(x1*w1)", "*"),
    ]
    # each step's local gradients, from the calculus of each op (not from the engine)
    dn = 1 - math.tanh(v["n"].data) ** 2
    expected = [
        {"n": dn},
        {"x1*w1 + x2*w2": 1.0, "b": 1.0},
        {"x1*w1": 1.0, "x2*w2": 1.0},
        {"x2": v["w2"].data, "w2": v["x2"].data},
        {"x1": v["w1"].data, "w1": v["x1"].data},
    ]
    out_grads = [1.0, dn, dn, dn, dn]
    for step, locals_, g in zip(s.steps, expected, out_grads):
        assert step.grad == pytest.approx(g, rel=1e-12)
        assert {s.names[c.input].strip("()"): c.local for c in step.contributions} == pytest.approx(
            locals_, rel=1e-12
        )
        for c in step.contributions:
            assert c.added == pytest.approx(c.local * g, rel=1e-12, abs=1e-300)
            assert c.uses == 1
    # after the last step: what backward() gives, and what PyTorch gives
    o.backward()
    picture_order = list(s.names)
    for name, grad in zip(picture_order, s.final):
        label = name.strip("()")
        assert grad == pytest.approx(v[label].grad, rel=1e-12)
        assert f"{grad:.4f}" == f"{v[label].grad:.4f}"
    for name, grad in torch_neuron_grads().items():
        assert s.final[picture_order.index(name)] == pytest.approx(grad, rel=1e-12)


def test_each_step_shows_its_chain_rule_products_with_the_numbers():
    o, v = lecture_neuron()
    s = viz.stepper(o)
    dn = 1 - math.tanh(v["n"].data) ** 2
    first, *_, last = s.steps
    assert first.lines() == [
        "each input: input.grad += local * o.grad",
        f"n.grad += {dn:.4f} * 1.0000  ->  n.grad = {dn:.4f}",
    ]
    assert last.lines()[1:] == [
        f"x1.grad += -3.0000 * {dn:.4f}  ->  x1.grad = {-3 * dn:.4f}",
        f"w1.grad += 2.0000 * {dn:.4f}  ->  w1.grad = {2 * dn:.4f}",
    ]
    steps = s._data()["steps"]
    assert [step["lines"] for step in steps] == [step.lines() for step in s.steps]
    assert steps[1]["title"] == f'Step 2 of 5: the "+" node that made n, whose grad is {dn:.4f}'


def test_a_value_an_op_uses_twice_gets_both_contributions():
    x = Value(1.5, label="x")
    y = x * x
    y.label = "y"
    a = Value(-2.0, label="a")
    b = a + a  # the lecture's bug: with = instead of +=, a.grad would be 1
    b.label = "b"
    for root, leaf, local in ((y, x, 2 * 1.5), (b, a, 2.0)):
        (step,) = viz.stepper(root).steps
        (c,) = step.contributions
        assert (c.uses, c.local, c.added, c.grad) == (2, local, local, local)
        assert "used 2 times" in step.lines()[1]
        root.backward()
        assert c.grad == leaf.grad


def test_a_zero_gradient_still_shows_the_local_gradient_where_the_engine_keeps_it():
    x, w = Value(2.0, label="x"), Value(-3.0, label="w")
    xw = x * w
    xw.label = "xw"
    y = xw.relu()  # xw < 0: relu sends 0 back, so xw.grad = 0 and no local can be divided out
    s = viz.stepper(y)
    assert s.steps[0].contributions[0].local == 0.0  # relu's slope at -6, divided out of 0 / 1
    mul = s.steps[1]
    assert mul.grad == 0.0
    shown = {c.name: c.local for c in mul.contributions}
    if isinstance(getattr(xw, "_local", None), tuple):
        assert shown == {"x": -3.0, "w": 2.0}  # d(xw)/dx = w, d(xw)/dw = x
        assert mul.lines()[1] == "x.grad += -3.0000 * 0.0000  ->  x.grad = 0.0000"
    else:
        assert shown == {"x": None, "w": None}
        assert mul.lines()[1] == "x.grad += 0.0000  ->  x.grad = 0.0000"


def test_a_batch_steps_like_backward_and_says_where_it_sums_over_the_batch():
    xs = Value(np.array([1.0, 2.0, 3.0, 4.0]), label="xs")
    w = Value(0.5, label="w")
    p = xs * w
    p.label = "p"
    loss = cg.batch_mean(p)
    loss.label = "loss"
    s = viz.stepper(loss)
    mean, mul = s.steps
    assert mean.contributions[0].local == pytest.approx([0.25] * 4)
    shown = {c.name: c for c in mul.contributions}
    assert shown["xs"].local == pytest.approx([0.5] * 4)  # d(p)/d(xs) = w, per sample
    assert "w.grad += sum over the batch of" in mul.lines()[2]
    loss.backward()
    final = dict(zip(s.names, s.final))
    assert final["xs"] == pytest.approx(xs.grad, rel=1e-12)
    assert final["w"] == pytest.approx(w.grad, rel=1e-12) and w.grad == pytest.approx(np.mean(xs.data))


def test_the_stepper_leaves_every_grad_of_the_graph_as_it_was():
    o, v = lecture_neuron()
    o.backward()
    o.backward()  # leaves hold twice their gradient now; intermediate nodes once
    x = Value(3.0, label="x")
    cube = x**3
    cube.backward(create_graph=True)  # a grad that is a Value
    before = {k: n.grad for k, n in v.items()}
    viz.stepper(o)
    viz.stepper(cube)
    assert {k: n.grad for k, n in v.items()} == before
    assert all(type(n.grad) is float for n in v.values())
    assert isinstance(x.grad, Value) and x.grad.data == 27.0
    assert v["x1"].grad == pytest.approx(2 * torch_neuron_grads()["x1"])


def failing_backward(g, x, out):
    raise RuntimeError("a broken op")


BROKEN = cg.Op("test_viz_broken_backward", lambda v: v * 1.0, rule=failing_backward)


def test_the_grads_are_restored_even_when_a_step_fails():
    x = Value(2.0, label="x")
    y = x * 3.0
    z = BROKEN(y) * 2.0  # the first step (z's *) works, the second fails
    for v, g in ((x, 7.0), (y, -1.5), (z, 0.25)):
        v.grad = g
    with pytest.raises(RuntimeError, match="a broken op"):
        viz.stepper(z)
    assert (x.grad, y.grad, z.grad, z._prev[0].grad) == (7.0, -1.5, 0.25, 0.0)


def test_the_topological_order_needs_no_recursion():
    x = Value(1.0, label="x")
    y = x
    for _ in range(30_000):  # far beyond the recursion limit
        y = y * 1.0001
    order = viz.topological_order(y)
    assert len(order) == 30_001 and order[0] is x and order[-1] is y
    s = viz.stepper(y, max_nodes=None)  # the page would be too big to draw; the steps are fine
    assert len(s.steps) == 30_000
    y.backward()
    assert s.final[s.names.index("x")] == pytest.approx(x.grad, rel=1e-9)


def test_the_stepper_refuses_what_it_cannot_show():
    with pytest.raises(TypeError, match="Value"):
        viz.stepper(2.0)
    with pytest.raises(ValueError, match=r"batch of 3 samples.*batch_mean"):
        viz.stepper(Value(np.array([1.0, 2.0, 3.0])) * 2.0)
    y = Value(1.0)
    for _ in range(20):
        y = y + 1.0
    with pytest.raises(ValueError, match=r"21 values.*max_nodes=10.*smaller graph"):
        viz.stepper(y, max_nodes=10)
    with pytest.raises(ValueError, match="rankdir"):
        viz.stepper(y, rankdir="XY")
    assert len(viz.stepper(Value(1.0)).steps) == 0  # a single value: nothing to step through


def test_the_page_is_self_contained_and_a_label_cannot_break_out_of_it(tmp_path):
    x = Value(1.0, label="</script><script>alert(1)</script>")
    y = x * 2.0
    y.label = "<b>&amp;"
    s = viz.stepper(y)
    page = s.save(tmp_path / "backprop.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert re.sub(r"cg-stepper-\w+-\d+", "ID", page) == re.sub(r"cg-stepper-\w+-\d+", "ID", s.page())
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "<b>" not in page and "alert(1)</script>" not in page
    for outside in ("src=", "href=", "<link", "@import", "url(", "fetch("):
        assert outside not in page  # nothing is loaded from anywhere
    for button in ("Step", "Back", "Reset"):
        assert f">{button}</button>" in page
    data = json.loads(re.search(r'class="cg-data">(.*?)</script>', page, re.S).group(1))
    assert data["start"][0] == "grad 1.0000" and set(data["start"][1:]) == {"grad 0.0000"}
    assert [c[0] for c in data["steps"][0]["changes"]] == [s.names.index(f"({x.label})")]
    assert ET.fromstring(s._svg_inline()).tag == f"{SVG}svg"


def test_the_stepper_shows_in_jupyter_with_its_own_id_each_time(tmp_path):
    from IPython.core.formatters import DisplayFormatter

    o, _ = lecture_neuron()
    s = viz.stepper(o)
    bundle, _ = DisplayFormatter().format(s)
    assert 'class="cg-stepper"' in bundle["text/html"] and "<!DOCTYPE" not in bundle["text/html"]
    assert bundle["text/plain"] == (
        "<Stepper through backprop from o: 10 values, 5 steps; show it in Jupyter or .save('backprop.html')>"
    )
    ids = {re.search(r'id="(cg-stepper-[^"]+)"', s._repr_html_()).group(1) for _ in range(3)}
    assert len(ids) == 3
    for name in ("backprop.svg", "backprop"):
        with pytest.raises(ValueError, match=r"\.html"):
            s.save(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_every_state_of_a_grad_fits_its_box():
    o, _ = lecture_neuron()
    s = viz.stepper(o)
    nodes = {}
    root = ET.fromstring(s._svg_inline())
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "node" and g.find(f"{SVG}title").text.startswith("v"):
            xs = [float(p.split(",")[0]) for p in g.find(f"{SVG}polygon").get("points").split()]
            nodes[int(g.find(f"{SVG}title").text[1:])] = max(xs) - min(xs)
    texts = {i: [f"grad {s.start[i]:.4f}"] for i in nodes}
    for k in range(len(s.steps) + 1):
        for i, g in enumerate(s.grads(k)):
            texts[i].append(f"grad {g:.4f}")
    for i, width in nodes.items():  # the renderer measures Courier at 0.6 em of 14 pt
        assert width >= max(len(t) for t in texts[i]) * 0.6 * 14


def test_graphs_are_drawn_in_a_font_every_browser_has_at_the_renderers_width(neuron):
    o, _ = neuron
    assert 'fontname="Courier"' in viz.to_dot(o) or "fontname=Courier" in viz.to_dot(o)
    svg = viz.draw_dot(o)._repr_svg_()
    families = {t.get("font-family") for t in ET.fromstring(svg).iter(f"{SVG}text")}
    assert families and all(f.split(",")[0] == "Courier" for f in families)


# ---------------------------------------------------------------------------
# The stepper in a real browser: Debian's chromium, driven by Playwright. Where either is missing the
# tests skip, unless CHAINGRAD_REQUIRE_BROWSER=1 (as in CI), which turns the skip into a failure.
# ---------------------------------------------------------------------------

READ_PAGE = """root => {
  const values = {};
  root.querySelectorAll("svg g.node").forEach(g => {
    const name = g.querySelector("title").textContent;
    if (name.startsWith("v")) values[name] = [...g.querySelectorAll("text")].map(t => t.textContent);
  });
  const marked = cls => [...root.querySelectorAll("g." + cls)].map(g => g.querySelector("title").textContent);
  return {
    values, node: marked("cg-node"), inputs: marked("cg-input"),
    counter: root.querySelector(".cg-counter").textContent,
    lines: root.querySelector(".cg-lines").textContent,
    disabled: [...root.querySelectorAll("button")].filter(b => b.disabled).map(b => b.textContent),
  };
}"""


def read(tab, which=0):
    """What one stepper on the page shows: every value's texts, the highlights, the counter, the lines."""
    return tab.locator(".cg-stepper").nth(which).evaluate(READ_PAGE)


def shown_grads(state):
    """The grad text of each value, by picture number."""
    values = state["values"].items()
    return {int(k[1:]): next(t.strip() for t in ts if t.strip().startswith("grad ")) for k, ts in values}


def expected_grads(s, k):
    return {i: f"grad {g:.4f}" for i, g in enumerate(s.grads(k))}


def test_clicking_step_through_the_lecture_neuron_ends_at_the_grads_of_backward(page, tmp_path):
    o, v = lecture_neuron()
    s = viz.stepper(o)
    page.goto(s.save(tmp_path / "backprop.html").as_uri())
    state = read(page)
    assert state["counter"] == "step 0 of 5" and set(state["disabled"]) == {"Back", "Reset"}
    assert shown_grads(state) == {i: "grad 1.0000" if i == 0 else "grad 0.0000" for i in range(10)}
    assert state["node"] == ["v0"] and "o.grad = 1" in page.locator(".cg-title").text_content()
    for k, step in enumerate(s.steps, 1):
        page.get_by_role("button", name="Step").click()
        state = read(page)
        assert state["counter"] == f"step {k} of 5"
        assert shown_grads(state) == expected_grads(s, k)
        assert sorted(state["node"]) == sorted([f"v{step.node}", f"o{step.node}"])
        assert sorted(state["inputs"]) == sorted(f"v{c.input}" for c in step.contributions)
        assert state["lines"].split("\n")[: len(step.lines())] == step.lines()
    assert state["disabled"] == ["Step"] and "Done" in state["lines"]
    # the page's grads, read off the picture by label, are backward()'s and PyTorch's to 4 decimals
    o.backward()
    by_label = {texts[0]: grad for texts, grad in zip(state["values"].values(), shown_grads(state).values())}
    assert by_label == {label: f"grad {n.grad:.4f}" for label, n in v.items()}
    for label, grad in torch_neuron_grads().items():
        assert by_label[label] == f"grad {grad:.4f}"

    page.get_by_role("button", name="Back").click()
    assert shown_grads(read(page)) == expected_grads(s, 4)
    page.get_by_role("button", name="Reset").click()
    assert shown_grads(read(page)) == expected_grads(s, 0) and read(page)["counter"] == "step 0 of 5"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowLeft")
    assert shown_grads(read(page)) == expected_grads(s, 1) and read(page)["counter"] == "step 1 of 5"


def test_a_value_used_twice_gets_both_uses_on_the_page(page, tmp_path):
    x = Value(1.5, label="x")
    y = x * x
    y.label = "y"
    s = viz.stepper(y)
    page.goto(s.save(tmp_path / "square.html").as_uri())
    page.get_by_role("button", name="Step").click()
    state = read(page)
    assert state["values"][f"v{s.names.index('x')}"] == ["x", "data 1.5000", "grad 3.0000"]  # d(x*x)/dx = 2x
    assert "x.grad += 3.0000 * 1.0000  ->  x.grad = 3.0000  (x is used 2 times" in state["lines"]


FITS = """([root, fallback]) => {
  // Each text must lie inside its box: a record's field (between its separators) or an op's ellipse.
  // With `fallback`, each text is measured in the font a browser without the named one shows: its
  // generic family (Times,serif: serif) as fontconfig resolves that by default (fc-match serif).
  const generic = {serif: "DejaVu Serif", "sans-serif": "DejaVu Sans", monospace: "DejaVu Sans Mono"};
  const bad = [];
  if (fallback) root.querySelectorAll("svg text").forEach(t => {
    const family = t.getAttribute("font-family").split(",").pop().toLowerCase();
    t.style.fontFamily = `"${generic[family] || family}"`;
  });
  root.querySelectorAll("svg g.node").forEach(g => {
    const shape = g.querySelector("polygon, ellipse");
    if (!shape) return;
    const box = shape.getBBox();
    const cuts = [...g.querySelectorAll("polyline")].map(p => p.getBBox())
      .filter(b => b.width < 0.5).map(b => b.x);
    g.querySelectorAll("text").forEach(t => {
      const b = t.getBBox(), mid = b.x + b.width / 2;
      const left = Math.max(box.x, ...cuts.filter(x => x < mid));
      const right = Math.min(box.x + box.width, ...cuts.filter(x => x > mid));
      if (b.x < left - 0.5 || b.x + b.width > right + 0.5) bad.push([t.textContent, b.width, right - left]);
    });
  });
  return bad;
}"""


@pytest.mark.parametrize("fallback", [False, True], ids=["named font", "fallback font"])
def test_every_text_fits_its_box_in_the_browser(page, tmp_path, fallback):
    o, _ = lecture_neuron()
    o.backward()
    picture = viz.draw_dot(o).save(tmp_path / "graph.svg")
    page.goto(picture.as_uri())
    assert page.locator("svg").evaluate(f"svg => ({FITS})([svg.parentNode, {str(fallback).lower()}])") == []
    s = viz.stepper(o)
    page.goto(s.save(tmp_path / "backprop.html").as_uri())
    for _ in range(len(s.steps) + 1):
        assert page.locator(".cg-stepper").evaluate(f"r => ({FITS})([r, {str(fallback).lower()}])") == []
        page.keyboard.press("ArrowRight")


def test_two_steppers_in_one_notebook_step_on_their_own_and_loads_nothing(page, tmp_path):
    o, _ = lecture_neuron()
    a, b = viz.stepper(o), viz.stepper(o)
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    html = f"<!DOCTYPE html><html><body>{a._repr_html_()}<p>text</p>{b._repr_html_()}</body></html>"
    (tmp_path / "notebook.html").write_text(html)
    page.goto((tmp_path / "notebook.html").as_uri())
    page.locator(".cg-stepper").nth(0).get_by_role("button", name="Step").click()
    assert [read(page, i)["counter"] for i in (0, 1)] == ["step 1 of 5", "step 0 of 5"]
    page.locator("p").click()
    page.keyboard.press("ArrowRight")  # in a notebook, the arrow keys are the notebook's own ...
    assert [read(page, i)["counter"] for i in (0, 1)] == ["step 1 of 5", "step 0 of 5"]
    page.locator(".cg-stepper").nth(1).focus()  # ... until a stepper has the focus
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert [read(page, i)["counter"] for i in (0, 1)] == ["step 1 of 5", "step 2 of 5"]
    assert requests == [(tmp_path / "notebook.html").as_uri()]
