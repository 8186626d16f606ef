"""The documentation site: `mkdocs build --strict` passes, each page has what it promises, and the
pictures and the stepper page in docs/ are what the code makes today."""

import ast
import contextlib
import html
import importlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_script

from chaingrad import viz

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PUBLIC = ["chaingrad", "chaingrad.nn", "chaingrad.optim", "chaingrad.losses", "chaingrad.data"]
PUBLIC += ["chaingrad.viz", "chaingrad.autodiff", "chaingrad.gradcheck"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built with --strict (any warning fails the build) into a folder of its own."""
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def text(site, page):
    """A built page's text, tags dropped and entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", (site / page / "index.html").read_text()))


def readme_section(name):
    readme = (ROOT / "README.md").read_text()
    return re.search(rf"\[start:{name}\] -->\n(.*?)<!-- --8<-- \[end:{name}\]", readme, re.S).group(1)


PAGES = ["", "concepts", "lecture", "check", "custom-ops", "engines", "migrating", "pytorch", "demos"]
PAGES += ["troubleshooting", "security", "changelog", "api/value"]


def nav_pages():
    """The pages mkdocs.yml's nav lists, as paths under docs/."""
    nav = (ROOT / "mkdocs.yml").read_text().split("\nnav:\n")[1].split("\n\n")[0]
    return re.findall(r":\s*(\S+\.(?:md|ipynb))$", nav, re.M)


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    listed = nav_pages()
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(p for p in listed if p.endswith(".md")) == pages
    assert "lecture.ipynb" in listed  # examples/lecture.ipynb, added by docs/hooks.py
    for name in ("Coming from micrograd / PyTorch: migrating.md", "Troubleshooting: troubleshooting.md"):
        assert f"  - {name}\n" in (ROOT / "mkdocs.yml").read_text()
    # the getting-started page links every guide (the API pages through their first)
    index = (DOCS / "index.md").read_text()
    guides = [p for p in listed if "/" not in p and p not in ("index.md", "changelog.md")]
    assert "check.md" in guides and [p for p in guides if f"]({p})" not in index] == []


def test_the_site_builds_with_every_page(site):
    for page in PAGES:
        assert (site / page / "index.html").is_file(), page
    for module in PUBLIC:
        assert (
            site / "api" / module.removeprefix("chaingrad.") / "index.html"
        ).is_file() or module == "chaingrad"
    assert (site / "backprop.html").is_file() and (site / "stepper.png").is_file()
    assert not (ROOT / ".cache").exists()  # the build writes nothing into the checkout


def test_getting_started_gives_the_readmes_two_commands_and_security_its_notes(site):
    start = text(site, "")
    for marker in ("main-command", "test-command"):
        command = re.search(
            rf"<!-- {marker} -->\s*```bash\n(.+?)\n```", (ROOT / "README.md").read_text()
        ).group(1)
        assert command in start
    assert "8<" not in start
    security = " ".join(text(site, "security").split())
    for bullet in re.findall(r"^- (.+?)(?=^- |\Z)", readme_section("security"), re.S | re.M):
        first_sentence = " ".join(re.sub(r"`", "", bullet).split()).split(". ")[0]
        assert first_sentence in security


@pytest.mark.parametrize("module", PUBLIC)
def test_the_api_reference_documents_every_public_name(site, module):
    page = "api/chaingrad" if module == "chaingrad" else f"api/{module.removeprefix('chaingrad.')}"
    names = importlib.import_module(module).__all__
    # cg.gradcheck, the function, shares its name with its module: it has its entry on that page
    elsewhere = {("chaingrad", "gradcheck"): ("api/gradcheck", "chaingrad.gradcheck.gradcheck")}
    # cg.Value has a page of its own, documented from the reference engine's class
    elsewhere[("chaingrad", "Value")] = ("api/value", "chaingrad.engine.Value")
    missing = []
    for name in names:
        where, entry = elsewhere.get((module, name), (page, f"{module}.{name}"))
        if f'id="{entry}"' not in (site / where / "index.html").read_text():
            missing.append(name)
    assert not missing, f"{module}: no entry for {missing}"


def test_the_reference_names_only_public_modules():  # test_packaging.py runs it by this name
    # The engine's modules are private and may be rewritten; the pages reach them through the package.
    # Value alone is documented from its private module: the reference engine's class is written in
    # Python, with a method per op, where the compiled core's is a C type with the same docstrings.
    directives = re.findall(r"^::: (\S+)", "\n".join(p.read_text() for p in DOCS.rglob("*.md")), re.M)
    assert sorted(set(directives)) == sorted([*PUBLIC, "chaingrad.engine.Value"])


# What a learner looks Value up for: its ops as methods, backward, and the operators.
VALUE_METHODS = ["tanh", "exp", "relu", "log", "sigmoid", "sqrt", "abs", "backward"]
VALUE_OPERATORS = ["__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__"]
VALUE_OPERATORS += ["__rtruediv__", "__pow__", "__rpow__", "__neg__"]


def test_the_value_page_lists_every_method_and_operator_with_its_docstring(site):
    # Needs the reference engine's Value written as real methods (`def tanh`, `def __add__`): while
    # they are generated at import, the docs tool, which reads the source, cannot see them.
    from chaingrad import Value

    built = (site / "api" / "value" / "index.html").read_text()
    public = [n for n in dir(Value) if not n.startswith("_") and callable(getattr(Value, n))]
    missing = [
        name
        for name in sorted({*VALUE_METHODS, *VALUE_OPERATORS, *public})
        if f'id="chaingrad.engine.Value.{name}"' not in built
    ]
    assert not missing, f"the API page has no entry for Value.{', Value.'.join(missing)}"
    # each entry carries the reference engine's docstring (the one the page is made from)
    (cls,) = [
        c
        for c in ast.parse((ROOT / "src" / "chaingrad" / "engine.py").read_text()).body
        if isinstance(c, ast.ClassDef) and c.name == "Value"
    ]
    docs = {f.name: ast.get_docstring(f) for f in cls.body if isinstance(f, ast.FunctionDef)}
    for name in VALUE_METHODS:
        doc = docs.get(name)
        assert doc, f"the reference engine's Value.{name} has no docstring"
        entry = built.split(f'id="chaingrad.engine.Value.{name}"')[1].split('id="chaingrad.engine.Value.')[0]
        shown = " ".join(html.unescape(re.sub(r"<[^>]+>", "", entry)).split())
        first_line = " ".join(doc.strip().splitlines()[0].replace("`", "").split())
        assert first_line in shown, f"Value.{name}'s entry lacks its docstring"


def test_the_lecture_page_is_the_notebook_with_its_outputs(site):
    page = text(site, "lecture")
    assert "by hand == backward(): True" in page and "same gradients as PyTorch: True" in page
    built = (site / "lecture" / "index.html").read_text()
    assert built.count('class="cg-stepper"') == 2 and built.count("data:image/png;base64") >= 3


def test_the_committed_stepper_page_and_graph_are_what_the_code_makes(tmp_path):
    make_pictures = load_script("docs/make_pictures.py")
    committed = (DOCS / "backprop.html").read_text()
    data = json.loads(re.search(r'class="cg-data">(.*?)</script>', committed, re.S).group(1))
    fresh = viz.stepper(make_pictures.lecture_neuron())._data()
    fresh["keys"] = "document"
    assert data == json.loads(json.dumps(fresh))  # as JSON: tuples become lists
    from chaingrad import cli

    assert cli.main([*make_pictures.NEURON, "-o", str(tmp_path / "graph.svg")]) == 0
    texts = re.compile(r">([^<]*)</text>")
    assert texts.findall((DOCS / "graph.svg").read_text()) == texts.findall(
        (tmp_path / "graph.svg").read_text()
    )


def test_the_docs_stepper_pages_step_and_load_nothing_from_elsewhere(site, page):
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((site / "lecture" / "index.html").as_uri())
    first = page.locator(".cg-stepper").first
    first.get_by_role("button", name="Step").click()
    assert first.locator(".cg-counter").text_content() == "step 1 of 3"
    page.goto((site / "backprop.html").as_uri())
    page.keyboard.press("ArrowRight")
    assert page.locator(".cg-counter").text_content() == "step 1 of 5"
    assert [url for url in requests if not url.startswith("file://")] == []


# ---------------------------------------------------------------------------
# What the pages say is what the code does
# ---------------------------------------------------------------------------


def python_blocks(page):
    """The Python blocks of a docs page, in order."""
    return re.findall(r"^```python\n(.*?)^```", (DOCS / page).read_text(), re.S | re.M)


def run_blocks(page, tmp_path, monkeypatch):
    """Run a page's Python blocks in order, each in a namespace of its own; what each printed."""
    monkeypatch.chdir(tmp_path)
    printed = []
    for block in python_blocks(page):
        if "torchrun" in block:  # the DistributedDataParallel recipe: test_bridge.py runs it under torchrun
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, page, "exec"), {})
        printed.append(out.getvalue().split())
    return printed


