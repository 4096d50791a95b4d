"""From the IR to CUDA kernels and the launches that run them.

``AnalogPlan`` runs the analog network node by node (batch N).
``SpikingPlan`` runs the spiking network layer by layer over chunks of steps:
each synaptic op computes its input for every step of the chunk as one batched
product (batch = steps x samples), then a neuron kernel scans time per neuron
with its state in registers.  Values computed only from a constant-current
input are computed once.  With an early decision the chunk is one step, and
kernels skip the samples already decided.

Which ops the targets run is their lowering tables: ``KERNELS`` (cuda) maps an
op to the function that builds its kernel and argument template; ``SPIKING``
(spike-cuda) adds the stateful spiking ops, each with its own launch.

A plan talks to an *executor* (cupy on a GPU; a C++ emulation in tests):
``upload``, ``zeros``, ``launch(kernel, threads, args)``, ``download``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from irc.graph import Graph, Node, Value
from irc.interp import Interpreter
from irc.lowering import LoweringTable
from irc.ops import get_op
from irc.ops.nn import masked_weight, spatial_attrs

from ..spiking_common import Counters, fanout, neuron_nodes, synaptic_nodes
from ..tables import avgpool_divisor, remap_tables, sample_constant
from . import source as S

Args = list[tuple]
"""A kernel's argument template: ('in', k) | ('const', key) | ('out',)."""
Build = Callable[["_Builder", Node], "tuple[S.Kernel, Args]"]

KERNELS: LoweringTable[Build] = LoweringTable("cuda")


def _channel_vector(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(arr, np.float32).reshape(-1))


def _inner(t) -> int:
    return int(np.prod(t.shape[2:], dtype=np.int64)) if t.rank > 2 else 1


def _has(node: Node, index: int) -> bool:
    return len(node.inputs) > index and node.inputs[index] is not None


def _rank4(node: Node) -> str | None:
    rank = node.inputs[0].type.rank
    return None if rank == 4 else f"on a rank-{rank} tensor (the CUDA targets run 2-d convolutions and pools)"


def _fused(node: Node) -> str | None:
    act = node.attrs.get("activation")
    return None if not act or act in S.ACTIVATIONS else f"with a fused {act} (no CUDA expression for it)"


def _same_shape_operands(node: Node) -> str | None:
    for v in node.inputs:
        if not v.is_param and v.type.shape != node.output.type.shape:
            return "with a broadcast run-time operand (the CUDA targets broadcast constants only)"
    return _fused(node)


def _fused_args(node: Node) -> tuple[str, list[float]]:
    return node.attrs.get("activation", ""), node.attrs.get("activation_params", [])


class _Builder:
    """Kernels for the ops both plans share (their batch is implicit in the thread count)."""

    def __init__(self, graph: Graph):
        self.g = graph
        self.module = S.Module()
        self.consts: dict[str, np.ndarray] = {}
        self.count = 0

    def name(self, node: Node, what: str) -> str:
        self.count += 1
        return f"k{self.count}_{what}"

    def const(self, key: str, arr: np.ndarray) -> str:
        self.consts[key] = arr
        return key

    def weighted(self, n: Node, kernel: S.Kernel, weight: np.ndarray, bias_index: int = 2) -> tuple[S.Kernel, Args]:
        """A kernel that applies weights (and a per-channel bias when the node has one)."""
        args = [("in", 0), ("const", self.const(n.name + ".w", np.ascontiguousarray(weight, np.float32)))]
        if _has(n, bias_index):
            args.append(("const", self.const(n.name + ".b", _channel_vector(self.g.param(n.inputs[bias_index])))))
        return self.module.add(kernel), args + [("out",)]


@KERNELS.register("Conv", check=lambda n: _rank4(n) or _fused(n))
def _conv(b: _Builder, n: Node):
    x, y = n.inputs[0].type, n.output.type
    w = masked_weight(n, b.g.param)
    strides, pads, dil = spatial_attrs(n.attrs, 2)
    kernel = S.conv2d(b.name(n, "conv"), x.shape[1], x.shape[2], x.shape[3], y.shape[1], y.shape[2], y.shape[3],
                      w.shape[2], w.shape[3], strides, pads, dil, n.attrs["group"], _has(n, 2), *_fused_args(n))
    return b.weighted(n, kernel, w)


@KERNELS.register("Dense", check=_fused)
def _dense(b: _Builder, n: Node):
    w = b.g.param(n.inputs[1])
    return b.weighted(n, S.dense(b.name(n, "dense"), w.shape[1], w.shape[0], _has(n, 2), *_fused_args(n)), w)


