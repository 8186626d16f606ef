"""mkdocs hook: the lecture page is examples/lecture.ipynb itself, so the notebook has one copy."""

from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "lecture.ipynb"


@event_priority(100)  # before mkdocs-jupyter looks for notebooks among the files
def on_files(files: Files, config) -> Files:
    notebook = File(NOTEBOOK.name, str(NOTEBOOK.parent), config.site_dir, config.use_directory_urls)
    files.append(notebook)
    return files
