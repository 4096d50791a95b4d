"""A spiking program as a NIR graph (``irc compile ... --emit nir``, ``prog.to_nir()``).

The writer maps the lowered spiking IR node by node onto NIR primitives, with
every node's shape set so that ``nir.read`` type-checks the file:

=================================  ==============================================================
irc                                NIR
=================================  ==============================================================
input + Encode(current, gain g)    Input (+ Scale g if g != 1): the input is held every step
Conv (1-d, 2-d; mask folded)       Conv1d / Conv2d (symmetric padding; bias, zeros if none)
Dense                              Affine (a zero bias if none: Norse cannot read Linear)
ScaleShift                         Scale; with a shift: a depthwise 1x1 Conv2d, or a diagonal Affine
AvgPool / GlobalAvgPool (2-d)      AvgPool2d
Flatten (and Reshape to rank 2)    Flatten (start_dim 0: NIR shapes have no batch axis)
Add of two signals                 fan-in: NIR sums the edges into a node
Mul by a constant                  Scale
IF (decay 1)                       IF(r=1, v_threshold = nextafter(th, -inf) per neuron, v_reset=0)
IF (decay d < 1, a LIF)            LIF(tau = dt/(1-d), r = tau/dt, v_leak=0, v_threshold, v_reset=0)
Readout (potential | count)        Output of the current (irc's score: its mean over the steps)
                                   or of the spikes (irc's score: their count)
=================================  ==============================================================

Never silently lossy: what NIR cannot say (reset by subtraction, a membrane
starting above 0, corrective or bipolar negative events, gated max-pooling,
random input encodings, early decisions) is refused with an IRCError naming the
node and the compile option that makes it expressible, unless ``lossy=True``,
which writes the nearest NIR and warns with the list of what changed.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from irc import __version__
from irc.errors import IRCError
from irc.graph import Graph, Node, Value
from irc.nirsupport import DEFAULT_DT, NIRLossyWarning, fires_above, require_nir
from irc.ops.nn import spatial_attrs


@dataclass
class _Writer:
    graph: Graph
    dt: float
    lossy: bool
    nir: object = None
    nodes: dict = field(default_factory=dict)
    edges: list = field(default_factory=list)
    sources: dict = field(default_factory=dict)  # id(irc value) -> NIR node names whose outputs sum to it
    changes: list = field(default_factory=list)
    refusals: dict = field(default_factory=dict)  # what NIR cannot say -> the irc nodes that do it

    # ---------------------------------------------------------------- helpers
    def name(self, base: str) -> str:
        """A NIR node name torch can use as a module name (nirtorch, snnTorch, Norse)."""
        stem = re.sub(r"\W+", "_", base).strip("_") or "node"
        name, i = stem, 1
        while name in self.nodes:
            name, i = f"{stem}_{i}", i + 1
        return name

    def add(self, base: str, nir_node, inputs: list[str], irc_name: str | None = None) -> str:
        name = self.name(base)
        if irc_name is not None:
            nir_node.metadata = {"irc_node": irc_name}
        self.nodes[name] = nir_node
        self.edges.extend((src, name) for src in inputs)
        return name

    def src(self, v: Value) -> list[str]:
        return self.sources.get(id(v), [])  # empty only below a refused node (then nothing is written)

    def param(self, v: Value | None) -> np.ndarray | None:
        return None if v is None else np.asarray(self.graph.param(v))

    def differ(self, node: Node, what: str, option: str) -> bool:
        """Record an irc feature NIR cannot say; True if it may be written anyway (lossy)."""
        if self.lossy:
            self.changes.append(f"{node.name}: {what}")
        else:
            self.refuse(node, f"{what} (compile with {option})")
        return self.lossy

    def refuse(self, node: Node, what: str) -> None:
        self.refusals.setdefault(what, []).append(node.name)

    # ------------------------------------------------------------------ nodes
    def run(self):
        nir = self.nir
        g = self.graph
        if len(g.inputs) != 1:
            raise IRCError(f"NIR export supports one input, the program has {len(g.inputs)}")
        x = g.inputs[0]
        self.sources[id(x)] = [self.add("input", nir.Input(input_type=np.array(x.type.sample_shape)), [])]
        for node in g.nodes:
            handler = getattr(self, "op_" + node.op, None)
            if handler is None:
                self.refuse(node, f"NIR has no node for {node.op}")
                continue
            handler(node)
        if self.refusals:
            lines = [f"{what}: node{'s' if len(names) > 1 else ''} " + ", ".join(repr(n) for n in names)
                     for what, names in self.refusals.items()]
            raise IRCError("cannot write this program as NIR without changing what it computes:\n  " + "\n  ".join(lines),
                           hint="compile with the options named above (API: reset='zero'; CLI: -O reset=zero), "
                                "or write it anyway with lossy=True (CLI: --lossy), which warns with the list of "
                                "changes")
        graph = nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=self.metadata(), type_check=True)
        self.check_types(graph)
        if self.changes:
            warnings.warn("the NIR file differs from the irc program: " + "; ".join(self.changes),
                          NIRLossyWarning, stacklevel=3)
        return graph

    def metadata(self) -> dict:
        readouts = [n for n in self.graph.nodes if n.op == "Readout"]
        rule = "; ".join(f"{n.inputs[0].name}: " + ("the mean of the output over the steps (its argmax is the class)"
                                                    if n.attrs["mode"] == "potential" else
                                                    "the spike count of the output over the steps")
                         for n in readouts)
        return {
            "generator": f"irc {__version__}",
            "irc_dt": float(self.dt),
            "irc_time_step": "one step of dt seconds, forward Euler; IF: v += r*I per step; LIF: v += dt/tau*(v_leak - v "
                             "+ r*I); the input is held constant over the steps; firing at v > v_threshold, then v = v_reset",
            "irc_readout": rule,
            "irc_lossy": "; ".join(self.changes) if self.changes else "no",
        }

    def check_types(self, graph) -> None:
        """Every node's NIR type must be the shape irc computed (a mismatch is a bug in this writer)."""
        shapes = {n.name: n.outputs[0].type.sample_shape for n in self.graph.nodes}
        for name, n in graph.nodes.items():
            types = list(n.input_type.values()) + list(n.output_type.values())
            if any(t is None for t in types):
                raise AssertionError(f"NIR node {name} has no type")
            irc_name = n.metadata.get("irc_node") if n.metadata else None
            if irc_name in shapes and [int(d) for d in n.output_type["output"]] != list(shapes[irc_name]):
                raise AssertionError(f"NIR node {name}: type {n.output_type['output']} != irc's {shapes[irc_name]}")

    def op_Encode(self, node: Node) -> None:
        a = node.attrs
        src = self.src(node.inputs[0])
        if a["mode"] != "current" and not self.differ(
                node, f"{a['mode']} input encoding (irc's random spike trains are not in NIR; the file takes "
                      "the input as given)", "encoding='current'"):
            return
        if a["mode"] == "current" and a["gain"] != 1.0:
            shape = node.output.type.sample_shape
            src = [self.add(node.name, self.nir.Scale(scale=np.full(shape, a["gain"], np.float32)), src, node.name)]
        self.sources[id(node.output)] = src

    def op_Conv(self, node: Node) -> None:
        w = self.param(node.inputs[1]).astype(np.float32)
        nd = w.ndim - 2
        mask = self.param(node.inputs[3]) if len(node.inputs) > 3 else None
        if mask is not None:
            w = w * (mask != 0).reshape(mask.shape + (1,) * nd).astype(np.float32)
        strides, pads, dil = spatial_attrs(node.attrs, nd)
        if pads[:nd] != pads[nd:]:
            self.refuse(node, f"Conv with asymmetric padding {pads} (NIR pads both sides alike)")
            return
        bias = self.param(node.inputs[2]) if len(node.inputs) > 2 else None
        bias = np.zeros(w.shape[0], np.float32) if bias is None else bias.astype(np.float32)
        x = node.inputs[0].type
        common = dict(weight=w, groups=int(node.attrs["group"]), bias=bias)
        if nd == 2:
            conv = self.nir.Conv2d(input_shape=tuple(x.shape[2:]), stride=tuple(strides), padding=tuple(pads[:2]),
                                   dilation=tuple(dil), **common)
        elif nd == 1:
            conv = self.nir.Conv1d(input_shape=int(x.shape[2]), stride=int(strides[0]), padding=int(pads[0]),
                                   dilation=int(dil[0]), **common)
        else:
            self.refuse(node, f"a {nd}-d Conv (NIR has Conv1d and Conv2d)")
            return
        self.sources[id(node.output)] = [self.add(node.name, conv, self.src(node.inputs[0]), node.name)]

    def op_Dense(self, node: Node) -> None:
        w = self.param(node.inputs[1]).astype(np.float32)
        bias = self.param(node.inputs[2]) if len(node.inputs) > 2 else None
        bias = np.zeros(w.shape[0], np.float32) if bias is None else bias.astype(np.float32)
        self.sources[id(node.output)] = [self.add(node.name, self.nir.Affine(weight=w, bias=bias),
                                                  self.src(node.inputs[0]), node.name)]

    def op_ScaleShift(self, node: Node) -> None:
        t = node.output.type
        scale = self.param(node.inputs[1]).astype(np.float32)
        shift = self.param(node.inputs[2]) if len(node.inputs) > 2 else None
        src = self.src(node.inputs[0])
        c = t.shape[1]
        if shift is None:
            full = np.broadcast_to(scale.reshape((c,) + (1,) * (t.rank - 2)), t.sample_shape)
            nir_node = self.nir.Scale(scale=np.ascontiguousarray(full, np.float32))
        elif t.rank == 4:
            nir_node = self.nir.Conv2d(input_shape=tuple(t.shape[2:]), weight=scale.reshape(c, 1, 1, 1), stride=1,
                                       padding=0, dilation=1, groups=c, bias=shift.astype(np.float32))
        elif t.rank == 2:
            nir_node = self.nir.Affine(weight=np.diag(scale), bias=shift.astype(np.float32))
        else:
            self.refuse(node, f"a shifted ScaleShift on a rank-{t.rank} tensor")
            return
        self.sources[id(node.output)] = [self.add(node.name, nir_node, src, node.name)]

    def _pool(self, node: Node, kernel, strides, pads) -> None:
        pool = self.nir.AvgPool2d(kernel_size=np.array(kernel), stride=np.array(strides), padding=np.array(pads))
        self.sources[id(node.output)] = [self.add(node.name, pool, self.src(node.inputs[0]), node.name)]

    def op_AvgPool(self, node: Node) -> None:
        a = node.attrs
        nd = len(a["kernel"])
        strides, pads, dil = spatial_attrs(a, nd)
        why = ("a non-2-d pool" if nd != 2 else "dilation" if any(d != 1 for d in dil) else
               "ceil_mode" if a["ceil_mode"] else "asymmetric padding" if pads[:2] != pads[2:] else
               "padding not counted in the average" if any(pads) and not a["count_include_pad"] else None)
        if why:
            self.refuse(node, f"AvgPool with {why} (NIR's AvgPool2d cannot say it)")
            return
        self._pool(node, a["kernel"], strides, pads[:2])

    def op_GlobalAvgPool(self, node: Node) -> None:
        spatial = list(node.inputs[0].type.shape[2:])
        if len(spatial) != 2:
            self.refuse(node, f"a non-2-d global pool")
            return
        self._pool(node, spatial, spatial, [0, 0])

    def op_GatedMaxPool(self, node: Node) -> None:
        if not self.differ(node, "gated max-pool (NIR has no max-pool; written as an average pool)", "maxpool='avg'"):
            return
        a = node.attrs
        strides, pads, _ = spatial_attrs(a, len(a["kernel"]))
        self._pool(node, a["kernel"], strides, pads[:2])

    def _flat(self, node: Node) -> None:
        x = node.inputs[0].type
        flat = self.nir.Flatten(input_type=np.array(x.sample_shape), start_dim=0, end_dim=-1)
        self.sources[id(node.output)] = [self.add(node.name, flat, self.src(node.inputs[0]), node.name)]

    def op_Flatten(self, node: Node) -> None:
        if node.attrs["axis"] != 1:
            self.refuse(node, f"Flatten from axis {node.attrs['axis']} (NIR flattens per sample)")
            return
        self._flat(node)

    def op_Reshape(self, node: Node) -> None:
        if node.output.type.rank != 2:
            self.refuse(node, f"NIR has no node for a Reshape to rank {node.output.type.rank}")
            return
        self._flat(node)

    op_Squeeze = op_Reshape

    def op_Add(self, node: Node) -> None:
        if any(v.is_param for v in node.inputs):
            self.refuse(node, f"Add of a constant (NIR adds constants only as a bias)")
            return
        self.sources[id(node.output)] = self.src(node.inputs[0]) + self.src(node.inputs[1])

    def op_Mul(self, node: Node) -> None:
        data = [v for v in node.inputs if not v.is_param]
        const = [v for v in node.inputs if v.is_param]
        if len(data) != 1:
            self.refuse(node, f"a product of two signals (NIR has none)")
            return
        shape = node.output.type.sample_shape
        full = np.broadcast_to(self.param(const[0]), (1,) + shape)[0]
        scale = self.nir.Scale(scale=np.ascontiguousarray(full, np.float32))
        self.sources[id(node.output)] = [self.add(node.name, scale, self.src(data[0]), node.name)]

    def op_IF(self, node: Node) -> None:
        a = node.attrs
        allowed = [
            a["reset"] == "zero" or self.differ(
                node, "reset by subtraction (NIR's IF and LIF reset to v_reset; written as a reset to 0)",
                "reset='zero'"),
            a["init"] == 0.0 or self.differ(
                node, f"membrane starting at {a['init']:g} x threshold (NIR neurons start at 0; written as 0)",
                "neuron_init=0"),
            a["negative"] == "none" or self.differ(
                node, f"{a['negative']} negative events (NIR neurons spike only upwards; dropped)", "negative='none'"),
        ]
        if not all(allowed):
            return
        t = node.output.type
        th = self.param(node.inputs[1]).astype(np.float32)
        th_full = np.ascontiguousarray(np.broadcast_to(th.reshape((t.shape[1],) + (1,) * (t.rank - 2)), t.sample_shape))
        v_threshold = fires_above(th_full)
        zeros = np.zeros(t.sample_shape, np.float32)
        if a["decay"] == 1.0:
            neuron = self.nir.IF(r=np.ones(t.sample_shape, np.float32), v_threshold=v_threshold, v_reset=zeros)
        else:
            tau = lif_tau(a["decay"], self.dt)
            neuron = self.nir.LIF(tau=np.full(t.sample_shape, tau), r=np.full(t.sample_shape, tau / self.dt),
                                  v_leak=zeros, v_threshold=v_threshold, v_reset=zeros.copy())
        self.sources[id(node.output)] = [self.add(node.name, neuron, self.src(node.inputs[0]), node.name)]

    def op_Readout(self, node: Node) -> None:
        a = node.attrs
        if a["terminate_delta"] > 0 and not self.differ(
                node, f"early decision at a lead of {a['terminate_delta']:g} (a rule of the reader; dropped)",
                "terminate_delta=0"):
            return
        shape = np.array(node.inputs[0].type.sample_shape)
        self.add("output", self.nir.Output(output_type=shape), self.src(node.inputs[0]))


