"""The numpy target's choice of formulation for each 2-d convolution, from its shape, at compile time.

Weights are packed here once, in the activations' dtype (a float64 weight
must not turn a float32 network's GEMMs float64), with an N2D2 channel mask
multiplied in.  The rules, each measured against the alternatives on the
benchmark networks (interleaved medians, batch 1 and 256):

* depthwise (one input channel per group): in numpy, where the rows line up
  (the output as wide as the input or its stride phase planes), one einsum per
  stride phase over flat shifts of the unpadded input, row edges masked in the
  weights (kernels_nhwc._depthwise_flat; DS-CNN's 256-sample layer, one
  thread: 14.9 ms as taps over whole padded rows, 5.5 ms so), else taps over
  whole padded rows; with ``kernels=llvm`` the JIT kernel (one FMA per tap,
  vectorised over channels; 3x3 with 8k channels and narrow rows or a small
  input: taps unrolled, weights in registers, about 1.5x faster again), which
  numpy's passes cannot reach (2.0 ms on that layer);
* fewer than FEW_CHANNELS output channels (group 1): channels-first, vectorised
  along rows of pixels rather than over a handful of channels; with
  ``kernels=llvm`` (stride 1 along W, 8+ output columns) the JIT kernel holding
  8 pixels x up to 8 channels in registers, else (kernels=numpy) per sample the
  GEMM (M, K) @ (K, pixels) (LeNet's first layer, 1 -> 6 channels, 5x5, batch
  256, one thread: JIT direct 10 ms, numpy GEMM 3.3 ms, JIT few-outputs 2 ms);
* other dense convolutions with ``kernels=llvm``: the JIT direct kernel (a
  register tile of 4 pixels x 16 or 32 output channels, a row's 1-3 last
  pixels as one tile, the input padded once; 1x1 stride 1: the batch's pixels
  as one row), faster than BLAS on these narrow GEMMs (M = 6..96) and with no
  column copy;
* otherwise 1x1 without padding: one GEMM over all pixels;
* other dense convolutions: im2col over channels-last rows (copies of KW*C
  contiguous values) and one GEMM;
* grouped convolutions: a dense block-diagonal weight (G times the
  multiplies, but one kernel or BLAS call rather than one small GEMM per group).

Not used, measured slower: Winograd F(2x2, 3x3) for 3x3 stride-1 convs with
``kernels=numpy`` (2.25x fewer multiplies; kernel in git at cc963bd,
kernels_nhwc.conv_winograd: flat transforms, 16 GEMMs, output transform as a GEMM;
float32 error as im2col's, ~5e-7 of the output's scale).  Its transforms are
~20 ufunc calls per step at ~8 G values/s, ~25 writes per output value against
im2col's ~12.  ResNet-8's layers, batch 16, interleaved medians: one thread
0.99x im2col at 16 channels 32x32, 0.89x at 32 (16x16), 0.79x at 64 (8x8);
two threads (batch chunks over Python threads) 1.1-2.8x slower: ufunc calls
under ~20 us each lose to the GIL handoff (a 13k-value subtract: 2.8 us on one
thread, 26 us per pair on two), and larger steps leave the cache.  Whole
network, batch 256: two threads 1.11x (64 channels only) to 1.17x (32 and 64)
slower, one thread 1.01x to 1.10x.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from irc.graph import Node
from irc.ops.nn import fused_activation_args, masked_weight, spatial_attrs


FEW_CHANNELS = 8
"""Below this many channels a value stays channels-first, where loops run along rows of pixels rather than
along a handful of channels (LeNet's 6-channel layers: measured 2x faster in numpy, and with the JIT kernel)."""


@dataclass
class ConvPlan:
    kernel: str
    weight: str
    bias: str
    kwargs: dict[str, Any]
    note: str
    layout: str = "nhwc"
    """The layout the kernel reads its input in and writes its output in."""


def conv_weight(L, node: Node) -> np.ndarray:
    """The IR weight (M, C/group, KH, KW), mask applied, in the input's dtype."""
    return masked_weight(node, L.graph.param).astype(L.dtype(node.inputs[0]))


def block_diagonal(w: np.ndarray, group: int) -> np.ndarray:
    """A grouped weight (M, C/group, KH, KW) as the dense (M, C, KH, KW) weight that computes the same."""
    m, cg = w.shape[:2]
    mg = m // group
    dense = np.zeros((m, cg * group) + w.shape[2:], w.dtype)
    for g in range(group):
        dense[g * mg:(g + 1) * mg, g * cg:(g + 1) * cg] = w[g * mg:(g + 1) * mg]
    return dense


def choose_conv(L, node: Node) -> ConvPlan:
    x = node.inputs[0]
    a = node.attrs
    strides, pads, dilations = spatial_attrs(a, 2)
    group = a["group"]
    w = conv_weight(L, node)
    m, cg, kh, kw = w.shape
    c = x.type.shape[1]
    dt = L.dtype(x)
    act = fused_activation_args(a)
    from irc.backends.llvm.conv_kernels import JIT_ACTIVATIONS

    jit = L.mode == "llvm" and dt == np.float32 and act.get("activation", "relu") in JIT_ACTIVATIONS
    b = node.inputs[2] if len(node.inputs) > 2 else None
    bias = L.graph.param(b).astype(dt) if b is not None else None
    geometry = {"kernel": [kh, kw], "strides": strides, "pads": pads, "dilations": dilations,
                "out_dims": list(node.outputs[0].type.shape[2:])}

    def bias_ref(required: bool) -> str:
        if bias is None and not required:
            return "None"
        return L.packed(node.name + ".bias", bias if bias is not None else np.zeros(m, dt))

    if cg == 1 and group == c > 1:
        packed = L.packed(node.name + ".weight_hwm", w[:, 0].transpose(1, 2, 0))
        if jit:
            return ConvPlan("jit_depthwise", packed, bias_ref(True), {**geometry, **act},
                            "depthwise, JIT: FMA over channels")
        return ConvPlan("conv_depthwise", packed, bias_ref(False), {**geometry, **act},
                        "depthwise: one einsum over flat shifts where rows line up, else taps over padded rows")
    jit_rows = jit and strides[1] == 1 and geometry["out_dims"][1] >= 8  # the JIT kernel's vectors of 8 pixels
    if group == 1 and m < FEW_CHANNELS and (L.mode == "numpy" or jit_rows):
        # few output channels: channels-first, vectorised along rows of pixels rather than over a few channels
        packed = L.packed(node.name + ".weight_mk", w.reshape(m, -1))
        if jit:
            return ConvPlan("jit_few_outputs", packed, bias_ref(True), {**geometry, **act},
                            "few outputs, JIT: 8 pixels x up to 8 channels in registers, channels-first", "nchw")
        return ConvPlan("conv_few_outputs", packed, bias_ref(False), {**geometry, **act},
                        "few outputs, channels-first: (M, K) @ (K, pixels) per sample", "nchw")
    note = ""
    if group > 1:
        w = block_diagonal(w, group)
        note = f"{group} groups as one block-diagonal weight; "
    if jit:
        from irc.backends.llvm.conv_kernels import packed_direct_weight

        packed = packed_direct_weight(w)
        padded_bias = np.zeros(packed.shape[-1], dt)
        if bias is not None:
            padded_bias[:m] = bias
        return ConvPlan("jit_conv", L.packed(node.name + ".weight_hwcm", packed),
                        L.packed(node.name + ".bias_padded", padded_bias), {**geometry, "channels": m, **act},
                        note + "JIT direct convolution: 4 pixels x 16-32 channels in registers")
    if kh == kw == 1 and not any(pads):
        packed = L.packed(node.name + ".weight_cm", w[:, :, 0, 0].T)
        return ConvPlan("conv_pointwise", packed, bias_ref(False), {"strides": strides, **act},
                        note + "pointwise: one GEMM over pixels")
    packed = L.packed(node.name + ".weight_col", w.transpose(2, 3, 1, 0).reshape(kh * kw * c, m))
    return ConvPlan("conv_im2col", packed, bias_ref(False), {**geometry, **act},
                    note + "im2col over channels-last rows, one GEMM")