@KERNELS.register("ScaleShift", check=_fused)
def _scale_shift(b: _Builder, n: Node):
    t = n.output.type
    kernel = S.scale_shift(b.name(n, "scale"), t.shape[1], _inner(t), _has(n, 2), *_fused_args(n))
    return b.weighted(n, kernel, _channel_vector(b.g.param(n.inputs[1])))


def _pool(kind: str) -> Build:
    def build(b: _Builder, n: Node):
        x, y = n.inputs[0].type, n.output.type
        strides, pads, dil = spatial_attrs(n.attrs, 2)
        div_mode, div = avgpool_divisor(n) if kind == "avg" else ("", None)
        kernel = b.module.add(S.pool2d(b.name(n, "pool"), kind, x.shape[1], x.shape[2], x.shape[3], y.shape[2],
                                       y.shape[3], n.attrs["kernel"], strides, pads, dil, div_mode))
        args: Args = [("in", 0)]
        if div is not None:
            args.append(("const", b.const(n.name + ".div", div.reshape(-1))))
        return kernel, args + [("out",)]
    return build


KERNELS.register("MaxPool", check=_rank4)(_pool("max"))
KERNELS.register("AvgPool", check=_rank4)(_pool("avg"))


def _global_pool(kind: str) -> Build:
    def build(b: _Builder, n: Node):
        kernel = b.module.add(S.global_pool(b.name(n, "gpool"), kind, _inner(n.inputs[0].type)))
        return kernel, [("in", 0), ("out",)]
    return build


KERNELS.register("GlobalAvgPool")(_global_pool("avg"))
KERNELS.register("GlobalMaxPool")(_global_pool("max"))


@KERNELS.register(*S.ARITHMETIC, check=_same_shape_operands)
def _elementwise(b: _Builder, n: Node):
    kinds, args = [], []
    for i, v in enumerate(n.inputs):
        if v.is_param:
            kinds.append("const")
            args.append(("const", b.const(f"{n.name}.{i}", sample_constant(b.g.param(v), n.output.type))))
        else:
            kinds.append("data")
            args.append(("in", i))
    kernel = b.module.add(S.elementwise(b.name(n, n.op.lower()), n.op, n.output.type.static_size(), kinds,
                                        *_fused_args(n)))
    return kernel, args + [("out",)]


@KERNELS.register(*S.ACTIVATIONS)
def _activation(b: _Builder, n: Node):
    params = get_op(n.op).fused(n.attrs)
    return b.module.add(S.unary(b.name(n, n.op.lower()), n.op, params)), [("in", 0), ("out",)]


def _softmax(log: bool) -> Build:
    def build(b: _Builder, n: Node):
        t = n.output.type
        axis = n.attrs["axis"] % t.rank
        inner = int(np.prod(t.shape[axis + 1:], dtype=np.int64))
        return b.module.add(S.softmax(b.name(n, "softmax"), t.shape[axis], inner, log)), [("in", 0), ("out",)]
    return build


KERNELS.register("Softmax")(_softmax(False))
KERNELS.register("LogSoftmax")(_softmax(True))


@KERNELS.register_trait("layout op", lambda op: op.layout)
def _layout(b: _Builder, n: Node):
    data = [v for v in n.inputs if v is not None]
    out_size = n.output.type.static_size()
    src = np.full(out_size, -1, np.int32)
    idx = np.zeros(out_size, np.int32)
    for k, table in enumerate(remap_tables(n)):
        keep = table >= 0
        src[table[keep]] = k
        idx[table[keep]] = np.flatnonzero(keep)
    pad_value = n.attrs.get("value", 0.0)  # what new positions get (Pad); other layout ops make none
    kernel = b.module.add(S.gather(b.name(n, "layout"), out_size, [v.type.static_size() for v in data], pad_value))
    args: Args = [("in", i) for i in range(len(data))]
    return kernel, args + [("const", b.const(n.name + ".src", src)), ("const", b.const(n.name + ".idx", idx)), ("out",)]


def _bind(args: Args, inputs: list, output, consts: dict) -> list:
    out = []
    for a in args:
        if a[0] == "in":
            out.append(inputs[a[1]])
        elif a[0] == "const":
            out.append(consts[a[1]])
        else:
            out.append(output)
    return out