def test_the_docs_python_examples_run_and_print_what_they_say(tmp_path, monkeypatch):
    import chaingrad as cg

    ((y, dx, dw),) = run_blocks("index.md", tmp_path, monkeypatch)
    assert [round(float(v), 4) for v in (y, dx, dw)] == [-0.9999, -0.0005, 0.0004]
    assert (tmp_path / "y.svg").is_file() and (tmp_path / "backprop.html").is_file()
    assert run_blocks("concepts.md", tmp_path, monkeypatch)[-1] == ["12.0"]
    mul, softplus, sin_cos, divide = run_blocks("custom-ops.md", tmp_path, monkeypatch)
    assert mul == ["-2.0", "2.0"] and [f"{float(x):.3f}" for x in softplus] == ["0.974", "0.622"]
    assert sin_cos[0] == sin_cos[1] and sin_cos[0].startswith("-0.877")  # ops using each other, 3rd order
    assert [x[:6] for x in divide] == ["0.3333", "-0.666"]
    (shown,) = run_blocks("migrating.md", tmp_path, monkeypatch)
    assert shown[:2] == ["-3.0", "-4.0"] and shown[-1] == "+"  # as its comment says
    assert run_blocks("engines.md", tmp_path, monkeypatch) == [[cg.backend]]
    assert run_blocks("pytorch.md", tmp_path, monkeypatch) == [[]]


