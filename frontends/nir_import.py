"""Reading a NIR graph (snnTorch, Norse, sinabs, irc, ...) into irc's spiking IR.

The neurons come in as they are: no calibration, no conversion passes (the
spiking targets skip them for a graph that already spikes), so spike-numpy,
spike-llvm and spike-cuda run the graph the file describes, discretised with
irc's time convention (see :mod:`irc.nirsupport`: one step of ``dt`` seconds,
forward Euler, fire at v > v_threshold, reset to v_reset, membranes start at 0):

==========================  ==========================================================================
NIR                         irc
==========================  ==========================================================================
Input                       graph input + Encode(current): the input is held every step
Affine / Linear             Dense
Conv1d / Conv2d             Conv ('same' / 'valid' padding resolved)
SumPool2d                   depthwise Conv with unit weights (an exact sum)
AvgPool2d                   AvgPool (padding counted, as torch does)
Flatten                     Flatten (or Reshape), start_dim/end_dim counted per sample as NIR does
Scale                       ScaleShift (per channel) or Mul
IF(r, v_threshold, v_reset) [ScaleShift r] + IF(reset 'zero', init 0, negative 'none', decay 1,
                            threshold nextafter(v_threshold, +inf))
LIF(tau, r, v_leak, ...)    [ScaleShift dt*r/tau, shift dt*v_leak/tau] + IF(decay 1 - dt/tau, ...)
I(r) before the Output      the potential readout (irc reports v(T)/T, the mean input per step)
Output                      Readout: spike count of spikes, mean over the steps of a current
several edges into a node   Add (NIR sums fan-in)
==========================  ==========================================================================

What irc cannot run (CubaLIF, CubaLI, LI, Delay, Threshold, subgraphs,
recurrent edges, v_reset != 0, per-neuron time constants, thresholds that
vary inside a channel) is listed in one IRCError; so are a damaged file, an
unknown node type and shapes that do not fit.  A leading axis of 1 on an
Input (the batch axis nirtorch's tracer keeps when snnTorch or Norse export
without ``ignore_dims``) is dropped.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from irc.analysis import layer_table
from irc.errors import IRCError
from irc.graph import Graph, Value
from irc.nirsupport import DEFAULT_DT, fires_at_or_above, require_nir
from irc.ops import same_pads
from irc.types import BATCH, Domain, TensorType

SUPPORTED = ("Input", "Output", "Affine", "Linear", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten", "Scale",
             "IF", "LIF", "I")
WHY_NOT = {
    "CubaLIF": "current-based LIF (a synaptic current state)",
    "CubaLI": "current-based leaky integrator",
    "LI": "leaky integrator (irc's readouts integrate without leak)",
    "Delay": "synaptic delay",
    "Threshold": "stateless threshold",
    "NIRGraph": "nested subgraph",
    "Identity": "identity node",
}
GAIN_TOLERANCE = 4e-7
"""|gain - 1| below which an LIF's input gain dt*r/tau counts as 1: tools that write r = tau/dt in float32
(snnTorch) leave a few ulp of rounding there."""


def load(path: str, *, dt: float | None = None, **options: Any) -> Graph:
    """Read a ``.nir`` file into a spiking Graph (``dt``: seconds per step, for LIF time constants)."""
    if options:
        raise IRCError(f"NIR files take no option(s) {sorted(options)}", file=path, hint="the NIR reader takes dt=")
    nir = require_nir()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise IRCError("file not found", file=path)
    _check_node_types(path, nir)
    try:
        graph = nir.read(path, type_check=False)
    except Exception as e:  # h5py, nir's dataclasses and asserts: the file is damaged or malformed
        raise IRCError(f"cannot read the NIR graph ({type(e).__name__}: {e})", file=path,
                       hint="the file may be truncated or not written by the nir package") from None
    name = os.path.splitext(os.path.basename(path))[0]
    try:
        return from_nir(graph, name=name, dt=dt)
    except IRCError as e:
        raise e.with_file(path)


def _check_node_types(path: str, nir) -> None:
    """One error for a file that is not HDF5 / not NIR, or that names node types nir does not know."""
    import h5py

    known = set(nir.ir.__all__)
    unknown: list[str] = []
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f or "type" not in f["node"]:
                raise IRCError("an HDF5 file without a NIR graph (no 'node' group)", file=path)

            def walk(group, where: str) -> None:
                kind = _text(group["type"][()]) if "type" in group else None
                if kind is not None and kind not in known:
                    unknown.append(f"{kind} (node {where!r})")
                if "nodes" in group:
                    for key, sub in group["nodes"].items():
                        if isinstance(sub, h5py.Group):
                            walk(sub, key)

            walk(f["node"], "graph")
    except IRCError:
        raise
    except Exception as e:
        raise IRCError(f"not a readable NIR (HDF5) file ({type(e).__name__}: {e})", file=path,
                       hint="the file may be truncated; write it again with nir.write") from None
    if unknown:
        raise IRCError("unknown NIR node type(s): " + ", ".join(unknown), file=path,
                       hint=f"nir {getattr(nir, 'version', '?')} knows: " + ", ".join(sorted(known)))


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def from_nir(graph, name: str = "nir", dt: float | None = None) -> Graph:
    """Lower an in-memory ``nir.NIRGraph``."""
    meta_dt = getattr(graph, "metadata", {}) or {}
    dt = float(dt if dt is not None else meta_dt.get("irc_dt", DEFAULT_DT))
    if not dt > 0:
        raise IRCError(f"dt must be positive seconds per step, got {dt}")
    return _Reader(graph, name, dt).build()


def _arr(x) -> np.ndarray:
    """A NIR field as a numpy array (tools store numpy arrays, torch tensors or plain numbers)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _pair(x, n: int) -> list[int]:
    a = _arr(x).reshape(-1).astype(np.int64).tolist()
    if len(a) == 1:
        a = a * n
    if len(a) != n:
        raise IRCError(f"expected {n} values, got {a}")
    return [int(v) for v in a]


