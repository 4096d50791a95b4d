"""Keras frontend: Keras 3 ``.keras`` archives and legacy ``.h5`` files, read with zipfile, json and h5py.

No TensorFlow and no Keras at run time.  Traps handled: in ``.keras`` the
weight groups are named by snake_case class name plus a per-container counter
(``layers/conv2d_1/vars/0``), not by layer name, so they are matched by order;
in ``.h5`` each layer lists its datasets in ``weight_names``.  Nested models
(a Sequential or Functional model used as a layer) are flattened.

Keras is channels-last: the graph input keeps the user's NHWC layout (``run``
takes what ``predict`` takes) and one Transpose makes it the IR's NCHW; layers
with channels-last semantics (Flatten, Reshape, Dense on images, axes) are
lowered exactly, and the ``fold_transposes`` pass folds the Flatten-after-NHWC
permutation into the next Dense.  Outputs of rank 3 or more come back
channels-last.
"""
from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from irc.errors import IRCError, UnsupportedError
from irc.graph import Graph, Value
from irc.types import BATCH, TensorType

CONTAINERS = ("Sequential", "Functional", "Model")


def load(path: str, **options: Any) -> Graph:
    """Read a .keras or .h5 Keras model."""
    if options:
        raise IRCError(f"unknown option(s) for Keras files: {sorted(options)}")
    if not os.path.exists(path):
        raise IRCError("file not found", file=path)
    try:
        if path.lower().endswith(".keras"):
            config, weights = _read_keras(path)
        else:
            config, weights = _read_h5(path)
        return _Lowering(config, weights, os.path.splitext(os.path.basename(path))[0]).run()
    except IRCError as e:
        raise e.with_file(path)


