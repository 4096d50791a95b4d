"""N2D2 INI networks lowered into irc's IR.

Layer sections (those with ``Input=``) are built in N2D2's order (by depth,
INI order within a depth); several inputs are concatenated along channels.
Conv, Pool, Fc, Softmax, Dropout, BatchNorm, ElemWise and Padding lower to IR
ops with N2D2's defaults; any other type is refused, naming the section.
N2D2 lists dimensions X (width) first: ``KernelDims=5 3`` is 5 wide, 3 high.

Channel mappings become the Conv's connectivity ``mask`` (the
``apply_channel_mapping`` pass turns block-diagonal masks into groups).  A
spiking configuration (Threshold, BipolarThreshold, Leak, TerminateDelta in
the layers' config sections, StimulusType and its periods in ``[env]``) is
recorded in ``graph.meta["n2d2_spiking"]`` for the spiking passes.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from irc.errors import IRCError, UnsupportedError
from irc.graph import Graph, Value
from irc.limits import MAX_TENSOR_ELEMENTS
from irc.meta import meta_json
from irc.types import BATCH, TensorType

from . import weights as W
from .keys import check_keys
from .mapping import mapping_matrix

SUPPORTED = ("Conv", "Pool", "Fc", "Softmax", "Dropout", "BatchNorm", "ElemWise", "Padding", "ONNX")
NATIVE_SPIKE_MODELS = ("Spike_Analog", "Spike_PCM", "Spike_RRAM")
INPUT_SECTIONS = ("cenv", "env", "sp")
TANH_LECUN_ALPHA = 1.7159 * (2.0 / 3.0)
MAX_SIZE = 1 << 16               # widths, heights, channel and output counts



@dataclass
class Out:
    """A built layer: its IR value (NCHW, or (N, F) after an Fc) and N2D2's dims."""

    value: Value
    channels: int
    height: int
    width: int


def load(path: str, weights: str | None = None, default_activation: str = "Tanh", seed: int = 0,
         **options: Any) -> Graph:
    """Read an N2D2 INI network.  ``weights``: the folder of its ``.syntxt`` files."""
    from .syntax import parse_ini

    if options:
        raise IRCError(f"unknown option(s) for INI files: {sorted(options)}",
                       hint="options: weights, default_activation, seed")
    doc = parse_ini(path)
    if weights is not None and not os.path.isdir(weights):
        raise IRCError("weights folder not found", file=weights)
    return _Lowering(doc, weights, default_activation, seed).run()


