"""Pooling ops: MaxPool, AvgPool, GlobalAvgPool, GlobalMaxPool."""
from __future__ import annotations

import numpy as np

from ..errors import IRCError
from ..types import TensorType
from ..limits import MAX_WINDOW
from . import Attr, OpDef, OpExample, conv_out_dim, prod, register
from .nn import check_padded, spatial_attrs

POOL_ATTRS = {
    "kernel": Attr("ints"),
    "strides": Attr("ints", []),
    "pads": Attr("ints", [], "begin pads then end pads, per spatial axis"),
    "dilations": Attr("ints", []),
    "ceil_mode": Attr("bool", False),
}


def pool_out_shape(x: TensorType, a: dict) -> tuple:
    k = a["kernel"]
    nd = len(k)
    if x.rank != nd + 2:
        raise IRCError(f"pooling with a {nd}-d kernel needs a rank-{nd + 2} input, got {list(x.shape)}")
    strides, pads, dil = spatial_attrs(a, nd)
    MAX_WINDOW.check(prod(k), f"a pooling kernel {list(k)}")
    out = [conv_out_dim(x.shape[2 + i], k[i], strides[i], pads[i], pads[nd + i], dil[i], a["ceil_mode"])
           for i in range(nd)]
    check_padded(x, pads, nd)
    return (x.shape[0], x.shape[1], *out)


def pool_kernel_args(a: dict, outs: list[TensorType]) -> dict:
    nd = len(a["kernel"])
    strides, pads, dil = spatial_attrs(a, nd)
    return {"kernel": a["kernel"], "strides": strides, "pads": pads, "dilations": dil,
            "out_dims": list(outs[0].shape[2:])}


def pool_example(rng: np.random.Generator, extra: dict | None = None) -> OpExample:
    k = int(rng.choice([2, 3]))
    s = int(rng.choice([1, 2]))
    x = rng.standard_normal((2, 2, 6, 7)).astype(np.float32)
    return OpExample([x], {"kernel": [k, k], "strides": [s, s], "pads": [1, 0, 0, 1] if k == 3 else [0, 0, 0, 0],
                           **(extra or {})})


@register
class MaxPool(OpDef):
    name = "MaxPool"
    preserves_sign = True
    kernel = "max_pool"
    rate_rule = "maximum"
    attrs = dict(POOL_ATTRS)

    def infer(self, ins, a):
        self.require_analog(ins)
        return [TensorType(pool_out_shape(ins[0], a), ins[0].dtype)]

    def kernel_args(self, ins, outs, a):
        return pool_kernel_args(a, outs)

    def example(self, rng):
        return pool_example(rng)


@register
class AvgPool(OpDef):
    name = "AvgPool"
    preserves_sign = True
    kernel = "avg_pool"
    linear = True
    rate_rule = "positional"
    attrs = {**POOL_ATTRS, "count_include_pad": Attr("bool", False)}

    def infer(self, ins, a):
        return [TensorType(pool_out_shape(ins[0], a), ins[0].dtype, self.data_domain(ins))]

    def kernel_args(self, ins, outs, a):
        return {**pool_kernel_args(a, outs), "count_include_pad": a["count_include_pad"]}

    def tiling_window(self, node):
        a = node.attrs
        k = a["kernel"]
        x = node.inputs[0].type
        if (a["strides"] and a["strides"] != k) or any(a["pads"]) or any(d != 1 for d in a["dilations"] or [1]):
            return None
        if any(size % kk for size, kk in zip(x.shape[2:], k)):
            return None
        return list(k)

    def example(self, rng):
        return pool_example(rng, {"count_include_pad": bool(rng.integers(0, 2))})


class _GlobalPool(OpDef):
    preserves_sign = True

    def example(self, rng):
        return OpExample([rng.standard_normal((2, 3, 4, 5)).astype(np.float32)], {})

    def infer(self, ins, a):
        x = ins[0]
        if x.rank < 3:
            raise IRCError(f"{self.name} needs a rank >= 3 input (N, C, spatial...), got {list(x.shape)}")
        dom = self.data_domain(ins) if self.linear else (self.require_analog(ins) or x.domain)
        return [TensorType((x.shape[0], x.shape[1]) + (1,) * (x.rank - 2), x.dtype, dom)]

    def kernel_args(self, ins, outs, a):
        return {}


@register
class GlobalAvgPool(_GlobalPool):
    name = "GlobalAvgPool"
    kernel = "global_avg_pool"
    linear = True
    rate_rule = "positional"

    def tiling_window(self, node):
        return list(node.inputs[0].type.shape[2:])


@register
class GlobalMaxPool(_GlobalPool):
    name = "GlobalMaxPool"
    kernel = "global_max_pool"
    rate_rule = "maximum"
