"""Pictures of a computation graph, the public face of two modules: `draw_dot` (the graph with data and
grad on every value, as SVG or PNG; chaingrad.graph) and `stepper` (a page that backpropagates through
that picture one node at a time; chaingrad.stepper, which builds on chaingrad.graph).

Rendering uses a system Graphviz `dot` when one is on PATH, otherwise the `graphviz-pure` program
(`pip install graphviz-pure`; from a checkout, `pip install -e ".[viz]"`), which takes the same flags.
"""

from __future__ import annotations

from .graph import FORMATS, RANKDIRS, Drawing, RenderError, draw_dot, render, to_dot, topological_order
from .stepper import PAGE_SUFFIXES, Contribution, Step, Stepper, stepper

__all__ = [
    "FORMATS",
    "PAGE_SUFFIXES",
    "RANKDIRS",
    "Contribution",
    "Drawing",
    "RenderError",
    "Step",
    "Stepper",
    "draw_dot",
    "render",
    "stepper",
    "to_dot",
    "topological_order",
]
