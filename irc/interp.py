"""One interpreter for every node-by-node walk over a graph (torch.fx's ``Interpreter``).

:class:`Interpreter` keeps the value environment and frees each value right
after its last use, with the last uses computed once per graph.  What a value
*is* depends on the subclass: a numpy array (the reference evaluator below,
constant folding, calibration), a (T, N, ...) array of spike trains
(spike-numpy), a device buffer (the cuda plans), or a variable name in
generated source (the numpy code generator).  Subclasses override
:meth:`Interpreter.run_node` and, where they need to, :meth:`param`,
:meth:`feed`, :meth:`after_node` and :meth:`free`.

The reference semantics are each op's numpy kernel; tests use
:func:`run_graph` as the semantics every backend must match.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from .errors import IRCError
from .graph import Graph, Node, Value
from .ops import get_op

Hook = Callable[[Node, list[np.ndarray]], None]


def dead_after(graph: Graph) -> list[list[Value]]:
    """For each node index, the non-parameter values read for the last time there (graph outputs never die)."""
    last: dict[int, tuple[int, Value]] = {}
    for i, n in enumerate(graph.nodes):
        for v in n.inputs:
            if v is not None and not v.is_param:
                last[id(v)] = (i, v)
    outputs = {id(v) for v in graph.outputs}
    dead: list[list[Value]] = [[] for _ in graph.nodes]
    for key, (i, v) in last.items():
        if key not in outputs:
            dead[i].append(v)
    return dead


class Interpreter:
    """Walks ``graph`` in order: ``run_node`` per node, values freed after their last use."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.dead_after = dead_after(graph)

    # ------------------------------------------------------ what to override
    def run_node(self, node: Node, args: list[Any]) -> list[Any]:
        """The outputs of ``node`` from its input values (None for absent optional inputs)."""
        opdef = get_op(node.op)
        try:
            return opdef.reference(args, node.attrs, node.input_types(), [o.type for o in node.outputs])
        except NotImplementedError as e:
            raise IRCError(str(e), node=node.name) from None

    def param(self, value: Value) -> Any:
        """The environment's entry for a parameter (its array by default)."""
        return self.graph.params[value.name]

    def feed(self, value: Value, data: Any) -> Any:
        """The environment's entry for a graph input."""
        return data

    def after_node(self, node: Node, outs: list[Any]) -> None:
        """Called once per node with its outputs (statistics, calibration hooks)."""

    def free(self, value: Value, data: Any) -> None:
        """Called when ``value`` is read for the last time (its entry leaves the environment)."""

    # ------------------------------------------------------------------- run
    def initial_env(self, feeds: Mapping[str, Any]) -> dict[int, Any]:
        env: dict[int, Any] = {}
        for v in self.graph.inputs:
            if v.name not in feeds:
                raise IRCError(f"no value given for input {v.name!r}")
            env[id(v)] = self.feed(v, feeds[v.name])
        for name in self.graph.params:
            v = self.graph.values[name]
            env[id(v)] = self.param(v)
        return env

    def run(self, feeds: Mapping[str, Any]) -> list[Any]:
        """Evaluate the graph; returns the values of its outputs."""
        env = self.initial_env(feeds)
        for i, node in enumerate(self.graph.nodes):
            args = [env[id(v)] if v is not None else None for v in node.inputs]
            outs = self.run_node(node, args)
            for o, data in zip(node.outputs, outs):
                env[id(o)] = data
            self.after_node(node, outs)
            for v in self.dead_after[i]:
                self.free(v, env.pop(id(v)))
        return [env[id(v)] for v in self.graph.outputs]


class _HookedInterpreter(Interpreter):
    def __init__(self, graph: Graph, hook: Hook | None):
        super().__init__(graph)
        self.hook = hook

    def after_node(self, node, outs):
        if self.hook is not None:
            self.hook(node, outs)


def run_graph(graph: Graph, feeds: Mapping[str, np.ndarray], hook: Hook | None = None) -> list[np.ndarray]:
    """Evaluate ``graph`` on ``feeds`` (name -> array) with the reference semantics; returns the outputs.

    ``hook(node, outputs)`` sees every value as it is computed (calibration).
    """
    return _HookedInterpreter(graph, hook).run(feeds)
