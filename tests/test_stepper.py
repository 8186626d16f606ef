"""The stepper: its steps (each node's `_backward()`, local gradients read from the nodes and shown
as formulas), its names, and its page, computed in Python and clicked through in Chromium."""

import json
import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from conftest import load_script

import chaingrad as cg
from chaingrad import Value, stepper, viz

SVG = "{http://www.w3.org/2000/svg}"


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
        ("x1*w1 + x2*w2", "+"),
        ("x2*w2", "*"),  # micrograd's build_topo order: depth first, inputs in order
        ("x1*w1", "*"),
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
        assert {s.names[c.input]: c.local for c in step.contributions} == pytest.approx(locals_, rel=1e-12)
        for c in step.contributions:
            assert c.added == pytest.approx(c.local * g, rel=1e-12, abs=1e-300)
            assert c.uses == 1
    # after the last step: what backward() gives, and what PyTorch gives
    o.backward()
    picture_order = list(s.names)
    for name, grad in zip(picture_order, s.final):
        label = name
        assert grad == pytest.approx(v[label].grad, rel=1e-12)
        assert f"{grad:.4f}" == f"{v[label].grad:.4f}"
    for name, grad in torch_neuron_grads().items():
        assert s.final[picture_order.index(name)] == pytest.approx(grad, rel=1e-12)


def test_each_step_shows_its_chain_rule_products_with_the_numbers():
    o, v = lecture_neuron()
    s = viz.stepper(o)
    dn = 1 - math.tanh(v["n"].data) ** 2
    first, *_, last = s.steps
    o_data = math.tanh(v["n"].data)
    assert first.lines() == [
        "each input: input.grad += local * o.grad",
        f"n.grad += {dn:.4f} * 1.0000  ->  n.grad = {dn:.4f}",
        f"    local d(o)/d(n) = 1 - o² = 1 - {o_data:.4f}² = {dn:.4f}",  # beside the +=, as a formula
    ]
    assert f"{o_data:.4f}" == "0.7071" and f"{dn:.4f}" == "0.5000"
    assert s.steps[1].lines()[1:] == [
        f"(x1*w1 + x2*w2).grad += 1.0000 * {dn:.4f}  ->  (x1*w1 + x2*w2).grad = {dn:.4f}",
        "    local d(n)/d(x1*w1 + x2*w2) = 1",
        f"b.grad += 1.0000 * {dn:.4f}  ->  b.grad = {dn:.4f}",
        "    local d(n)/d(b) = 1",
    ]
    assert last.lines()[1:] == [
        f"x1.grad += -3.0000 * {dn:.4f}  ->  x1.grad = {-3 * dn:.4f}",
        "    local d(x1*w1)/d(x1) = w1 = -3.0000",
        f"w1.grad += 2.0000 * {dn:.4f}  ->  w1.grad = {2 * dn:.4f}",
        "    local d(x1*w1)/d(w1) = x1 = 2.0000",
    ]
    steps = s._data()["steps"]
    assert [step["lines"] for step in steps] == [step.lines() for step in s.steps]
    assert steps[1]["title"] == f"Step 2 of 5: the + node that made n, whose grad is {dn:.4f}"


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
        assert "used 2 times" in step.lines()[3]
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
    assert np.all(shown["xs"].local == 0.5)  # d(p)/d(xs) = w, for every sample
    assert any(line.startswith("w.grad += sum over the batch of") for line in mul.lines())
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
    assert [c[0] for c in data["steps"][0]["changes"]] == [s.names.index(x.label)]
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
    assert "x.grad += 3.0000 * 1.0000  ->  x.grad = 3.0000\n" in state["lines"]
    assert "local d(y)/d(x) = x + x = 1.5000 + 1.5000 = 3.0000\n    (x is used 2 times" in state["lines"]


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


def test_the_page_has_a_heading_a_legend_and_a_picture_that_never_moves(page, tmp_path):
    x = Value(0.5, label="x")
    parts = [x * float(k) for k in range(1, 9)]
    total = cg.sum(parts)  # one step with eight inputs: many lines of text
    total.label = "total"
    s = stepper.stepper(total.tanh())
    page.goto(s.save(tmp_path / "wide.html").as_uri())
    heading = page.locator(".cg-heading").text_content()
    assert heading.startswith("Backpropagation through ") and "tanh(" in heading
    legend = page.locator(".cg-legend").text_content()
    for words in ("_backward() runs", "its inputs", "gradient flows", "changed"):
        assert words in legend
    tops = set()
    for _ in range(len(s.steps) + 1):
        tops.add(page.locator(".cg-graph").evaluate("g => g.getBoundingClientRect().top"))
        page.keyboard.press("ArrowRight")
    assert "Done" in page.locator(".cg-lines").text_content()
    tops.add(page.locator(".cg-graph").evaluate("g => g.getBoundingClientRect().top"))
    assert len(tops) == 1, f"the picture moved: {sorted(tops)}"


