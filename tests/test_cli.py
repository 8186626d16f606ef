"""The `chaingrad` command: `graph` evaluates safely, prints gradients and draws; bad input exits with 2."""

import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import torch
from conftest import run_command
from PIL import Image

import chaingrad as cg
from chaingrad import cli, graph

pytestmark = pytest.mark.usefixtures("in_tmp")  # default outputs land in a tmp folder


def printed(out):
    """The numbers the command printed: {left side: value}."""
    return {k: float(v) for k, _, v in (line.partition(" = ") for line in out.splitlines()) if _}


def torch_grads(f, **values):
    xs = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in values.items()}
    out = f(**xs)
    out.backward()
    return out.item(), {k: x.grad.item() for k, x in xs.items()}


def test_graph_prints_value_and_gradients_and_draws_them(tmp_path, capsys):
    argv = ["graph", "tanh(x*w + b)", "--var", "x=0.5", "--var", "w=-1", "--var", "b=2", "-o", "g.svg"]
    code, out, err = run_command(argv, capsys)
    assert (code, err) == (0, "")
    value, grads = torch_grads(lambda x, w, b: torch.tanh(x * w + b), x=0.5, w=-1.0, b=2.0)
    numbers = printed(out)
    assert numbers["tanh(x*w + b)"] == pytest.approx(value, rel=1e-12)
    for name, grad in grads.items():
        assert numbers[f"d/d{name}"] == pytest.approx(grad, rel=1e-12)
    assert "g.svg" in out
    texts = [t.text for t in ET.parse(tmp_path / "g.svg").getroot().iter("{http://www.w3.org/2000/svg}text")]
    for name, data in (("x", 0.5), ("w", -1.0), ("b", 2.0)):
        assert name in texts
        assert f"data {data:.4f}" in texts
        assert f"grad {grads[name]:.4f}" in texts
    assert {"*", "+", "tanh"} <= set(texts)


def test_png_output_and_the_default_name(tmp_path, capsys):
    assert run_command(["graph", "x.exp()", "--var", "x=1", "-o", "g.png", "--rankdir", "TB"], capsys)[0] == 0
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(tmp_path / "g.png") as image:
        image.verify()
    assert run_command(["graph", "x * 2", "--var", "x=1"], capsys)[0] == 0
    ET.parse(tmp_path / "graph.svg")


FUNCTIONS = "exp(x) + log(x) + tanh(x) + sigmoid(x) + relu(x) + sqrt(x) + abs(-x)"
METHODS = "x.exp() + x.log() + x.tanh() + x.sigmoid() + x.relu() + x.sqrt() + (-x).abs()"


@pytest.mark.parametrize("expression", [FUNCTIONS, METHODS])
def test_every_value_method_works_as_a_function_and_as_a_method(expression, capsys):
    code, out, _ = run_command(["graph", expression, "--var", "x=0.7", "-o", "g.svg"], capsys)
    assert code == 0

    def f(x):
        return x.exp() + x.log() + x.tanh() + x.sigmoid() + x.relu() + x.sqrt() + (-x).abs()

    value, grads = torch_grads(f, x=0.7)
    assert printed(out)[expression] == pytest.approx(value, rel=1e-12)
    assert printed(out)["d/dx"] == pytest.approx(grads["x"], rel=1e-12)


def test_operators_and_constants(capsys):
    expression = "(x - 2) / y ** 2 + -x * +y - 3 ** x + 1e-1"
    code, out, _ = run_command(["graph", expression, "--var", "x=1.5", "--var", "y=-0.5"], capsys)
    assert code == 0
    value, grads = torch_grads(lambda x, y: (x - 2) / y**2 + -x * +y - 3**x + 1e-1, x=1.5, y=-0.5)
    numbers = printed(out)
    assert numbers[expression] == pytest.approx(value, rel=1e-12)
    assert numbers["d/dx"] == pytest.approx(grads["x"], rel=1e-12)
    assert numbers["d/dy"] == pytest.approx(grads["y"], rel=1e-12)


def test_overflow_and_division_by_zero_give_ieee_results(capsys):
    code, out, _ = run_command(["graph", "x / 0 + 10 ** 400 + 9 ** 9 ** 9", "--var", "x=1"], capsys)
    assert code == 0
    assert printed(out)["d/dx"] == float("inf")


def test_a_leading_space_passes_an_expression_that_starts_with_minus(capsys):
    code, out, _ = run_command(["graph", " -x", "--var", "x=2"], capsys)
    assert code == 0
    assert printed(out) == {"-x": -2.0, "d/dx": -1.0}


