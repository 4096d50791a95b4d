"""Keras rules of the structured layers: Conv1D/2D/3DTranspose, UpSampling1D/2D/3D, Permute, LSTM, GRU and
Bidirectional, lowered onto the IR's ConvTranspose, Resize, LSTM and GRU ops.

Registered into :data:`frontends.keras.RULES` on import (the last line of frontends/keras.py).  Recurrent
layers keep their weights one level down in a ``.keras`` archive (``lstm/cell/vars``,
``bidirectional/forward_layer/cell/vars``); :data:`ARCHIVE_SUBGROUPS` says where, and the archive reader is
wrapped to look there (the legacy ``.h5`` reader needs nothing: it matches weights by name).

What inference ignores is ignored (dropout, recurrent_dropout, unroll, initializers, unit_forget_bias);
what would change the result and the IR ops cannot do is refused by name (stateful, other activations,
time_major, interpolations other than nearest and bilinear).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from irc.errors import IRCError, UnsupportedError
from irc.types import BATCH

from . import keras as K
from .keras import Lowering, Tensor, Var, Weights, activation_name, bias_var, ints, one, padding_check, rule


# ================================================================ transposed convolutions
def keras_split(kernel: int, stride: int, dilation: int, padding: str, output_padding: int | None) -> tuple:
    """(crop at the begin, crop at the end) of the full result along one axis, Keras's arithmetic
    (``_convert_conv_transpose_padding_args_from_keras_to_jax``, which the tensorflow backend matches and
    the torch backend reproduces by cropping since Keras 3.12 or so): 'same' puts the odd crop at the end,
    output_padding adds rows at the end, and a negative crop adds zero rows."""
    k = (kernel - 1) * dilation + 1
    if padding == "valid":
        op = max(k, stride) - k if output_padding is None else output_padding
        left, right = k - 1, k - 1 + op
    else:
        total = stride + k - 2 if output_padding is None else k + k % 2 - 2 + output_padding
        left = min(total // 2 + total % 2, k - 1)
        right = total - left
    return k - 1 - left, k - 1 - right


def conv_transpose_vars(cfg: dict) -> list[Var]:
    return [Var("kernel")] + bias_var(cfg)


def conv_transpose_check(cfg: dict) -> list[str]:
    problems = padding_check("valid", "same")(cfg)
    if int(cfg.get("groups", 1) or 1) != 1:
        problems.append(f"groups={cfg['groups']}")
    return problems


@rule("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", variables=conv_transpose_vars,
      check=conv_transpose_check)
def conv_transpose(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    """Keras kernel (*kernel, filters, in) as IR weight (in, filters, *kernel); the crops as explicit pads."""
    name = cfg["name"]
    t = L.channels_first(one(args), cfg)
    nd = t.rank - 2
    kernel = K.expect_rank(w["kernel"], nd + 2, "kernel")
    sizes, strides = list(kernel.shape[:nd]), ints(cfg.get("strides", 1), nd)
    dil = ints(cfg.get("dilation_rate", 1), nd)
    outpad = cfg.get("output_padding")
    outpad = [None] * nd if outpad is None else ints(outpad, nd)
    padding = cfg.get("padding", "valid")
    splits = [keras_split(sizes[i], strides[i], dil[i], padding, outpad[i]) for i in range(nd)]
    pads = [s[0] for s in splits] + [s[1] for s in splits]
    weight = np.transpose(kernel, (nd + 1, nd) + tuple(range(nd)))
    bias = w.get("bias")
    ins = [t.value, L.param(f"{name}.kernel", weight, w["kernel"]),
           L.param(f"{name}.bias", bias, bias) if bias is not None else None]
    attrs = {"strides": strides, "pads": pads, "dilations": dil, "group": 1,
             "output_padding": [0] * nd}
    y = Tensor(L.node("ConvTranspose", ins, attrs, name), t.axes)
    return L.activation(cfg.get("activation"), y, name + ".act")


# ========================================================================= upsampling
INTERPOLATIONS = {
    "nearest": {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
    "bilinear": {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
}
"""Keras UpSampling interpolation -> IR Resize attributes: nearest repeats each pixel (asymmetric + floor is
exactly that); bilinear is ``ops.image.resize`` without antialiasing, half-pixel centres."""


def upsampling_check(cfg: dict) -> list[str]:
    how = cfg.get("interpolation", "nearest")
    return [] if how in INTERPOLATIONS else [f"interpolation {how!r}; supported: {', '.join(INTERPOLATIONS)}"]


@rule("UpSampling1D", "UpSampling2D", "UpSampling3D", check=upsampling_check)
def upsampling(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    """A Resize on the tensor as it is arranged (Resize is per axis, so no Transpose is needed)."""
    t = one(args)
    spatial = K.spatial_axes(t.rank, cfg.get("data_format"))
    factors = dict(zip(spatial, ints(cfg.get("size", 2), len(spatial))))
    if any(f < 1 for f in factors.values()):
        raise IRCError(f"UpSampling size {cfg.get('size')!r} must be positive")
    scales = [float(factors.get(ax, 1)) for ax in t.axes]
    sizes = [0 if d == BATCH else int(d) * int(s) for d, s in zip(t.shape, scales)]
    attrs = {**INTERPOLATIONS[cfg.get("interpolation", "nearest")], "scales": scales, "sizes": sizes}
    return Tensor(L.node("Resize", [t.value], attrs, cfg["name"]), t.axes)


# ============================================================================= Permute
@rule("Permute")
def permute(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    """Only a relabelling of axes: the Transpose, if any, is made by whoever needs another arrangement."""
    t = one(args)
    dims = [int(d) for d in cfg["dims"]]
    if sorted(dims) != list(range(1, t.rank)):
        raise IRCError(f"Permute dims {dims} is not a permutation of the axes 1..{t.rank - 1}")
    order = (0, *dims)  # new Keras axis i holds old Keras axis order[i]
    return Tensor(t.value, tuple(order.index(a) for a in t.axes))


# ===================================================================== LSTM and GRU
GATE_ORDER = {"LSTM": (0, 3, 1, 2), "GRU": (0, 1, 2)}
"""Keras gate blocks in the order the IR (ONNX) wants: LSTM i,f,c,o -> i,o,f,c; GRU z,r,h in both."""
STATES = {"LSTM": 2, "GRU": 1}
RECURRENT = tuple(GATE_ORDER)


def rnn_vars(cfg: dict, prefix: str = "") -> list[Var]:
    alias = lambda role: Var(prefix + role, aliases=(role,)) if prefix else Var(role)  # noqa: E731
    return [alias("kernel"), alias("recurrent_kernel")] + ([alias("bias")] if cfg.get("use_bias", True) else [])


def rnn_check(cfg: dict) -> list[str]:
    problems = []
    if cfg.get("stateful"):
        problems.append("stateful=True; irc starts every batch from zero states")
    if cfg.get("time_major"):
        problems.append("time_major=True")
    if activation_name(cfg.get("activation", "tanh")) != "tanh":
        problems.append(f"activation {activation_name(cfg['activation'])!r}; only 'tanh' is supported")
    recurrent = activation_name(cfg.get("recurrent_activation", "sigmoid"))
    if recurrent != "sigmoid":
        problems.append(f"recurrent_activation {recurrent!r}; only 'sigmoid' is supported")
    return problems


def reorder_gates(a: np.ndarray, cls: str, units: int, axis: int) -> np.ndarray:
    blocks = np.split(a, len(GATE_ORDER[cls]), axis=axis)
    if any(b.shape[axis] != units for b in blocks):
        raise IRCError(f"a {cls} weight of shape {list(a.shape)} does not hold {len(blocks)} gates of {units} units")
    return np.concatenate([blocks[i] for i in GATE_ORDER[cls]], axis=axis)


def flip_time(L: Lowering, t: Tensor, name: str) -> Tensor:
    """A (N, T, H) sequence reversed in time: a MatMul by the T x T exchange matrix on (N, H, T)."""
    t = L.arrange(t, (0, 2, 1))
    steps = t.shape[2]
    exchange = L.param(f"{name}.flip", np.eye(steps, dtype=np.float32)[::-1])
    return Tensor(L.node("MatMul", [t.value, exchange], name=f"{name}.flip"), t.axes)


def recurrent(L: Lowering, cls: str, cfg: dict, x: Tensor, w: Weights, prefix: str, name: str,
              flip: bool) -> list[Tensor]:
    """One Keras LSTM/GRU as one IR op: [sequence or last output, *final states] as Keras returns them
    (``flip``: reverse the sequence output, Keras's order for go_backwards)."""
    units = int(cfg["units"])
    x = L.arrange(x, K.keras_order(3)) if x.rank == 3 else None
    if x is None:
        raise IRCError(f"{cls} needs a (batch, time, features) input")
    kernel = K.expect_rank(w[prefix + "kernel"], 2, "kernel")
    rec = K.expect_rank(w[prefix + "recurrent_kernel"], 2, "recurrent kernel")
    g = len(GATE_ORDER[cls]) * units
    if kernel.shape != (x.shape[2], g) or rec.shape != (units, g):
        raise IRCError(f"{cls} kernels {list(kernel.shape)} / {list(rec.shape)} do not match {units} units "
                       f"on {x.shape[2]} features")
    bias = w.get(prefix + "bias")
    reset_after = bias is not None and bias.ndim == 2
    if cls == "GRU" and bias is None:
        reset_after = bool(cfg.get("reset_after", not L.model.keras2))
    if bias is None:
        bias = np.zeros(2 * g, np.float32)
    elif reset_after:  # GRU reset_after: (input bias, recurrent bias)
        bias = np.concatenate([reorder_gates(b, cls, units, 0) for b in K.expect_rank(bias, 2, "bias")])
    else:
        bias = np.concatenate([reorder_gates(bias.reshape(-1), cls, units, 0), np.zeros(g, np.float32)])
    weights = [reorder_gates(kernel.T, cls, units, 0)[None], reorder_gates(rec.T, cls, units, 0)[None], bias[None]]
    sources = [w[prefix + "kernel"], w[prefix + "recurrent_kernel"], w.get(prefix + "bias")]
    params = [L.param(f"{name}.{role}", a, s) for role, a, s in zip(("W", "R", "B"), weights, sources)]
    attrs = {"hidden_size": units, "direction": "reverse" if cfg.get("go_backwards") else "forward", "layout": 1}
    if cls == "GRU":
        attrs["linear_before_reset"] = reset_after
    node = L.graph.add_node(cls, [x.value, *params], attrs, name=name)
    steps = x.shape[1]
    last = [Tensor(L.node("Reshape", [s], {"shape": [0, units]}, f"{name}.state{i}"), (0, 1))
            for i, s in enumerate(node.outputs[1:])]
    if cfg.get("return_sequences"):
        out = Tensor(L.node("Reshape", [node.outputs[0]], {"shape": [0, steps, units]}, f"{name}.seq"), (0, 1, 2))
        out = flip_time(L, out, name) if flip else out
    else:
        out = last[0]
    return [out] + last


def rnn_outputs(cfg: dict, outs: list[Tensor]) -> list[Tensor]:
    return outs if cfg.get("return_state") else outs[:1]


def rnn_rule(cls: str):
    def lower(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> list[Tensor]:
        return rnn_outputs(cfg, recurrent(L, cls, cfg, one(args), w, "", cfg["name"], bool(cfg.get("go_backwards"))))
    lower.__doc__ = f"Keras {cls} (Keras's go_backwards output runs backwards in time; the IR's is in input order)."
    return lower


for _cls in RECURRENT:
    rule(_cls, variables=rnn_vars, check=rnn_check)(rnn_rule(_cls))


# ====================================================================== Bidirectional
MERGES = ("concat", "sum", "ave", "mul", None)


def inner_layers(cfg: dict) -> tuple[dict, dict]:
    """(forward, backward) layer entries; without a backward_layer Keras copies the forward one, go_backwards
    flipped."""
    forward = cfg["layer"]
    backward = cfg.get("backward_layer")
    if backward is None:
        inner = dict(forward["config"])
        inner["go_backwards"] = not inner.get("go_backwards", False)
        backward = {"class_name": forward["class_name"], "config": inner}
    return forward, backward


def bidirectional_vars(cfg: dict) -> list[Var]:
    forward, backward = inner_layers(cfg)
    return rnn_vars(forward["config"], "forward_") + rnn_vars(backward["config"], "backward_")


def bidirectional_check(cfg: dict) -> list[str]:
    problems = []
    if cfg.get("merge_mode", "concat") not in MERGES:
        problems.append(f"merge_mode {cfg['merge_mode']!r}")
    for side, layer in zip(("forward", "backward"), inner_layers(cfg)):
        if layer["class_name"] not in RECURRENT:
            problems.append(f"{side} layer {layer['class_name']}; irc reads Bidirectional {' and '.join(RECURRENT)}")
            continue
        problems += [f"{side} {p}" for p in rnn_check(layer["config"])]
    return problems


@rule("Bidirectional", variables=bidirectional_vars, check=bidirectional_check)
def bidirectional(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> list[Tensor]:
    """Both layers run as Keras runs them; Keras flips the backward sequence back into input order."""
    name = cfg["name"]
    x = one(args)
    forward, backward = inner_layers(cfg)
    fcfg, bcfg = forward["config"], backward["config"]
    if bool(fcfg.get("return_sequences")) != bool(bcfg.get("return_sequences")):
        raise UnsupportedError("Bidirectional layers that differ in return_sequences")
    seq = bool(fcfg.get("return_sequences"))
    fw = recurrent(L, forward["class_name"], fcfg, x, w, "forward_", f"{name}.forward",
                   bool(fcfg.get("go_backwards")))
    bw = recurrent(L, backward["class_name"], bcfg, x, w, "backward_", f"{name}.backward",
                   not bcfg.get("go_backwards"))
    y, y_rev = fw[0], bw[0]
    mode = cfg.get("merge_mode", "concat")
    if mode is None:
        merged = [y, y_rev]
    else:
        y, y_rev = L.same_arrangement([y, y_rev])
        if mode == "concat":
            v = L.node("Concat", [y.value, y_rev.value], {"axis": L.ir_axis(y, -1)}, name)
        elif mode == "ave":
            total = L.node("Add", [y.value, y_rev.value], name=f"{name}.sum")
            v = L.node("Mul", [total, L.param(f"{name}.half", np.asarray(0.5, np.float32))], name=name)
        else:
            v = L.node({"sum": "Add", "mul": "Mul"}[mode], [y.value, y_rev.value], name=name)
        merged = [Tensor(v, y.axes)]
    return merged + (fw[1:] + bw[1:] if cfg.get("return_state") else [])


# ========================================================== where archives keep the arrays
ARCHIVE_SUBGROUPS: dict[str, tuple[str, ...]] = {
    **{cls: ("cell",) for cls in RECURRENT},
    "Bidirectional": ("forward_layer/cell", "backward_layer/cell"),
}
"""Sub-groups of a layer's group in model.weights.h5 that hold its ``vars``, in ``layer.weights`` order."""


def read_subgroup_vars(layer: dict, group, where: str) -> list[np.ndarray]:
    """A recurrent (or wrapped recurrent) layer's arrays, gathered from the sub-groups its class keeps them in."""
    paths = ARCHIVE_SUBGROUPS[layer.get("class_name")]
    arrays = []
    for path in paths:
        sub = group[path] if K.is_group(group) and path in group else None
        stored = sub["vars"] if K.is_group(sub) and "vars" in sub else None
        if not K.is_group(stored):
            raise IRCError(f"no weight group {where}/{path}/vars", node=K.layer_name(layer), hint=K.DAMAGED)
        indices = sorted(int(k) for k in stored.keys() if k.isdigit())
        arrays += [K.read_array(stored[str(i)], f"{where}/{path}/vars/{i}", K.layer_name(layer)) for i in indices]
    wanted = K.layer_vars(layer)
    if len(arrays) != len(wanted):
        raise IRCError(f"{layer['class_name']} needs {len(wanted)} weight array(s) "
                       f"({', '.join(v.role for v in wanted)}) under {where}, the file has {len(arrays)}",
                       node=K.layer_name(layer), hint="the file is missing weights or was saved with other options")
    return arrays


K.ARCHIVE_READERS.update(dict.fromkeys(ARCHIVE_SUBGROUPS, read_subgroup_vars))