# ------------------------------------------------------------------ reading
def _snake(name: str) -> str:
    """Keras's naming.to_snake_case (how .keras files name weight groups)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _container_layers(cfg: dict) -> list[dict]:
    layers = cfg["config"]["layers"]
    if cfg["class_name"] == "Sequential":
        return [lay for lay in layers if lay["class_name"] != "InputLayer"]
    return layers


def _read_keras(path: str):
    import h5py

    try:
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
            weights_bytes = z.read("model.weights.h5")
    except (zipfile.BadZipFile, KeyError, OSError, json.JSONDecodeError) as e:
        raise IRCError(f"not a readable .keras archive ({e})", hint="the file may be truncated; save it again") from None
    import io

    check_supported(config)

    weights: dict[int, list[np.ndarray]] = {}
    try:
        with h5py.File(io.BytesIO(weights_bytes), "r") as f:
            def walk(cfg: dict, group) -> None:
                counters: dict[str, int] = {}
                for layer in _container_layers(cfg):
                    base = _snake(layer["class_name"])
                    k = counters.get(base, 0)
                    counters[base] = k + 1
                    key = base if k == 0 else f"{base}_{k}"
                    if key not in group:
                        raise IRCError(f"no weight group layers/{key} for layer {layer['config'].get('name')!r}")
                    sub = group[key]
                    if layer["class_name"] in CONTAINERS:
                        walk(layer, sub["layers"])
                    else:
                        vars_ = sub["vars"] if "vars" in sub else {}
                        weights[id(layer)] = [np.array(vars_[str(i)]) for i in range(len(vars_))]
            walk(config, f["layers"])
    except OSError as e:
        raise IRCError(f"the archive's weights are unreadable ({e})") from None
    return config, _by_layer(weights)


def _read_h5(path: str):
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise IRCError(f"not a readable HDF5 file ({e})", hint="the file may be truncated") from None
    with f:
        if "model_config" not in f.attrs:
            raise IRCError("the .h5 file has no model_config: it holds weights only",
                           hint="save the whole model (model.save('m.h5')) or use .keras")
        raw = f.attrs["model_config"]
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        check_supported(config)
        weights: dict[int, list[np.ndarray]] = {}
        root = f["model_weights"] if "model_weights" in f else f

        def datasets(group) -> list[tuple[str, np.ndarray]]:
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("weight_names", [])]
            out = []
            for n in names:
                if n not in group:
                    raise IRCError(f"weight {n!r} is listed but missing")
                out.append((n, np.array(group[n])))
            return out

        def walk(cfg: dict, arrays: list[tuple[str, np.ndarray]] | None) -> None:
            for layer in _container_layers(cfg):
                name = layer["config"]["name"]
                if arrays is None:
                    if name not in root:
                        raise IRCError(f"no weights for layer {name!r}")
                    mine = datasets(root[name])
                else:
                    mine = [(n, a) for n, a in arrays if n.split("/")[-2:-1] == [name] or f"/{name}/" in f"/{n}"]
                if layer["class_name"] in CONTAINERS:
                    walk(layer, mine)
                else:
                    weights[id(layer)] = [a for _, a in mine]

        walk(config, None)
    return config, _by_layer(weights)


def _all_layers(cfg: dict):
    for layer in cfg.get("config", {}).get("layers", []):
        yield layer
        if layer["class_name"] in CONTAINERS:
            yield from _all_layers(layer)


def check_supported(config: dict) -> None:
    """One error listing every layer irc cannot read (before any weight is touched)."""
    if config.get("class_name") not in CONTAINERS:
        raise IRCError(f"the file holds a {config.get('class_name')!r}, not a model")
    bad = sorted({f"{lay['class_name']} ({lay['config'].get('name')!r})" for lay in _all_layers(config)
                  if lay["class_name"] not in HANDLERS and lay["class_name"] not in CONTAINERS + ("InputLayer",)})
    if bad:
        raise UnsupportedError(f"{len(bad)} unsupported layer(s): " + "; ".join(bad),
                               hint="supported: " + ", ".join(sorted(HANDLERS)))


def _by_layer(weights: dict[int, list[np.ndarray]]) -> Callable[[dict], list[np.ndarray]]:
    def get(layer: dict) -> list[np.ndarray]:
        return weights.get(id(layer), [])
    return get


# ----------------------------------------------------------------- lowering
@dataclass
class Tensor:
    """A Keras tensor in the IR: channels-first value (rank >= 3) or as is (rank <= 2)."""

    value: Value

    @property
    def rank(self) -> int:
        return self.value.type.rank


@dataclass
class _Scope:
    """Keras layer name -> output tensors, per container (nested models have their own names)."""

    outputs: dict[str, list[Tensor]] = field(default_factory=dict)


class _Lowering:
    def __init__(self, config: dict, weights: Callable[[dict], list[np.ndarray]], name: str):
        self.config = config
        self.weights = weights
        self.graph = Graph(name)

    def run(self) -> Graph:
        inputs = self._model_inputs(self.config)
        outs = self.container(self.config, inputs)
        for t in outs:
            self.graph.outputs.append(self.to_keras_layout(t, "output").value)
        self.graph.meta["source_format"] = "keras"
        self.graph.prune()
        return self.graph

    def _model_inputs(self, cfg: dict) -> list[Tensor]:
        if cfg["class_name"] == "Sequential":
            first = cfg["config"]["layers"][0]
            shape = first["config"].get("batch_shape") if first["class_name"] == "InputLayer" else None
            shape = shape or cfg["config"].get("build_input_shape")
            if shape is None:
                raise IRCError("the Sequential model has no input shape (build it before saving)")
            return [self.graph_input(first["config"].get("name", "input"), shape)]
        names = _triples(cfg["config"]["input_layers"])
        by_name = {lay["config"]["name"]: lay for lay in cfg["config"]["layers"]}
        return [self.graph_input(n, by_name[n]["config"]["batch_shape"]) for n, _, _ in names]

    def graph_input(self, name: str, batch_shape: list) -> Tensor:
        if any(d is None for d in batch_shape[1:]):
            raise UnsupportedError(f"input {name!r} has a dynamic size {batch_shape}",
                                   hint="build the model with a fixed input shape")
        v = self.graph.add_input(name, TensorType((BATCH,) + tuple(int(d) for d in batch_shape[1:])))
        return self.from_keras_layout(Tensor(v), name)

    # ---------------------------------------------------------- layouts
    def from_keras_layout(self, t: Tensor, name: str) -> Tensor:
        if t.rank < 3:
            return t
        perm = [0, t.rank - 1] + list(range(1, t.rank - 1))
        return Tensor(self.node("Transpose", [t.value], {"perm": perm}, name + ".nchw"))

    def to_keras_layout(self, t: Tensor, name: str) -> Tensor:
        if t.rank < 3:
            return t
        perm = [0] + list(range(2, t.rank)) + [1]
        return Tensor(self.node("Transpose", [t.value], {"perm": perm}, name + ".nhwc"))

    def axis(self, t: Tensor, keras_axis: int) -> int:
        """A Keras (channels-last) axis as an IR axis."""
        rank = t.rank
        a = keras_axis % rank
        if rank < 3 or a == 0:
            return a
        return 1 if a == rank - 1 else a + 1

    def node(self, op: str, inputs: list, attrs: dict | None = None, name: str | None = None) -> Value:
        return self.graph.add_node(op, inputs, attrs or {}, name=name).output

    def param(self, name: str, array: np.ndarray) -> Value:
        return self.graph.add_param(name, np.ascontiguousarray(array, np.float32))

    # -------------------------------------------------------- containers
    def container(self, cfg: dict, inputs: list[Tensor]) -> list[Tensor]:
        if cfg["class_name"] == "Sequential":
            t = inputs[0]
            for layer in _container_layers(cfg):
                t = self.layer(layer, [t])[0]
            return [t]
        scope = _Scope()
        for (name, _, _), t in zip(_triples(cfg["config"]["input_layers"]), inputs):
            scope.outputs[name] = [t]
        pending = [lay for lay in cfg["config"]["layers"] if lay["config"]["name"] not in scope.outputs]
        while pending:
            progressed = False
            for layer in list(pending):
                refs = _inbound(layer)
                if all(n in scope.outputs for n, _, _ in refs):
                    args = [scope.outputs[n][k] for n, _, k in refs]
                    scope.outputs[layer["config"]["name"]] = self.layer(layer, args)
                    pending.remove(layer)
                    progressed = True
            if not progressed:
                raise IRCError("the model's layers cannot be ordered (a missing or cyclic input): "
                               + ", ".join(lay["config"]["name"] for lay in pending))
        return [scope.outputs[n][k] for n, _, k in _triples(cfg["config"]["output_layers"])]

    def layer(self, layer: dict, args: list[Tensor]) -> list[Tensor]:
        cls = layer["class_name"]
        if cls in CONTAINERS:
            return self.container(layer, args)
        if cls == "InputLayer":
            return args
        cfg = layer["config"]
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise UnsupportedError(f"layer {cfg['name']!r} is channels_first; only channels_last models are read")
        try:
            out = HANDLERS[cls](self, cfg, args, self.weights(layer))
        except IRCError as e:
            if e.node is None:
                e.node = cfg["name"]
                e.args = (e.format(),)
            raise
        return out if isinstance(out, list) else [out]

    # ------------------------------------------------------- activations
    def activation(self, name: str, t: Tensor, where: str) -> Tensor:
        v = t.value
        if name in (None, "linear"):
            return t
        if name == "relu":
            return Tensor(self.node("Relu", [v], name=where))
        if name == "relu6":
            return Tensor(self.node("Clip", [v], {"min": 0.0, "max": 6.0}, name=where))
        if name == "tanh":
            return Tensor(self.node("Tanh", [v], name=where))
        if name == "sigmoid":
            return Tensor(self.node("Sigmoid", [v], name=where))
        if name == "leaky_relu":
            return Tensor(self.node("LeakyRelu", [v], {"alpha": 0.2}, name=where))
        if name == "softmax":
            return Tensor(self.node("Softmax", [v], {"axis": self.axis(t, -1)}, name=where))
        raise UnsupportedError(f"activation {name!r} is not supported",
                               hint="supported: relu, relu6, tanh, sigmoid, softmax, linear, leaky_relu")

    def weights_of(self, cfg: dict, arrays: list[np.ndarray], count: int) -> list[np.ndarray]:
        if len(arrays) != count:
            raise IRCError(f"layer {cfg['name']!r} has {len(arrays)} weight arrays, {count} expected",
                           hint="the file is missing weights or was saved by an unsupported Keras version")
        return arrays


def _triples(spec) -> list[tuple[str, int, int]]:
    if spec and isinstance(spec[0], str):
        return [tuple(spec)]
    return [tuple(s) for s in spec]


def _inbound(layer: dict) -> list[tuple[str, int, int]]:
    nodes = layer.get("inbound_nodes") or []
    if not nodes:
        return []
    node = nodes[0]
    refs: list[tuple[str, int, int]] = []

    def collect(obj) -> None:
        if isinstance(obj, dict) and obj.get("class_name") == "__keras_tensor__":
            refs.append(tuple(obj["config"]["keras_history"]))
        elif isinstance(obj, (list, tuple)):
            for o in obj:
                collect(o)
        elif isinstance(obj, dict) and "args" not in obj:
            for o in obj.values():
                collect(o)

    if isinstance(node, dict):
        collect(node.get("args", []))
    else:  # Keras 2 style: [[name, node, tensor, kwargs], ...]
        refs = [(n[0], n[1], n[2]) for n in node]
    return refs


# ------------------------------------------------------------------ helpers
def _same_pads(sizes, kernel, strides, dilation) -> list[int]:
    """Keras/TF 'same' padding: the extra pixel goes at the end."""
    begin, end = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilation):
        eff = d * (k - 1) + 1
        out = -(-size // s)
        total = max((out - 1) * s + eff - size, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return begin + end


def _pads(padding: str, t: Tensor, kernel, strides, dilation, name: str) -> list[int]:
    nd = len(kernel)
    if padding == "valid":
        return [0] * (2 * nd)
    if padding == "same":
        return _same_pads(t.value.type.shape[2:], kernel, strides, dilation)
    if padding == "causal" and nd == 1:
        return [dilation[0] * (kernel[0] - 1), 0]
    raise UnsupportedError(f"padding {padding!r} is not supported here")


def _conv(L: _Lowering, cfg: dict, t: Tensor, w: np.ndarray, b: np.ndarray | None, group: int, strides, pads,
          dilation) -> Tensor:
    ins = [t.value, L.param(cfg["name"] + ".kernel", w), L.param(cfg["name"] + ".bias", b) if b is not None else None]
    return Tensor(L.node("Conv", ins, {"strides": list(strides), "pads": pads, "dilations": list(dilation),
                                       "group": group}, name=cfg["name"]))


HANDLERS: dict[str, Callable] = {}


def handler(*names: str):
    def deco(fn):
        for n in names:
            HANDLERS[n] = fn
        return fn
    return deco


@handler("Conv2D", "Conv1D")
def conv(L: _Lowering, cfg: dict, args, arrays) -> Tensor:
    (t,) = args
    use_bias = cfg.get("use_bias", True)
    kernel, *rest = L.weights_of(cfg, arrays, 2 if use_bias else 1)
    nd = kernel.ndim - 2
    if t.rank != nd + 2:
        raise IRCError(f"a {nd}-d convolution needs a rank-{nd + 2} input, got rank {t.rank}")
    w = np.transpose(kernel, (nd + 1, nd) + tuple(range(nd)))  # (*k, cin/g, cout) -> (cout, cin/g, *k)
    strides, dilation = cfg["strides"], cfg["dilation_rate"]
    pads = _pads(cfg["padding"], t, list(kernel.shape[:nd]), strides, dilation, cfg["name"])
    y = _conv(L, cfg, t, w, rest[0] if use_bias else None, cfg.get("groups", 1), strides, pads, dilation)
    return L.activation(cfg.get("activation"), y, cfg["name"] + ".act")


@handler("DepthwiseConv2D")
def depthwise(L, cfg, args, arrays) -> Tensor:
    (t,) = args
    use_bias = cfg.get("use_bias", True)
    kernel, *rest = L.weights_of(cfg, arrays, 2 if use_bias else 1)
    kh, kw, cin, mult = kernel.shape
    w = np.transpose(kernel, (2, 3, 0, 1)).reshape(cin * mult, 1, kh, kw)  # output channel c*mult + m
    pads = _pads(cfg["padding"], t, [kh, kw], cfg["strides"], cfg["dilation_rate"], cfg["name"])
    y = _conv(L, cfg, t, w, rest[0] if use_bias else None, cin, cfg["strides"], pads, cfg["dilation_rate"])
    return L.activation(cfg.get("activation"), y, cfg["name"] + ".act")


@handler("SeparableConv2D")
def separable(L, cfg, args, arrays) -> Tensor:
    (t,) = args
    use_bias = cfg.get("use_bias", True)
    dw, pw, *rest = L.weights_of(cfg, arrays, 3 if use_bias else 2)
    kh, kw, cin, mult = dw.shape
    w1 = np.transpose(dw, (2, 3, 0, 1)).reshape(cin * mult, 1, kh, kw)
    pads = _pads(cfg["padding"], t, [kh, kw], cfg["strides"], cfg["dilation_rate"], cfg["name"])
    depth = _conv(L, dict(cfg, name=cfg["name"] + ".depthwise"), t, w1, None, cin, cfg["strides"], pads,
                  cfg["dilation_rate"])
    w2 = np.transpose(pw, (3, 2, 0, 1))
    y = _conv(L, dict(cfg, name=cfg["name"] + ".pointwise"), depth, w2, rest[0] if use_bias else None, 1, [1, 1],
              [0, 0, 0, 0], [1, 1])
    return L.activation(cfg.get("activation"), y, cfg["name"] + ".act")


@handler("Dense")
def dense(L, cfg, args, arrays) -> Tensor:
    (t,) = args
    use_bias = cfg.get("use_bias", True)
    kernel, *rest = L.weights_of(cfg, arrays, 2 if use_bias else 1)
    bias = rest[0] if use_bias else None
    if t.rank == 2:
        y = Tensor(L.node("Dense", [t.value, L.param(cfg["name"] + ".kernel", kernel.T),
                                    L.param(cfg["name"] + ".bias", bias) if bias is not None else None],
                          name=cfg["name"]))
    else:  # Dense on the last (channel) axis of a sequence or image
        last = L.to_keras_layout(t, cfg["name"] + ".in")
        v = L.node("MatMul", [last.value, L.param(cfg["name"] + ".kernel", kernel)], name=cfg["name"])
        if bias is not None:
            v = L.node("Add", [v, L.param(cfg["name"] + ".bias", bias)], name=cfg["name"] + ".bias")
        y = L.from_keras_layout(Tensor(v), cfg["name"])
    return L.activation(cfg.get("activation"), y, cfg["name"] + ".act")


def _pool(L, cfg, args, op: str) -> Tensor:
    (t,) = args
    kernel = list(cfg["pool_size"])
    strides = list(cfg.get("strides") or kernel)
    pads = _pads(cfg["padding"], t, kernel, strides, [1] * len(kernel), cfg["name"])
    attrs = {"kernel": kernel, "strides": strides, "pads": pads, "dilations": [1] * len(kernel)}
    if op == "AvgPool":
        attrs["count_include_pad"] = False  # TF averages over the real inputs only
    return Tensor(L.node(op, [t.value], attrs, name=cfg["name"]))


@handler("MaxPooling2D", "MaxPooling1D")
def max_pool(L, cfg, args, arrays) -> Tensor:
    return _pool(L, cfg, args, "MaxPool")


@handler("AveragePooling2D", "AveragePooling1D")
def avg_pool(L, cfg, args, arrays) -> Tensor:
    return _pool(L, cfg, args, "AvgPool")


def _global_pool(L, cfg, args, op: str) -> Tensor:
    (t,) = args
    y = L.node(op, [t.value], name=cfg["name"])
    if cfg.get("keepdims", False):
        return Tensor(y)
    return Tensor(L.node("Reshape", [y], {"shape": [0, t.value.type.shape[1]]}, name=cfg["name"] + ".squeeze"))


@handler("GlobalAveragePooling2D", "GlobalAveragePooling1D")
def global_avg(L, cfg, args, arrays) -> Tensor:
    return _global_pool(L, cfg, args, "GlobalAvgPool")


@handler("GlobalMaxPooling2D", "GlobalMaxPooling1D")
def global_max(L, cfg, args, arrays) -> Tensor:
    return _global_pool(L, cfg, args, "GlobalMaxPool")


@handler("BatchNormalization")
def batch_norm(L, cfg, args, arrays) -> Tensor:
    (t,) = args
    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if not isinstance(axis, int) or L.axis(t, axis) != 1:
        raise UnsupportedError(f"BatchNormalization over axis {axis} (not the channel axis) is not supported")
    scale, center = cfg.get("scale", True), cfg.get("center", True)
    arrays = L.weights_of(cfg, arrays, 2 + int(scale) + int(center))
    it = iter(arrays)
    gamma = next(it) if scale else None
    beta = next(it) if center else None
    mean, var = next(it), next(it)
    c = mean.shape[0]
    gamma = np.ones(c, np.float32) if gamma is None else gamma
    beta = np.zeros(c, np.float32) if beta is None else beta
    params = [L.param(f"{cfg['name']}.{k}", a) for k, a in (("gamma", gamma), ("beta", beta), ("mean", mean),
                                                             ("variance", var))]
    return Tensor(L.node("BatchNorm", [t.value] + params, {"epsilon": cfg.get("epsilon", 1e-3)}, name=cfg["name"]))


@handler("Activation")
def activation_layer(L, cfg, args, arrays) -> Tensor:
    return L.activation(cfg["activation"], args[0], cfg["name"])


@handler("ReLU")
def relu(L, cfg, args, arrays) -> Tensor:
    (t,) = args
    max_value, slope, threshold = cfg.get("max_value"), cfg.get("negative_slope", 0.0), cfg.get("threshold", 0.0)
    if threshold:
        raise UnsupportedError(f"ReLU with threshold={threshold} has no exact IR equivalent")
    v = t.value
    if slope:
        v = L.node("LeakyRelu", [v], {"alpha": slope}, name=cfg["name"])
        if max_value is not None:  # slope < 1: min(leaky(x), max) equals Keras's ReLU(max_value, negative_slope)
            v = L.node("Clip", [v], {"max": float(max_value)}, name=cfg["name"] + ".max")
        return Tensor(v)
    if max_value is not None:
        return Tensor(L.node("Clip", [v], {"min": 0.0, "max": float(max_value)}, name=cfg["name"]))
    return Tensor(L.node("Relu", [v], name=cfg["name"]))


@handler("LeakyReLU")
def leaky_relu(L, cfg, args, arrays) -> Tensor:
    slope = cfg.get("negative_slope", cfg.get("alpha", 0.3))
    return Tensor(L.node("LeakyRelu", [args[0].value], {"alpha": slope}, name=cfg["name"]))


@handler("Softmax")
def softmax(L, cfg, args, arrays) -> Tensor:
    (t,) = args
    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) else axis
    return Tensor(L.node("Softmax", [t.value], {"axis": L.axis(t, axis)}, name=cfg["name"]))


@handler("Dropout", "SpatialDropout2D", "GaussianDropout", "GaussianNoise", "AlphaDropout")
def dropout(L, cfg, args, arrays) -> Tensor:
    return Tensor(L.node("Dropout", [args[0].value], {"ratio": float(cfg.get("rate", 0.5))}, name=cfg["name"]))


@handler("Flatten")
def flatten(L, cfg, args, arrays) -> Tensor:
    last = L.to_keras_layout(args[0], cfg["name"])
    return Tensor(L.node("Flatten", [last.value], {"axis": 1}, name=cfg["name"]))


@handler("Reshape")
def reshape(L, cfg, args, arrays) -> Tensor:
    last = L.to_keras_layout(args[0], cfg["name"] + ".in")
    y = Tensor(L.node("Reshape", [last.value], {"shape": [0] + list(cfg["target_shape"])}, name=cfg["name"]))
    return L.from_keras_layout(y, cfg["name"])


@handler("ZeroPadding2D", "ZeroPadding1D")
def zero_padding(L, cfg, args, arrays) -> Tensor:
    (t,) = args
    nd = t.rank - 2
    p = cfg["padding"]
    if isinstance(p, int):
        p = [[p, p]] * nd
    p = [[x, x] if isinstance(x, int) else list(x) for x in p]
    pads = [0, 0] + [a for a, _ in p] + [0, 0] + [b for _, b in p]
    return Tensor(L.node("Pad", [t.value], {"pads": pads}, name=cfg["name"]))


@handler("Add")
def add(L, cfg, args, arrays) -> Tensor:
    v = args[0].value
    for i, t in enumerate(args[1:]):
        v = L.node("Add", [v, t.value], name=cfg["name"] if i == len(args) - 2 else f"{cfg['name']}.{i}")
    return Tensor(v)


@handler("Concatenate")
def concatenate(L, cfg, args, arrays) -> Tensor:
    axis = L.axis(args[0], cfg.get("axis", -1))
    return Tensor(L.node("Concat", [t.value for t in args], {"axis": axis}, name=cfg["name"]))


@handler("Rescaling")
def rescaling(L, cfg, args, arrays) -> Tensor:
    (t,) = args
    v = t.value
    for key, op in (("scale", "Mul"), ("offset", "Add")):
        c = np.asarray(cfg.get(key, 1.0 if key == "scale" else 0.0), np.float32)
        if (key == "scale" and np.all(c == 1.0)) or (key == "offset" and np.all(c == 0.0)):
            continue
        if c.ndim and c.size > 1 and t.rank >= 3:
            c = c.reshape((-1,) + (1,) * (t.rank - 2))  # per channel, channels-first
        v = L.node(op, [v, L.param(f"{cfg['name']}.{key}", c)], name=f"{cfg['name']}.{key}")
    return Tensor(v)
