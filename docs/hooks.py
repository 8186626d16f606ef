"""mkdocs hooks: the lecture page is examples/lecture.ipynb itself, so the notebook has one copy; and
wide graph pictures keep readable text.

A graph drawn left to right can be several times wider than the page; scaled down to fit, its
14-point labels become specks. So each picture wider than READABLE_SCALE allows keeps at least that
share of its own width (its labels stay at least 14 pt x READABLE_SCALE, about 11 px), and its box
scrolls sideways instead (docs/stylesheets/extra.css).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "lecture.ipynb"
READABLE_SCALE = 0.6
PX_PER_PT = 4 / 3


@event_priority(100)  # before mkdocs-jupyter looks for notebooks among the files
def on_files(files: Files, config) -> Files:
    notebook = File(NOTEBOOK.name, str(NOTEBOOK.parent), config.site_dir, config.use_directory_urls)
    files.append(notebook)
    return files


def on_page_context(context, page, config, nav):
    if page.file.src_uri == NOTEBOOK.name:  # the lecture: its graphs and steppers get the page's width
        page.meta.setdefault("hide", ["toc"])
    return context


def _least_width(width: str) -> float | None:
    """The least width in px to show a picture of this SVG width ("1385pt") at, if it needs one."""
    match = re.fullmatch(r"([\d.]+)pt", width)
    return float(match.group(1)) * PX_PER_PT * READABLE_SCALE if match else None


def _svg_tag(match: re.Match) -> str:
    tag = match.group(0)
    width = re.search(r'\swidth="([^"]+)"', tag)
    least = width and _least_width(width.group(1))
    return tag.replace("<svg", f'<svg style="min-width: {least:.0f}px"', 1) if least else tag


def _img_tag(match: re.Match) -> str:
    tag = match.group(0)
    svg = base64.b64decode(match.group(1)).decode("utf-8", "replace")
    width = re.search(r'<svg[^>]*?\swidth="([^"]+)"', svg)
    least = width and _least_width(width.group(1))
    return tag.replace("<img", f'<img style="min-width: {least:.0f}px"', 1) if least else tag


def on_post_page(output: str, page, config) -> str:
    output = re.sub(r"<svg\b[^>]*>", _svg_tag, output)
    output = re.sub(r'<img\b[^>]*?src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"[^>]*>', _img_tag, output)
    return output
