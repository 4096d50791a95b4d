"""Reductions over chosen axes (ReduceMax/Min/Sum/Mean, the L1/L2/Prod/SumSquare/LogSum/LogSumExp family,
ArgMax/ArgMin).

A reduction over every spatial axis is a global pool: frontends lower it to
GlobalAvgPool/GlobalMaxPool, which the spiking passes understand.  These ops
cover the rest (a Softmax written out by hand, a sum over channels), on
analog values only, and never over a symbolic batch axis.
"""
from __future__ import annotations

import numpy as np

from ..errors import IRCError
from ..types import TensorType
from . import Attr, OpDef, OpExample, feature_axis, register


def reduced_shape(shape: tuple, axes: list[int], keepdims: bool) -> tuple:
    """``shape`` with ``axes`` reduced: kept as size 1, or dropped."""
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


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
        return [TensorType(reduced_shape(x.shape, self.axes(x, a), a["keepdims"]), x.dtype)]

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


@register
class ReduceL1(_Reduce):
    name = "ReduceL1"
    kernel = "reduce_l1"


@register
class ReduceL2(_Reduce):
    name = "ReduceL2"
    kernel = "reduce_l2"


@register
class ReduceProd(_Reduce):
    name = "ReduceProd"
    kernel = "reduce_prod"


@register
class ReduceSumSquare(_Reduce):
    name = "ReduceSumSquare"
    kernel = "reduce_sum_square"


@register
class ReduceLogSum(_Reduce):
    name = "ReduceLogSum"
    kernel = "reduce_log_sum"

    def example(self, rng):
        return OpExample([rng.uniform(0.1, 2.0, (2, 3, 4)).astype(np.float32)],
                         {"axes": [int(rng.choice([1, 2, -1]))], "keepdims": bool(rng.integers(0, 2))})


@register
class ReduceLogSumExp(_Reduce):
    name = "ReduceLogSumExp"
    kernel = "reduce_log_sum_exp"
    doc = "log(sum(exp(x))) over ``axes``, computed from the maximum so it does not overflow."


class _ArgExtremum(OpDef):
    """The index (int64) of the largest / smallest element along ``axis``; ties give the first index unless
    ``select_last_index``."""

    attrs = {"axis": Attr("int", 0), "keepdims": Attr("bool", True), "select_last_index": Attr("bool", False)}

    def axis(self, x: TensorType, a: dict) -> int:
        return feature_axis(self.name, x, a["axis"],
                            hint="take the index over a feature axis; every sample is computed on its own")

    def infer(self, ins, a):
        self.require_analog(ins)
        x = ins[0]
        return [TensorType(reduced_shape(x.shape, [self.axis(x, a)], a["keepdims"]), "i64")]

    def kernel_args(self, ins, outs, a):
        return {"axis": self.axis(ins[0], a), "keepdims": a["keepdims"], "last": a["select_last_index"]}

    def example(self, rng):
        return OpExample([rng.integers(-2, 3, (2, 3, 4)).astype(np.float32)],
                         {"axis": int(rng.choice([1, 2, -1])), "keepdims": bool(rng.integers(0, 2)),
                          "select_last_index": bool(rng.integers(0, 2))})


@register
class ArgMax(_ArgExtremum):
    name = "ArgMax"
    kernel = "argmax"


@register
class ArgMin(_ArgExtremum):
    name = "ArgMin"
    kernel = "argmin"