REJECTED = [
    "__import__('os').system('echo hi')",
    "x.__class__",
    "(lambda: 1)()",
    "[x for x in ()]",
    "open('f')",
    "y",
    "x.data",
    "x.tanh.__call__()",
    "tanh.__globals__",
    "tanh",
    "'text'",
    "b'bytes'",
    "1j",
    "True",
    "None",
    "x // 2",
    "x % 2",
    "~x",
    "not x",
    "x < 1",
    "x and x",
    "x if x else 1",
    "x[0]",
    "(x, x)",
    "{x: 1}",
    "f'{x}'",
    "(y := x)",
    "tanh(x, x)",
    "tanh()",
    "tanh(x=1)",
    "tanh(*[x])",
    "x.tanh(x)",
    "1 +",
    "x\x00",
    "(" * 300 + "x" + ")" * 300,
    "x + " * 200 + "x",
]


@pytest.mark.parametrize("expression", REJECTED)
def test_anything_outside_the_whitelist_is_rejected(expression, tmp_path, capfd):
    try:
        cli.main(["graph", expression, "--var", "x=1", "-o", "g.svg"])
    except SystemExit as e:
        code = e.code
    out, err = capfd.readouterr()
    assert code == 2
    assert err.startswith("usage: chaingrad graph") and "chaingrad graph: error: EXPR: " in err
    assert "hi" not in out  # nothing ran
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["graph", "x", "--var", "x=1", "-o"], "expected one argument"),
        (["graph", "x", "--var", "x"], "not NAME=NUMBER"),
        (["graph", "x", "--var", "x=abc"], "not a number"),
        (["graph", "x", "--var", "x="], "not a number"),
        (["graph", "x", "--var", "1x=1"], "not a valid variable name"),
        (["graph", "x", "--var", "for=1"], "not a valid variable name"),
        (["graph", "exp(x)", "--var", "exp=1"], "function name"),
        (["graph", "x", "--var", "x=1", "--var", "x=2"], "given twice"),
        (["graph", "y", "--var", "x=1"], "unknown name 'y'"),
        (["graph", "x", "--var", "x=1", "-o", "g.jpg"], ".svg, .png"),
        (["graph", "x", "--var", "x=1", "--rankdir", "XY"], "invalid choice"),
        (["graph", "--var", "x=1"], "required: EXPR"),
        (["graph", "x", "--bogus"], "unrecognized arguments"),
        (["nonsense"], "invalid choice"),
        ([], "required: COMMAND"),
    ],
)
def test_bad_options_are_argparse_errors_with_exit_code_2(argv, message, tmp_path, capsys):
    code, _, err = run_command(argv, capsys)
    assert code == 2
    assert "error:" in err and message in err
    assert list(tmp_path.iterdir()) == []


def test_version_and_help(capsys):
    assert run_command(["--version"], capsys)[:2] == (0, f"chaingrad {cg.__version__}\n")
    code, out, _ = run_command(["--help"], capsys)
    assert code == 0 and out.startswith("usage: chaingrad") and "graph" in out and "demo" in out
    code, out, _ = run_command(["graph", "--help"], capsys)
    assert code == 0 and "--var NAME=NUMBER" in out


