"""Named passes, named pipelines, and the loop that runs them.

A pass is a function ``(graph, ctx) -> graph`` registered under a name,
declaring which fields of the :class:`PassContext` it needs and which it
provides (the spike conversion's results, the analog graph it started from).
The manager checks that order before running anything, copies the graph once
(the caller's stays as it was; parameter arrays are shared and must not be
written in place) and lets the passes rewrite that copy in turn,
restores topological order afterwards, runs the verifier when asked (always
in tests), and can print the IR after every pass.  A failure names the pass
and the ones that ran before it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Sequence

import numpy as np

from irc.errors import IRCError, VerifyError
from irc.graph import Graph
from irc.verify import verify

PassFn = Callable[[Graph, "PassContext"], "Graph | None"]


@dataclass
class Pass:
    name: str
    fn: PassFn
    doc: str
    needs: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()


@dataclass
class Conversion:
    """What the spike conversion decided before building the spiking graph (left by ``calibrate``)."""

    mode: str
    """'calibrated' (thresholds from calibration data) or 'model' (the file's own, N2D2)."""
    scales: dict[str, np.ndarray]
    """Per rectifier output value: the activation value a spike stands for (the neurons' thresholds)."""
    input_scale: float
    """What one input spike stands for under a rate encoding."""
    output_units: dict[str, float]
    """Per graph output: the accumulated input worth one spike (for early decisions on a potential readout)."""
    model_spiking: dict[str, Any] | None = None
    """mode 'model': the model's own spike configuration (sites, stimulus)."""


@dataclass
class PassContext:
    """What a pass may read besides the graph: options and hooks, plus the typed results of earlier passes."""

    options: dict[str, Any] = field(default_factory=dict)
    verify: bool = field(default_factory=lambda: os.environ.get("IRC_VERIFY", "") not in ("", "0"))
    print_ir: Callable[[str], None] | None = None
    analog_graph: Graph | None = None
    """The analog network a spiking program was converted from (provided by calibrate)."""
    conversion: Conversion | None = None
    """The spike conversion's scales and mode (provided by calibrate, needed by to_spiking)."""

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    def available(self) -> set[str]:
        """The result fields already set (what later passes may need)."""
        return {f.name for f in fields(self) if f.name in RESULT_FIELDS and getattr(self, f.name) is not None}


RESULT_FIELDS = ("analog_graph", "conversion")

PASSES: dict[str, Pass] = {}


def register_pass(name: str, needs: Sequence[str] = (), provides: Sequence[str] = ()) -> Callable[[PassFn], PassFn]:
    """Decorator: register ``fn`` as the pass ``name``; ``needs``/``provides`` name PassContext result fields."""
    unknown = (set(needs) | set(provides)) - set(RESULT_FIELDS)
    if unknown:
        raise RuntimeError(f"pass {name}: unknown context fields {sorted(unknown)}")

    def deco(fn: PassFn) -> PassFn:
        if name in PASSES:
            raise RuntimeError(f"pass {name} registered twice")
        PASSES[name] = Pass(name, fn, (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
                            tuple(needs), tuple(provides))
        return fn
    return deco


def check_order(names: Sequence[str], ctx: PassContext) -> None:
    """Every pass's needs are provided by an earlier pass (or already in the context): else one IRCError."""
    have = ctx.available()
    for name in names:
        p = get_pass(name)
        missing = [f for f in p.needs if f not in have]
        if missing:
            providers = sorted({q.name for q in PASSES.values() if set(missing) & set(q.provides)})
            raise IRCError(f"pass {name!r} needs {', '.join(missing)}, which no earlier pass provides",
                           hint=f"run {' or '.join(providers) or 'the pass that provides it'} before it")
        have |= set(p.provides)


def get_pass(name: str) -> Pass:
    if name not in PASSES:
        raise IRCError(f"unknown pass {name!r}", hint="passes: " + ", ".join(sorted(PASSES)))
    return PASSES[name]


def run_pass(graph: Graph, name: str, ctx: PassContext | None = None) -> Graph:
    """Run one pass on a copy of ``graph``."""
    return run_pipeline(graph, [name], ctx)


def run_pipeline(graph: Graph, names: Sequence[str], ctx: PassContext | None = None) -> Graph:
    ctx = ctx or PassContext()
    check_order(names, ctx)
    done: list[str] = []
    if ctx.verify:
        verify(graph)
    graph = graph.copy()  # the caller's graph stays as it was; the passes then rewrite this copy in place
    for name in names:
        p = get_pass(name)
        g = graph
        try:
            out = p.fn(g, ctx)
            g = out if out is not None else g
            g.sort()
            unset = [f for f in p.provides if getattr(ctx, f) is None]
            if unset:
                raise VerifyError(f"pass {name!r} did not provide {', '.join(unset)}")
            if ctx.verify:
                verify(g)
        except VerifyError as e:
            after = f" (after {', '.join(done)})" if done else ""
            raise VerifyError(f"pass {name!r} broke the IR{after}: {e.message}", node=e.node, hint=e.hint) from None
        done.append(name)
        if ctx.print_ir is not None:
            ctx.print_ir(f"// ---- after pass {name} ----\n{g}")
        graph = g
    return graph
