"""Ops with weights: Conv, Dense, MatMul, BatchNorm, ScaleShift."""
from __future__ import annotations

from typing import Any

from ..errors import IRCError
from ..types import BATCH, TensorType
from . import Attr, OpDef, conv_out_dim, prod, register

FUSABLE_ACTIVATIONS = ("", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh")

ACTIVATION_ATTRS = {
    "activation": Attr("str", "", "fused activation op name ('' for none)"),
    "activation_params": Attr("floats", [], "its parameters in declaration order"),
}


def spatial_attrs(a: dict[str, Any], nd: int) -> tuple[list[int], list[int], list[int]]:
    """strides, pads (begin..., end...), dilations with their defaults filled in."""
    strides = a["strides"] or [1] * nd
    pads = a["pads"] or [0] * (2 * nd)
    dilations = a["dilations"] or [1] * nd
    if len(strides) != nd or len(pads) != 2 * nd or len(dilations) != nd:
        raise IRCError(f"strides/pads/dilations do not match {nd} spatial dims")
    return strides, pads, dilations


def check_activation(a: dict[str, Any]) -> None:
    if a["activation"] not in FUSABLE_ACTIVATIONS:
        raise IRCError(f"cannot fuse activation {a['activation']!r}")


@register
class Conv(OpDef):
    name = "Conv"
    inputs = ("x", "weight", "bias?", "mask?")
    params = ("weight", "bias", "mask")
    linear = True
    kernel = "conv"
    attrs = {
        "strides": Attr("ints", []),
        "pads": Attr("ints", [], "begin pads then end pads, per spatial axis"),
        "dilations": Attr("ints", []),
        "group": Attr("int", 1),
        **ACTIVATION_ATTRS,
    }
    doc = ("N-d cross-correlation.  weight is (M, C/group, *kernel); the optional mask (M, C/group) "
           "says which (output, input) channel pairs are connected (N2D2 mappings).")

    def infer(self, ins, a):
        x, w, b, mask = (ins + [None, None])[:4]
        check_activation(a)
        nd = w.rank - 2
        if x.rank != nd + 2:
            raise IRCError(f"Conv input has rank {x.rank}, weight expects {nd + 2}")
        g = a["group"]
        c, m = x.shape[1], w.shape[0]
        if g < 1 or c != w.shape[1] * g or m % g:
            raise IRCError(f"Conv: input has {c} channels, weight {list(w.shape)} with group={g} does not match")
        if b is not None and tuple(b.shape) != (m,):
            raise IRCError(f"Conv bias has shape {list(b.shape)}, expected [{m}]")
        if mask is not None and tuple(mask.shape) != (m, w.shape[1]):
            raise IRCError(f"Conv mask has shape {list(mask.shape)}, expected [{m}, {w.shape[1]}]")
        strides, pads, dil = spatial_attrs(a, nd)
        out = [conv_out_dim(x.shape[2 + i], w.shape[2 + i], strides[i], pads[i], pads[nd + i], dil[i]) for i in range(nd)]
        return [TensorType((x.shape[0], m, *out), x.dtype, self.data_domain(ins, [0]))]

    def kernel_args(self, ins, outs, a):
        nd = ins[1].rank - 2
        strides, pads, dil = spatial_attrs(a, nd)
        return {"strides": strides, "pads": pads, "dilations": dil, "group": a["group"],
                "out_dims": list(outs[0].shape[2:]), "activation": a["activation"],
                "activation_params": a["activation_params"]}

    def macs(self, ins, outs, a):
        w = ins[1]
        return prod(outs[0].shape[1:]) * prod(w.shape[1:])


@register
class Dense(OpDef):
    name = "Dense"
    inputs = ("x", "weight", "bias?")
    params = ("weight", "bias")
    linear = True
    kernel = "dense"
    attrs = dict(ACTIVATION_ATTRS)
    doc = "y = x @ weight.T + bias, weight (out_features, in_features), x (N, in_features)."

    def infer(self, ins, a):
        x, w = ins[0], ins[1]
        b = ins[2] if len(ins) > 2 else None
        check_activation(a)
        if w.rank != 2 or x.rank != 2 or x.shape[1] != w.shape[1]:
            raise IRCError(f"Dense: input {list(x.shape)} does not match weight {list(w.shape)}")
        if b is not None and tuple(b.shape) != (w.shape[0],):
            raise IRCError(f"Dense bias has shape {list(b.shape)}, expected [{w.shape[0]}]")
        return [TensorType((x.shape[0], w.shape[0]), x.dtype, self.data_domain(ins, [0]))]

    def macs(self, ins, outs, a):
        return prod(ins[1].shape)


def broadcast_shapes(a: tuple, b: tuple) -> tuple:
    """Numpy broadcasting with the batch symbol allowed on axis 0."""
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + tuple(a)
    b = (1,) * (n - len(b)) + tuple(b)
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x == y:
            out.append(x)
        elif x == 1:
            out.append(y)
        elif y == 1:
            out.append(x)
        else:
            raise IRCError(f"shapes {list(a)} and {list(b)} do not broadcast")
    if BATCH in out[1:]:
        raise IRCError("the batch axis would move off axis 0 when broadcasting")
    return tuple(out)


@register
class MatMul(OpDef):
    name = "MatMul"
    inputs = ("a", "b")
    linear = True
    kernel = "matmul"
    doc = "numpy.matmul semantics (1-d and batched operands)."

    def infer(self, ins, a):
        x, y = ins
        xs, ys = list(x.shape), list(y.shape)
        if x.domain.value != "analog" and y.domain.value != "analog":
            raise IRCError("MatMul of two time-varying operands is not linear")
        if not xs or not ys:
            raise IRCError("MatMul does not take scalars")
        x1, y1 = len(xs) == 1, len(ys) == 1
        if x1:
            xs = [1] + xs
        if y1:
            ys = ys + [1]
        if xs[-1] != ys[-2]:
            raise IRCError(f"MatMul: {list(x.shape)} @ {list(y.shape)} do not match")
        batch = broadcast_shapes(tuple(xs[:-2]), tuple(ys[:-2])) if (len(xs) > 2 or len(ys) > 2) else ()
        shape = list(batch) + [xs[-2], ys[-1]]
        if x1:
            shape.pop(-2)
        if y1:
            shape.pop(-1)
        return [TensorType(tuple(shape), x.dtype, self.data_domain(ins))]

    def macs(self, ins, outs, a):
        k = ins[0].shape[-1]
        return prod(outs[0].sample_shape) * int(k)


@register
class BatchNorm(OpDef):
    name = "BatchNorm"
    inputs = ("x", "scale", "bias", "mean", "var")
    params = ("scale", "bias", "mean", "var")
    linear = True
    kernel = "batch_norm"
    attrs = {"epsilon": Attr("float", 1e-5)}
    doc = "Inference-mode batch normalisation along axis 1."

    def infer(self, ins, a):
        x = ins[0]
        c = x.shape[1] if x.rank > 1 else None
        for t in ins[1:]:
            if tuple(t.shape) != (c,):
                raise IRCError(f"BatchNorm parameter has shape {list(t.shape)}, expected [{c}]")
        return [x.with_(domain=self.data_domain(ins, [0]))]

    def macs(self, ins, outs, a):
        return prod(ins[0].sample_shape)


@register
class ScaleShift(OpDef):
    name = "ScaleShift"
    inputs = ("x", "scale", "shift?")
    params = ("scale", "shift")
    linear = True
    kernel = "scale_shift"
    attrs = dict(ACTIVATION_ATTRS)
    doc = "y = x * scale[c] + shift[c] along axis 1 (a standalone BatchNorm, a branch scale)."

    def infer(self, ins, a):
        x = ins[0]
        check_activation(a)
        c = x.shape[1] if x.rank > 1 else None
        for t in ins[1:]:
            if t is not None and tuple(t.shape) != (c,):
                raise IRCError(f"ScaleShift parameter has shape {list(t.shape)}, expected [{c}]")
        return [x.with_(domain=self.data_domain(ins, [0]))]

    def macs(self, ins, outs, a):
        return prod(ins[0].sample_shape)