class _Reader:
    def __init__(self, nir_graph, name: str, dt: float):
        self.src = nir_graph
        self.dt = dt
        self.g = Graph(name)
        self.g.meta.update({"source_format": "nir", "nir_dt": dt})
        self.values: dict[str, Value] = {}
        self.kinds = {k: type(n).__name__ for k, n in nir_graph.nodes.items()}

    # ------------------------------------------------------------- structure
    def check(self) -> list[str]:
        """Node names in execution order, after listing everything irc cannot run in one error."""
        import networkx as nx

        nodes, edges = self.src.nodes, [(str(a), str(b)) for a, b in self.src.edges]
        problems = [f"{kind} (node {k!r}): {WHY_NOT.get(kind, 'not supported')}"
                    for k, kind in self.kinds.items() if kind not in SUPPORTED]
        dangling = sorted({e for a, b in edges for e in (a, b) if e not in nodes})
        if dangling:
            raise IRCError(f"edges name nodes that do not exist: {dangling}")
        dg = nx.DiGraph()
        dg.add_nodes_from(nodes)
        dg.add_edges_from(edges)
        for cycle in nx.simple_cycles(dg):
            problems.append("recurrent edges " + " -> ".join(cycle + cycle[:1]))
            if len(problems) > 20:
                break
        inputs = [k for k, kind in self.kinds.items() if kind == "Input"]
        outputs = [k for k, kind in self.kinds.items() if kind == "Output"]
        if len(inputs) != 1:
            problems.append(f"{len(inputs)} Input nodes (irc runs graphs with one input)")
        if len(outputs) != 1:
            problems.append(f"{len(outputs)} Output nodes (irc runs graphs with one output)")
        for k, kind in self.kinds.items():
            if kind == "I" and any(self.kinds.get(b) != "Output" for a, b in edges if a == k):
                problems.append(f"I (node {k!r}) feeding other nodes than the Output (irc integrates only at the readout)")
        for k in nodes:
            if self.kinds[k] != "Input" and not any(b == k for _, b in edges):
                problems.append(f"{self.kinds[k]} (node {k!r}) has no input edge")
        for k, n in nodes.items():
            problems += self.neuron_problems(k, n)
        if problems:
            raise IRCError("irc cannot run this NIR graph:\n  " + "\n  ".join(problems),
                           hint="irc runs feed-forward graphs of Affine/Linear/Conv/pool/Flatten/Scale with IF/LIF "
                                "neurons resetting to 0")
        self.preds = {k: [a for a, b in edges if b == k] for k in nodes}
        return list(nx.topological_sort(dg))

    def neuron_problems(self, k: str, n) -> list[str]:
        kind = self.kinds[k]
        out = []
        if kind in ("IF", "LIF") and np.any(_arr(n.v_reset) != 0):
            out.append(f"{kind} (node {k!r}) resets to v_reset != 0 (irc resets to 0)")
        if kind == "LIF":
            tau = _arr(n.tau)
            if tau.size and not np.all(tau == tau.reshape(-1)[0]):
                out.append(f"LIF (node {k!r}) with time constants that differ between neurons (irc: one per layer)")
            elif tau.size and not float(tau.reshape(-1)[0]) > self.dt:
                out.append(f"LIF (node {k!r}) with tau {float(tau.reshape(-1)[0]):g} <= dt {self.dt:g} (forward Euler "
                           "at this dt does not decay; read the file with a smaller dt)")
        return out

    # ------------------------------------------------------------------ build
    def build(self) -> Graph:
        order = self.check()
        for k in order:
            node = self.src.nodes[k]
            kind = self.kinds[k]
            try:
                if kind == "Input":
                    self.values[k] = self.input(k, node, order)
                    continue
                x = self.fan_in(k)
                self.values[k] = getattr(self, "op_" + kind)(k, node, x)
            except IRCError as e:
                if e.node is None:
                    e.node = k
                    e.args = (e.format(),)
                raise
        g = self.g
        g.prune()
        g.meta["analog_macs"] = int(sum(r.macs for r in layer_table(g)))  # the same layers run as an analog net
        return g

    def fan_in(self, k: str) -> Value:
        vals = [self.values[p] for p in self.preds[k]]
        out = vals[0]
        for i, v in enumerate(vals[1:]):
            if v.type.shape != out.type.shape:
                raise IRCError(f"edges into {k!r} carry shapes {list(out.type.sample_shape)} and "
                               f"{list(v.type.sample_shape)}; NIR sums them, so they must match")
            out = self.g.add_node("Add", [out, v], name=f"{k}.sum{i}").output
        return out

    def input(self, k: str, node, order: list[str]) -> Value:
        shape = [int(d) for d in _arr(node.input_type["input"]).reshape(-1)]
        want = {self.expected_rank(b) for b in self.src.nodes if k in self.preds.get(b, [])} - {None}
        if len(shape) > 1 and shape[0] == 1 and len(shape) - 1 in want and len(shape) not in want:
            shape = shape[1:]  # the batch axis of a traced example
        x = self.g.add_input("input" if k == "input" else k, TensorType((BATCH, *shape)))
        return self.g.add_node("Encode", [x], {"mode": "current", "gain": 1.0}, name=f"{k}.encode").output

    def expected_rank(self, k: str) -> int | None:
        """The per-sample rank a node takes, where its parameters say."""
        n = self.src.nodes[k]
        kind = self.kinds[k]
        if kind in ("Conv2d", "SumPool2d", "AvgPool2d"):
            return 3
        if kind == "Conv1d":
            return 2
        if kind in ("Affine", "Linear"):
            return 1
        if kind == "Flatten" and n.input_type.get("input") is not None:
            return int(_arr(n.input_type["input"]).size)
        field = {"IF": "v_threshold", "LIF": "v_threshold", "I": "r", "Scale": "scale"}.get(kind)
        if field:
            rank = _arr(getattr(n, field)).ndim
            return rank if rank and _arr(getattr(n, field)).size > 1 else None
        return None

    def label(self, k: str) -> str:
        """The irc node name: the one irc wrote into the node's metadata, else the NIR name."""
        meta = getattr(self.src.nodes[k], "metadata", None) or {}
        name = meta.get("irc_node")
        return _text(name) if name is not None else k

    # ------------------------------------------------------------- parameters
    def per_channel(self, k: str, what: str, value, x: Value) -> np.ndarray:
        """A neuron parameter (one value, or one per neuron) as one value per channel."""
        a = _arr(value).astype(np.float32)
        shape = x.type.sample_shape
        if a.size == 1:
            return np.full(shape[0] if shape else 1, a.reshape(-1)[0], np.float32)
        if tuple(a.shape) != tuple(shape):
            raise IRCError(f"{what} has shape {list(a.shape)}, the node's input is {list(shape)}")
        flat = a.reshape(shape[0], -1)
        if not np.all(flat == flat[:, :1]):
            raise IRCError(f"{what} differs between neurons of one channel (irc: one value per channel)")
        return np.ascontiguousarray(flat[:, 0])

    def scale_shift(self, k: str, x: Value, scale: np.ndarray, shift: np.ndarray | None = None) -> Value:
        """x * scale + shift per channel, skipped when it is the identity."""
        if np.all(scale == 1) and (shift is None or not np.any(shift)):
            return x
        ins = [x, self.g.add_param(f"{k}.scale", scale.astype(np.float32))]
        if shift is not None and np.any(shift):
            ins.append(self.g.add_param(f"{k}.shift", shift.astype(np.float32)))
        return self.g.add_node("ScaleShift", ins, name=f"{self.label(k)}.gain").output

    # ------------------------------------------------------------------ nodes
    def op_Affine(self, k, n, x):
        return self.dense(k, x, n.weight, n.bias)

    def op_Linear(self, k, n, x):
        return self.dense(k, x, n.weight, None)

    def dense(self, k, x, weight, bias):
        w = _arr(weight).astype(np.float32)
        if w.ndim != 2:
            raise IRCError(f"weight of rank {w.ndim} (irc reads 2-d Affine/Linear weights)")
        if x.type.rank != 2:
            raise IRCError(f"Affine/Linear on an input of shape {list(x.type.sample_shape)}; flatten it first")
        ins = [x, self.g.add_param(f"{k}.weight", w)]
        if bias is not None:
            ins.append(self.g.add_param(f"{k}.bias", _arr(bias).astype(np.float32).reshape(-1)))
        return self.g.add_node("Dense", ins, name=self.label(k)).output

    def conv(self, k, n, x, nd: int):
        w = _arr(n.weight).astype(np.float32)
        if w.ndim != nd + 2 or x.type.rank != nd + 2:
            raise IRCError(f"a {nd}-d convolution of an input of shape {list(x.type.sample_shape)} with weight "
                           f"{list(w.shape)}")
        declared = getattr(n, "input_shape", None)
        if declared is not None and _pair(declared, nd) != list(x.type.shape[2:]):
            raise IRCError(f"input_shape {_pair(declared, nd)} does not match the input {list(x.type.sample_shape)}")
        strides, dil = _pair(n.stride, nd), _pair(n.dilation, nd)
        padding = n.padding
        if isinstance(padding, (str, bytes)) or (_arr(padding).dtype.kind in "SUO"):
            mode = _text(padding if isinstance(padding, (str, bytes)) else _arr(padding).item())
            if mode not in ("same", "valid"):
                raise IRCError(f"padding {mode!r} (NIR: 'same', 'valid' or numbers)")
            pads = [0] * 2 * nd if mode == "valid" else same_pads(list(x.type.shape[2:]), list(w.shape[2:]),
                                                                   strides, dil)
        else:
            p = _pair(padding, nd)
            pads = p + p
        ins = [x, self.g.add_param(f"{k}.weight", w)]
        if n.bias is not None:
            ins.append(self.g.add_param(f"{k}.bias", _arr(n.bias).astype(np.float32).reshape(-1)))
        return self.g.add_node("Conv", ins, {"strides": strides, "pads": pads, "dilations": dil,
                                             "group": int(_arr(n.groups))}, name=self.label(k)).output

    def op_Conv2d(self, k, n, x):
        return self.conv(k, n, x, 2)

    def op_Conv1d(self, k, n, x):
        return self.conv(k, n, x, 1)

    def pool_attrs(self, n, x) -> dict:
        if x.type.rank != 4:
            raise IRCError(f"a 2-d pool of an input of shape {list(x.type.sample_shape)}")
        kernel, strides, pads = _pair(n.kernel_size, 2), _pair(n.stride, 2), _pair(n.padding, 2)
        return {"kernel": kernel, "strides": strides, "pads": pads + pads}

    def op_SumPool2d(self, k, n, x):
        a = self.pool_attrs(n, x)
        c = x.type.shape[1]
        ones = self.g.add_param(f"{k}.ones", np.ones((c, 1, *a["kernel"]), np.float32))
        return self.g.add_node("Conv", [x, ones], {"strides": a["strides"], "pads": a["pads"], "group": c},
                               name=self.label(k)).output

    def op_AvgPool2d(self, k, n, x):
        return self.g.add_node("AvgPool", [x], dict(self.pool_attrs(n, x), count_include_pad=True), name=self.label(k)).output

    def op_Flatten(self, k, n, x):
        shape = list(x.type.sample_shape)
        declared = n.input_type.get("input") if isinstance(n.input_type, dict) else None
        if declared is not None and [int(d) for d in _arr(declared).reshape(-1)] != shape:
            raise IRCError(f"input_type {[int(d) for d in _arr(declared).reshape(-1)]} does not match the input {shape}")
        rank = len(shape)
        start, end = int(_arr(n.start_dim)), int(_arr(n.end_dim))
        start, end = start + rank if start < 0 else start, end + rank if end < 0 else end
        if not 0 <= start <= end < rank:
            raise IRCError(f"Flatten start_dim {int(_arr(n.start_dim))} / end_dim {int(_arr(n.end_dim))} do not fit "
                           f"an input of shape {shape}")
        if start == 0 and end == rank - 1:
            return self.g.add_node("Flatten", [x], {"axis": 1}, name=self.label(k)).output
        target = shape[:start] + [int(np.prod(shape[start:end + 1]))] + shape[end + 1:]
        return self.g.add_node("Reshape", [x], {"shape": [0] + target}, name=self.label(k)).output

    def op_Scale(self, k, n, x):
        s = _arr(n.scale).astype(np.float32)
        try:
            return self.scale_shift(k, x, self.per_channel(k, "scale", s, x))
        except IRCError:
            if tuple(s.shape) != tuple(x.type.sample_shape):
                raise
        return self.g.add_node("Mul", [x, self.g.add_param(f"{k}.scale", s)], name=self.label(k)).output

    def neuron(self, k, x, v_threshold, decay: float) -> Value:
        th = fires_at_or_above(self.per_channel(k, "v_threshold", v_threshold, x))
        return self.g.add_node("IF", [x, self.g.add_param(f"{k}.threshold", th)],
                               {"reset": "zero", "init": 0.0, "negative": "none", "decay": decay}, name=self.label(k)).output

    def op_IF(self, k, n, x):
        x = self.scale_shift(k, x, self.per_channel(k, "r", n.r, x))
        return self.neuron(k, x, n.v_threshold, 1.0)

    def op_LIF(self, k, n, x):
        tau = float(_arr(n.tau).reshape(-1)[0])
        step = self.dt / tau
        decay = float(np.float32(1.0 - step))
        gain = (self.dt * self.per_channel(k, "r", n.r, x).astype(np.float64) / tau)
        gain = np.where(np.abs(gain - 1) < GAIN_TOLERANCE, 1.0, gain).astype(np.float32)
        shift = (step * self.per_channel(k, "v_leak", n.v_leak, x).astype(np.float64)).astype(np.float32)
        x = self.scale_shift(k, x, gain, shift)
        return self.neuron(k, x, n.v_threshold, decay)

    def op_I(self, k, n, x):
        return self.scale_shift(k, x, self.per_channel(k, "r", n.r, x))

    def op_Output(self, k, n, x):
        integrated = any(self.kinds[p] == "I" for p in self.preds[k])
        mode = "count" if x.type.domain == Domain.SPIKE and not integrated else "potential"
        r = self.g.add_node("Readout", [x], {"mode": mode}, name=f"{k}.readout")
        self.g.outputs.append(r.output)
        self.g.meta["readout_rule"] = ("argmax of the output's spike counts" if mode == "count" else
                                       "argmax of the output's mean over the steps (for an I node: v(T)/T)")
        return r.output