def test_no_renderer_exits_1_with_advice_after_printing_the_gradients(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(graph.shutil, "which", lambda *args, **kwargs: None)
    code, out, err = run_command(["graph", "x * 3", "--var", "x=1"], capsys)
    assert code == 1
    assert printed(out)["d/dx"] == 3.0
    assert (
        "pip install graphviz-pure" in err
        and 'from a checkout of chaingrad: `pip install -e ".[viz]"`' in err
    )
    assert list(tmp_path.iterdir()) == []


def test_python_dash_m_chaingrad(tmp_path):
    argv = ["graph", "x*y + 1", "--var", "x=2", "--var", "y=-3", "-o", "g.svg"]
    done = subprocess.run(
        [sys.executable, "-m", "chaingrad", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert printed(done.stdout) == {"x*y + 1": -5.0, "d/dx": -3.0, "d/dy": 2.0}
    ET.parse(tmp_path / "g.svg")


# ---------------------------------------------------------------------------
# --var: names as Python reads them (NFKC), and many of them in linear time
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression, var",
    [("ｘ+1", "ｘ=2"), ("x+1", "ｘ=2"), ("ｘ+1", "x=2"), ("𝐱+1", "x=2")],
    ids=["fullwidth in both", "fullwidth --var", "fullwidth EXPR", "bold EXPR"],
)
def test_var_names_are_nfkc_normalised_as_python_reads_the_expression(expression, var, capsys):
    code, out, err = run_command(["graph", expression, "--var", var], capsys)
    assert (code, err) == (0, "")
    assert printed(out) == {expression: 3.0, "d/dx": 1.0}


@pytest.mark.parametrize(
    "vars_, message",
    [
        (["ｘ=1", "x=2"], "--var ｘ and --var x are the same variable 'x' (Python reads names in NFKC form)"),
        (["x=1", "𝐱=2"], "--var x and --var 𝐱 are the same variable 'x' (Python reads names in NFKC form)"),
        (["ｘ=1", "ｘ=2"], "--var ｘ is given twice"),
        (["ｉｆ=1"], "argument --var: 'ｉｆ' is not a valid variable name"),
        (["ｅｘｐ=1"], "argument --var: 'exp' is a function name; choose another variable name"),
        (["x²=1"], "argument --var: 'x²' is not a valid variable name"),  # not an identifier as written
    ],
    ids=["fullwidth and plain", "plain and bold", "twice", "a keyword", "a function", "superscript"],
)
def test_vars_that_collide_after_normalisation_are_refused(vars_, message, capsys):
    argv = ["graph", "x"] + [a for v in vars_ for a in ("--var", v)]
    code, out, err = run_command(argv, capsys)
    assert code == 2 and out == ""
    assert err.splitlines()[-1] == f"chaingrad graph: error: {message}"


def test_abbreviations_and_double_dash_still_work(capsys):
    for argv in (
        ["graph", "x+y", "--va", "x=1", "--v=y=2"],
        ["graph", "--var", "x=1", "--var=y=2", "--", "x+y"],
    ):
        code, out, _ = run_command(argv, capsys)
        assert code == 0 and printed(out) == {"x+y": 3.0, "d/dx": 1.0, "d/dy": 1.0}
    code, out, _ = run_command(["graph", "--var", "x=2", "--", "-x"], capsys)
    assert code == 0 and printed(out) == {"-x": -2.0, "d/dx": -1.0}


def test_a_thousand_vars_all_count_in_order(capsys):
    # argparse collects --var itself: quadratic before Python 3.13 (CPython gh-116159), 0.02 s for 1,000
    # and 14 s for 30,000, which no real expression needs.
    n = 1_000
    argv = ["graph", "x0 + 2*x999"] + [a for i in range(n) for a in ("--var", f"x{i}={i}")]
    code, out, _ = run_command(argv, capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"x0 + 2*x999 = {2.0 * 999}"
    assert lines[1 : n + 1] == [
        f"d/dx{i} = {1.0 if i == 0 else 2.0 if i == n - 1 else 0.0}" for i in range(n)
    ]


@pytest.mark.parametrize(
    "argv, code",
    [
        (["graph", "ｘ*y", "--var", "ｘ=2", "--va=y=3"], 0),
        (["graph", "x", "--var", "ｘ=1", "--var", "x=2"], 2),
        (["graph", "x", "--var", "x=1", "--var"], 2),
        (["graph", "x", "--var", "-1"], 2),
        (["graph", "--var=x=2", "--", "-x"], 0),
    ],
    ids=["good", "collision", "no value", "negative number", "after --"],
)
def test_vars_in_every_spelling_argparse_takes(argv, code, capsys):
    assert run_command(argv, capsys)[0] == code


def test_the_graph_names_each_node_by_its_sub_expression(capsys):
    assert run_command([*NEURON, "--html", "page.html"], capsys)[0] == 0
    names = {texts[0] for texts in page_texts("page.html")}
    assert {"x1*w1", "x2*w2", "x1*w1 + x2*w2", "x1*w1 + x2*w2 + b", "tanh(x1*w1 + x2*w2 + b)"} <= names


def page_texts(path):
    """The texts of each value's box in a stepper page's picture."""
    import re
    from pathlib import Path

    svg = Path(path).read_text()
    boxes = re.findall(r'<g id="node\d+" class="node">\s*<title>v\d+</title>(.*?)</g>', svg, re.S)
    return [[t for t in re.findall(r">([^<]*)</text>", box)] for box in boxes]


NEURON = ["graph", "tanh(x1*w1 + x2*w2 + b)", "--var", "x1=2", "--var", "x2=0", "--var", "w1=-3"]
NEURON += ["--var", "w2=1", "--var", "b=6.8813735870195432"]


def page_data(path):
    """The steps a stepper page holds (its JSON)."""
    import json
    import re

    return json.loads(re.search(r'class="cg-data">(.*?)</script>', path.read_text(), re.S).group(1))


def test_html_writes_the_stepper_page_alone_or_beside_the_picture(tmp_path, capsys):
    code, out, err = run_command([*NEURON, "--html", "backprop.html"], capsys)
    assert (code, err) == (0, "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backprop.html"]  # no graph.svg unless asked
    assert "backprop page written to backprop.html" in out
    data = page_data(tmp_path / "backprop.html")
    assert len(data["steps"]) == 5  # tanh, + , +, *, *: one per op node
    final = dict(enumerate(data["start"]))
    for step in data["steps"]:
        for i, _, after in step["changes"]:
            final[i] = after
    _, grads = torch_grads(
        lambda x1, x2, w1, w2, b: torch.tanh(x1 * w1 + x2 * w2 + b),
        x1=2.0, x2=0.0, w1=-3.0, w2=1.0, b=6.8813735870195432,
    )  # fmt: skip
    shown = sorted(final.values())
    assert all(f"grad {g:.4f}" in shown for g in grads.values())
    assert printed(out)["d/dx1"] == pytest.approx(grads["x1"], rel=1e-12)

    code, out, _ = run_command([*NEURON, "--html", "p.HTML", "-o", "g.png", "--rankdir", "TB"], capsys)
    assert code == 0 and "graph written to g.png" in out and "backprop page written to p.HTML" in out
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", ["page.svg", "page", "page.html.txt"])
def test_html_must_name_an_html_file(name, tmp_path, capsys):
    code, out, err = run_command([*NEURON, "--html", name], capsys)
    assert code == 2 and out == ""
    assert f"argument --html: '{name}' must end in .html" in err
    assert list(tmp_path.iterdir()) == []


def test_the_check_page_shows_the_first_step_the_graph_command_writes(capsys):
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "check.md").read_text()
    shown = page.split("## The stepper explains each step")[1].split("```text\n")[1].split("```")[0]
    argv = ["graph", "tanh(x*w + b)", "--var", "x=2", "--var", "w=-3", "--var", "b=6.8813735870195432"]
    assert " ".join(argv[2:]) in " ".join(page.split())  # the command the page gives
    assert run_command([*argv, "--html", "backprop.html"], capsys)[0] == 0
    assert page_data(Path("backprop.html"))["steps"][0]["lines"] == shown.splitlines()


# ---------------------------------------------------------------------------
# More bad expressions and options, each exit code 2 and no file
# ---------------------------------------------------------------------------

BAD_EXPRESSIONS = [
    "",
    "   ",
    "x y",
    "1 2",
    "x\n+ 1",
    "# x",
    "*x",
    "x,",
    "x @ x",
    "x << 1",
    "x >> 1",
    "x ^ 1",
    "x | 1",
    "x & 1",
    "...",
    "(yield x)",
    "await x",
    "lambda: 0",
    "x.exp",
    "x.real",
    "x.exp(1)",
    "math.exp(x)",
    "exp.x()",
    "exp(x)(x)",
    "x.__abs__()",
    "abs",
    "x if x",
    "x ** ",
]


@pytest.mark.parametrize("expression", BAD_EXPRESSIONS)
def test_more_bad_expressions_exit_2(expression, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(["graph", expression, "--var", "x=1"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "chaingrad graph: error: EXPR: " in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, words",
    [
        (["x", "--var"], "--var: expected one argument"),
        (["x", "--var", "x=1", "--rankdir"], "--rankdir: expected one argument"),
        (["x", "--var", "x=1", "--rankdir", "lr"], "invalid choice: 'lr'"),
        (["x", "--var", "x=1", "-o", "graph"], "'graph' must end in one of .svg, .png"),
        (["x", "--var", "x=1", "-o", ".svg"], "'.svg' must end in one of"),
        (["x", "--var", "x=1", "-o", ""], "'' must end in one of"),
        (["x", "--var", "x=1", "--output=g.pdf"], "'g.pdf' must end in one of"),
        (["x", "--var", "=1"], "'' is not a valid variable name"),
        (["x", "--var", "None=1"], "'None' is not a valid variable name"),
        (["x", "--var", "x=1=2"], "not a number: '1=2'"),
        (["x", "--var", "x=0x10"], "not a number: '0x10'"),
        (["x", "--var", "x=1", "--var=y"], "'y' is not NAME=NUMBER"),
        (["x", "--var", "x=1", "extra"], "unrecognized arguments: extra"),
        (["x", "-v", "x=1"], "unrecognized arguments: -v"),
        (["-x", "--var", "x=1"], "required: EXPR"),
    ],
)
def test_more_bad_options_exit_2(argv, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(["graph", *argv])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "error: " in err and words in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_bad_option_exits_2_from_the_shell(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "chaingrad", "graph", "x +", "--var", "x=1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "EXPR: not a valid expression" in done.stderr
    assert list(tmp_path.iterdir()) == []
