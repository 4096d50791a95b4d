"""Layout clean-up: transposes that compose or cancel, and the Flatten-after-channels-last trap.

Channels-last frontends (Keras) make their layout explicit with Transposes.
This pass, ``fold_transposes``, keeps the numbers identical while moving less
data:

* two consecutive Transposes become one (their permutations composed), and a
  Transpose whose permutation is the identity disappears;
* ``Transpose -> Flatten -> Dense`` (the classic Flatten after NHWC, or any
  transpose that keeps the batch axis first) becomes ``Flatten -> Dense`` with
  the Dense weight columns permuted, when the transposed and flattened values
  have no other users.  A ``Reshape`` to (batch, features) counts as a Flatten.
"""
from __future__ import annotations

import numpy as np

from irc.graph import Graph, Node, Value
from irc.ops import get_op

from .manager import PassContext, register_pass


def perm_of(node: Node | None) -> list[int] | None:
    """The node's permutation if it is a transpose (see OpDef.permutation), else None."""
    return None if node is None else get_op(node.op).permutation(node)


def is_identity(perm: list[int]) -> bool:
    return perm == list(range(len(perm)))


def compose_transposes(graph: Graph) -> bool:
    """Transpose(Transpose(x, p1), p2) -> Transpose(x, p1[p2]); the inner one goes when nothing else reads it."""
    changed = False
    for node in graph:
        outer = perm_of(node)
        inner_perm = perm_of(node.inputs[0].producer) if outer is not None else None
        if inner_perm is None:
            continue
        inner = node.inputs[0].producer
        node.attrs["perm"] = [inner_perm[p] for p in outer]
        graph.set_inputs(node, [inner.inputs[0]])
        if not graph.num_uses(inner.output):
            graph.remove_node(inner)
        changed = True
    return changed


def drop_identity_transposes(graph: Graph) -> bool:
    """A Transpose that keeps every axis in place is the identity."""
    changed = False
    for node in graph:
        perm = perm_of(node)
        if perm is None or not is_identity(perm):
            continue
        src = node.inputs[0]
        if node.output in graph.outputs and (src in graph.inputs or src.is_param):
            continue  # an output that is an input: keep one node so the output has a producer
        graph.bypass(node, src)
        changed = True
    return changed


def only_dense_users(graph: Graph, value: Value) -> list[Node] | None:
    """The Dense nodes that read ``value`` as their data input, or None if anything else reads it."""
    users = graph.users(value)
    if not users or graph.num_uses(value) != len(users):
        return None
    if any(not _is_dense(n) or i != 0 or not n.inputs[1].is_param for n, i in users):
        return None
    return [n for n, _ in users]


def _is_dense(node: Node) -> bool:
    """A weighted op over (N, features): its weight columns are the features."""
    return get_op(node.op).channel_weights and node.inputs[0].type.rank == 2 and node.inputs[1].type.rank == 2


def source_positions(sample_shape: tuple[int, ...], perm: list[int]) -> np.ndarray:
    """For each position of flatten(transpose(x, perm)), its position in flatten(x) (batch axis aside)."""
    index = np.arange(int(np.prod(sample_shape, dtype=np.int64))).reshape(sample_shape)
    return np.transpose(index, [p - 1 for p in perm[1:]]).reshape(-1)


def fold_transpose_into_dense(graph: Graph) -> bool:
    """Transpose -> Flatten -> Dense: flatten the untransposed value and permute the Dense's columns instead."""
    changed = False
    for flat in graph:
        if not graph.has_node(flat) or not get_op(flat.op).flattens_to_features(flat):
            continue
        tr = flat.inputs[0].producer
        perm = perm_of(tr)
        if perm is None or graph.num_uses(tr.output) != 1:
            continue
        x = tr.inputs[0]
        if perm[0] != 0 or not x.type.has_batch:
            continue
        denses = only_dense_users(graph, flat.output)
        if denses is None:
            continue
        source = source_positions(x.type.sample_shape, perm)
        for dense in denses:
            weight = graph.param(dense.inputs[1])
            permuted = np.empty_like(weight)
            permuted[:, source] = weight       # column j read feature j, which now sits at source[j]
            graph.set_input(dense, 1, graph.add_param(dense.inputs[1].name + ".permuted", permuted))
        graph.set_inputs(flat, [x])
        graph.remove_node(tr)
        changed = True
    return changed


@register_pass("fold_transposes")
def fold_transposes(graph: Graph, ctx: PassContext) -> Graph:
    """Compose consecutive Transposes, drop identity ones, fold Transpose -> Flatten into the next Dense."""
    while compose_transposes(graph) | drop_identity_transposes(graph) | fold_transpose_into_dense(graph):
        pass
    graph.prune()
    return graph
