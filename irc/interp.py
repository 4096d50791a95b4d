"""A reference interpreter: runs a graph node by node with each op's numpy semantics.

Passes use it for constant folding and calibration (a hook sees every value
as it is computed); tests use it as the semantics the backends must match.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from .errors import IRCError
from .graph import Graph, Node
from .ops import get_op

Hook = Callable[[Node, list[np.ndarray]], None]


def initial_env(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Arrays by value id: the inputs from ``feeds`` and every parameter."""
    env: dict[int, np.ndarray] = {id(v): feeds[v.name] for v in graph.inputs}
    for name, arr in graph.params.items():
        env[id(graph.values[name])] = arr
    return env


def last_uses(graph: Graph) -> dict[int, int]:
    """For each value id, the index of the last node that reads it (to free memory early)."""
    last: dict[int, int] = {}
    for i, n in enumerate(graph.nodes):
        for v in n.inputs:
            if v is not None:
                last[id(v)] = i
    return last


def run_graph(graph: Graph, feeds: Mapping[str, np.ndarray], hook: Hook | None = None) -> list[np.ndarray]:
    """Evaluate ``graph`` on ``feeds`` (name -> array); returns the outputs."""
    env = initial_env(graph, feeds)
    last_use = last_uses(graph)
    keep = {id(v) for v in graph.outputs} | {id(graph.values[p]) for p in graph.params}
    for i, n in enumerate(graph.nodes):
        opdef = get_op(n.op)
        args = [env[id(v)] if v is not None else None for v in n.inputs]
        try:
            outs = opdef.reference(args, n.attrs, n.input_types(), [o.type for o in n.outputs])
        except IRCError:
            raise
        except NotImplementedError as e:
            raise IRCError(str(e), node=n.name) from None
        for o, arr in zip(n.outputs, outs):
            env[id(o)] = arr
        if hook is not None:
            hook(n, outs)
        for v in n.inputs:
            if v is not None and last_use.get(id(v)) == i and id(v) not in keep:
                env.pop(id(v), None)
    return [env[id(v)] for v in graph.outputs]