def lif_tau(decay: float, dt: float) -> np.ndarray:
    """tau (seconds) such that forward Euler at dt decays by exactly ``decay`` per step in float32.

    float32 tau when it round-trips (1 - dt/tau == decay in float32), else float64.
    """
    tau64 = dt / (1.0 - decay)
    tau32 = np.float32(tau64)
    if np.float32(1.0 - dt / np.float64(tau32)) == np.float32(decay):
        return tau32
    return np.float64(tau64)


def to_nir(program_or_graph, path: str | os.PathLike | None = None, *, lossy: bool = False, dt: float = DEFAULT_DT):
    """The spiking program (or its lowered graph) as a ``nir.NIRGraph``; written to ``path`` if given."""
    nir = require_nir()
    graph = getattr(program_or_graph, "graph", program_or_graph)
    if not isinstance(graph, Graph) or not any(n.op in ("IF", "Readout") for n in graph.nodes):
        raise IRCError("NIR export needs a spiking program",
                       hint="compile for a spiking target (spike-numpy, spike-llvm) with calibration data first")
    if not dt > 0:
        raise IRCError(f"dt must be positive seconds per step, got {dt}")
    out = _Writer(graph, float(dt), bool(lossy), nir).run()
    if path is not None:
        path = os.fspath(path)
        try:
            nir.write(path, out)
        except OSError as e:
            raise IRCError(f"cannot write the NIR file ({e})", file=path) from None
    return out
