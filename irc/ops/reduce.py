"""Reductions over chosen axes (ReduceMax, ReduceMin, ReduceSum, ReduceMean).

A reduction over every spatial axis is a global pool: frontends lower it to
GlobalAvgPool/GlobalMaxPool, which the spiking passes understand.  These ops
cover the rest (a Softmax written out by hand, a sum over channels), on
analog values only, and never over a symbolic batch axis.
"""
from __future__ import annotations

import numpy as np

from ..errors import IRCError
from ..types import TensorType
from . import Attr, OpDef, OpExample, register


class _Reduce(OpDef):
    attrs = {"axes": Attr("ints", []), "keepdims": Attr("bool", True)}
    doc = "Reduce over ``axes`` (all axes when empty), keeping them as size 1 when ``keepdims``."

    def axes(self, x: TensorType, a: dict) -> list[int]:
        axes = a["axes"] or list(range(x.rank))
        if any(not -x.rank <= ax < x.rank for ax in axes):
            raise IRCError(f"{self.name}: axes {a['axes']} out of range for rank {x.rank}")
        axes = sorted({ax % x.rank for ax in axes})
        if x.has_batch and 0 in axes:
            raise IRCError(f"{self.name} over the batch axis is not supported",
                           hint="reduce over the feature axes only; every sample is computed on its own")
        return axes

    def infer(self, ins, a):
        self.require_analog(ins)
        x = ins[0]
        axes = self.axes(x, a)
        if a["keepdims"]:
            shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        return [TensorType(shape, x.dtype)]

    def kernel_args(self, ins, outs, a):
        return {"axes": self.axes(ins[0], a), "keepdims": a["keepdims"]}

    def example(self, rng):
        return OpExample([rng.standard_normal((2, 3, 4)).astype(np.float32)],
                         {"axes": [int(rng.choice([1, 2, -1]))], "keepdims": bool(rng.integers(0, 2))})


@register
class ReduceMax(_Reduce):
    name = "ReduceMax"
    kernel = "reduce_max"


@register
class ReduceMin(_Reduce):
    name = "ReduceMin"
    kernel = "reduce_min"


@register
class ReduceSum(_Reduce):
    name = "ReduceSum"
    kernel = "reduce_sum"


@register
class ReduceMean(_Reduce):
    name = "ReduceMean"
    kernel = "reduce_mean"
