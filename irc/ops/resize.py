"""Upsampling ops: Resize (nearest / linear interpolation) and ConvTranspose.

Both run on the numpy targets only (their kernels in :mod:`irc.ops.kernels`); the other targets have no
lowering for them and refuse them by name when a program is built.
"""
from __future__ import annotations

import numpy as np

from ..errors import IRCError, UnsupportedError
from ..types import BATCH, TensorType
from . import Attr, OpDef, OpExample, prod, register

COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


@register
class Resize(OpDef):
    name = "Resize"
    preserves_sign = True
    kernel = "resize"
    attrs = {
        "mode": Attr("str", "nearest", "nearest or linear"),
        "coordinate_transformation_mode": Attr("str", "half_pixel"),
        "nearest_mode": Attr("str", "round_prefer_floor"),
        "scales": Attr("floats", [], "per axis; the coordinate transformation divides by them"),
        "sizes": Attr("ints", [], "output size per axis (0 for the batch axis)"),
    }
    doc = ("ONNX Resize (opsets 10-19) in nearest or linear mode: output size per axis, and the scale the "
           "coordinate transformation uses (out/in when the model gave sizes).")

    def infer(self, ins, a):
        x = ins[0]
        if a["mode"] not in ("nearest", "linear"):
            raise UnsupportedError(f"Resize mode {a['mode']!r} is not supported (nearest and linear are)")
        if a["coordinate_transformation_mode"] not in COORDINATE_MODES:
            raise UnsupportedError(f"Resize coordinate_transformation_mode "
                                   f"{a['coordinate_transformation_mode']!r} is not supported",
                                   hint="supported: " + ", ".join(COORDINATE_MODES))
        if a["nearest_mode"] not in NEAREST_MODES:
            raise UnsupportedError(f"Resize nearest_mode {a['nearest_mode']!r} is not supported")
        if len(a["scales"]) != x.rank or len(a["sizes"]) != x.rank:
            raise IRCError(f"Resize needs a scale and a size for each of the {x.rank} axes")
        shape = []
        for i, (d, s) in enumerate(zip(x.shape, a["sizes"])):
            if d == BATCH:
                if a["scales"][i] != 1.0:
                    raise UnsupportedError("Resize along the batch axis is not supported")
                shape.append(BATCH)
            elif s < 1:
                raise IRCError(f"Resize gives an empty axis {i} (size {s})")
            else:
                shape.append(s)
        return [TensorType(tuple(shape), x.dtype, self.data_domain(ins))]

    def kernel_args(self, ins, outs, a):
        out_dims = [0 if d == BATCH else d for d in outs[0].shape]
        return {"mode": a["mode"], "coordinate_transformation_mode": a["coordinate_transformation_mode"],
                "nearest_mode": a["nearest_mode"], "scales": a["scales"], "out_dims": out_dims}

    def example(self, rng):
        x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
        mode = str(rng.choice(["nearest", "linear"]))
        return OpExample([x], {"mode": mode, "coordinate_transformation_mode": "half_pixel",
                               "scales": [1.0, 1.0, 2.0, 1.5], "sizes": [0, 3, 8, 7]})


@register
class ConvTranspose(OpDef):
    name = "ConvTranspose"
    preserves_sign = True
    inputs = ("x", "weight", "bias?")
    params = ("weight", "bias")
    kernel = "conv_transpose"
    attrs = {
        "strides": Attr("ints", []),
        "pads": Attr("ints", [], "begin then end crops of the full result (negative: zeros added)"),
        "dilations": Attr("ints", []),
        "group": Attr("int", 1),
        "output_padding": Attr("ints", [], "extra rows/columns at the end of the full result"),
    }
    doc = "ONNX ConvTranspose: weight (C, M/group, *kernel); output (N, M, *out) with explicit pads."

    def _spatial(self, a, nd):
        strides = a["strides"] or [1] * nd
        pads = a["pads"] or [0] * (2 * nd)
        dil = a["dilations"] or [1] * nd
        outpad = a["output_padding"] or [0] * nd
        if len(strides) != nd or len(pads) != 2 * nd or len(dil) != nd or len(outpad) != nd:
            raise IRCError(f"ConvTranspose: strides/pads/dilations/output_padding do not match {nd} spatial dims")
        return strides, pads, dil, outpad

    def infer(self, ins, a):
        x, w = ins[0], ins[1]
        b = ins[2] if len(ins) > 2 else None
        nd = w.rank - 2
        g = a["group"]
        if x.rank != nd + 2 or g < 1 or x.shape[1] != w.shape[0] or w.shape[0] % g:
            raise IRCError(f"ConvTranspose: input {list(x.shape)} does not match weight {list(w.shape)} "
                           f"with group={g}")
        m = w.shape[1] * g
        if b is not None and tuple(b.shape) != (m,):
            raise IRCError(f"ConvTranspose bias has shape {list(b.shape)}, expected [{m}]")
        strides, pads, dil, outpad = self._spatial(a, nd)
        out = [strides[i] * (x.shape[2 + i] - 1) + outpad[i] + dil[i] * (w.shape[2 + i] - 1) + 1
               - pads[i] - pads[nd + i] for i in range(nd)]
        if any(o < 1 for o in out):
            raise IRCError(f"ConvTranspose gives an empty output {out}")
        return [TensorType((x.shape[0], m, *out), x.dtype, self.data_domain(ins, [0]))]

    def kernel_args(self, ins, outs, a):
        nd = ins[1].rank - 2
        strides, pads, dil, outpad = self._spatial(a, nd)
        return {"strides": strides, "pads": pads, "dilations": dil, "group": a["group"],
                "output_padding": outpad, "out_dims": list(outs[0].shape[2:])}

    def macs(self, ins, outs, a):
        return prod(ins[0].shape[1:]) * prod(ins[1].shape[1:])

    def example(self, rng):
        group = int(rng.choice([1, 2]))
        x = rng.standard_normal((2, 2 * group, 3, 4)).astype(np.float32)
        w = rng.standard_normal((2 * group, 3, 3, 2)).astype(np.float32)
        b = rng.standard_normal(3 * group).astype(np.float32)
        return OpExample([x, w, b], {"strides": [2, 1], "pads": [1, 0, 0, 1], "group": group,
                                     "output_padding": [1, 0]}, params=(1, 2))