# ------------------------------------------------------------------ analog
class AnalogPlan:
    def __init__(self, graph: Graph):
        KERNELS.check(graph)
        self.g = graph
        b = _Builder(graph)
        self.steps = {id(n): KERNELS.lower(n)(b, n) for n in graph.nodes}
        self.module = b.module
        self.consts = b.consts

    def run(self, ex, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        batched = [v for v in self.g.inputs if v.type.has_batch]
        n = len(feeds[batched[0].name]) if batched else 1
        return _AnalogRun(self, ex, n).run({k: ex.upload(v) for k, v in feeds.items()})


class _AnalogRun(Interpreter):
    """Values are device buffers; each node is one kernel launch."""

    def __init__(self, plan: AnalogPlan, ex, n: int):
        super().__init__(plan.g)
        self.plan, self.ex, self.n = plan, ex, n
        self.consts = ex.constants(plan.consts)

    def param(self, value: Value) -> None:
        return None  # constants are bound through the kernel's argument template

    def run_node(self, node: Node, args: list) -> list:
        kernel, template = self.plan.steps[id(node)]
        t = node.output.type
        n = self.n if t.has_batch else 1  # a static output is computed once, whatever the batch
        out = self.ex.zeros(t.concrete(n) if t.has_batch else t.shape, np.float32)
        threads = n * t.static_size() // kernel.per_output
        self.ex.launch(kernel, threads, _bind(template, args, out, self.consts))
        return [out]

    def run(self, feeds):
        return [self.ex.download(v) for v in super().run(feeds)]


# ---------------------------------------------------------------- spiking
@dataclass
class _Step:
    """One chunk of steps in flight: what every launch needs."""

    ex: Any
    consts: dict
    n: int
    steps: int
    t0: int
    first: int
    offset: int
    xin: Any
    env: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SpikingLowering:
    """A stateful spiking op on spike-cuda: how to build its kernel(s) and how to launch them per chunk."""

    build: Callable[["SpikingPlan", Node], tuple[Any, Any]]
    launch: Callable[["SpikingPlan", _Step, Node, Any, Any], Any]


SPIKING: LoweringTable[SpikingLowering] = LoweringTable("spike-cuda")


def _build_encode(plan: "SpikingPlan", n: Node):
    b, a, t = plan.builder, n.attrs, n.output.type
    if a["mode"] == "current":
        gain = b.const(n.name + ".gain", np.full(t.static_size(), a["gain"], np.float32))
        kernel = b.module.add(S.elementwise(b.name(n, "encode"), "Mul", t.static_size(), ["data", "const"]))
        return kernel, [("in", 0), ("const", gain), ("out",)]
    return b.module.add(S.encode_rate(b.name(n, "encode"), t.static_size(), a["mode"], a["gain"], a["seed"])), None


def _launch_encode(plan: "SpikingPlan", st: _Step, n: Node, kernel, extra):
    if n.attrs["mode"] == "current":
        return plan.launch_stateless(st, n, kernel, extra)
    size = n.output.type.static_size()
    out = st.ex.zeros((st.steps * st.n * size,), np.float32)
    st.ex.launch(kernel, st.n * size, [st.xin, plan.done, st.t0, st.steps, st.n, st.offset, out])
    return out


def _build_if(plan: "SpikingPlan", n: Node):
    b, a, t = plan.builder, n.attrs, n.output.type
    th = b.const(n.name + ".th", _channel_vector(plan.g.param(n.inputs[1])))
    return b.module.add(S.neuron(b.name(n, "if"), t.static_size(), t.shape[1], _inner(t), a["reset"], a["negative"],
                                 a["init"], a["decay"])), th


def _launch_if(plan: "SpikingPlan", st: _Step, n: Node, kernel, th):
    size = n.output.type.static_size()
    if st.first:
        plan.state[n.name] = (st.ex.zeros((st.n * size,), np.float32), st.ex.zeros((st.n * size,), np.float32))
    v_state, c_state = plan.state[n.name]
    out = st.ex.zeros((st.steps * st.n * size,), np.float32)
    inp = n.inputs[0]
    st.ex.launch(kernel, st.n * size, [st.env[id(inp)], plan.tstride(inp, st.n), st.consts[th], plan.done, st.first,
                                       st.steps, st.n, v_state, c_state, out])
    return out


def _build_gated_pool(plan: "SpikingPlan", n: Node):
    b, a = plan.builder, n.attrs
    x, t = n.inputs[0].type, n.output.type
    strides, pads, dil = spatial_attrs(a, 2)
    counts = b.module.add(S.pool_counts(b.name(n, "poolcnt"), x.static_size()))
    leader = b.module.add(S.pool_leader(b.name(n, "poollead"), x.shape[1], x.shape[2], x.shape[3], t.shape[2],
                                        t.shape[3], a["kernel"], strides, pads, dil))
    return (counts, leader), None


def _launch_gated_pool(plan: "SpikingPlan", st: _Step, n: Node, kernels, _):
    counts_k, leader_k = kernels
    size, in_size = n.output.type.static_size(), n.inputs[0].type.static_size()
    ex = st.ex
    if st.first:
        plan.state[n.name] = (ex.zeros((st.n * in_size,), np.float32), ex.zeros((st.n * size,), np.float32))
    cnt_state, lead_state = plan.state[n.name]
    cum = ex.zeros((st.steps * st.n * in_size,), np.float32)
    ex.launch(counts_k, st.n * in_size, [st.env[id(n.inputs[0])], plan.done, st.first, st.steps, st.n, cnt_state, cum])
    out = ex.zeros((st.steps * st.n * size,), np.float32)
    ex.launch(leader_k, st.n * size, [cum, plan.done, st.first, st.steps, st.n, lead_state, out])
    return out


def _build_readout(plan: "SpikingPlan", n: Node):
    b, a = plan.builder, n.attrs
    size = n.inputs[0].type.static_size()
    return b.module.add(S.readout(b.name(n, "readout"), size, a["mode"], a["terminate_delta"], a["unit"])), None


def _launch_readout(plan: "SpikingPlan", st: _Step, n: Node, kernel, _):
    size = n.inputs[0].type.static_size()
    if st.first:
        plan.state[n.name] = (st.ex.zeros((st.n * size,), np.float64),)
    (acc,) = plan.state[n.name]
    inp = n.inputs[0]
    st.ex.launch(kernel, st.n, [st.env[id(inp)], plan.tstride(inp, st.n), acc, plan.done, plan.stop, plan.next_cp,
                                plan.cps, plan.k_cp, st.t0, st.steps, 0, st.n, plan.scores, plan.steps_used])
    return None


SPIKING.register("Encode")(SpikingLowering(_build_encode, _launch_encode))
SPIKING.register("IF")(SpikingLowering(_build_if, _launch_if))
SPIKING.register("GatedMaxPool", check=_rank4)(SpikingLowering(_build_gated_pool, _launch_gated_pool))
SPIKING.register("Readout")(SpikingLowering(_build_readout, _launch_readout))


def _stateless_build(plan: "SpikingPlan", n: Node):
    return KERNELS.lower(n)(plan.builder, n)


def _stateless_launch(plan: "SpikingPlan", st: _Step, n: Node, kernel, template):
    return plan.launch_stateless(st, n, kernel, template)


for _op in KERNELS.entries:
    SPIKING.register(_op, check=KERNELS.entries[_op].check)(SpikingLowering(_stateless_build, _stateless_launch))
SPIKING.register_trait("layout op", lambda op: op.layout)(SpikingLowering(_stateless_build, _stateless_launch))


class SpikingPlan:
    def __init__(self, graph: Graph):
        from irc.errors import UnsupportedError

        SPIKING.check(graph)
        self.g = graph
        b = _Builder(graph)
        self.builder = b
        readouts = graph.find("Readout")
        if len(graph.inputs) != 1 or len(readouts) != 1 or graph.outputs != [readouts[0].output]:
            raise UnsupportedError("spike-cuda runs networks with one input and one readout")
        self.readout = readouts[0]
        self.neurons = neuron_nodes(graph)
        self.synaptic = synaptic_nodes(graph)
        self.invariant: set[int] = set()
        self.steps: list[tuple] = []
        self.stats: list[tuple] = []
        for n in graph.nodes:
            if self.time_invariant(n):
                self.invariant.add(id(n.output))
            lowering = SPIKING.lower(n)
            self.steps.append((n, lowering) + lowering.build(self, n))
        for n in self.neurons:
            self.stats.append(("spikes", n, b.module.add(S.count_events(b.name(n, "count"), n.output.type.static_size())),
                               None))
        for n in self.synaptic:
            key = b.const(n.name + ".fanout", fanout(n, graph).reshape(-1).astype(np.int32))
            self.stats.append(("synops", n, b.module.add(S.count_synops(b.name(n, "synops"),
                                                                          n.inputs[0].type.static_size())), key))
        self.module = b.module
        self.consts = b.consts
        self.state: dict[str, tuple] = {}

    def time_invariant(self, n: Node) -> bool:
        """Computed once per sample: a constant-current encoding, or a stateless op of invariant values only."""
        opdef = get_op(n.op)
        if opdef.spiking:
            return n.attrs.get("mode") == "current" and opdef.neuron_kind == "input"
        data = [v for v in n.inputs if v is not None and not v.is_param]
        return bool(data) and all(id(v) in self.invariant for v in data)

    def tstride(self, v: Value, n: int) -> int:
        return 0 if id(v) in self.invariant else n * v.type.static_size()

    def launch_stateless(self, st: _Step, node: Node, kernel, template):
        size = node.output.type.static_size()
        invariant_out = id(node.output) in self.invariant
        batch_out = st.n if invariant_out else st.steps * st.n
        out = st.ex.zeros((batch_out * size,), np.float32)
        data = []
        for v in node.inputs:
            if v is None or v.is_param:
                data.append(None)
            elif id(v) in self.invariant and not invariant_out:
                data.append(st.ex.tile(st.env[id(v)], st.steps))  # a constant input meets a time-varying one
            else:
                data.append(st.env[id(v)])
        st.ex.launch(kernel, batch_out * size // kernel.per_output, _bind(template, data, out, st.consts))
        return out

    # -------------------------------------------------------------- run
    def run(self, ex, x: np.ndarray, offset: int, checkpoints: list[int]) -> list[Counters]:
        g = self.g
        consts = ex.constants(self.consts)
        n = len(x)
        total = checkpoints[-1]
        chunk = 1 if self.readout.attrs["terminate_delta"] > 0 else total
        self.k_cp = len(checkpoints)
        out_size = self.readout.inputs[0].type.static_size()
        self.scores = ex.zeros((self.k_cp, n, out_size), np.float32)
        self.steps_used = ex.zeros((self.k_cp, n), np.int64)
        self.cps = ex.upload(np.asarray(checkpoints, np.int64))
        self.done = ex.zeros((n,), np.int32)
        self.stop = ex.zeros((n,), np.int64)
        self.next_cp = ex.zeros((n,), np.int32)
        self.state = {}
        xin = ex.upload(np.ascontiguousarray(x, np.float32))
        per_step = {("spikes", nd.name): np.zeros((total, n)) for nd in self.neurons}
        per_step.update({("synops", nd.name): np.zeros((total, n)) for nd in self.synaptic})
        env: dict[int, object] = {id(g.inputs[0]): xin}
        for t0 in range(0, total, chunk):
            st = _Step(ex, consts, n, min(chunk, total - t0), t0, int(t0 == 0), offset, xin, env)
            for node, lowering, kernel, extra in self.steps:
                if id(node.output) in self.invariant and not st.first:
                    continue
                out = lowering.launch(self, st, node, kernel, extra)
                if out is not None:
                    env[id(node.output)] = out
            self.count(st, per_step)
            if chunk == 1 and ex.download(self.done).all():
                break
        return self.counters(ex, per_step, total, n)

    def count(self, st: _Step, per_step: dict) -> None:
        """Download the chunk's events and synaptic operations per (step, sample)."""
        for kind, node, kernel, key in self.stats:
            value = node.output if kind == "spikes" else node.inputs[0]
            once = kind == "synops" and id(value) in self.invariant  # computed once per sample (time_invariant)
            if once and not st.first:
                continue  # so counted once: on the first step (per_step holds zeros after it)
            rows = st.n if id(value) in self.invariant else st.steps * st.n
            counts = st.ex.zeros((rows,), np.float64)
            args = [st.env[id(value)], counts] if key is None else [st.env[id(value)], st.consts[key], counts]
            st.ex.launch(kernel, rows, args)
            host = st.ex.download(counts).reshape(-1, st.n)
            if once:
                per_step[(kind, node.name)][0] = host[0]
                continue
            per_step[(kind, node.name)][st.t0:st.t0 + st.steps] = host  # broadcasts an invariant row over the chunk

    def counters(self, ex, per_step: dict, total: int, n: int) -> list[Counters]:
        scores_h, steps_h = ex.download(self.scores), ex.download(self.steps_used)
        results = []
        for k in range(self.k_cp):
            used = steps_h[k]
            mask = (np.arange(total)[:, None] < used[None, :]).astype(np.float64)
            results.append(Counters(
                [scores_h[k].reshape((n,) + self.readout.inputs[0].type.sample_shape)], used.copy(),
                {nd.name: (per_step[("spikes", nd.name)] * mask).sum(axis=0) for nd in self.neurons},
                {nd.name: np.rint((per_step[("synops", nd.name)] * mask).sum(axis=0)).astype(np.int64)
                 for nd in self.synaptic}))
        return results
