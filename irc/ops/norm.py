"""Normalisations computed from the data itself: LayerNormalization, InstanceNormalization and LRN (analog
only).

Unlike BatchNorm (a per-channel affine map at inference), these divide by
statistics of each sample, so they have no spiking equivalent and never fold
into weights.
"""
from __future__ import annotations

import numpy as np

from ..errors import IRCError
from . import Attr, OpDef, OpExample, feature_axis, prod, register


@register
class LayerNormalization(OpDef):
    """ONNX LayerNormalization (opset 17) / Keras LayerNormalization over the trailing axes from ``axis``."""

    name = "LayerNormalization"
    inputs = ("x", "scale", "bias?")
    params = ("scale", "bias")
    kernel = "layer_norm"
    attrs = {"axis": Attr("int", -1, "first normalised axis"), "epsilon": Attr("float", 1e-5)}

    def first_axis(self, x, a) -> int:
        return feature_axis("LayerNormalization", x, a["axis"], hint="normalise over the feature axes (axis >= 1)")

    def infer(self, ins, a):
        self.require_analog(ins)
        x = ins[0]
        axis = self.first_axis(x, a)
        normalised = tuple(x.shape[axis:])
        for what, t in zip(("scale", "bias"), ins[1:]):
            if t is None:
                continue
            shape = (1,) * (len(normalised) - t.rank) + tuple(t.shape)
            if t.rank > len(normalised) or any(s not in (1, d) for s, d in zip(shape, normalised)):
                raise IRCError(f"LayerNormalization {what} of shape {list(t.shape)} does not broadcast to the "
                               f"normalised shape {list(normalised)}")
        return [x]

    def kernel_args(self, ins, outs, a):
        return {"axis": self.first_axis(ins[0], a), "epsilon": a["epsilon"]}

    def macs(self, ins, outs, a):
        return 4 * prod(ins[0].sample_shape)

    def example(self, rng):
        c = 4
        return OpExample([rng.standard_normal((2, 3, c)).astype(np.float32) * 2 + 1,
                          rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)],
                         {"axis": -1, "epsilon": 1e-5}, params=(1, 2))


@register
class InstanceNormalization(OpDef):
    """ONNX InstanceNormalization: each sample's channel normalised over its spatial axes, then scaled and
    shifted per channel."""

    name = "InstanceNormalization"
    inputs = ("x", "scale", "bias")
    params = ("scale", "bias")
    kernel = "instance_norm"
    attrs = {"epsilon": Attr("float", 1e-5)}

    def infer(self, ins, a):
        self.require_analog(ins)
        x = ins[0]
        if x.rank < 3:
            raise IRCError(f"InstanceNormalization needs an (N, C, spatial...) input, got rank {x.rank}")
        for what, t in zip(("scale", "bias"), ins[1:]):
            if tuple(t.shape) != (x.shape[1],):
                raise IRCError(f"InstanceNormalization {what} of shape {list(t.shape)} is not one value per "
                               f"channel ({x.shape[1]})")
        return [x]

    def macs(self, ins, outs, a):
        return 4 * prod(ins[0].sample_shape)

    def example(self, rng):
        return OpExample([rng.standard_normal((2, 3, 4, 2)).astype(np.float32) * 2 + 1,
                          rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32)],
                         {"epsilon": 1e-5}, params=(1, 2))


@register
class LRN(OpDef):
    """Local response normalisation across channels (AlexNet): x / (bias + alpha/size * sum x^2)^beta."""

    name = "LRN"
    kernel = "lrn"
    preserves_sign = True
    attrs = {"size": Attr("int"), "alpha": Attr("float", 1e-4), "beta": Attr("float", 0.75),
             "bias": Attr("float", 1.0)}

    def infer(self, ins, a):
        self.require_analog(ins)
        x = ins[0]
        if x.rank < 2:
            raise IRCError(f"LRN needs a (N, C, ...) input, got rank {x.rank}")
        if a["size"] < 1:
            raise IRCError(f"LRN size must be >= 1, got {a['size']}")
        return [x]

    def example(self, rng):
        return OpExample([rng.standard_normal((2, 5, 3, 3)).astype(np.float32) * 2],
                         {"size": int(rng.choice([1, 2, 3, 5])), "alpha": 1e-2, "beta": 0.75, "bias": 1.0})