def test_the_engines_page_says_how_long_the_reference_engine_is():
    # "about 700 lines, a little over half of them code": counted as the page counts them
    said = " ".join((DOCS / "engines.md").read_text().split())
    assert "It is about 700 lines, a little over half of them code" in said
    source = (ROOT / "src" / "chaingrad" / "engine.py").read_text()
    lines = source.splitlines()
    docstrings = sum(
        n.body[0].end_lineno - n.body[0].lineno + 1
        for n in ast.walk(ast.parse(source))
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(n) is not None
    )
    other = sum(1 for line in lines if not line.strip() or line.strip().startswith("#")) + docstrings
    assert 650 <= len(lines) <= 750 and 0.5 < (len(lines) - other) / len(lines) < 0.6


def test_the_concepts_op_table_has_every_op_of_the_engines_table():
    from chaingrad import engine

    rows = [row for row in (DOCS / "concepts.md").read_text().splitlines() if row.startswith("| `")]
    table = [row.split("|")[1].strip() for row in rows]
    table = [cell.strip("`") for cell in table if cell.startswith("`")]
    shown = {"neg": "-x", **{op.name: f"x {op.name} y" for op in engine.PRIMITIVES if len(op.name) <= 2}}
    expected = [shown.get(op.name, f"x.{op.name}()") for op in engine.PRIMITIVES]
    assert sorted(table) == sorted(expected)
    rules = re.search(r"Four ops \((.*?)\) give a rule", " ".join((DOCS / "concepts.md").read_text().split()))
    assert sorted(re.findall(r"`([^`]+)`", rules.group(1))) == sorted(
        op.name for op in engine.PRIMITIVES if op.rule is not None
    )


def error_of(code):
    """'Type: message' of the error that code raises (with the troubleshooting page's names in scope)."""
    import math  # noqa: F401 - for the code

    import numpy as np  # noqa: F401

    import chaingrad as cg  # noqa: F401
    from chaingrad import Value  # noqa: F401

    try:
        exec(code)
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


def text_blocks(page):
    return [b.strip() for b in re.findall(r"^```text\n(.*?)^```", (DOCS / page).read_text(), re.S | re.M)]


# The errors the troubleshooting page quotes, each with code that meets it.
ERRORS = {
    "Value(": 'Value("3")',
    "ValueError: backward() of a batch": "(Value(np.array([1.0, 2.0])) * 2).backward()",
    "IndexError: cross_entropy()": "cg.cross_entropy([Value(1.0), Value(2.0)], 5)",
    "KeyError": "cg.nn.MLP(2, [3, 1]).load_state_dict(cg.nn.MLP(2, [4, 1]).state_dict())",
    "TypeError: a Value is not a number": "math.tanh(Value(0.5))",
    "ValueError: 'tanh' is the name": 'cg.Op("tanh", cg.tanh, lambda x, out: (1.0 - out * out,))',
}


def test_the_troubleshooting_page_quotes_the_errors_the_code_raises(tmp_path):
    quoted = text_blocks("troubleshooting.md")
    for start, code in ERRORS.items():
        (text,) = [q for q in quoted if q.startswith(start) or q.startswith(f"TypeError: {start}")]
        assert error_of(code) == text
    # a truncated model file: the message after the file's name
    import chaingrad as cg

    model = cg.nn.MLP(2, [3, 1])
    model.save(tmp_path / "model.json")
    with open(tmp_path / "model.json", "r+b") as f:
        f.truncate(50)
    (text,) = [q for q in quoted if "not a chaingrad model file" in q]
    said = error_of(f"cg.nn.MLP(2, [3, 1]).load({str(tmp_path / 'model.json')!r})")
    assert said.replace(str(tmp_path / "model.json"), "model.json").startswith(text.removesuffix("(...)"))
    # detect_anomaly's example raises what its comment says
    (block,) = python_blocks("troubleshooting.md")
    comment = re.search(r"# (AnomalyError: .+)$", block, re.M).group(1)
    assert error_of(block) == comment
    # the missing compiled core's warning, as the seam that loads the core words it
    (text,) = [q for q in quoted if q.startswith("RuntimeWarning")]
    source = (ROOT / "src" / "chaingrad" / "_backend.py").read_text()
    why = text.split("compiled core ")[1].split(":")[0]
    assert f'"{why}:' in source and "Running the reference engine in pure Python" in source


