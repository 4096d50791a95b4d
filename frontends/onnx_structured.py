"""ONNX handlers of the structured ops: Resize / Upsample, ConvTranspose, LSTM, GRU.

Registered into :data:`frontends.onnx.HANDLERS` on import (the last line of frontends/onnx.py).  What
exporters put around them (a ``Slice`` crop of run-time data, ``ConstantOfShape`` zeros of the batch size as
recurrent initial states) is handled by those ops' own handlers in frontends/onnx.py.
"""
from __future__ import annotations

import numpy as np

from irc.errors import IRCError, UnsupportedError
from irc.types import BATCH

from irc.ops import get_op

from .onnx import _STATE_INPUTS, SYM_BATCH, _Lowering, attrs_of, handler



def _emit_multi(L: _Lowering, op: str, n, inputs: list, attrs: dict) -> list:
    """One IR node with several outputs, named after the ONNX node's outputs (unused ones get a suffix)."""
    label = n.name or n.output[0]
    slots = [s.rstrip("?*") for s in get_op(op).inputs]
    vals = [L._param_for(x, f"{label}.{slots[i]}") if isinstance(x, np.ndarray) else x for i, x in enumerate(inputs)]
    count = {"LSTM": 3, "GRU": 2}[op]
    names = [(n.output[i] if i < len(n.output) and n.output[i] else f"{label}.out{i}") for i in range(count)]
    node = L.graph.add_node(op, vals, attrs, name=label, output_names=names)
    return list(node.outputs)


# ------------------------------------------------------------------ Resize
def _resize_attrs(L: _Lowering, n, rank: int, in_shape: tuple, scales, sizes, a: dict) -> dict:
    mode = a.get("mode", "nearest")
    if mode == "cubic":
        raise UnsupportedError("Resize mode 'cubic' is not supported (nearest and linear are)",
                               hint="export with mode='nearest' or 'linear' (bilinear)")
    if mode not in ("nearest", "linear"):
        raise UnsupportedError(f"Resize mode {mode!r} is not supported (nearest and linear are)")
    ctm = a.get("coordinate_transformation_mode", "half_pixel" if L.opset >= 11 else "asymmetric")
    if ctm == "tf_crop_and_resize":
        raise UnsupportedError("Resize with coordinate_transformation_mode 'tf_crop_and_resize' is not supported")
    if a.get("antialias", 0):
        raise UnsupportedError("Resize with antialias=1 is not supported")
    axes = [int(ax) % rank for ax in a.get("axes", range(rank))]
    full_scales, full_sizes = [1.0] * rank, [0 if d == BATCH else d for d in in_shape]
    if sizes is not None and len(sizes):
        if a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise UnsupportedError("Resize keep_aspect_ratio_policy other than 'stretch' is not supported")
        for ax, s in zip(axes, sizes):
            if s == SYM_BATCH or in_shape[ax] == BATCH:
                if not (s == SYM_BATCH and in_shape[ax] == BATCH):
                    raise UnsupportedError("Resize along the batch axis is not supported")
                continue
            full_sizes[ax], full_scales[ax] = int(s), int(s) / in_shape[ax]
    elif scales is not None and len(scales):
        for ax, s in zip(axes, scales):
            s = float(s)
            if in_shape[ax] == BATCH:
                if s != 1.0:
                    raise UnsupportedError("Resize along the batch axis is not supported")
                continue
            full_sizes[ax], full_scales[ax] = int(np.floor(in_shape[ax] * s)), s
    else:
        raise IRCError("Resize needs scales or sizes")
    nearest = a.get("nearest_mode", "round_prefer_floor") if L.opset >= 11 else "floor"
    return {"mode": mode, "coordinate_transformation_mode": ctm, "nearest_mode": nearest,
            "scales": full_scales, "sizes": full_sizes}


def _const_or_none(L: _Lowering, n, i: int, what: str):
    if not L.has(n, i):
        return None
    return np.asarray(L.const(n, i, what)).reshape(-1)


@handler("Resize")
def Resize(L, n):
    a = attrs_of(n)
    x = L.arg(n, 0)
    shape = L.type_of(n.input[0]).shape
    if L.opset < 11:
        scales, sizes = _const_or_none(L, n, 1, "scales"), None
    else:
        scales, sizes = _const_or_none(L, n, 2, "scales"), _const_or_none(L, n, 3, "sizes")
    return [L.emit("Resize", [x], _resize_attrs(L, n, len(shape), shape, scales, sizes, a))]


@handler("Upsample")
def Upsample(L, n):
    a = attrs_of(n)
    shape = L.type_of(n.input[0]).shape
    scales = np.asarray(a["scales"]) if "scales" in a else _const_or_none(L, n, 1, "scales")
    attrs = _resize_attrs(L, n, len(shape), shape, scales, None, dict(a, coordinate_transformation_mode="asymmetric"))
    return [L.emit("Resize", [L.arg(n, 0)], attrs)]


