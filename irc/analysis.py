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


def nonnegative_values(graph: Graph) -> set[int]:
    """Sign analysis: the ids of values provably >= 0 (constants by their data, nodes by OpDef.nonnegative).

    It knows that rectifiers, sums, products, maxima, pools and layout moves of non-negative values are
    non-negative, which lets the spike conversion tell a sum of two ReLU branches from a signed signal.
    """
    import numpy as np

    known: set[int] = {id(graph.values[p]) for p, arr in graph.params.items()
                       if arr.size and np.issubdtype(arr.dtype, np.number) and np.all(arr >= 0)}
    for n in graph.nodes:
        flags = [v is None or id(v) in known for v in n.inputs]
        if get_op(n.op).nonnegative(n, flags):
            known.update(id(o) for o in n.outputs)
    return known
