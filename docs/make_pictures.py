"""Make the pictures of the README and the docs site again, from the code as it is now.

    python docs/make_pictures.py            # all of them (the demos train at their defaults: about a minute)
    python docs/make_pictures.py --graphs   # only the graph, the stepper page and its screenshot

- docs/graph.svg: the lecture's neuron after backpropagation, drawn by `chaingrad graph` as the
  README says; docs/backprop.html: the same neuron's stepper page, labelled as in the lecture;
- docs/stepper.png: that page, drawn top to bottom, in Chromium after 3 of its 5 steps (Playwright
  drives the system's Chromium, /usr/bin/chromium; it never downloads a browser);
- docs/moons.png and docs/demos/*.png: what `chaingrad demo moons|digits|names` draws, and
  docs/demos/names-torch-loss.png what `chaingrad demo names --continue-in-torch 1000` draws.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from chaingrad import Value, cli, demos, viz

DOCS = Path(__file__).resolve().parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NEURON = [
    "graph",
    "tanh(x1*w1 + x2*w2 + b)",
    *("--var", "x1=2", "--var", "x2=0", "--var", "w1=-3", "--var", "w2=1", "--var", "b=6.8813735870195432"),
    *("--rankdir", "TB"),  # top to bottom: narrow enough to show at its own size on a page
]
STEPS_SHOWN = 3  # the screenshot's moment: after the second "+", both products on screen


def lecture_neuron() -> Value:
    """The lecture's neuron o = tanh(x1*w1 + x2*w2 + b), every value labelled as there."""
    x1, x2 = Value(2.0, label="x1"), Value(0.0, label="x2")
    w1, w2 = Value(-3.0, label="w1"), Value(1.0, label="w2")
    b = Value(6.8813735870195432, label="b")
    x1w1, x2w2 = x1 * w1, x2 * w2
    x1w1.label, x2w2.label = "x1*w1", "x2*w2"
    s = x1w1 + x2w2
    s.label = "x1*w1 + x2*w2"
    n = s + b
    n.label = "n"
    o = n.tanh()
    o.label = "o"
    return o


def graphs() -> None:
    """docs/graph.svg, docs/backprop.html and the screenshot docs/stepper.png."""
    if cli.main([*NEURON, "-o", str(DOCS / "graph.svg")]):
        raise SystemExit("chaingrad graph failed")
    print(f"wrote {viz.stepper(lecture_neuron()).save(DOCS / 'backprop.html')}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory() as tmp:
        # the screenshot shows the graph top to bottom, so that it keeps readable labels at a page's width
        upright = viz.stepper(lecture_neuron(), rankdir="TB").save(Path(tmp) / "backprop.html")
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 760, "height": 700}, device_scale_factor=2)
        page.goto(Path(upright).as_uri())
        for _ in range(STEPS_SHOWN):
            page.get_by_role("button", name="Step").click()
        page.mouse.move(0, 0)  # no button drawn as hovered
        page.locator(".cg-stepper").screenshot(path=str(DOCS / "stepper.png"))
        browser.close()
    print(f"wrote {DOCS / 'stepper.png'}")


def demo_pictures() -> None:
    """The demos' pictures at their default settings: docs/moons.png and docs/demos/*.png."""
    (DOCS / "demos").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for name in ("moons", "digits", "names"):
            print(demos.DEMOS[name](out=out).summary())
        shutil.copyfile(out / "moons-boundary.png", DOCS / "moons.png")
        for name in ("moons-loss.png", "digits-loss.png", "digits-confusion.png", "names-loss.png"):
            shutil.copyfile(out / name, DOCS / "demos" / name)
        print(demos.names(out=out, continue_in_torch=1000).summary())
        shutil.copyfile(out / "names-loss.png", DOCS / "demos" / "names-torch-loss.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", action="store_true", help="only the graph and the stepper page")
    args = parser.parse_args(argv)
    graphs()
    if not args.graphs:
        demo_pictures()
    return 0


if __name__ == "__main__":
    sys.exit(main())
