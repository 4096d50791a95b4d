"""Channel mappings (N2D2): a Conv's connectivity mask becomes groups, or stays as masked weights."""
from __future__ import annotations

import numpy as np

from irc.graph import Graph

from .manager import PassContext, register_pass


def mask_groups(mask: np.ndarray) -> int | None:
    """Groups of a block-diagonal (outputs, channels) mask with equal blocks, else None."""
    outputs, channels = mask.shape
    for g in range(1, min(channels, outputs) + 1):
        if channels % g or outputs % g:
            continue
        mg, cg = outputs // g, channels // g
        expected = np.kron(np.eye(g, dtype=bool), np.ones((mg, cg), dtype=bool))
        if np.array_equal(mask, expected):
            return g
    return None


@register_pass("apply_channel_mapping")
def apply_channel_mapping(graph: Graph, ctx: PassContext) -> Graph:
    """A block-diagonal mask becomes a grouped (depthwise) Conv; a full one disappears; any other is
    folded into the weights and kept, so event-driven code can skip the disconnected pairs."""
    for node in graph:
        if node.op != "Conv" or len(node.inputs) < 4 or node.inputs[3] is None or node.attrs["group"] != 1:
            continue
        mask = graph.param(node.inputs[3]) != 0
        w = graph.param(node.inputs[1])
        groups = mask_groups(mask)
        if groups is None:
            masked = (w * mask[:, :, None, None]).astype(w.dtype)
            if not np.array_equal(masked, w):
                graph.set_input(node, 1, graph.add_param(node.inputs[1].name + ".masked", masked))
            continue
        m, c = mask.shape
        cg, mg = c // groups, m // groups
        grouped = np.stack([w[g * mg:(g + 1) * mg, g * cg:(g + 1) * cg] for g in range(groups)]).reshape(
            m, cg, *w.shape[2:])
        graph.set_inputs(node, [node.inputs[0], graph.add_param(node.inputs[1].name + ".grouped", grouped),
                                *node.inputs[2:3]])
        node.attrs["group"] = groups
    graph.prune()
    return graph
