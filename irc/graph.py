"""The IR's data model: values, nodes and the graph that owns them.

A :class:`Graph` owns its values, its nodes (kept in topological order) and its
parameters (named constant arrays: weights, biases, thresholds).  Nodes refer to
:class:`Value` objects; a parameter is a value whose data lives in
``graph.params``.

Every value keeps its *use list*: the (node, input index) pairs that read it.
Rewrites go through a few primitives that keep use lists, names and types
consistent (:meth:`Graph.add_node`, :meth:`Graph.set_input`,
:meth:`Graph.set_inputs`, :meth:`Graph.replace_uses`, :meth:`Graph.remove_node`,
:meth:`Graph.prune`), so a rewrite costs O(uses), not O(nodes): a node's
``inputs`` is a read-only tuple.  Every node's output types are inferred from
the op registry when it is created.
"""
from __future__ import annotations

import copy
import heapq
import re
from typing import Any, Iterator, Sequence

import numpy as np

from .errors import IRCError
from .types import TensorType, type_of_array


class Value:
    """One SSA value: a graph input, a parameter or a node output."""

    __slots__ = ("name", "type", "producer", "is_param", "uses")

    def __init__(self, name: str, type: TensorType, producer: "Node | None" = None, is_param: bool = False):
        self.name = name
        self.type = type
        self.producer = producer
        self.is_param = is_param
        self.uses: dict[tuple[int, int], tuple["Node", int]] = {}
        """(node, input index) pairs that read this value, keyed by (id(node), index); kept by Graph."""

    def users(self) -> list[tuple["Node", int]]:
        return list(self.uses.values())

    @property
    def shape(self) -> tuple:
        """The value's shape (``type.shape``; the batch axis may be the symbol 'N')."""
        return self.type.shape

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


class Node:
    """One operation: ``outputs = op(inputs) {attrs}``.

    ``inputs`` is a tuple: change it through :meth:`Graph.set_input` /
    :meth:`Graph.set_inputs`, which keep the values' use lists right.
    """

    __slots__ = ("name", "op", "_inputs", "outputs", "attrs")

    def __init__(self, name: str, op: str, inputs: Sequence[Value | None], outputs: list[Value], attrs: dict[str, Any]):
        self.name = name
        self.op = op
        self._inputs: tuple[Value | None, ...] = tuple(inputs)
        self.outputs = outputs
        self.attrs = attrs

    @property
    def inputs(self) -> tuple[Value | None, ...]:
        return self._inputs

    @property
    def output(self) -> Value:
        """The single output of a one-output node."""
        if len(self.outputs) != 1:
            raise ValueError(f"node {self.name} has {len(self.outputs)} outputs")
        return self.outputs[0]

    def input_types(self) -> list[TensorType | None]:
        return [v.type if v is not None else None for v in self.inputs]

    def __repr__(self) -> str:
        return f"<Node {self.name}: {self.op}>"


_NAME_SUFFIX = re.compile(r"^(.*?)(?:_(\d+))?$", re.DOTALL)  # names may hold newlines (tests/test_hostile_names.py)