class _Lowering:
    def __init__(self, doc, weights: str | None, default_activation: str, seed: int):
        self.doc = doc
        self.weights = weights
        self.default_activation = default_activation
        self.rng = np.random.default_rng(seed)
        self.graph = Graph(os.path.splitext(os.path.basename(doc.path))[0])
        self.outs: dict[str, Out] = {}
        self.onnx_tensors: dict[str, Value] = {}
        """ONNX tensor names inside Type=ONNX cells, by the value holding them (``Input=onnx,<name>``)."""
        self.sites: dict[str, dict] = {}
        self.model = doc.get_str("", "DefaultModel", "Transcode") if doc.has_key("", "DefaultModel") else "Transcode"

    # ---------------------------------------------------------------- errors
    def err(self, section: str, message: str, key: str | None = None, hint: str | None = None) -> IRCError:
        if key is not None and self.doc.has_key(section, key):
            file, line = self.doc.where(section, key)
        else:
            s = self.doc.sections.get(section)
            file, line = (s.file, s.line) if s is not None else (self.doc.path, None)
        return IRCError(f"[{section}] {message}", file=file, line=line, hint=hint)

    # ---------------------------------------------------------------- driver
    def run(self) -> Graph:
        if self.model in NATIVE_SPIKE_MODELS:
            raise UnsupportedError(
                f"DefaultModel={self.model} is a native spiking model that N2D2 trains on line (STDP); irc compiles "
                "trained analog networks (Frame or Transcode models)", file=self.doc.path)
        env = self.input_section()
        layers = [s for s in self.doc.sections if s and s != env and self.doc.has_key(s, "Input")]
        bad = []
        for s in layers:
            t = self.doc.get_str(s, "Type") if self.doc.has_key(s, "Type") else "(no Type)"
            if t not in SUPPORTED:
                file, line = self.doc.where(s, "Type") if self.doc.has_key(s, "Type") else (self.doc.path, None)
                bad.append(f"[{s}] has Type={t} ({os.path.basename(file)}:{line})")
        if bad:
            raise UnsupportedError(f"{len(bad)} layer(s) irc cannot lower: " + "; ".join(bad), file=self.doc.path,
                                   hint="supported layer types: " + ", ".join(SUPPORTED))
        self.build_input(env)
        for s in self.build_order(env, layers):
            handler = getattr(self, "layer_" + self.doc.get_str(s, "Type"))
            parents = self.parents(s, env)
            self.outs[s] = handler(s, parents)
            self.write_back(s, [o for _, o in parents])
        self.set_outputs(layers)
        self.record_spiking(env)
        check_keys(self.doc, env, layers)
        self.graph.meta["source_format"] = "n2d2-ini"
        self.graph.prune()
        if self.weights is None and any(self.doc.get_str(s, "Type") != "ONNX" for s in layers):
            W.warn_filled(self.doc.path)
        return self.graph

    def input_section(self) -> str:
        for s in INPUT_SECTIONS:
            if self.doc.has(s):
                return s
        raise IRCError("no [sp], [env] or [cenv] section: the input size is unknown", file=self.doc.path)

    def build_input(self, env: str) -> None:
        doc = self.doc
        if doc.has_key(env, "Size"):
            size = doc.get_ints(env, "Size")
            if len(size) == 4:
                raise self.err(env, "3-D inputs (Size with a depth) are not supported", "Size")
            width, height = size[0], size[1]
            channels = size[2] if len(size) > 2 else 1
        else:
            width, height = doc.get_uint(env, "SizeX"), doc.get_uint(env, "SizeY")
            channels = doc.get_uint(env, "NbChannels", 1)
        if doc.has_key(env, "SizeD"):
            raise self.err(env, "3-D inputs (SizeD) are not supported", "SizeD")
        key = "Size" if doc.has_key(env, "Size") else None
        self.check_size(env, key or "SizeX", width)
        self.check_size(env, key or "SizeY", height)
        self.check_size(env, key or "NbChannels", channels)
        x = self.graph.add_input(env, TensorType((BATCH, channels, height, width)))
        self.outs["env"] = Out(x, channels, height, width)
        self.graph.meta["input_transformations"] = json.dumps(self.transformations(env))

    def transformations(self, env: str) -> list[dict]:
        """Rescale and PadCrop, as preprocessing a user may apply (see preprocess())."""
        steps = []
        for sec in self.doc.sections_matching(env + ".*Transformation*"):
            kind = self.doc.get_str(sec, "Type")
            apply_to = self.doc.get_str(sec, "ApplyTo", "All") if self.doc.has_key(sec, "ApplyTo") else "All"
            if apply_to in ("LearnOnly", "ValidationOnly", "NoTest"):
                continue
            if kind in ("RescaleTransformation", "PadCropTransformation"):
                steps.append({"type": kind, "width": self.doc.get_uint(sec, "Width"),
                              "height": self.doc.get_uint(sec, "Height")})
        return steps

    def build_order(self, env: str, layers: list[str]) -> list[str]:
        depth: dict[str, int] = {}
        pending = list(layers)
        onnx_tensors = self.onnx_names(layers)
        while pending:
            progressed = False
            for s in list(pending):
                ins = [p for p in self.input_names(s, env) if p not in onnx_tensors]
                if all(p == "env" or p in depth for p in ins):
                    depth[s] = 1 + max([depth.get(p, 0) for p in ins] or [0])
                    pending.remove(s)
                    progressed = True
            if not progressed:
                missing = {p for s in pending for p in self.input_names(s, env) if p != "env" and p not in layers}
                why = f"inputs {sorted(missing)} are not layers" if missing else "the inputs form a cycle"
                raise self.err(pending[0], f"cannot be built: {why}", "Input")
        return sorted(depth, key=lambda s: (depth[s], layers.index(s)))

    def input_names(self, section: str, env: str) -> list[str]:
        names = self.doc.get_str(section, "Input").split(",")
        return ["env" if n in INPUT_SECTIONS or n == env else n for n in names]

    def onnx_names(self, layers: list[str]) -> set[str]:
        """Input names that may be tensors inside an ONNX cell (not sections), left out of the build order as
        N2D2 does; none when the network has no ONNX cell, so a misspelt input is still reported there."""
        if not any(self.doc.get_str(s, "Type") == "ONNX" for s in layers if self.doc.has_key(s, "Type")):
            return set()
        return {n for s in layers for n in self.input_names(s, "") if not self.doc.has(n) and n != "env"}

    def parents(self, section: str, env: str) -> list[tuple[str, Out]]:
        names = self.input_names(section, env)
        if len(names) > 1 and self.is_onnx(names[0]) and not any(self.doc.has(n) for n in names[1:]):
            names = names[1:]           # Input=<onnx section>,<tensor>,...: the section only orders the build
        parents = []
        for n in names:
            if n in self.outs:
                parents.append((n, self.outs[n]))
            elif n in self.onnx_tensors:
                parents.append((n, self.tensor_out(self.onnx_tensors[n])))
            else:
                raise self.err(section, f"Input names {n!r}, which is neither a layer nor a tensor of an ONNX "
                               "cell built before it", "Input")
        return parents

    def is_onnx(self, section: str) -> bool:
        return self.doc.has_key(section, "Type") and self.doc.get_str(section, "Type") == "ONNX"

    @staticmethod
    def tensor_out(v: Value) -> Out:
        """N2D2's dims of an IR value: NCHW, or (N, F) as F channels of 1x1."""
        shape = v.type.shape
        if len(shape) == 4:
            return Out(v, int(shape[1]), int(shape[2]), int(shape[3]))
        if len(shape) == 2:
            return Out(v, int(shape[1]), 1, 1)
        raise UnsupportedError(f"ONNX tensor {v.name!r} has rank {len(shape)}; N2D2 cells take NCHW or (N, F)")

    def write_back(self, section: str, inputs: list[Out]) -> None:
        """The sizes N2D2 writes into a layer's section once built, readable as ``[layer]_NbOutputs`` etc."""
        o = self.outs[section]
        self.doc.set(section, "_NbChannels", str(sum(i.channels for i in inputs)))
        self.doc.set(section, "_ChannelsWidth", str(inputs[0].width))
        self.doc.set(section, "_ChannelsHeight", str(inputs[0].height))
        self.doc.set(section, "_NbOutputs", str(o.channels))
        self.doc.set(section, "_OutputsWidth", str(o.width))
        self.doc.set(section, "_OutputsHeight", str(o.height))

    def set_outputs(self, layers: list[str]) -> None:
        targets = []
        for s in layers:
            if self.doc.sections_matching(s + ".Target*"):
                targets.append(s)
        tensors = [n for n in self.onnx_tensors if n not in self.outs
                   and any(sec.startswith(n + ".Target") for sec in self.doc.sections)]
        if not targets and not tensors:
            raise IRCError("no [<layer>.Target] section: N2D2 needs one to know the network's output",
                           file=self.doc.path, hint="add an empty [<last layer>.Target] section")
        for s in targets:
            self.graph.outputs.append(self.outs[s].value)
        for n in tensors:
            self.graph.outputs.append(self.onnx_tensors[n])

    # ------------------------------------------------------------ config
    def config(self, section: str) -> dict[str, str]:
        """ConfigSection parameters, merged in order (later overrides); the sections they come from."""
        key = f"ConfigSection({self.model})"
        if not self.doc.has_key(section, key):
            key = "ConfigSection"
        merged: dict[str, str] = {}
        if self.doc.has_key(section, key):
            for name in self.doc.get_str(section, key).split(","):
                if not self.doc.has(name):
                    raise self.err(section, f"ConfigSection {name!r} does not exist", key)
                for k in self.doc.keys(name):
                    merged[k] = name
        return merged

    def param(self, section: str, cfg: dict[str, str], key: str, kind: str, default):
        if key not in cfg:
            return default
        getter = getattr(self.doc, "get_" + kind)
        return getter(cfg[key], key)

    def dims(self, section: str, base: str, n: int, default: int, signed: bool = False) -> list[int]:
        """N2D2's <base>Dims | <base> | <base>X/Y forms, X first; returned as [x, y]."""
        doc = self.doc
        get1 = doc.get_int if signed else doc.get_uint
        if doc.has_key(section, base + "Dims"):
            v = doc.get_ints(section, base + "Dims")
            if len(v) != n:
                raise self.err(section, f"{base}Dims has {len(v)} values, 2-D layers need {n}", base + "Dims")
            return list(v)
        if doc.has_key(section, base):
            return [get1(section, base)] * n
        if base in ("Kernel", "Pool"):
            size_key = base + "Size"
            if doc.has_key(section, size_key):
                return [doc.get_uint(section, size_key)] * n
            return [doc.get_uint(section, base + "Width"), doc.get_uint(section, base + "Height")]
        return [get1(section, base + "X", default), get1(section, base + "Y", default)]

    def check_size(self, section: str, key: str, value: int) -> int:
        """A layer or input size: N2D2 would try to allocate anything; irc stops at what can exist."""
        if not 1 <= value <= MAX_SIZE:
            raise self.err(section, f"{key}={value} is not a size between 1 and {MAX_SIZE:,}", key)
        return value

    def check_weights(self, section: str, shape: tuple[int, ...]) -> None:
        count = math.prod(shape)
        if count > MAX_TENSOR_ELEMENTS.value:
            raise self.err(section, f"the layer would have {count:,} weights {list(shape)}, more than the limit "
                           f"{MAX_TENSOR_ELEMENTS.name} ({MAX_TENSOR_ELEMENTS.value:,}; raise it with "
                           f"{MAX_TENSOR_ELEMENTS.env})", "NbOutputs")

    # --------------------------------------------------------- activations
    def activation(self, section: str, value: Value, default: str | None) -> Value:
        doc = self.doc
        kind = doc.get_str(section, "ActivationFunction") if doc.has_key(section, "ActivationFunction") else default
        if kind in (None, "none", "Linear"):
            clip = doc.get_float(section, "ActivationFunction.Clipping", 0.0) \
                if doc.has_key(section, "ActivationFunction.Clipping") else 0.0
            if clip:
                return self.node(section, "Clip", [value], {"min": -clip, "max": clip})
            return value
        if kind == "Rectifier":
            leak = doc.get_float(section, "ActivationFunction.LeakSlope", 0.0) \
                if doc.has_key(section, "ActivationFunction.LeakSlope") else 0.0
            clip = doc.get_float(section, "ActivationFunction.Clipping", 0.0) \
                if doc.has_key(section, "ActivationFunction.Clipping") else 0.0
            if leak and clip:
                raise self.err(section, "Rectifier with both LeakSlope and Clipping is not supported",
                               "ActivationFunction")
            if leak:
                return self.node(section, "LeakyRelu", [value], {"alpha": leak})
            if clip:
                return self.node(section, "Clip", [value], {"min": 0.0, "max": clip})
            return self.node(section, "Relu", [value])
        if kind in ("Tanh", "TanhLeCun"):
            alpha = TANH_LECUN_ALPHA if kind == "TanhLeCun" else (
                doc.get_float(section, "ActivationFunction.Alpha", 1.0)
                if doc.has_key(section, "ActivationFunction.Alpha") else 1.0)
            if alpha != 1.0:
                value = self.node(section, "Mul", [value, self.graph.add_param(section + ".alpha",
                                                                              np.array(alpha, np.float32))])
            return self.node(section, "Tanh", [value])
        if kind in ("Logistic", "LogisticWithLoss"):
            return self.node(section, "Sigmoid", [value])
        if kind == "Saturation":
            t = doc.get_float(section, "ActivationFunction.Threshold", 1.0) \
                if doc.has_key(section, "ActivationFunction.Threshold") else 1.0
            return self.node(section, "Clip", [value], {"min": -t, "max": t})
        raise UnsupportedError(f"[{section}] ActivationFunction={kind} is not supported",
                               hint="supported: Linear, Rectifier, Tanh, TanhLeCun, Logistic, Saturation")

    def node(self, section: str, op: str, inputs: list, attrs: dict | None = None) -> Value:
        try:
            return self.graph.add_node(op, inputs, attrs or {}, name=section).output
        except IRCError as e:
            raise self.err(section, e.message, hint=e.hint) from None

    def concat(self, section: str, parents: list[tuple[str, Out]]) -> Out:
        if len(parents) == 1:
            return parents[0][1]
        outs = [o for _, o in parents]
        if any(o.value.type.rank != 4 for o in outs):
            flat = [o.value if o.value.type.rank == 2 else self.node(section, "Flatten", [o.value], {"axis": 1})
                    for o in outs]
            v = self.node(section, "Concat", flat, {"axis": 1})
            return Out(v, v.type.shape[1], 1, 1)
        if len({(o.height, o.width) for o in outs}) != 1:
            raise self.err(section, "inputs of different sizes: " + ", ".join(
                f"{n} {o.width}x{o.height}" for n, o in parents), "Input")
        v = self.node(section, "Concat", [o.value for o in outs], {"axis": 1})
        return Out(v, sum(o.channels for o in outs), outs[0].height, outs[0].width)

    def spiking_site(self, section: str, cfg: dict[str, str], value: Value) -> None:
        """Remember the neuron parameters N2D2's spike half gives this layer."""
        site = {"section": section}
        for key in ("Threshold", "Leak", "TerminateDelta"):
            if key in cfg:
                site[key] = self.doc.get_float(cfg[key], key)
        if "BipolarThreshold" in cfg:
            site["BipolarThreshold"] = self.doc.get_bool(cfg["BipolarThreshold"], "BipolarThreshold")
        self.sites[value.name] = site

    # -------------------------------------------------------------- layers
    def layer_Conv(self, section: str, parents: list[tuple[str, Out]]) -> Out:
        doc = self.doc
        cfg = self.config(section)
        kx, ky = self.dims(section, "Kernel", 2, 0)
        sx, sy = self.dims(section, "Stride", 2, 1)
        px, py = self.dims(section, "Padding", 2, 0, signed=True)
        dx, dy = self.dims(section, "Dilation", 2, 1)
        subsample = self.dims(section, "SubSample", 2, 1)
        if subsample != [1, 1]:
            raise self.err(section, "SubSample other than 1 is not supported", "SubSample")
        m = self.check_size(section, "NbOutputs", doc.get_uint(section, "NbOutputs"))
        self.check_size(section, "Kernel", kx)
        self.check_size(section, "Kernel", ky)
        src = self.concat(section, parents)
        self.check_weights(section, (m, src.channels, ky, kx))
        if src.value.type.rank != 4 or (src.height == 1 and src.width == 1 and kx * ky > 1):
            raise self.err(section, "a Conv needs a 2-D input", "Input")
        mask = np.concatenate([mapping_matrix(doc, section, name, o.channels, m) for name, o in parents], axis=0)
        has_bias = not self.param(section, cfg, "NoBias", "bool", False)
        x = src.value
        if px < 0 or py < 0:  # negative padding crops
            x = self.node(section, "Pad", [x], {"pads": [0, 0, min(py, 0), min(px, 0), 0, 0, min(py, 0), min(px, 0)]})
            px, py = max(px, 0), max(py, 0)
        shape = (m, src.channels, ky, kx)
        if self.weights is not None:
            fmt = self.param(section, cfg, "WeightsExportFormat", "str", "OCHW")
            flip = self.param(section, cfg, "WeightsExportFlip", "bool", False)
            w, b = W.read_conv(self.weights, section, shape, mask, has_bias, fmt, flip)
        else:
            fan_in, fan_out = src.channels * kx * ky, m * kx * ky
            w = W.fill(doc, section, "WeightsFiller", shape, fan_in, fan_out, self.rng) * mask.T[:, :, None, None]
            b = W.fill(doc, section, "BiasFiller", (m,), fan_in, fan_out, self.rng) if has_bias else None
        ins = [x, self.graph.add_param(section + ".weight", w.astype(np.float32)),
               self.graph.add_param(section + ".bias", b) if b is not None else None]
        if not mask.all():
            ins.append(self.graph.add_param(section + ".mapping", mask.T.astype(np.float32)))
        y = self.node(section, "Conv", ins, {"strides": [sy, sx], "pads": [py, px, py, px], "dilations": [dy, dx]})
        out = self.activation(section, y, self.default_activation)
        self.spiking_site(section, cfg, out)
        return Out(out, m, y.type.shape[2], y.type.shape[3])

    def layer_Pool(self, section: str, parents: list[tuple[str, Out]]) -> Out:
        doc = self.doc
        kx, ky = self.dims(section, "Pool", 2, 0)
        sx, sy = self.dims(section, "Stride", 2, 1)
        px, py = self.dims(section, "Padding", 2, 0)
        pooling = doc.get_str(section, "Pooling")
        if pooling not in ("Max", "Average"):
            raise self.err(section, f"Pooling={pooling} (expected Max or Average)", "Pooling")
        m = self.check_size(section, "NbOutputs", doc.get_uint(section, "NbOutputs"))
        mask = np.concatenate([mapping_matrix(doc, section, name, o.channels, m) for name, o in parents], axis=0)
        src = self.concat(section, parents)
        if src.value.type.rank != 4:
            raise self.err(section, "a Pool needs a 2-D input", "Input")
        if mask.shape[0] != m or not np.array_equal(mask, np.eye(m, dtype=bool)):
            raise self.err(section, "a Pool whose mapping mixes channels is not supported (irc pools each channel "
                           "alone: use Mapping.Size=1 or Mapping.ChannelsPerGroup=1 with NbOutputs = input channels)",
                           "NbOutputs")
        attrs = {"kernel": [ky, kx], "strides": [sy, sx], "pads": [py, px, py, px], "dilations": [1, 1]}
        if pooling == "Max":
            y = self.node(section, "MaxPool", [src.value], attrs)
        else:
            y = self.node(section, "AvgPool", [src.value], {**attrs, "count_include_pad": True})
        out = self.activation(section, y, None)
        return Out(out, m, y.type.shape[2], y.type.shape[3])

    def layer_Fc(self, section: str, parents: list[tuple[str, Out]]) -> Out:
        doc = self.doc
        cfg = self.config(section)
        m = self.check_size(section, "NbOutputs", doc.get_uint(section, "NbOutputs"))
        for key in ("InputOffsetX", "InputOffsetY", "InputWidth", "InputHeight"):
            if doc.has_key(section, key) and doc.get_uint(section, key):
                raise self.err(section, f"{key} (an input crop) is not supported", key)
        flat = [o.value if o.value.type.rank == 2 else self.node(section, "Flatten", [o.value], {"axis": 1})
                for _, o in parents]
        x = flat[0] if len(flat) == 1 else self.node(section, "Concat", flat, {"axis": 1})
        inputs = x.type.shape[1]
        self.check_weights(section, (m, inputs))
        has_bias = not self.param(section, cfg, "NoBias", "bool", False)
        if self.weights is not None:
            fmt = self.param(section, cfg, "WeightsExportFormat", "str", "OC")
            w, b = W.read_fc(self.weights, section, m, inputs, has_bias, fmt)
        else:
            w = W.fill(doc, section, "WeightsFiller", (m, inputs), inputs, m, self.rng)
            b = W.fill(doc, section, "BiasFiller", (m,), inputs, m, self.rng) if has_bias else None
        ins = [x, self.graph.add_param(section + ".weight", w),
               self.graph.add_param(section + ".bias", b) if b is not None else None]
        y = self.node(section, "Dense", ins)
        out = self.activation(section, y, self.default_activation)
        self.spiking_site(section, cfg, out)
        return Out(out, m, 1, 1)

    def layer_ONNX(self, section: str, parents: list[tuple[str, Out]]) -> Out:
        """A whole ONNX graph (``File=``) fed by this section's inputs (see ``onnx_cell``)."""
        from irc.frontends.onnx import load as load_onnx

        from .onnx_cell import resolve_file, splice

        file, line = self.doc.where(section, "File") if self.doc.has_key(section, "File") else (self.doc.path, None)
        if not self.doc.has_key(section, "File"):
            raise self.err(section, "Type=ONNX needs File=<model.onnx>")
        try:
            path = resolve_file(self.doc.value(section, "File"), self.doc.env, os.path.dirname(str(self.doc.path)))
        except IRCError as e:
            raise IRCError(f"[{section}] {e.message}", file=file, line=line, hint=e.hint) from None
        for key in ("Transpose", "CNTK"):
            if self.doc.has_key(section, key) and self.doc.get_bool(section, key):
                raise UnsupportedError(f"[{section}] {key}=1 (N2D2's import variant) is not supported",
                                       file=file, line=self.doc.where(section, key)[1])
        self.doc.mark_read(section, "IgnoreInputSize")
        self.doc.mark_read(section, "ONNX_init")
        ignore = self.doc.get_str(section, "Ignore").split() if self.doc.has_key(section, "Ignore") else []
        sub = load_onnx(path)
        src = self.concat(section, parents)
        if sub.meta.get("unspecialised"):  # sizes the ONNX file leaves open: those of the cell's input
            if len(sub.inputs) != 1:
                raise UnsupportedError(f"[{section}] the ONNX graph has {len(sub.inputs)} inputs with open sizes",
                                       file=file, line=line, hint="export it with fixed input sizes")
            try:
                sub = load_onnx(path, input_shapes={sub.inputs[0].name: src.value.type.shape})
            except IRCError as e:
                raise IRCError(f"[{section}] {e.message} (ONNX file {path})", file=file, line=line,
                               hint=e.hint) from None
        try:
            cell = splice(self.graph, sub, src.value, section, ignore)
        except IRCError as e:
            raise IRCError(f"[{section}] {e.message} (ONNX file {path})", file=file, line=line,
                           hint=e.hint) from None
        self.onnx_tensors.update(cell.tensors)
        if len(cell.outputs) != 1:
            names = ", ".join(v.name for v in cell.outputs)
            first = cell.outputs[0]
            warnings.warn(f"[{section}] the ONNX graph has {len(cell.outputs)} outputs ({names}); Input={section} "
                          f"takes the first, name another with Input={section},<tensor>", stacklevel=2)
            return self.tensor_out(first)
        return self.tensor_out(cell.outputs[0])

    def layer_Softmax(self, section: str, parents: list[tuple[str, Out]]) -> Out:
        src = self.concat(section, parents)
        if self.doc.has_key(section, "GroupSize") and self.doc.get_uint(section, "GroupSize"):
            raise self.err(section, "Softmax GroupSize is not supported", "GroupSize")
        return Out(self.node(section, "Softmax", [src.value], {"axis": 1}), src.channels, src.height, src.width)

    def layer_Dropout(self, section: str, parents: list[tuple[str, Out]]) -> Out:
        cfg = self.config(section)
        ratio = self.param(section, cfg, "Dropout", "float", 0.5)
        src = self.concat(section, parents)
        return Out(self.node(section, "Dropout", [src.value], {"ratio": ratio}), src.channels, src.height, src.width)

    def layer_BatchNorm(self, section: str, parents: list[tuple[str, Out]]) -> Out:
        cfg = self.config(section)
        src = self.concat(section, parents)
        c = src.channels
        eps = self.param(section, cfg, "Epsilon", "float", 1e-5) or 1e-5
        if self.weights is not None:
            scale, bias, mean, var = W.read_batchnorm(self.weights, section, c)
        else:
            scale, bias, mean, var = (np.ones(c, np.float32), np.zeros(c, np.float32), np.zeros(c, np.float32),
                                      np.ones(c, np.float32))
        params = [self.graph.add_param(f"{section}.{k}", a) for k, a in
                  (("scale", scale), ("bias", bias), ("mean", mean), ("variance", var))]
        y = self.node(section, "BatchNorm", [src.value] + params, {"epsilon": eps})
        out = self.activation(section, y, self.default_activation)
        return Out(out, c, src.height, src.width)

    def layer_ElemWise(self, section: str, parents: list[tuple[str, Out]]) -> Out:
        doc = self.doc
        op = doc.get_str(section, "Operation")
        if op != "Sum":
            raise self.err(section, f"ElemWise Operation={op} is not supported (only Sum)", "Operation")
        n = len(parents)
        coeff = doc.get_str(section, "CoeffMode", "PerInput") if doc.has_key(section, "CoeffMode") else "PerInput"
        if coeff != "PerInput":
            raise self.err(section, f"ElemWise CoeffMode={coeff} is not supported", "CoeffMode")
        w = doc.get_floats(section, "Weights") if doc.has_key(section, "Weights") else [1.0] * n
        s = doc.get_floats(section, "Shifts") if doc.has_key(section, "Shifts") else [0.0] * n
        if len(w) == 1:
            w = w * n
        if len(s) == 1:
            s = s * n
        outs = [o for _, o in parents]
        acc = None
        for o, wi, si in zip(outs, w, s):
            v = o.value
            if wi != 1.0:
                v = self.node(section, "Mul", [v, self.graph.add_param(section + ".weight", np.array(wi, np.float32))])
            if si != 0.0:
                v = self.node(section, "Add", [v, self.graph.add_param(section + ".shift", np.array(si, np.float32))])
            acc = v if acc is None else self.node(section, "Add", [acc, v])
        out = self.activation(section, acc, None)
        return Out(out, outs[0].channels, outs[0].height, outs[0].width)

    def layer_Padding(self, section: str, parents: list[tuple[str, Out]]) -> Out:
        doc = self.doc
        src = self.concat(section, parents)
        t, b = doc.get_int(section, "TopPadding"), doc.get_int(section, "BottomPadding")
        left, r = doc.get_int(section, "LeftPadding"), doc.get_int(section, "RightPadding")
        y = self.node(section, "Pad", [src.value], {"pads": [0, 0, t, left, 0, 0, b, r]})
        return Out(y, src.channels, y.type.shape[2], y.type.shape[3])

    # ------------------------------------------------------------ spiking
    def record_spiking(self, env: str) -> None:
        """N2D2's spike configuration, for the spiking passes (graph.meta, as JSON)."""
        doc = self.doc
        if not any(any(k in site for k in ("Threshold", "BipolarThreshold", "Leak", "TerminateDelta"))
                   for site in self.sites.values()) and not self.model.startswith(("Transcode", "Spike")):
            return
        cfg = self.config(env)
        stim = {}
        for key in ("StimulusType", "PeriodMeanMin", "PeriodMeanMax", "PeriodMin", "PeriodRelStdDev"):
            if key in cfg:
                stim[key] = doc.get_str(cfg[key], key) if key == "StimulusType" else doc.get_float(cfg[key], key)
        self.graph.meta["n2d2_spiking"] = json.dumps({"model": self.model, "stimulus": stim, "sites": self.sites})


