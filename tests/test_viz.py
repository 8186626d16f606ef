"""Graph pictures: what the DOT text and the rendered SVG/PNG show, limits, escaping, and errors."""

import math
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

import chaingrad as cg
from chaingrad import Value, graph, viz

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
        # the whole record: `label in source` alone held for "b", "n" and "o" whatever was drawn
        assert f"{{{label}|data {data:.4f}|grad {grad:.4f}}}" in source
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
    monkeypatch.setattr(graph.shutil, "which", lambda *args, **kwargs: None)
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
    monkeypatch.setattr(graph, "_renderer", lambda: [sys.executable, "-c", script])
    with pytest.raises(viz.RenderError, match=r"exit code 3.*renderer trouble"):
        viz.render("digraph { a }")


def test_a_hanging_renderer_times_out(monkeypatch):
    monkeypatch.setattr(graph, "_renderer", lambda: [sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(graph, "TIMEOUT", 0.5)
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


def test_viz_loads_on_first_use_with_the_picture_and_the_stepper():
    import subprocess

    code = (
        "import sys, chaingrad as cg\n"
        "before = 'chaingrad.viz' in sys.modules\n"
        "y = cg.Value(2.0) * 3.0\n"
        "print(before, cg.viz.draw_dot(y).source.count('data'), len(cg.viz.stepper(y).steps))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "2", "1"]  # not loaded by `import chaingrad`; then both work


def test_graphs_are_drawn_in_a_font_every_browser_has_at_the_renderers_width(neuron):
    o, _ = neuron
    assert 'fontname="Courier"' in viz.to_dot(o) or "fontname=Courier" in viz.to_dot(o)
    svg = viz.draw_dot(o)._repr_svg_()
    families = {t.get("font-family") for t in ET.fromstring(svg).iter(f"{SVG}text")}
    assert families and all(f.split(",")[0] == "Courier" for f in families)