# ----------------------------------------------------------- ConvTranspose
@handler("ConvTranspose")
def ConvTranspose(L, n):
    a = attrs_of(n)
    x = L.value(n.input[0])
    w = L.const(n, 1, "the weight")
    nd = w.ndim - 2
    kernel = list(a.get("kernel_shape", w.shape[2:]))
    strides = list(a.get("strides", [1] * nd))
    dil = list(a.get("dilations", [1] * nd))
    outpad = list(a.get("output_padding", [0] * nd))
    in_dims = x.type.shape[2:]
    auto_pad = a.get("auto_pad", "NOTSET") or "NOTSET"
    out_shape = list(a.get("output_shape", []))[-nd:] if a.get("output_shape") else None
    if auto_pad in ("SAME_UPPER", "SAME_LOWER") and out_shape is None:
        out_shape = [d * s for d, s in zip(in_dims, strides)]
    if out_shape is not None:
        pads_b, pads_e = [], []
        for i in range(nd):
            total = strides[i] * (in_dims[i] - 1) + outpad[i] + dil[i] * (kernel[i] - 1) + 1 - out_shape[i]
            if auto_pad == "SAME_UPPER":
                pads_b.append(total // 2)
                pads_e.append(total - total // 2)
            else:
                pads_b.append(total - total // 2)
                pads_e.append(total // 2)
        pads = pads_b + pads_e
    elif auto_pad == "VALID":
        pads = [0] * (2 * nd)
    elif auto_pad == "NOTSET":
        pads = list(a.get("pads", [0] * (2 * nd)))
    else:
        raise IRCError(f"unknown auto_pad {auto_pad!r}")
    attrs = {"strides": strides, "pads": pads, "dilations": dil, "group": a.get("group", 1),
             "output_padding": outpad}
    return [L.emit("ConvTranspose", [x, w, L.arg(n, 2)], attrs)]


# ------------------------------------------------------------- LSTM / GRU
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}


def _recurrent(L: _Lowering, n, op: str) -> list:
    a = attrs_of(n)
    direction = a.get("direction", "forward")
    dirs = 2 if direction == "bidirectional" else 1
    acts = list(a.get("activations", []))
    if acts and [s.lower() for s in acts] != [s.lower() for s in _DEFAULT_ACTIVATIONS[op] * dirs]:
        raise UnsupportedError(f"{op} with activations {acts} is not supported (only the defaults "
                               f"{_DEFAULT_ACTIVATIONS[op]})")
    if "clip" in a:
        raise UnsupportedError(f"{op} with clip is not supported")
    if a.get("input_forget", 0):
        raise UnsupportedError(f"{op} with input_forget=1 is not supported")
    layout = int(a.get("layout", 0))
    x = L.arg(n, 0)
    # a time-major X whose batch the IR holds first (frontends/onnx_timemajor.py) runs batch-first (layout 1)
    ir_layout = 1 if layout == 0 and L.batch_axes.get(n.input[0]) == 1 else layout
    moved = [i for i in n.input if i in L.batch_axes]
    runtime_states = [n.input[k] for k in _STATE_INPUTS[op] if L.has(n, k) and not L.is_const(n.input[k])]
    if moved and (ir_layout == layout or any(L.batch_axes[i] != 1 for i in moved)
                  or any(i not in L.batch_axes for i in runtime_states)):
        raise UnsupportedError(f"{op} with layout={layout} on inputs whose batch axes do not match it")
    t_axis = 0 if ir_layout == 0 else 1
    seq = L.type_of(n.input[0]).shape[t_axis]
    if L.has(n, 4):
        lens = L.arg(n, 4)
        if not isinstance(lens, np.ndarray) or not (lens == seq).all():
            raise UnsupportedError(f"{op} with sequence_lens is not supported (every sequence must be full "
                                   f"length)")
    if op == "LSTM" and L.has(n, 7):
        p = L.arg(n, 7)
        if not isinstance(p, np.ndarray) or p.any():
            raise UnsupportedError("LSTM with peepholes is not supported")
    w, r = L.const(n, 1, "W"), L.const(n, 2, "R")
    b = L.arg(n, 3)
    states = [L.arg(n, i) for i in ((5, 6) if op == "LSTM" else (5,))]
    states = [None if isinstance(s, np.ndarray) and not s.any() else s for s in states]
    if ir_layout != layout:  # constant states (D, 1, H) in the batch-first layout; run-time ones are already
        states = [np.swapaxes(s, 0, 1) if isinstance(s, np.ndarray) else s for s in states]
        for name in filter(None, n.output[1:]):
            L.batch_axes[name] = 1  # Y_h, Y_c: (D, N, H)
        if n.output and n.output[0]:
            L.batch_axes[n.output[0]] = 2  # Y: (T, D, N, H)
    attrs = {"hidden_size": int(a.get("hidden_size", r.shape[-1])), "direction": direction, "layout": ir_layout}
    if op == "GRU":
        attrs["linear_before_reset"] = bool(a.get("linear_before_reset", 0))
    return _emit_multi(L, op, n, [x, w, r, b, *states], attrs)


@handler("LSTM")
def LSTM(L, n):
    return _recurrent(L, n, "LSTM")


@handler("GRU")
def GRU(L, n):
    return _recurrent(L, n, "GRU")
