"""Conversion of a trained analog network into a spiking one (rate coding).

Pipeline (after the foundation passes):

* ``canonicalize_for_spiking``: ReLU moved in front of MaxPool (they commute),
  ReLU of ReLU collapsed;
* ``drop_final_softmax``: a final Softmax/LogSoftmax does not change the
  argmax, so spiking inference reads the layer before it (recorded in meta);
* ``calibrate``: runs the analog network on calibration data and sets the
  scale lambda of every ReLU-like activation, and of the input for rate
  encodings, from a percentile (default 99.9) of its positive values, per
  layer or per channel;
* ``to_spiking``: the input becomes an ``Encode``, each ReLU-like activation
  an ``IF`` neuron with threshold lambda, MaxPool a ``GatedMaxPool``, each
  output a ``Readout``.  A spike of a neuron with threshold lambda stands for
  the value lambda; that amplitude is tracked through layout and pooling ops
  as a *scale map* and folded into the weights of the next Conv/Dense (per
  input channel), so biases stay per-step currents in real units.  Where two
  branches with different scales meet (a residual Add), each gets its own
  explicit per-channel scale;
* ``thresholds_to_weights`` (option ``normalize="weights"``): the same
  network with every threshold 1 and the scale divided into the weights and
  biases feeding each neuron.  With power-of-two scales the two modes give
  identical spikes.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from irc.analysis import nonnegative_values
from irc.errors import IRCError, UnsupportedError
from irc.meta import meta_json
from irc.graph import Graph, Node, Value
from irc.interp import run_graph
from irc.ops import get_op
from irc.types import Domain

from .manager import Conversion, PassContext, register_pass


def is_relu_like(node: Node | None) -> bool:
    """A ReLU-like activation (Relu, Clip(0, hi)): what an IF neuron replaces (OpDef.rectifies)."""
    return node is not None and get_op(node.op).rectifies(node.attrs)


def _is_plain_relu(node: Node) -> bool:
    return is_relu_like(node) and get_op(node.op).ceiling(node.attrs) == math.inf


# --------------------------------------------------------------- canonicalize
@register_pass("canonicalize_for_spiking")
def canonicalize_for_spiking(graph: Graph, ctx: PassContext) -> Graph:
    """Give every max pool a ReLU-like input where that is exact; collapse ReLU(ReLU-like(x)).

    relu(maxpool(x)) == maxpool(relu(x)), so a rectifier after a max pool moves in front of it; a max pool of
    a provably non-negative signal (the sum of two ReLU branches, say) gets a ReLU inserted in front (the
    identity there), which calibration turns into a neuron: the gated max-pool then takes its spikes.
    """
    for node in graph:
        for v in node.outputs:
            if 0 in v.type.sample_shape:
                raise UnsupportedError(f"{node.op} output {v.name!r} has no elements ({v.type}); a spiking "
                                       "network needs at least one neuron per layer", node=node.name,
                                       hint="run it on an analog target (numpy), or give every axis a size")
    changed = True
    while changed:
        changed = False
        for node in graph:
            if not graph.has_node(node) or not is_relu_like(node):
                continue
            src = node.inputs[0]
            prod = src.producer
            if prod is None or graph.num_uses(src) != 1:
                continue
            if is_relu_like(prod) and _is_plain_relu(node):
                graph.bypass(node, src)
                changed = True
            elif get_op(prod.op).rate_rule == "maximum":
                x = prod.inputs[0]
                act = graph.add_node(node.op, [x], dict(node.attrs), name=node.name, before=prod)
                graph.set_inputs(prod, [act.output])
                graph.replace_uses(node.output, src)
                graph.remove_node(node)
                graph.reinfer(prod)
                changed = True
    if ctx.option("maxpool", "gated") == "gated" and threshold_mode(graph, ctx) == "calibrated":
        _rectify_nonnegative_pool_inputs(graph)
    return graph


def _rectify_nonnegative_pool_inputs(graph: Graph) -> None:
    nonnegative = nonnegative_values(graph)
    for pool in graph:
        if get_op(pool.op).rate_rule != "maximum":
            continue
        x = pool.inputs[0]
        if is_relu_like(x.producer) or id(x) not in nonnegative or x.producer is None:
            continue
        relu = graph.add_node("Relu", [x], name=pool.name + ".rectified", before=pool)
        graph.set_input(pool, 0, relu.output)


@register_pass("drop_final_softmax")
def drop_final_softmax(graph: Graph, ctx: PassContext) -> Graph:
    """Read the scores before a final Softmax/LogSoftmax (same argmax, no spiking softmax needed)."""
    outs = []
    for v in graph.outputs:
        p = v.producer
        if p is not None and get_op(p.op).preserves_argmax and p.inputs[0].type.rank >= 2:
            outs.append(p.inputs[0])
            graph.meta["readout_rule"] = f"argmax of the scores before the final {p.op} (dropped for spiking)"
        else:
            outs.append(v)
    graph.outputs = outs
    graph.prune()
    return graph


# ------------------------------------------------------------------ calibrate
def _percentile(values: np.ndarray, q: float) -> float:
    if values.size == 0:
        return 0.0
    return float(np.max(values)) if q >= 100 else float(np.percentile(values, q))


class _Collector:
    """Positive activations per channel, subsampled so memory stays bounded."""

    def __init__(self, channels: int, cap: int = 400_000, seed: int = 0):
        self.parts: list[list[np.ndarray]] = [[] for _ in range(channels)]
        self.sizes = [0] * channels
        self.cap = cap
        self.rng = np.random.default_rng(seed)

    def add(self, act: np.ndarray) -> None:
        per_channel = np.moveaxis(act, 1, 0).reshape(act.shape[1], -1)
        for c, row in enumerate(per_channel):
            pos = row[row > 0]
            if self.sizes[c] + pos.size > self.cap:
                keep = max(self.cap - self.sizes[c], self.cap // 10)
                pos = self.rng.choice(pos, size=min(keep, pos.size), replace=False) if pos.size else pos
            self.parts[c].append(pos.astype(np.float32))
            self.sizes[c] += pos.size

    def scales(self, q: float, per_channel: bool) -> np.ndarray:
        rows = [np.concatenate(p) if p else np.zeros(0, np.float32) for p in self.parts]
        layer = _percentile(np.concatenate(rows), q)
        if not per_channel:
            return np.full(len(rows), layer, np.float32)
        # a channel that never fires keeps the layer's scale
        return np.array([_percentile(r, q) if r.size else layer for r in rows], np.float32)


def calibration_batches(x: np.ndarray, batch: int = 256):
    for i in range(0, len(x), batch):
        yield x[i:i + batch]


def threshold_mode(graph: Graph, ctx: PassContext) -> str:
    """'calibrated' (scales from calibration data) or 'model' (the file's own thresholds, N2D2)."""
    mode = ctx.option("thresholds", "auto") or "auto"
    if mode == "auto":
        mode = "model" if "n2d2_spiking" in graph.meta and ctx.option("calibration") is None else "calibrated"
    if mode not in ("calibrated", "model"):
        raise IRCError(f"thresholds must be 'auto', 'calibrated' or 'model', got {mode!r}")
    if mode == "model" and "n2d2_spiking" not in graph.meta:
        raise IRCError("thresholds='model' needs a model that carries its own spiking thresholds (an N2D2 INI "
                       "with a spike configuration)", hint="use thresholds='calibrated' (or 'auto') with calibration data")
    return mode


def record_macs(graph: Graph) -> None:
    """The analog network's MACs and N2D2's virtual synapses per sample, for the spiking statistics."""
    from irc.analysis import layer_table

    def biases(node: Node) -> int:
        has_bias = get_op(node.op).channel_weights and len(node.inputs) > 2 and node.inputs[2] is not None
        return node.outputs[0].type.shape[1] if has_bias else 0

    rows = layer_table(graph)
    graph.meta["analog_macs"] = int(sum(r.macs for r in rows))
    graph.meta["virtual_synapses"] = int(sum(r.macs + biases(r.node) for r in rows))


@register_pass("calibrate", provides=("analog_graph", "conversion"))
def calibrate(graph: Graph, ctx: PassContext) -> Graph:
    """Set the scale of every ReLU-like activation (and of the input) from calibration data."""
    mode = threshold_mode(graph, ctx)
    ctx.analog_graph = graph.copy()
    record_macs(graph)
    if mode == "model":
        ctx.conversion = Conversion("model", {}, 1.0, {v.name: 1.0 for v in graph.outputs},
                                    meta_json(graph, "n2d2_spiking"))
        return graph
    data = calibration_data(graph, ctx)
    q = float(ctx.option("percentile", 99.9))
    per_channel = bool(ctx.option("per_channel", True))
    sites = [n for n in graph.nodes if is_relu_like(n)]
    collectors = {id(n): _Collector(n.output.type.shape[1]) for n in sites}
    outputs = {id(v): _Collector(1) for v in graph.outputs}

    def hook(node, outs):
        if id(node) in collectors:
            collectors[id(node)].add(outs[0])
        for o, arr in zip(node.outputs, outs):
            if id(o) in outputs:
                outputs[id(o)].add(np.abs(arr.reshape(len(arr), 1, -1)))

    inputs_abs = _Collector(1)
    inp = graph.inputs[0]
    for chunk in calibration_batches(data):
        run_graph(graph, {inp.name: chunk}, hook=hook)
        inputs_abs.add(np.abs(chunk.reshape(len(chunk), 1, -1)))
    scales = {n.output.name: np.minimum(collectors[id(n)].scales(q, per_channel),
                                        np.float32(get_op(n.op).ceiling(n.attrs))) for n in sites}
    ctx.conversion = Conversion(
        "calibrated", scales, float(inputs_abs.scales(q, False)[0]) or 1.0,
        {v.name: float(outputs[id(v)].scales(q, False)[0]) or 1.0 for v in graph.outputs})
    return graph


def calibration_data(graph: Graph, ctx: PassContext) -> np.ndarray:
    """The calibration inputs as float32, checked against the (single) model input."""
    data = ctx.option("calibration")
    if data is None:
        raise IRCError("spiking targets need calibration data to set the neurons' thresholds",
                       hint="pass calibration=x (API) or --calibration FILE (CLI): a few hundred training inputs")
    if len(graph.inputs) != 1:
        raise UnsupportedError("spiking conversion supports one input")
    inp = graph.inputs[0]
    if not inp.type.has_batch:
        raise UnsupportedError(
            f"spiking conversion needs a batch axis, and input {inp.name!r} was exported with a fixed shape "
            f"{list(inp.type.shape)}",
            hint="re-export with a symbolic batch axis (torch.onnx.export(..., dynamic_axes={'x': {0: 'N'}}), "
                 "keras: Input(shape) without batch_size); the numpy target runs the file as it is")
    if inp.type.np_dtype.kind != "f":
        raise UnsupportedError(f"spiking conversion encodes a real-valued input; input {inp.name!r} is "
                               f"{inp.type.dtype} (integer ids for an Embedding have no spike encoding)",
                               hint="compile the model for the numpy target")
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != inp.type.rank or tuple(data.shape[1:]) != inp.type.sample_shape or len(data) == 0:
        raise IRCError(f"calibration data has shape {list(data.shape)}, the model's input is {inp.type}",
                       hint=f"give N samples of shape {list(inp.type.sample_shape)} (N along axis 0)")
    return data


# ------------------------------------------------------------------ to_spiking
def pow2(x: np.ndarray) -> np.ndarray:
    return np.exp2(np.round(np.log2(np.maximum(x, 1e-30)))).astype(np.float32)


def per_channel(scale_map: np.ndarray, what: str) -> np.ndarray:
    """The per-axis-1 vector of a scale map whose other axes are uniform."""
    flat = scale_map.reshape(scale_map.shape[0], -1) if scale_map.ndim > 1 else scale_map.reshape(-1, 1)
    if not np.all(flat == flat[:, :1]):
        raise UnsupportedError(f"{what}: spikes of different scales share a channel here")
    return flat[:, 0].astype(np.float32)


class _Converter:
    """Builds the spiking graph node by node; how each node converts is its op's ``rate_rule`` (RULES below)."""

    def __init__(self, graph: Graph, ctx: PassContext, conversion: Conversion):
        self.old = graph
        self.ctx = ctx
        self.conversion = conversion
        self.g = Graph(graph.name)
        self.g.meta = dict(graph.meta)
        self.vmap: dict[int, Value] = {}
        self.smap: dict[int, np.ndarray | None] = {}
        self.unit_cache: dict[int, Value] = {}
        self.opt = ctx.options
        self.rounding = self.opt.get("scale_rounding", "none")
        self.model = conversion.model_spiking if conversion.mode == "model" else None
        self.sites: dict[str, dict] = self.model["sites"] if self.model else {}

    def scale(self, s: np.ndarray) -> np.ndarray:
        return pow2(s) if self.rounding == "pow2" else s.astype(np.float32)

    # values ------------------------------------------------------------
    def param(self, v: Value | None) -> Value | None:
        if v is None:
            return None
        if id(v) not in self.vmap:
            self.vmap[id(v)] = self.g.add_param(v.name, self.old.param(v))
        return self.vmap[id(v)]

    def get(self, v: Value | None) -> Value | None:
        if v is None:
            return None
        return self.param(v) if v.is_param else self.vmap[id(v)]

    def smap_of(self, v: Value | None) -> np.ndarray | None:
        return None if v is None or v.is_param else self.smap.get(id(v))

    def unit(self, v: Value, node: Node) -> Value:
        """The value in real units: an explicit per-channel scale if its spikes carry one."""
        m = self.smap_of(v)
        new = self.get(v)
        if m is None:
            return new
        if id(v) not in self.unit_cache:
            vec = per_channel(m, f"node {node.name!r}")
            s = self.g.add_param(v.name + ".spike_scale", vec)
            self.unit_cache[id(v)] = self.g.add_node("ScaleShift", [new, s], name=v.name + ".scaled").output
        return self.unit_cache[id(v)]

    def emit(self, node: Node, inputs: list[Value | None], attrs: dict | None = None, op: str | None = None,
             smap: np.ndarray | None = None) -> Value:
        new = self.g.add_node(op or node.op, inputs, node.attrs if attrs is None else attrs, name=node.name,
                              output_names=[o.name for o in node.outputs])
        self.vmap[id(node.output)] = new.output
        self.smap[id(node.output)] = smap
        return new.output

    def map_through(self, node: Node, maps: list[np.ndarray | None]) -> np.ndarray | None:
        """Run a linear or layout op on the scale maps (batch of one) to get the output's map."""
        if all(m is None for m in maps):
            return None
        opdef = get_op(node.op)
        arrays = []
        for v, m in zip(node.inputs, maps):
            if v is None:
                arrays.append(None)
            elif v.is_param:
                arrays.append(self.old.param(v))
            else:
                arrays.append((np.ones(v.type.sample_shape, np.float32) if m is None else m)[None])
        in_types = [None if v is None else (v.type if v.is_param else v.type.with_(shape=(1,) + v.type.sample_shape))
                    for v in node.inputs]
        out_types = [o.type.with_(shape=(1,) + o.type.sample_shape) for o in node.outputs]
        attrs = opdef.with_fill(node.attrs, 1.0)  # padded positions never spike; their scale is moot
        out = opdef.reference(arrays, attrs, in_types, out_types)[0]
        return out[0].astype(np.float32)

    def model_encoding(self) -> str:
        """N2D2's StimulusType as an irc encoding (one step = the shortest mean period)."""
        kind = self.model["stimulus"].get("StimulusType", "SingleBurst")
        table = {"JitteredPeriodic": "periodic", "Periodic": "periodic", "Poissonian": "poisson"}
        if kind not in table:
            raise UnsupportedError(f"StimulusType={kind} has no irc encoding",
                                   hint="choose one with encoding='periodic', 'poisson' or 'current'")
        return table[kind]

    def model_decay(self, site: dict) -> float:
        """N2D2's Leak (a time constant in fs) as the membrane kept per step (a step = PeriodMeanMin)."""
        leak = float(site.get("Leak", 0.0))
        if not leak:
            return float(self.opt.get("decay", 1.0))
        step = float(self.model["stimulus"].get("PeriodMeanMin", 50e12))
        return float(np.exp(-step / leak))

    # nodes -------------------------------------------------------------
    def convert(self) -> Graph:
        encoding = self.opt.get("encoding") or (self.model_encoding() if self.model else "current")
        seed = int(self.opt.get("seed", 0))
        for inp in self.old.inputs:
            x = self.g.add_input(inp.name, inp.type)
            if encoding == "current":
                enc = self.g.add_node("Encode", [x], {"mode": "current", "gain": 1.0}, name=inp.name + ".encode")
                self.smap[id(inp)] = None
            else:
                lam = float(self.scale(np.array([self.conversion.input_scale]))[0])
                enc = self.g.add_node("Encode", [x], {"mode": encoding, "gain": 1.0 / lam, "seed": seed},
                                      name=inp.name + ".encode")
                self.smap[id(inp)] = np.full(inp.type.sample_shape, lam, np.float32)
            self.vmap[id(inp)] = enc.output
        for node in self.old.nodes:
            self.node(node)
        for out in self.old.outputs:
            self.readout(out)
        self.g.prune()
        return self.g

    def node(self, node: Node) -> None:
        opdef = get_op(node.op)
        if opdef.spiking:
            raise IRCError("the graph is already spiking", node=node.name)
        if not any(v is not None and not v.is_param for v in node.inputs):
            raise IRCError("constant subgraph left after folding", node=node.name)
        site = self.sites.get(node.output.name) if self.model is not None else None
        if site is not None and opdef.activation:
            self.model_neuron(node, self.unit(node.inputs[0], node), site)
            return
        if opdef.rectifies(node.attrs):
            self.neuron(node)
            return
        rule = RULES.get(opdef.rate_rule or "")
        if rule is None:
            if opdef.activation or opdef.preserves_argmax:
                raise UnsupportedError(
                    f"{node.op} has no spiking equivalent", node=node.name,
                    hint="replace it by ReLU (or ReLU6) and retrain, or cut the network before it; "
                         "a final Softmax is dropped automatically")
            raise UnsupportedError(f"{node.op} cannot be converted to spikes", node=node.name)
        rule(self, node)
        if site is not None and opdef.rate_rule == "weighted":
            self.model_neuron(node, self.vmap[id(node.output)], site)

    def neuron(self, node: Node) -> None:
        src = node.inputs[0]
        m = self.smap_of(src)
        new_src = self.get(src)
        if new_src.type.domain == Domain.SPIKE and not self._bipolar(src):
            # ReLU of non-negative spikes is the identity
            self.vmap[id(node.output)] = new_src
            self.smap[id(node.output)] = m
            return
        x = self.unit(src, node)
        lam = self.scale(self.conversion.scales[node.output.name])
        lam = np.where(lam > 0, lam, np.float32(1.0)).astype(np.float32)
        th = self.g.add_param(node.name + ".threshold", lam)
        init = self.opt.get("neuron_init")
        attrs = {"reset": self.opt.get("reset", "subtract"), "init": 0.5 if init is None else float(init),
                 "decay": float(self.opt.get("decay", 1.0)), "negative": self.opt.get("negative") or "corrective"}
        c = node.output.type.shape[1]
        shape = node.output.type.sample_shape
        smap = np.broadcast_to(lam.reshape((c,) + (1,) * (len(shape) - 1)), shape).astype(np.float32)
        self.emit(node, [x, th], attrs, op="IF", smap=smap)

    def model_neuron(self, node: Node, x: Value, site: dict) -> None:
        """N2D2's spike half: an IF neuron whatever the activation, threshold from the file, events of weight 1."""
        c = node.output.type.shape[1]
        th = self.g.add_param(node.name + ".threshold", np.full(c, float(site.get("Threshold", 1.0)), np.float32))
        init = self.opt.get("neuron_init")
        attrs = {"reset": self.opt.get("reset", "subtract"), "init": 0.0 if init is None else float(init),
                 "decay": self.model_decay(site),
                 "negative": self.opt.get("negative") or ("bipolar" if site.get("BipolarThreshold") else "none")}
        out = self.g.add_node("IF", [x, th], attrs, name=node.name + ".if", output_names=[node.output.name + ".spikes"])
        self.vmap[id(node.output)] = out.output
        self.smap[id(node.output)] = None

    def _bipolar(self, v: Value) -> bool:
        p = self.vmap[id(v)].producer
        return p is not None and p.op == "IF" and p.attrs["negative"] == "bipolar"

    # rules ------------------------------------------------------------------
    def weighted(self, node: Node) -> None:
        """Conv / Dense / ScaleShift: the input's per-channel spike scale folds into the weights (input 1)."""
        x = node.inputs[0]
        m = self.smap_of(x)
        ins = [self.get(x)] + [self.param(v) for v in node.inputs[1:]]
        if m is not None:
            vec = per_channel(m, f"node {node.name!r}")
            w = self.old.param(node.inputs[1])
            g = node.attrs.get("group", 1)
            if w.ndim > 1:  # (out, in/group, ...): scale each group's input channels
                factor = np.repeat(vec.reshape(g, -1), w.shape[0] // g, axis=0)  # (M, C/g)
                w = w * factor.reshape(factor.shape + (1,) * (w.ndim - 2))
            else:  # a per-channel scale
                w = w * vec
            ins[1] = self.g.add_param(node.inputs[1].name + ".spike", w.astype(np.float32))
        self.emit(node, ins)

    def maximum(self, node: Node) -> None:
        src = node.inputs[0]
        new_src = self.get(src)
        mode = self.opt.get("maxpool", "gated")
        attrs = dict(node.attrs) if "kernel" in node.attrs else {
            "kernel": list(src.type.shape[2:]), "strides": [1] * (src.type.rank - 2)}
        if mode == "avg":
            out = self.emit(node, [new_src], dict(attrs, count_include_pad=False), op="AvgPool")
        elif new_src.type.domain != Domain.SPIKE:
            raise UnsupportedError(
                f"{node.op} of a signed, non-spiking signal has no spiking equivalent", node=node.name,
                hint="put a ReLU before the max-pool, or use the option maxpool='avg' (-O maxpool=avg)")
        else:
            out = self.emit(node, [new_src], attrs, op="GatedMaxPool")
        m = self.smap_of(src)
        if m is not None:
            max_pool = get_op("MaxPool")
            self.smap[id(node.output)] = max_pool.reference([m[None]], max_pool.normalize_attrs(attrs))[0][0]
        self.vmap[id(node.output)] = out

    def sum(self, node: Node) -> None:
        """Add / Sub / Sum: branches whose spikes carry the same scale add as they are, others in real units."""
        maps = [self.smap_of(v) for v in node.inputs]
        same = all(m is None for m in maps) or (
            all(m is not None for m in maps) and all(np.array_equal(maps[0], m) for m in maps[1:]))
        if not any(v.is_param for v in node.inputs) and same:
            self.emit(node, [self.get(v) for v in node.inputs], smap=maps[0])
        else:
            self.emit(node, [self.unit(v, node) for v in node.inputs])

    def product(self, node: Node) -> None:
        """Mul / Div by a constant: the data operand's scale map carries over."""
        a, b = node.inputs
        x = a if not a.is_param else b
        self.emit(node, [self.get(v) for v in node.inputs], smap=self.smap_of(x))

    def positional(self, node: Node) -> None:
        """Layout ops and average pools: the scale maps go through the op with the data."""
        maps = [self.smap_of(v) for v in node.inputs]
        out_map = self.map_through(node, maps)
        if get_op(node.op).averages_positions and maps[0] is not None:
            # an average of spikes of unequal units has no single unit: each window must share one scale
            # (a Reshape/DepthToSpace that moved channels into positions breaks that)
            spread = self.map_through(node, [maps[0] * maps[0]]) - out_map * out_map
            if np.any(spread > 1e-6 * np.maximum(out_map * out_map, 1e-30)):
                raise UnsupportedError(
                    f"{node.op} averages positions whose spike units differ (channels were moved into "
                    f"positions before it), which no spiking layer can express", node=node.name,
                    hint="convert with -O threshold=percentile -O per_channel=false (one threshold per layer), "
                         "or move the reshaping "
                         "before the first neuron layer")
        self.emit(node, [self.get(v) for v in node.inputs], smap=out_map)

    def bilinear(self, node: Node) -> None:
        self.emit(node, [self.unit(v, node) if not v.is_param else self.get(v) for v in node.inputs])

    def readout(self, out: Value) -> None:
        node = out.producer
        if node is None:
            raise UnsupportedError(f"output {out.name!r} is not computed by the network")
        src = self.vmap[id(out)]
        spiking_output = self.model is not None and src.type.domain == Domain.SPIKE
        mode = self.opt.get("readout") or ("count" if spiking_output else "potential")
        if mode == "count" and src.type.domain != Domain.SPIKE:
            raise IRCError("readout='count' needs a spiking output layer (the output here is a current)",
                           hint="use the default potential readout")
        x = src if mode == "count" else self.unit(out, node)
        unit = self.conversion.output_units.get(out.name, 1.0)
        delta = self.opt.get("terminate_delta")
        if not delta and self.model is not None:
            delta = self.sites.get(out.name, {}).get("TerminateDelta", 0.0)
        r = self.g.add_node("Readout", [x], {"mode": mode, "terminate_delta": float(delta or 0.0), "unit": float(unit)},
                            name=out.name + ".readout")
        self.g.outputs.append(r.output)


RULES: dict[str, Callable[[_Converter, Node], None]] = {
    "weighted": _Converter.weighted,
    "maximum": _Converter.maximum,
    "sum": _Converter.sum,
    "product": _Converter.product,
    "positional": _Converter.positional,
    "bilinear": _Converter.bilinear,
}
"""The conversion of each rate rule (OpDef.rate_rule); an op whose rule is absent has no spiking equivalent."""


@register_pass("to_spiking", needs=("conversion",))
def to_spiking(graph: Graph, ctx: PassContext) -> Graph:
    """Encoders, IF neurons, gated max-pools and a readout, with the scales folded into weights."""
    return _Converter(graph, ctx, ctx.conversion).convert()


# -------------------------------------------------------- thresholds -> weights
def _absorb(graph: Graph, value: Value, factor: np.ndarray, user: Node) -> None:
    """Multiply ``value`` by a per-channel factor, inside its producer's weights when possible."""
    p = value.producer
    single = p is not None and graph.num_uses(value) == 1 and not p.attrs.get("activation")
    rule = get_op(p.op).rate_rule if p is not None else None
    if single and rule == "weighted":
        # weight (input 1) and bias (input 2) both have the output channel on axis 0
        ins = list(p.inputs) + [None] * (3 - len(p.inputs))
        for i in (1, 2):
            if ins[i] is not None:
                arr = graph.param(ins[i])
                scaled = arr * factor.reshape((-1,) + (1,) * (arr.ndim - 1))
                ins[i] = graph.add_param(ins[i].name + ".w", scaled.astype(np.float32))
        graph.set_inputs(p, ins)
        return
    if single and rule == "sum":
        for v in p.inputs:
            _absorb(graph, v, factor, p)
        return
    s = graph.add_param(value.name + ".inv_threshold", factor.astype(np.float32))
    scaled = graph.add_node("ScaleShift", [value, s], name=value.name + ".normalized", before=user).output
    graph.set_inputs(user, [scaled if v is value else v for v in user.inputs])


@register_pass("thresholds_to_weights")
def thresholds_to_weights(graph: Graph, ctx: PassContext) -> Graph:
    """Move every neuron's threshold into the weights feeding it (thresholds become 1)."""
    for node in graph:
        if node.op != "IF":
            continue
        th = graph.param(node.inputs[1])
        if np.all(th == 1):
            continue
        _absorb(graph, node.inputs[0], (1.0 / th.astype(np.float64)).astype(np.float32), node)
        graph.set_input(node, 1, graph.add_param(node.inputs[1].name + ".unit", np.ones_like(th)))
    graph.sort()
    for node in graph.nodes:
        graph.reinfer(node)
    graph.prune()
    return graph


# ----------------------------------------------------- pooling into synapses
def _fold_pool_into_conv(graph: Graph, pool: Node, conv: Node, k: list[int]) -> None:
    w = graph.param(conv.inputs[1])
    nd = w.ndim - 2
    strides, pads, dil = (conv.attrs["strides"] or [1] * nd, conv.attrs["pads"] or [0] * 2 * nd,
                          conv.attrs["dilations"] or [1] * nd)
    new_w = w
    for i, kk in enumerate(k):
        new_w = np.repeat(new_w, kk, axis=2 + i)
    new_w = (new_w / float(np.prod(k))).astype(np.float32)
    graph.set_inputs(conv, [pool.inputs[0], graph.add_param(conv.inputs[1].name + ".pooled", new_w), *conv.inputs[2:]])
    conv.attrs["strides"] = [s * kk for s, kk in zip(strides, k)]
    conv.attrs["pads"] = [p * k[i % nd] for i, p in enumerate(pads)]
    conv.attrs["dilations"] = list(dil)


def _fold_pool_into_dense(graph: Graph, pool: Node, dense: Node, k: list[int], reshapes: list[Node]) -> None:
    x = pool.inputs[0].type
    pooled = pool.output.type
    w = graph.param(dense.inputs[1])
    w = w.reshape((w.shape[0],) + tuple(pooled.sample_shape))
    for i, kk in enumerate(k):
        w = np.repeat(w, kk, axis=2 + i)
    w = (w / float(np.prod(k))).reshape(w.shape[0], -1).astype(np.float32)
    flat = graph.add_node("Flatten", [pool.inputs[0]], {"axis": 1}, name=pool.name + ".flat", before=dense)
    graph.set_inputs(dense, [flat.output, graph.add_param(dense.inputs[1].name + ".pooled", w), *dense.inputs[2:]])
    assert flat.output.type.shape[1] == x.static_size()


def _only_consumer(graph: Graph, value: Value) -> Node | None:
    users = graph.consumers(value)
    return users[0] if len(users) == 1 and graph.num_uses(value) == 1 else None


def _reshape_chain(graph: Graph, node: Node) -> tuple[list[Node], Node]:
    """The reshapes to (N, features) that start at ``node``, each read only by the next, and the node after them."""
    chain: list[Node] = []
    while get_op(node.op).reshape_only and node.output.type.rank == 2 and _only_consumer(graph, node.output):
        chain.append(node)
        node = _only_consumer(graph, node.output)
    return chain, node


def _fold_one_pool(graph: Graph, pool: Node) -> bool:
    """Fold one tiling average pool of spikes into the weighted op after it (through reshapes); True if done."""
    if not graph.has_node(pool) or pool.inputs[0].type.domain != Domain.SPIKE:
        return False
    k = get_op(pool.op).tiling_window(pool)
    nxt = _only_consumer(graph, pool.output) if k is not None else None
    if nxt is None:
        return False
    chain, nxt = _reshape_chain(graph, nxt)
    weighted = get_op(nxt.op).channel_weights and nxt.inputs[0] is (chain[-1].output if chain else pool.output)
    conv_like = weighted and nxt.inputs[1].type.rank > 2
    if conv_like and not chain and "kernel" in pool.attrs and all(d == 1 for d in nxt.attrs["dilations"] or [1]):
        _fold_pool_into_conv(graph, pool, nxt, k)
    elif weighted and not conv_like and (chain or pool.output.type.rank == 2):
        _fold_pool_into_dense(graph, pool, nxt, k, chain)
    else:
        return False
    graph.reinfer(nxt)
    return True


@register_pass("fold_pooling")
def fold_pooling(graph: Graph, ctx: PassContext) -> Graph:
    """Fold an average pool of spikes into the Conv/Dense after it, so synapses only ever receive events.

    AvgPool(k, stride k) then Conv is one Conv with each tap repeated k times
    (weights / k^d, stride and padding times k); AvgPool or GlobalAvgPool then
    Flatten then Dense is one Dense over the unpooled input.  The linear map is
    the same; what changes is that every synaptic operation is now an event
    (an accumulate), as on event-driven hardware, instead of a real-valued
    pooled input (a multiply-accumulate).
    """
    changed = True
    while changed:
        changed = any([_fold_one_pool(graph, pool) for pool in graph])
        graph.sort()
        graph.prune()
    return graph
