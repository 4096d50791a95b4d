"""Ops with weights: Conv, Dense, MatMul, BatchNorm, ScaleShift."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import IRCError
from ..limits import MAX_TENSOR_ELEMENTS
from ..types import BATCH, TensorType
from . import Attr, OpDef, OpExample, activations, conv_out_dim, prod, register

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


def check_padded(x: TensorType, pads: list[int], nd: int) -> None:
    """The zero-padded input a window op works on (kernels allocate it) within max_tensor_elements: pads of
    2^31 that an equally huge dilation makes fit give a small output but a padded copy of terabytes."""
    count = prod(x.shape[1:2]) if x.rank > 1 and not isinstance(x.shape[1], str) else 1
    for i in range(nd):
        count *= x.shape[2 + i] + max(pads[i], 0) + max(pads[nd + i], 0)
    MAX_TENSOR_ELEMENTS.check(count, f"the padded input {list(x.shape)} with pads {pads} (per sample)")


def check_activation(a: dict[str, Any]) -> None:
    name = a["activation"]
    if name and name not in activations():
        raise IRCError(f"cannot fuse activation {name!r}", hint="fusable: " + ", ".join(sorted(activations())))
    params = activations()[name].fused_params if name else ()
    if len(a["activation_params"]) != len(params):
        raise IRCError(f"fused {name or 'no activation'} takes {len(params)} parameter(s) {list(params)}, "
                       f"got {a['activation_params']}")


def fused_activation_args(a: dict[str, Any]) -> dict[str, Any]:
    """Kernel arguments of a host's fused activation: its kernel name and keyword parameters ({} when none)."""
    name = a["activation"]
    if not name:
        return {}
    act = activations()[name]
    return {"activation": act.kernel_name, "activation_params": dict(zip(act.fused_params, a["activation_params"]))}


def _cover(size: int, out: int, k: int, stride: int, pad: int, dil: int) -> np.ndarray:
    """How many (output position, kernel tap) pairs read each input position along one axis."""
    counts = np.zeros(size, np.int64)
    for o in range(out):
        for j in range(k):
            i = o * stride - pad + j * dil
            if 0 <= i < size:
                counts[i] += 1
    return counts


def conv_mask(node, param: Callable) -> np.ndarray | None:
    """A Conv's (out, in/group) connection mask (N2D2 mappings), or None when every pair is connected."""
    return param(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] is not None else None


def masked_weight(node, param: Callable) -> np.ndarray:
    """A Conv's weight with its connection mask applied (the weight itself when it has none)."""
    w = param(node.inputs[1])
    mask = conv_mask(node, param)
    if mask is None:
        return w
    return w * mask.reshape(mask.shape + (1,) * (w.ndim - 2)).astype(w.dtype)


def per_channel_vector(arr: np.ndarray, data: TensorType) -> np.ndarray | None:
    """A constant as a per-channel (axis 1) vector of ``data``, if it is one (float32 data of rank >= 2 only)."""
    rank = data.rank
    if rank < 2 or arr.ndim > rank or data.dtype != "f32":
        return None
    shape = (1,) * (rank - arr.ndim) + arr.shape
    if any(d != 1 for i, d in enumerate(shape) if i != 1):
        return None
    channels = data.shape[1]
    if shape[1] not in (1, channels):
        return None
    return np.broadcast_to(arr.reshape(-1), (channels,)).astype(np.float32)


