"""Affine folding: BatchNorm and per-channel arithmetic folded into weights.

Decompose, then fold (as TVM does): every BatchNorm, and every Add/Sub/Mul/Div
of a per-channel constant, becomes a ``ScaleShift``; consecutive ScaleShifts
merge; a ScaleShift folds backward into the Conv/Dense that produces its input
(when that output has no other user and no fused activation) or forward into
the single Conv/Dense that consumes it (when padding cannot make the shift
wrong).  What cannot be folded stays a ScaleShift: a standalone BatchNorm is a
per-channel scale.
"""
from __future__ import annotations

import numpy as np

from irc.graph import Graph, Node, Value
from irc.ops import get_op

from .manager import PassContext, register_pass


def _to_scale_shift(graph: Graph, node: Node) -> None:
    """Rewrite an op that is a per-channel affine map (BatchNorm, arithmetic with a per-channel constant) as a
    ScaleShift; what counts as one is the op's own ``channel_affine``."""
    form = get_op(node.op).channel_affine(node, graph.param)
    if form is None:
        return
    x, scale, shift = form
    if x.type.rank < 2:
        return
    base = node.name
    ins = [x, graph.add_param(base + ".scale", scale)]
    if shift is not None:
        ins.append(graph.add_param(base + ".shift", shift))
    new = graph.add_node("ScaleShift", ins, {}, name=base, before=node)
    graph.replace_uses(node.output, new.output)
    graph.remove_node(node)


def _scale_shift_arrays(graph: Graph, node: Node) -> tuple[np.ndarray, np.ndarray]:
    scale = graph.param(node.inputs[1])
    shift = graph.param(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else np.zeros_like(scale)
    return scale, shift


def _only_user(graph: Graph, value: Value, node: Node) -> bool:
    return graph.num_uses(value) == 1 and graph.consumers(value) == [node]


def _fold_backward(graph: Graph, node: Node) -> bool:
    """ScaleShift(Conv/Dense(x)) -> Conv/Dense with scaled weights and bias."""
    prod = node.inputs[0].producer
    if (prod is None or not get_op(prod.op).channel_weights or prod.attrs["activation"] or node.attrs["activation"]
            or not _only_user(graph, prod.output, node)):
        return False
    scale, shift = _scale_shift_arrays(graph, node)
    w = graph.param(prod.inputs[1])
    b = graph.param(prod.inputs[2]) if len(prod.inputs) > 2 and prod.inputs[2] is not None else np.zeros(w.shape[0], w.dtype)
    new_w = (w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
    new_b = (b * scale + shift).astype(w.dtype)
    inputs = list(prod.inputs) + [None] * (3 - len(prod.inputs))
    inputs[1] = graph.add_param(prod.name + ".weight", new_w)
    inputs[2] = graph.add_param(prod.name + ".bias", new_b)
    graph.set_inputs(prod, inputs)
    graph.bypass(node, prod.output)
    return True


def _fold_forward(graph: Graph, node: Node) -> bool:
    """Conv/Dense(ScaleShift(x)) -> Conv/Dense with the scale in its input channels."""
    if node.attrs["activation"]:
        return False
    users = graph.consumers(node.output)
    if len(users) != 1 or graph.num_uses(node.output) != 1:
        return False
    nxt = users[0]
    if not get_op(nxt.op).channel_weights or nxt.inputs[0] is not node.output:
        return False
    if nxt.attrs.get("group", 1) != 1:
        return False
    scale, shift = _scale_shift_arrays(graph, node)
    if shift.any() and any(nxt.attrs.get("pads", [])):
        return False  # zero padding would see the shift
    w = graph.param(nxt.inputs[1])
    per_input = (1, -1) + (1,) * (w.ndim - 2)
    new_w = w * scale.reshape(per_input)
    extra = (w * shift.reshape(per_input)).sum(axis=tuple(range(1, w.ndim)))
    b = graph.param(nxt.inputs[2]) if len(nxt.inputs) > 2 and nxt.inputs[2] is not None else np.zeros(w.shape[0], w.dtype)
    inputs = list(nxt.inputs) + [None] * (3 - len(nxt.inputs))
    inputs[0] = node.inputs[0]
    inputs[1] = graph.add_param(nxt.name + ".weight", new_w.astype(w.dtype))
    inputs[2] = graph.add_param(nxt.name + ".bias", (b + extra).astype(w.dtype))
    graph.set_inputs(nxt, inputs)
    graph.remove_node(node)
    return True


def _merge(graph: Graph, node: Node) -> bool:
    """ScaleShift(ScaleShift(x)) -> one ScaleShift."""
    prod = node.inputs[0].producer
    if (prod is None or prod.op != "ScaleShift" or prod.attrs["activation"]
            or not _only_user(graph, prod.output, node)):
        return False
    s1, t1 = _scale_shift_arrays(graph, prod)
    s2, t2 = _scale_shift_arrays(graph, node)
    graph.set_inputs(node, [prod.inputs[0], graph.add_param(node.name + ".scale", s1 * s2),
                            graph.add_param(node.name + ".shift", t1 * s2 + t2)])
    graph.remove_node(prod)
    return True


@register_pass("fold_batchnorm")
def fold_batchnorm(graph: Graph, ctx: PassContext) -> Graph:
    """Fold BatchNorm (and per-channel constant arithmetic) into Conv/Dense weights."""
    for node in graph:
        _to_scale_shift(graph, node)
    changed = True
    while changed:
        changed = False
        for node in graph:
            if node.op == "ScaleShift" and graph.has_node(node):
                changed |= _merge(graph, node) or _fold_backward(graph, node) or _fold_forward(graph, node)
    graph.prune()
    return graph
