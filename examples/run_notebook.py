"""Execute examples/lecture.ipynb and save it with its outputs, so GitHub shows the pictures.

    python examples/run_notebook.py            # run it and write the outputs into the notebook
    python examples/run_notebook.py --check    # run it and say whether the committed outputs are current

The notebook seeds everything it draws at random, and the kernel runs with a fixed hash seed in an
empty temporary folder, so two runs print the same text (pictures may differ in their bytes, e.g.
matplotlib's version stamp). tests/test_examples.py runs it the same way and compares.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent / "lecture.ipynb"
TIMEOUT = 300  # seconds one cell may take


def execute(nb: Any, cwd: str | Path | None = None) -> Any:
    """Run every cell of nb (in place) in a fresh python3 kernel, in cwd (default: an empty temp folder)."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    with tempfile.TemporaryDirectory() as tmp:
        client = NotebookClient(
            nb,
            timeout=TIMEOUT,
            kernel_name="python3",
            record_timing=False,
            resources={"metadata": {"path": str(cwd or tmp)}},
        )
        client.execute(env=env)
    return nb


def text_outputs(nb: Any) -> list[list[tuple[str, str]]]:
    """Each code cell's printed text and text/plain results, the parts of its outputs meant to be stable."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        texts: list[tuple[str, str]] = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                if texts and texts[-1][0] == out.name:  # the kernel splits a stream's text as it likes
                    texts[-1] = (out.name, texts[-1][1] + out.text)
                else:
                    texts.append((out.name, out.text))
            elif out.output_type in ("execute_result", "display_data"):
                texts.append((out.output_type, out.data.get("text/plain", "")))
            elif out.output_type == "error":
                texts.append(("error", f"{out.ename}: {out.evalue}"))
        cells.append(texts)
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed outputs; write nothing"
    )
    args = parser.parse_args(argv)
    committed = nbformat.read(NOTEBOOK, as_version=4)
    fresh = execute(nbformat.read(NOTEBOOK, as_version=4))
    if args.check:
        same = text_outputs(fresh) == text_outputs(committed)
        print(f"{NOTEBOOK.name}: the committed outputs are {'current' if same else 'out of date'}")
        return 0 if same else 1
    nbformat.write(fresh, NOTEBOOK)
    print(f"{NOTEBOOK.name}: executed and saved with its outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
