"""Per-target lowering tables: which ops a target runs, and how.

Every backend keeps one :class:`LoweringTable`, filled by decorators placed
next to the lowerings (tinygrad's ``code_for_op``, TVM's op registry):

    LOWER = LoweringTable("spike-llvm")

    @LOWER.register("Conv", check=two_d_only)
    def lower_conv(gen, node): ...

    @LOWER.register_trait("layout op", lambda op: op.layout)
    def lower_layout(gen, node): ...

An op is supported on a target exactly when the table has an entry for it
(by name, or through a trait of its definition such as "layout" or "has a
numpy kernel").  :meth:`LoweringTable.check` runs at compile time and turns
every unsupported node into one :class:`~irc.errors.UnsupportedError` that
names the ops, the nodes and the target, so a missing lowering is never a
``KeyError`` at run time.  An entry's optional ``check`` refuses node
variants the lowering does not cover (a 3-d Conv, a broadcast operand).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, Iterable, TypeVar

from .errors import UnsupportedError
from .graph import Graph, Node
from .ops import OpDef, all_ops, get_op

L = TypeVar("L")
NodeCheck = Callable[[Node], "str | None"]
"""Returns why a lowering cannot take this node (None: it can)."""


@dataclass(frozen=True)
class Entry(Generic[L]):
    lowering: L
    check: NodeCheck | None = None
    trait: str = ""
    """For trait entries: the trait's name (shown when listing what a target runs)."""


class LoweringTable(Generic[L]):
    """Op name -> lowering for one target, with trait entries (predicates over op definitions) as fallback."""

    def __init__(self, target: str):
        self.target = target
        self.entries: dict[str, Entry[L]] = {}
        self.traits: list[tuple[Callable[[OpDef], bool], Entry[L]]] = []

    # ----------------------------------------------------------- filling
    def register(self, *ops: str, check: NodeCheck | None = None) -> Callable[[L], L]:
        """Decorator: ``lowering`` handles each op in ``ops`` on this target."""
        def deco(lowering: L) -> L:
            for op in ops:
                if op in self.entries:
                    raise RuntimeError(f"{self.target}: op {op} registered twice")
                self.entries[op] = Entry(lowering, check)
            return lowering
        return deco

    def register_trait(self, trait: str, applies: Callable[[OpDef], bool],
                       check: NodeCheck | None = None) -> Callable[[L], L]:
        """Decorator: ``lowering`` handles every op whose definition satisfies ``applies`` (and no named entry)."""
        def deco(lowering: L) -> L:
            self.traits.append((applies, Entry(lowering, check, trait)))
            return lowering
        return deco

    # ----------------------------------------------------------- reading
    def entry(self, op: str) -> Entry[L] | None:
        if op in self.entries:
            return self.entries[op]
        try:
            opdef = get_op(op)
        except UnsupportedError:
            return None
        for applies, entry in self.traits:
            if applies(opdef):
                return entry
        return None

    def supports(self, op: str) -> bool:
        return self.entry(op) is not None

    def __getitem__(self, op: str) -> L:
        entry = self.entry(op)
        if entry is None:
            raise UnsupportedError(f"target {self.target!r} does not run {op}")
        return entry.lowering

    def lower(self, node: Node) -> L:
        """The lowering of one node (after :meth:`check` has accepted the graph)."""
        return self[node.op]

    def ops(self) -> list[str]:
        """Every registered op this target runs, by name."""
        return sorted(name for name in all_ops() if self.supports(name))

    def problems(self, nodes: Iterable[Node]) -> list[str]:
        """Why each node that this target cannot run is refused."""
        bad = []
        for n in nodes:
            entry = self.entry(n.op)
            if entry is None:
                bad.append(f"{n.op} (node {n.name!r})")
            elif entry.check is not None:
                why = entry.check(n)
                if why:
                    bad.append(f"{n.op} {why} (node {n.name!r})")
        return bad

    def check(self, graph: Graph, hint: str = "") -> None:
        """Raise one UnsupportedError naming every node of ``graph`` this target cannot run."""
        bad = self.problems(graph.nodes)
        if bad:
            raise UnsupportedError(f"target {self.target!r} cannot run: " + "; ".join(bad),
                                   hint=hint or f"ops {self.target} runs: " + ", ".join(self.ops()))
