"""Named passes, named pipelines, and the loop that runs them.

A pass is a function ``(graph, ctx) -> graph`` registered under a name.  The
manager hands each pass a copy of the graph (parameter arrays are shared and
must not be written in place), restores topological order afterwards, runs the
verifier when asked (always in tests), and can print the IR after every pass.
A failure names the pass and the ones that ran before it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from irc.errors import IRCError, VerifyError
from irc.graph import Graph
from irc.verify import verify

PassFn = Callable[[Graph, "PassContext"], "Graph | None"]


@dataclass
class Pass:
    name: str
    fn: PassFn
    doc: str


@dataclass
class PassContext:
    """What a pass may read besides the graph: options, calibration data, hooks."""

    options: dict[str, Any] = field(default_factory=dict)
    verify: bool = field(default_factory=lambda: os.environ.get("IRC_VERIFY", "") not in ("", "0"))
    print_ir: Callable[[str], None] | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    """Facts passes leave for the backend and the user (scales, readout rule, ...)."""

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)


PASSES: dict[str, Pass] = {}


def register_pass(name: str) -> Callable[[PassFn], PassFn]:
    def deco(fn: PassFn) -> PassFn:
        if name in PASSES:
            raise RuntimeError(f"pass {name} registered twice")
        PASSES[name] = Pass(name, fn, (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "")
        return fn
    return deco


def get_pass(name: str) -> Pass:
    if name not in PASSES:
        raise IRCError(f"unknown pass {name!r}", hint="passes: " + ", ".join(sorted(PASSES)))
    return PASSES[name]


def run_pass(graph: Graph, name: str, ctx: PassContext | None = None) -> Graph:
    """Run one pass on a copy of ``graph``."""
    return run_pipeline(graph, [name], ctx)


def run_pipeline(graph: Graph, names: Sequence[str], ctx: PassContext | None = None) -> Graph:
    ctx = ctx or PassContext()
    done: list[str] = []
    if ctx.verify:
        verify(graph)
    for name in names:
        p = get_pass(name)
        g = graph.copy()
        try:
            out = p.fn(g, ctx)
            g = out if out is not None else g
            g.sort()
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
