"""Activation fusion: an activation folds into the op that produces its input."""
from __future__ import annotations

from irc.graph import Graph
from irc.ops import get_op

from .manager import PassContext, register_pass

@register_pass("fuse_activations")
def fuse_activations(graph: Graph, ctx: PassContext) -> Graph:
    """Fuse every fusable activation (Relu, LeakyRelu, Clip, ...) into the op that produces its input, where that
    op hosts one (Conv, Dense, Add, ScaleShift: ops with an 'activation' attribute)."""
    for node in graph:
        opdef = get_op(node.op)
        if not opdef.activation:
            continue
        src = node.inputs[0]
        host = src.producer
        if host is None or not get_op(host.op).hosts_activation or host.attrs["activation"]:
            continue
        if graph.num_uses(src) != 1 or src.type.dtype != "f32":
            continue
        host.attrs["activation"] = node.op
        host.attrs["activation_params"] = opdef.fused(node.attrs)
        graph.bypass(node, src)
    return graph


@register_pass("unfuse_activations")
def unfuse_activations(graph: Graph, ctx: PassContext) -> Graph:
    """Split fused activations back into their own nodes (the spiking passes want them apart)."""
    for node in graph:
        act = node.attrs.get("activation") if get_op(node.op).hosts_activation else None
        if not act:
            continue
        opdef = get_op(act)
        params = dict(zip(opdef.fused_params, node.attrs["activation_params"]))
        node.attrs["activation"], node.attrs["activation_params"] = "", []
        out = node.output
        act_node = graph.add_node(act, [out], params, name=node.name + "." + act.lower(), after=node)
        for user, i in graph.users(out):
            if user is not act_node:
                graph.set_input(user, i, act_node.output)
        graph.outputs = [act_node.output if v is out else v for v in graph.outputs]
    return graph
