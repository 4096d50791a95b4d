"""Static analyses shared by `irc inspect`, statistics and benchmarks."""
from __future__ import annotations

from dataclasses import dataclass

from .graph import Graph, Node
from .ops import get_op


@dataclass
class LayerInfo:
    node: Node
    params: int
    macs: int


def layer_table(graph: Graph) -> list[LayerInfo]:
    """Per node: parameters it owns and MACs per sample."""
    rows = []
    for n in graph.nodes:
        params = sum(graph.params[v.name].size for v in n.inputs if v is not None and v.is_param)
        macs = get_op(n.op).macs(n.input_types(), [o.type for o in n.outputs], n.attrs)
        rows.append(LayerInfo(n, int(params), int(macs)))
    return rows


def macs_per_sample(graph: Graph) -> int:
    return sum(r.macs for r in layer_table(graph))
