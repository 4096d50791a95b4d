"""Pooling ops: MaxPool, AvgPool, GlobalAvgPool, GlobalMaxPool."""
from __future__ import annotations

from ..errors import IRCError
from ..types import TensorType
from . import Attr, OpDef, conv_out_dim, register
from .nn import spatial_attrs

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
    out = [conv_out_dim(x.shape[2 + i], k[i], strides[i], pads[i], pads[nd + i], dil[i], a["ceil_mode"])
           for i in range(nd)]
    return (x.shape[0], x.shape[1], *out)


def pool_kernel_args(a: dict, outs: list[TensorType]) -> dict:
    nd = len(a["kernel"])
    strides, pads, dil = spatial_attrs(a, nd)
    return {"kernel": a["kernel"], "strides": strides, "pads": pads, "dilations": dil,
            "out_dims": list(outs[0].shape[2:])}


@register
class MaxPool(OpDef):
    name = "MaxPool"
    kernel = "max_pool"
    attrs = dict(POOL_ATTRS)

    def infer(self, ins, a):
        self.require_analog(ins)
        return [TensorType(pool_out_shape(ins[0], a), ins[0].dtype)]

    def kernel_args(self, ins, outs, a):
        return pool_kernel_args(a, outs)


@register
class AvgPool(OpDef):
    name = "AvgPool"
    kernel = "avg_pool"
    linear = True
    attrs = {**POOL_ATTRS, "count_include_pad": Attr("bool", False)}

    def infer(self, ins, a):
        return [TensorType(pool_out_shape(ins[0], a), ins[0].dtype, self.data_domain(ins))]

    def kernel_args(self, ins, outs, a):
        return {**pool_kernel_args(a, outs), "count_include_pad": a["count_include_pad"]}


class _GlobalPool(OpDef):
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


@register
class GlobalMaxPool(_GlobalPool):
    name = "GlobalMaxPool"
    kernel = "global_max_pool"
