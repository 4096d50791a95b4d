"""Inference simplification: drop what does nothing at inference, fold constants."""
from __future__ import annotations

from irc.graph import Graph
from irc.ops import get_op

from .manager import PassContext, register_pass

@register_pass("simplify")
def simplify(graph: Graph, ctx: PassContext) -> Graph:
    """Drop Dropout and Identity (ops that are the identity at inference)."""
    for node in graph:
        if get_op(node.op).inference_identity:
            src = node.inputs[0]
            if any(o is node.output for o in graph.outputs) and (src in graph.inputs or src.is_param):
                continue  # an output that is an input: keep one node so the output has a producer
            graph.bypass(node, src)
    return graph


@register_pass("fold_constants")
def fold_constants(graph: Graph, ctx: PassContext) -> Graph:
    """Evaluate every node whose inputs are all parameters into a new parameter."""
    for node in graph:
        opdef = get_op(node.op)
        if opdef.spiking or not node.inputs or not all(v is None or v.is_param for v in node.inputs):
            continue
        arrays = [graph.param(v) if v is not None else None for v in node.inputs]
        outs = opdef.reference(arrays, node.attrs, node.input_types(), [o.type for o in node.outputs])
        for o, arr in zip(node.outputs, outs):
            const = graph.add_param(o.name + ".folded", arr)
            graph.replace_all_uses(o, const)
        graph.remove_node(node)
    graph.prune()
    return graph