@register
class Conv(OpDef):
    name = "Conv"
    preserves_sign = True
    inputs = ("x", "weight", "bias?", "mask?")
    params = ("weight", "bias", "mask")
    linear = True
    synaptic = True
    channel_weights = True
    rate_rule = "weighted"
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
        check_padded(x, pads, nd)
        return [TensorType((x.shape[0], m, *out), x.dtype, self.data_domain(ins, [0]))]

    def kernel_args(self, ins, outs, a):
        nd = ins[1].rank - 2
        strides, pads, dil = spatial_attrs(a, nd)
        return {"strides": strides, "pads": pads, "dilations": dil, "group": a["group"],
                "out_dims": list(outs[0].shape[2:]), **fused_activation_args(a)}

    def macs(self, ins, outs, a):
        w = ins[1]
        return prod(outs[0].shape[1:]) * prod(w.shape[1:])

    def fanout(self, node, param):
        x = node.inputs[0].type
        w = param(node.inputs[1])
        nd = w.ndim - 2
        strides, pads, dil = spatial_attrs(node.attrs, nd)
        out_dims = node.output.type.shape[2:]
        g = node.attrs["group"]
        m, cg = w.shape[0], w.shape[1]
        mask = conv_mask(node, param)
        mask = np.ones((m, cg)) if mask is None else mask
        # outputs connected to each input channel: its group's output channels, minus masked pairs
        conn = np.zeros(x.shape[1], np.int64)
        for c in range(x.shape[1]):
            grp = c // cg
            conn[c] = int(np.count_nonzero(mask[grp * (m // g):(grp + 1) * (m // g), c % cg]))
        spatial = np.ones((), np.int64)
        for i in range(nd):
            cov = _cover(x.shape[2 + i], out_dims[i], w.shape[2 + i], strides[i], pads[i], dil[i])
            spatial = np.multiply.outer(spatial, cov)
        return conn.reshape((-1,) + (1,) * nd) * spatial

    def example(self, rng):
        group = int(rng.choice([1, 2]))
        c, m = 2 * group, 2 * group
        k = int(rng.choice([1, 3]))
        x = rng.standard_normal((2, c, 6, 5)).astype(np.float32)
        w = rng.standard_normal((m, c // group, k, k)).astype(np.float32)
        b = rng.standard_normal(m).astype(np.float32)
        pads = [int(p) for p in rng.integers(0, k, 4)] if k > 1 else [0, 0, 0, 0]
        return OpExample([x, w, b], {"group": group, "pads": pads, "strides": [int(rng.choice([1, 2]))] * 2},
                         params=(1, 2))


@register
class Dense(OpDef):
    name = "Dense"
    preserves_sign = True
    inputs = ("x", "weight", "bias?")
    params = ("weight", "bias")
    linear = True
    synaptic = True
    channel_weights = True
    rate_rule = "weighted"
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

    def kernel_args(self, ins, outs, a):
        return fused_activation_args(a)

    def macs(self, ins, outs, a):
        return prod(ins[1].shape)

    def fanout(self, node, param):
        return np.full(node.inputs[0].type.sample_shape, param(node.inputs[1]).shape[0], np.int64)

    def example(self, rng):
        x = rng.standard_normal((3, 5)).astype(np.float32)
        return OpExample([x, rng.standard_normal((4, 5)).astype(np.float32), rng.standard_normal(4).astype(np.float32)],
                         {}, params=(1, 2))


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
    preserves_sign = True
    inputs = ("a", "b")
    linear = True
    synaptic = True
    rate_rule = "bilinear"
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

    def fanout(self, node, param):
        b = node.inputs[1].type
        return np.full(node.inputs[0].type.sample_shape, b.shape[-1] if b.rank > 1 else 1, np.int64)

    def example(self, rng):
        return OpExample([rng.standard_normal((3, 2, 4)).astype(np.float32),
                          rng.standard_normal((4, 5)).astype(np.float32)], {}, params=(1,))


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

    def channel_affine(self, node, param):
        if not all(v.is_param for v in node.inputs[1:]):
            return None
        gamma, beta, mean, var = (param(v).astype(np.float64) for v in node.inputs[1:])
        k = gamma / np.sqrt(var + node.attrs["epsilon"])
        return node.inputs[0], k.astype(np.float32), (beta - mean * k).astype(np.float32)

    def example(self, rng):
        c = 3
        return OpExample([rng.standard_normal((2, c, 4)).astype(np.float32),
                          *(rng.standard_normal(c).astype(np.float32) for _ in range(3)),
                          rng.uniform(0.5, 2.0, c).astype(np.float32)], {"epsilon": 1e-3}, params=(1, 2, 3, 4))


@register
class ScaleShift(OpDef):
    name = "ScaleShift"
    preserves_sign = True
    inputs = ("x", "scale", "shift?")
    params = ("scale", "shift")
    linear = True
    synaptic = True
    rate_rule = "weighted"
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

    def kernel_args(self, ins, outs, a):
        return fused_activation_args(a)

    def macs(self, ins, outs, a):
        return prod(ins[0].sample_shape)

    def fanout(self, node, param):
        return np.ones(node.inputs[0].type.sample_shape, np.int64)

    def example(self, rng):
        c = 3
        return OpExample([rng.standard_normal((2, c, 2, 3)).astype(np.float32), rng.standard_normal(c).astype(np.float32),
                          rng.standard_normal(c).astype(np.float32)], {}, params=(1, 2))