def preprocess(graph: Graph, images: np.ndarray) -> np.ndarray:
    """Apply the INI's Rescale/PadCrop transformations to raw images (N, C, H, W)."""
    steps = meta_json(graph, "input_transformations")
    x = np.asarray(images, np.float32)
    for step in steps:
        w, h = step["width"], step["height"]
        if step["type"] == "RescaleTransformation":
            x = _resize_bilinear(x, h, w)
        else:
            x = _pad_crop(x, h, w)
    return x


def _resize_bilinear(x: np.ndarray, h: int, w: int) -> np.ndarray:
    n, c, ih, iw = x.shape
    if (ih, iw) == (h, w):
        return x
    ys = (np.arange(h) + 0.5) * ih / h - 0.5
    xs = (np.arange(w) + 0.5) * iw / w - 0.5
    y0 = np.clip(np.floor(ys).astype(int), 0, ih - 1)
    x0 = np.clip(np.floor(xs).astype(int), 0, iw - 1)
    y1, x1 = np.clip(y0 + 1, 0, ih - 1), np.clip(x0 + 1, 0, iw - 1)
    wy = np.clip(ys - y0, 0, 1)[:, None]
    wx = np.clip(xs - x0, 0, 1)[None, :]
    top = x[:, :, y0][:, :, :, x0] * (1 - wx) + x[:, :, y0][:, :, :, x1] * wx
    bottom = x[:, :, y1][:, :, :, x0] * (1 - wx) + x[:, :, y1][:, :, :, x1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def _pad_crop(x: np.ndarray, h: int, w: int) -> np.ndarray:
    n, c, ih, iw = x.shape
    out = np.zeros((n, c, h, w), np.float32)
    oy, ox = (h - ih) // 2, (w - iw) // 2
    sy, sx = max(-oy, 0), max(-ox, 0)
    dy, dx = max(oy, 0), max(ox, 0)
    hh, ww = min(ih - sy, h - dy), min(iw - sx, w - dx)
    out[:, :, dy:dy + hh, dx:dx + ww] = x[:, :, sy:sy + hh, sx:sx + ww]
    return out

