"""Zero padding folded into the convolution that reads it (Keras's ZeroPadding2D before a strided Conv).

A Conv pads with zeros itself; a constant-zero Pad of the spatial axes whose
only reader is a Conv's data input becomes part of that Conv's pads, so the
padded copy is never made.
"""
from __future__ import annotations

from irc.graph import Graph

from .manager import PassContext, register_pass


def spatial_zero_pads(node, rank: int) -> list[int] | None:
    """The Pad's (begin..., end...) pads of the spatial axes, if it pads only those, with zeros, outwards."""
    pads = node.attrs["pads"]
    if node.attrs["value"] != 0.0 or len(pads) != 2 * rank or min(pads) < 0:
        return None
    if any(pads[i] or pads[rank + i] for i in (0, 1)):
        return None  # batch or channel padding changes what the Conv sees
    return pads[2:rank] + pads[rank + 2:]


@register_pass("fold_pad_into_conv")
def fold_pad_into_conv(graph: Graph, ctx: PassContext) -> Graph:
    """Fold a zero Pad of the spatial axes into the Conv that is its only reader."""
    for pad in list(graph.nodes):
        if pad.op != "Pad" or not graph.has_node(pad):
            continue
        out = pad.outputs[0]
        users = graph.users(out)
        if len(users) != 1 or graph.num_uses(out) != 1:
            continue
        conv, index = users[0]
        if conv.op != "Conv" or index != 0:
            continue
        extra = spatial_zero_pads(pad, out.type.rank)
        if extra is None:
            continue
        nd = out.type.rank - 2
        own = conv.attrs["pads"] or [0] * (2 * nd)
        conv.attrs["pads"] = [a + b for a, b in zip(own, extra)]
        graph.bypass(pad, pad.inputs[0])
        graph.reinfer(conv)
    return graph