def test_the_local_gradient_comes_from_the_node_never_from_dividing_by_the_grad():
    # An op's rule that sends a share unrelated to its local gradient: dividing added / g would show 7.
    x = Value(3.0, label="x")
    y = x.log()  # log keeps no _local: the page computes 1 / x from its formula
    y.label = "y"
    (step,) = stepper.stepper(y).steps
    (c,) = step.contributions
    assert c.local == pytest.approx(1 / 3) and c.formula == "1 / x = 1 / 3.0000 = 0.3333"
    z = x * 2.0
    z.label = "z"
    z._local = (7.0,) if isinstance(getattr(z, "_local", None), tuple) else None
    if z._local is not None:  # the engine's record is what the page shows
        (step,) = stepper.stepper(z).steps
        assert step.contributions[0].local == 7.0


@pytest.mark.parametrize(
    "make, formula",
    [
        (lambda x, w: x / w, "1 / w = 1 / (-3.0000) = -0.3333"),
        (lambda x, w: w**2, "2 * w**(2 - 1) = 2.0000 * (-3.0000)**(2.0000 - 1) = -6.0000"),
        (lambda x, w: (x * w).relu(), None),
        (lambda x, w: 2**x, "(2**x) * log(2) = 4.0000 * log(2.0000) = 2.7726"),
        (lambda x, w: x.exp(), "exp(x) = exp(x) = 7.3891"),
        (lambda x, w: x.sigmoid(), None),
        (lambda x, w: -x, "-1"),
        (lambda x, w: x - w, "1"),
    ],
)
def test_every_op_shows_its_formula(make, formula):
    x, w = Value(2.0, label="x"), Value(-3.0, label="w")
    s = stepper.stepper(make(x, w))
    last = s.steps[-1].contributions[0]
    assert last.local is not None and last.formula
    if formula is not None:
        assert last.formula == formula
    out = make(x, w)
    out.backward()
    assert s.final[s.names.index(s.steps[-1].contributions[0].name)] == pytest.approx(
        (x.grad if last.name == "x" else w.grad), rel=1e-12
    )


def test_unlabelled_values_are_named_by_the_expression_that_made_them_and_never_two_alike():
    a, b = Value(2.0), Value(2.0)
    y = (a * b + a * b).tanh()
    s = stepper.stepper(y)
    assert len(set(s.names)) == len(s.names) == 6
    assert {"Value(2)", "Value(2) #2", "Value(2)*(Value(2) #2)", "Value(2)*(Value(2) #2) #2"} <= set(s.names)
    assert s.expression.endswith(" = tanh(Value(2)*Value(2) + Value(2)*Value(2))")  # the heading
    x = Value(1.0, label="x")
    assert stepper.stepper((x - (x - x)) / (x * x) ** 2).root_name == "(x - (x - x))/(x*x)**2"


def test_viz_keeps_the_stepper_under_its_public_name():
    assert cg.viz.Stepper is stepper.Stepper and cg.viz.Step is stepper.Step
    assert isinstance(cg.viz.stepper(Value(1.0) * 2.0), stepper.Stepper)
    with pytest.raises(AttributeError, match="no attribute"):
        cg.viz.no_such_name


def test_without_the_engines_record_of_constants_the_stepper_still_steps(monkeypatch):
    # The engine may stop saying where an op's constants are (engine.arguments); the picture and the
    # steps then show the inputs alone, and a local gradient the node does not keep is left out.
    from chaingrad import engine

    monkeypatch.delattr(engine, "arguments", raising=False)
    x = Value(2.0, label="x")
    y = (x * 3.0 + x / 4.0).tanh()
    s = stepper.stepper(y)
    y.backward()
    assert s.final[s.names.index("x")] == pytest.approx(x.grad, rel=1e-12)
    for step in s.steps:
        for c in step.contributions:
            assert c.local is None or isinstance(c.local, float)
