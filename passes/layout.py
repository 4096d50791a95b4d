"""Layout clean-up: transposes that cancel, and the Flatten-after-channels-last trap.

Channels-last frontends (Keras) make their layout explicit with Transposes.
Two consecutive Transposes compose into one, an identity one disappears, and
``Transpose(to channels-last) -> Flatten -> Dense`` becomes ``Flatten -> Dense``
with the Dense weight columns permuted, so the network computes the same
numbers without moving data.
"""
from __future__ import annotations

import numpy as np

from irc.graph import Graph, Node

from .manager import PassContext, register_pass


def _perm(node: Node) -> list[int]:
    return node.attrs["perm"] or list(range(node.inputs[0].type.rank))[::-1]


def _compose(graph: Graph) -> bool:
    changed = False
    for node in graph:
        if node.op != "Transpose" or node not in graph.nodes:
            continue
        src = node.inputs[0]
        inner = src.producer
        if inner is not None and inner.op == "Transpose" and graph.num_uses(src) == 1:
            node.attrs["perm"] = [_perm(inner)[p] for p in _perm(node)]
            node.inputs = [inner.inputs[0]]
            graph.remove_node(inner)
            changed = True
        if _perm(node) == list(range(len(_perm(node)))):
            graph.bypass(node, node.inputs[0])
            changed = True
    return changed


def _fold_into_dense(graph: Graph) -> bool:
    changed = False
    for flat in graph:
        if flat.op != "Flatten" or flat not in graph.nodes or flat.attrs["axis"] != 1:
            continue
        src = flat.inputs[0]
        tr = src.producer
        rank = src.type.rank
        if tr is None or tr.op != "Transpose" or rank < 3 or graph.num_uses(src) != 1:
            continue
        if _perm(tr) != [0] + list(range(2, rank)) + [1]:
            continue
        users = graph.users(flat.output)
        if graph.num_uses(flat.output) != len(users) or not users or any(
                u.op != "Dense" or i != 0 for u, i in users):
            continue
        x = tr.inputs[0]                                  # (N, C, *S), channels first
        shape = x.type.sample_shape
        chw_of_hwc = np.arange(int(np.prod(shape))).reshape(shape)
        chw_of_hwc = np.moveaxis(chw_of_hwc, 0, -1).reshape(-1)  # channels-last position -> channels-first index
        for dense, _ in users:
            w = graph.param(dense.inputs[1])
            permuted = np.empty_like(w)
            permuted[:, chw_of_hwc] = w
            dense.inputs[1] = graph.add_param(dense.inputs[1].name + ".nchw", permuted)
        flat.inputs = [x]
        graph.remove_node(tr)
        changed = True
    return changed


@register_pass("fold_transposes")
def fold_transposes(graph: Graph, ctx: PassContext) -> Graph:
    """Compose consecutive Transposes and fold a channels-last Flatten into the Dense after it."""
    while _compose(graph) | _fold_into_dense(graph):
        pass
    graph.prune()
    return graph
