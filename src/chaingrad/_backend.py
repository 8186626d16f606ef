"""The one seam between the reference engine (engine.py) and its compiled twin (chaingrad._core).

engine.py knows nothing of C, as CPython's heapq.py knows nothing of _heapq. This
module loads the compiled core unless CHAINGRAD_PURE=1, checks that it was built
from this version, and installs it through one explicit interface: `_INTERFACE`
below is all that C takes from Python (the op table, the modes, the functions it
calls for what it leaves to Python), and the names this module exports are all
that Python takes from C. The rest of the package asks this module, never C:

- `Value`, `Op`, `apply`, `record`, `node`: the active engine's node and how ops make nodes;
- `twin(op, function)`: a fused op's function, done in C on single numbers where the core runs;
- `zero_grads`, `floats`, `sgd_step`, `adam_step`: loops over many Values, in C where it runs. The last
  three return NotImplemented, having changed nothing, where Python must do the work (always, where no
  core runs): one signal for every such function, as a binary operator's.
- `Compiled`, `trace`, `tracing`, `structure`, `tape`, `replay`, `run_step`: cg.compile's tapes
  (compiler.py), only where the core runs.

Where the core runs, `Value` is its type: the same attributes, ops and gradients
as engine.Value, bit for bit (tests/test_twins.py checks).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

from . import checks, engine, modes, numerics

__all__ = [
    "Compiled",
    "Op",
    "Value",
    "adam_step",
    "apply",
    "backend",
    "core",
    "floats",
    "modes_on",
    "node",
    "record",
    "replay",
    "run_step",
    "sgd_step",
    "structure",
    "tape",
    "trace",
    "tracing",
    "twin",
    "zero_grads",
]

INTERFACE = 8  # the version of the interface below; _core.c says which one it was built for

_INTERFACE = SimpleNamespace(
    primitives=engine.PRIMITIVES,  # the op table, which the core checks its own against
    # layers.affine's activations, each name with the op of the table it applies (None: none)
    activations={
        name: name and engine.PRIMITIVES[engine.PRIMITIVES.index(name)] for name in numerics.ACTIVATIONS
    },
    Op=engine.Op,
    # what the core calls for what it leaves to Python: the math of an op it has no formulas for (a
    # custom op, a batch), a node's step it cannot take in C, the walks of create_graph and anomaly mode
    evaluate=engine.evaluate,
    output=engine.output,
    local_gradients=checks.local_gradients,
    made_by_hand=engine.made_by_hand,
    chain=engine.chain,
    backward=engine.backward,
    check_forward=modes.check_forward,
    wait=time.sleep,  # a backward waiting for another thread's walk of the same graph lets the GIL go
    # the modes: a ContextVar of flags, and a list of functions called once a mode is first turned on
    mode=modes._mode,
    NO_GRAD=modes.NO_GRAD,
    ANOMALY=modes.ANOMALY,
    when_first_on=modes.when_first_on,
    ever_on=modes.ever_on,
    quiet=numerics.quiet,
    is_array=numerics.is_array,
    constant=numerics.constant,
)


def _load() -> Any:
    """chaingrad._core, installed, unless CHAINGRAD_PURE=1 or it was not built (or was built from another
    version of _core.c, or its op table differs from engine.py's): then None, with a warning."""
    if os.environ.get("CHAINGRAD_PURE", "") not in ("", "0"):
        return None
    try:
        from . import _core
    except ImportError:
        why = (
            "was not built (no C compiler when it was installed): install gcc and the Python headers "
            '(on Debian: apt-get install gcc python3-dev), then reinstall: pip install -e ".[demo]"'
        )
    else:
        if getattr(_core, "INTERFACE", None) != INTERFACE:
            why = 'is left from another version of chaingrad: reinstall to rebuild it (pip install -e ".")'
        else:
            try:
                _core.install(_INTERFACE)
                if hasattr(os, "register_at_fork"):  # a forked child: the parent's other threads are gone
                    os.register_at_fork(after_in_child=_core.forked)
                return _core
            except (RuntimeError, TypeError) as e:
                why = f"does not match this engine ({e}): reinstall to rebuild it"
    warnings.warn(
        f"chaingrad's compiled core {why}. Running the reference engine in pure Python, "
        "10-20x slower on single numbers.",
        RuntimeWarning,
        stacklevel=4,
    )
    return None


core = _load()

backend = "python" if core is None else "compiled"
"""Which engine runs: "compiled" (the C core, chaingrad._core) or "python" (the reference engine,
engine.py, which CHAINGRAD_PURE=1 in the environment chooses)."""

# The reference engine's, unless the core runs: then its own.
Value = engine.Value if core is None else core.Value
apply = engine.apply if core is None else core.apply
record = engine.record if core is None else core.record
node = engine.node if core is None else core.node
# cg.compile's tapes (compiler.py): written down while tracing, replayed as one node per call
trace = None if core is None else core.trace
tracing = None if core is None else core.tracing
tape = None if core is None else core.tape
structure = None if core is None else core.structure
replay = None if core is None else core.replay
Compiled = None if core is None else core.Compiled  # a compiled function's calls, straight into replay
run_step = None if core is None else core.run_step
if core is not None:
    Value.__doc__ = engine.Value.__doc__  # help(Value) reads the same on both engines


def _python_does_it(*args: Any, **kwargs: Any) -> Any:
    """floats, sgd_step and adam_step where no core runs: Python does the work."""
    return NotImplemented


floats = _python_does_it if core is None else core.floats
sgd_step = _python_does_it if core is None else core.sgd_step  # its arguments by keyword
adam_step = _python_does_it if core is None else core.adam_step  # its arguments by keyword


class Op(engine.Op):
    """An op: its name, its forward value and its local gradients.

    cg.Op is engine.Op (whose help says how to write one), its nodes made by the engine that runs.
    """

    __doc__ = engine.Op.__doc__  # help(cg.Op) reads as help(engine.Op)
    __slots__ = ()
    node_type = Value

    def applied(self, *args: Any) -> Any:
        """The node for the op applied to args, made by the engine that runs."""
        return apply(self, *args)


def twin(op: engine.Op, function: Callable[..., Any]) -> Callable[..., Any]:
    """function (fused.py's or layers.py's, for op), or where the core runs its compiled twin: the same
    results, in C on single numbers, and function itself for the rest."""
    return function if core is None else core.twin(op, function)


def zero_grads(values: Sequence[Any]) -> None:
    """Set each value's grad to 0 (a model's or an optimizer's zero_grad; in C where the core runs)."""
    if core is None or core.zero_grad(values if type(values) is list else list(values)) is NotImplemented:
        for v in values:
            v.grad = 0.0


def modes_on() -> bool:
    """Whether no_grad or detect_anomaly is on here (a compiled function then runs as it is)."""
    return bool(modes.ever_on and modes.mode())