def test_math_on_a_value_is_the_type_error_the_troubleshooting_page_quotes():
    from chaingrad import engine

    quoted = [q for q in text_blocks("troubleshooting.md") if q.startswith("TypeError: a Value")]
    assert quoted == [f"TypeError: {engine.NOT_A_NUMBER}"]
    for code in ("math.tanh(Value(0.5))", "float(Value(0.5))", "int(Value(0.5))", "round(Value(0.5))"):
        assert error_of(code) == quoted[0], code
    assert error_of("assert Value(0.5).item() == 0.5") is None


def test_a_grad_of_none_is_filled_by_backward_and_skipped_by_the_optimizer():
    import chaingrad as cg

    x, p = cg.Value(2.0), cg.Value(1.0)
    x.grad = p.grad = None
    (x * 3).backward()
    assert x.grad == 3.0
    cg.optim.SGD([p], lr=0.1).step()
    assert p.data == 1.0 and p.grad is None


# ---------------------------------------------------------------------------
# How the pages look in a browser (Chromium, 1400 x 900)
# ---------------------------------------------------------------------------

READABLE_PX = 10  # the least height of a graph label on screen


def test_code_blocks_fit_the_page_or_wrap(site, page):
    for name in PAGES:
        page.goto((site / name / "index.html").as_uri())
        cut = page.eval_on_selector_all(
            ".md-typeset pre > code, .jupyter-wrapper .highlight pre",
            "cs => cs.filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.textContent.slice(0, 60))",
        )
        assert cut == [], f"{name or 'index'}: code cut off at the right: {cut}"


def test_graph_pictures_show_their_labels_at_a_readable_size(site, page):
    page.goto((site / "index.html").as_uri())
    image = page.locator('img[src$="graph.svg"]')
    shown, natural = image.evaluate("i => [i.getBoundingClientRect().width, i.naturalWidth]")
    assert shown >= 0.75 * natural  # its 14-point labels at least 14 px
    page.goto((site / "lecture" / "index.html").as_uri())
    graphs = page.eval_on_selector_all(
        ".jp-RenderedSVG img, .jp-RenderedImage img[src^='data:image/svg']",
        "imgs => imgs.map(i => i.getBoundingClientRect().width / i.naturalWidth)",
    )
    assert graphs and min(graphs) * 14 * 4 / 3 >= READABLE_PX, graphs


def test_the_lectures_steppers_take_the_full_width_with_readable_text_and_real_buttons(site, page):
    page.goto((site / "lecture" / "index.html").as_uri())
    content = page.locator(".md-content").bounding_box()["width"]
    for stepper in page.locator(".cg-stepper").all():
        assert stepper.bounding_box()["width"] >= 0.8 * content
        heights = stepper.locator("svg text").evaluate_all(
            "ts => ts.map(t => t.getBoundingClientRect().height)"
        )
        assert min(heights) >= READABLE_PX, min(heights)
        lines = stepper.locator(".cg-lines").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
        assert lines >= 11
        for button in stepper.get_by_role("button").all():
            style = button.evaluate(
                "b => { const s = getComputedStyle(b); return [s.borderTopStyle,"
                " parseFloat(s.borderTopWidth), parseFloat(s.fontSize), b.getBoundingClientRect().height] }"
            )
            border, width, size, height = style
            assert border != "none" and width >= 1 and size >= 11 and height >= 24, style


def test_every_function_of_cg_is_documented_with_its_docstring(site):
    import chaingrad as cg

    def squeezed(text):  # without markup or any whitespace: tags split words where the docstring has none
        return re.sub(r"\s+", "", html.unescape(re.sub(r"<[^>]+>", "", text)).replace("`", ""))

    built = (site / "api" / "chaingrad" / "index.html").read_text()
    lacking = []
    for name in cg.__all__:
        if name in ("Value", "gradcheck") or not callable(getattr(cg, name)):
            continue  # Value and gradcheck have pages of their own
        doc = (getattr(cg, name).__doc__ or "").strip()
        entry = re.split(r'id="chaingrad\.\w+"', built.split(f'id="chaingrad.{name}"')[1])[0]
        if not doc or squeezed(doc.splitlines()[0]) not in squeezed(entry):
            lacking.append(name)
    assert not lacking, f"no docstring shown for cg.{', cg.'.join(lacking)}"