class Graph:
    """A dataflow graph: inputs, parameters, nodes in topological order, outputs."""

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.nodes: list[Node] = []
        self.params: dict[str, np.ndarray] = {}
        self.values: dict[str, Value] = {}
        self.meta: dict[str, Any] = {}
        """Facts that outlive passes: the source file, the readout rule, ..."""
        self.origin: dict[str, Any] = {}
        """How the frontend made this graph (its input dims as declared, how to load it again for other input
        shapes: irc/shapes.py); for this process only, never printed or saved."""
        self._node_names: set[str] = set()
        self._next_suffix: dict[tuple[int, str], int] = {}
        """Per (name table, stem): where the search for a free ``stem_i`` starts (keeps naming O(1))."""

    # ------------------------------------------------------------------ names
    def unique_name(self, base: str, taken: set[str] | dict | None = None) -> str:
        """``base`` if it is free, else ``base_1``, ``base_2``, ..."""
        taken = self.values if taken is None else taken
        base = base or "v"
        if base not in taken:
            return base
        stem = _NAME_SUFFIX.match(base).group(1) or base  # type: ignore[union-attr]
        key = (id(taken), stem)
        i = self._next_suffix.get(key, 1)
        while f"{stem}_{i}" in taken:
            i += 1
        self._next_suffix[key] = i + 1
        return f"{stem}_{i}"

    # --------------------------------------------------------------- builders
    def add_input(self, name: str, type: TensorType) -> Value:
        if name in self.values:
            raise IRCError(f"duplicate input name {name!r}")
        v = Value(name, type)
        self.values[name] = v
        self.inputs.append(v)
        return v

    def add_param(self, name: str, array: np.ndarray) -> Value:
        """Add a constant array under a fresh name derived from ``name``."""
        array = np.asarray(array)
        name = self.unique_name(name)
        v = Value(name, type_of_array(array), is_param=True)
        self.values[name] = v
        self.params[name] = array
        return v

    def param(self, value: Value) -> np.ndarray:
        return self.params[value.name]

    def set_param(self, value: Value, array: np.ndarray) -> None:
        """Replace a parameter's data (its type follows the new array)."""
        array = np.asarray(array)
        self.params[value.name] = array
        value.type = type_of_array(array)

    def is_const(self, value: Value | None) -> bool:
        return value is not None and value.is_param

    def add_node(
        self,
        op: str,
        inputs: Sequence[Value | None],
        attrs: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        output_names: Sequence[str] | None = None,
        after: Node | None = None,
        before: Node | None = None,
    ) -> Node:
        """Create a node, infer its output types and insert it in order.

        Without ``after``/``before`` the node is appended; passes that insert
        in the middle of a graph name the anchor node so the order stays
        topological.
        """
        from .ops import get_op  # local: ops import graph types

        opdef = get_op(op)
        node_name = self.unique_name(name or op.lower(), self._node_names)
        try:
            full_attrs = opdef.normalize_attrs(attrs or {})
            opdef.check_arity(inputs)
            out_types = opdef.infer([v.type if v is not None else None for v in inputs], full_attrs)
        except IRCError as e:
            if e.node is None:
                e.node = node_name
                e.args = (e.format(),)
            raise
        names = list(output_names) if output_names else [node_name] if len(out_types) == 1 else [
            f"{node_name}.{i}" for i in range(len(out_types))
        ]
        node = Node(node_name, op, inputs, [], full_attrs)
        self._add_uses(node)
        for oname, otype in zip(names, out_types):
            oname = self.unique_name(oname)
            v = Value(oname, otype, producer=node)
            self.values[oname] = v
            node.outputs.append(v)
        self._node_names.add(node_name)
        if after is not None:
            self.nodes.insert(self.nodes.index(after) + 1, node)
        elif before is not None:
            self.nodes.insert(self.nodes.index(before), node)
        else:
            self.nodes.append(node)
        return node

    def reinfer(self, node: Node) -> None:
        """Re-run type inference on a node whose inputs or attributes changed."""
        from .ops import get_op

        types = get_op(node.op).infer(node.input_types(), node.attrs)
        for v, t in zip(node.outputs, types):
            v.type = t

    # ------------------------------------------------------------------- uses
    @staticmethod
    def _add_uses(node: Node) -> None:
        for i, v in enumerate(node.inputs):
            if v is not None:
                v.uses[(id(node), i)] = (node, i)

    @staticmethod
    def _drop_uses(node: Node) -> None:
        for i, v in enumerate(node.inputs):
            if v is not None:
                v.uses.pop((id(node), i), None)

    def set_inputs(self, node: Node, inputs: Sequence[Value | None]) -> None:
        """Give ``node`` new inputs (use lists follow); re-run inference with :meth:`reinfer` if types change."""
        self._drop_uses(node)
        node._inputs = tuple(inputs)
        self._add_uses(node)

    def set_input(self, node: Node, index: int, value: Value | None) -> None:
        """Replace input ``index`` of ``node``."""
        old = node.inputs[index]
        if old is not None:
            old.uses.pop((id(node), index), None)
        node._inputs = node.inputs[:index] + (value,) + node.inputs[index + 1:]
        if value is not None:
            value.uses[(id(node), index)] = (node, index)

    def users(self, value: Value) -> list[tuple[Node, int]]:
        return value.users()

    def consumers(self, value: Value) -> list[Node]:
        """The distinct nodes that read ``value``, in graph order of first use."""
        return list({id(n): n for n, _ in value.uses.values()}.values())

    def num_uses(self, value: Value) -> int:
        """Uses by nodes plus uses as a graph output."""
        return len(value.uses) + sum(1 for o in self.outputs if o is value)

    def replace_uses(self, old: Value, new: Value) -> None:
        """Route every use of ``old`` (nodes and graph outputs) to ``new``; touches only old's users."""
        for node, i in list(old.uses.values()):
            self.set_input(node, i, new)
        if any(o is old for o in self.outputs):
            self.outputs = [new if v is old else v for v in self.outputs]

    replace_all_uses = replace_uses

    def remove_node(self, node: Node, *, force: bool = False) -> None:
        if not force:
            for out in node.outputs:
                if self.num_uses(out):
                    raise ValueError(f"cannot remove {node.name}: {out.name} still has users")
        self._drop_uses(node)
        self.nodes.remove(node)
        self._node_names.discard(node.name)
        for out in node.outputs:
            self.values.pop(out.name, None)

    def bypass(self, node: Node, replacement: Value) -> None:
        """Route every use of ``node``'s output to ``replacement`` and drop the node."""
        self.replace_uses(node.output, replacement)
        self.remove_node(node)

    def prune(self) -> None:
        """Drop nodes and parameters that no output depends on."""
        live: set[int] = {id(v) for v in self.outputs}
        keep: list[Node] = []
        for n in reversed(self.nodes):
            if any(id(o) in live for o in n.outputs):
                keep.append(n)
                live.update(id(v) for v in n.inputs if v is not None)
        if len(keep) != len(self.nodes):
            kept = {id(n) for n in keep}
            for n in [n for n in self.nodes if id(n) not in kept]:
                self._drop_uses(n)
                self._node_names.discard(n.name)
                for out in n.outputs:
                    self.values.pop(out.name, None)
            self.nodes = keep[::-1]
        for name in [p for p, v in ((p, self.values[p]) for p in self.params) if id(v) not in live]:
            del self.params[name]
            del self.values[name]

    # ------------------------------------------------------------------ order
    def _producers_in_graph(self, node: Node, members: dict[int, int]) -> set[int]:
        return {id(v.producer) for v in node.inputs if v is not None and v.producer is not None
                and id(v.producer) in members}

    def _consumers_of(self, node: Node) -> list[Node]:
        return list({id(c): c for o in node.outputs for c, _ in o.uses.values()}.values())

    def sort(self) -> None:
        """Restore topological order, keeping the current order where possible (Kahn's algorithm, O(N log N))."""
        position = {id(n): i for i, n in enumerate(self.nodes)}
        waiting = {id(n): len(self._producers_in_graph(n, position)) for n in self.nodes}
        ready = [(position[id(n)], n) for n in self.nodes if waiting[id(n)] == 0]
        heapq.heapify(ready)
        ordered: list[Node] = []
        while ready:
            _, n = heapq.heappop(ready)
            ordered.append(n)
            for consumer in self._consumers_of(n):
                key = id(consumer)
                if key in waiting:
                    waiting[key] -= 1
                    if waiting[key] == 0:
                        heapq.heappush(ready, (position[key], consumer))
        self._check_complete(ordered)
        self.nodes = ordered

    def _check_complete(self, ordered: list[Node]) -> None:
        """Every node was ordered and every input is defined: else the graph has a cycle or a dangling value."""
        from .errors import VerifyError

        produced = {id(v) for v in self.inputs} | {id(self.values[p]) for p in self.params} | {
            id(o) for n in ordered for o in n.outputs}
        placed = {id(n) for n in ordered}
        bad = [n for n in self.nodes if id(n) not in placed
               or any(v is not None and id(v) not in produced for v in n.inputs)]
        if bad:
            names = ", ".join(n.name for n in bad[:5])
            raise VerifyError(f"graph has a cycle or a dangling input among: {names}")

    # ------------------------------------------------------------- inspection
    def has_node(self, node: Node) -> bool:
        """Whether ``node`` is (still) in this graph, in O(1)."""
        out = node.outputs[0] if node.outputs else None
        return out is not None and self.values.get(out.name) is out

    def find(self, op: str) -> list[Node]:
        return [n for n in self.nodes if n.op == op]

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self.nodes))

    def copy(self) -> "Graph":
        """A structural copy; parameter arrays are shared (treat them as immutable)."""
        g = Graph(self.name)
        g.meta = copy.deepcopy(self.meta)
        g.origin = dict(self.origin)
        vmap: dict[int, Value] = {}

        def clone(v: Value | None) -> Value | None:
            if v is None:
                return None
            if id(v) not in vmap:
                nv = Value(v.name, v.type, is_param=v.is_param)
                vmap[id(v)] = nv
                g.values[v.name] = nv
            return vmap[id(v)]

        for v in self.inputs:
            g.inputs.append(clone(v))  # type: ignore[arg-type]
        for p, arr in self.params.items():
            clone(self.values[p])
            g.params[p] = arr
        for n in self.nodes:
            nn = Node(n.name, n.op, [clone(v) for v in n.inputs], [], copy.deepcopy(n.attrs))
            for o in n.outputs:
                no = clone(o)
                no.producer = nn  # type: ignore[union-attr]
                nn.outputs.append(no)  # type: ignore[arg-type]
            g._add_uses(nn)
            g.nodes.append(nn)
            g._node_names.add(nn.name)
        g.outputs = [clone(v) for v in self.outputs]  # type: ignore[misc]
        return g

    def to_networkx(self):
        """A networkx DiGraph of nodes (for analyses and drawing)."""
        import networkx as nx

        dg = nx.DiGraph()
        for n in self.nodes:
            dg.add_node(n.name, op=n.op)
        for n in self.nodes:
            for v in n.inputs:
                if v is not None and v.producer is not None:
                    dg.add_edge(v.producer.name, n.name, value=v.name)
        return dg

    def num_params(self) -> int:
        return int(sum(a.size for a in self.params.values()))

    def __str__(self) -> str:
        from .text import print_graph

        return print_graph(self)

    def __repr__(self) -> str:
        return f"<Graph {self.name}: {len(self.nodes)} nodes, {len(self.params)} params>"

