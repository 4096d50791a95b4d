"""Spiking IR -> one LLVM function that simulates a range of samples, event-driven.

What runs per sample and timestep, in the graph's topological order:

* a spike-domain value is an **event list** (indices of the neurons that
  fired and their sign); a current-domain value is a dense buffer;
* a synaptic op (Conv, Dense, ScaleShift, AvgPool, GlobalAvgPool) scatters
  each event's fan-out into its output buffer (a real-valued input is
  scattered the same way, element by element, skipping zeros); weights are
  laid out so that a fan-out is read contiguously (Conv: [c, ky, kx, m]
  against channels-last membranes);
* values computed only from a constant-current input do not change over
  time: they are computed once per sample;
* IF neurons integrate their input buffer, fire, reset, and append to
  their event list; GatedMaxPool recomputes the leader count only of the
  windows that received events;
* layout ops move events (and buffers) through compile-time index tables;
* the readout accumulates, decides early when asked, and snapshots scores
  and counters at every requested timestep.

Shapes, strides and loop bounds are compile-time constants; weights and
tables live in a constant blob passed at run time, so the machine code
depends on the network's structure only (and is cached by it).
Arithmetic follows the IR's reference order (the synaptic sum, then the bias,
then into the membrane) with no fast-math, so exactly representable networks
give bit-identical results to spike-numpy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import llvmlite.ir as ir
import numpy as np

from irc.errors import UnsupportedError
from irc.graph import Graph, Node, Value
from irc.lowering import LoweringTable
from irc.ops import get_op
from irc.ops.nn import conv_mask, masked_weight, spatial_attrs
from irc.ops.spiking import GOLDEN, INDEX_MUL, PHASE_SALT, STEP_MUL
from irc.types import Domain, TensorType

from ..spiking_common import fanout, neuron_nodes, synaptic_nodes
from ..tables import avgpool_divisor, remap_tables, sample_constant
from .emit import F32, F64, I8, I32, I64, Function, f32, f64, i32, i64


@dataclass(frozen=True)
class NodeLowering:
    """How spike-llvm runs one op: ``prepare`` lays out its constants and state at compile time, ``emit`` writes
    its per-step code, ``reset`` its per-sample state initialisation (each takes the generator, node, state)."""

    emit: Callable[["Generator", Node, dict], None]
    prepare: Callable[["Generator", Node, dict], None] | None = None
    reset: Callable[["Generator", Node, dict], None] | None = None


LOWER: LoweringTable[NodeLowering] = LoweringTable("spike-llvm")


def _time_varying_inputs(node: Node) -> str | None:
    if any(v is not None and not v.is_param and v.type.domain == Domain.ANALOG for v in node.inputs):
        return "on an analog value"
    return None


def _two_d(node: Node) -> str | None:
    rank = node.inputs[0].type.rank
    return f"on a rank-{rank} tensor (2-d only)" if rank != 4 else _time_varying_inputs(node)


def _unfused(node: Node) -> str | None:
    return "with a fused activation" if node.attrs.get("activation") else None


def lowering(*ops: str, prepare=None, reset=None, check=_time_varying_inputs):
    """Decorator for a Generator emit method: register it (and its prepare/reset) for ``ops``."""
    def deco(emit):
        LOWER.register(*ops, check=check)(NodeLowering(emit, prepare, reset))
        return emit
    return deco

ENTRY = "irc_run"
ARGS = ["consts", "scratch", "x", "n_begin", "n_end", "n_total", "sample_offset", "checkpoints", "n_checkpoints",
        "scores", "steps", "counters"]
ALIGN = 64


# ------------------------------------------------------------------ layout
def channels_last(t: TensorType) -> bool:
    return t.rank >= 3


def internal_of_nchw(t: TensorType) -> np.ndarray:
    """For each per-sample NCHW flat index, its index in the internal (channels-last) layout."""
    shape = t.sample_shape
    size = int(np.prod(shape, dtype=np.int64))
    if not channels_last(t):
        return np.arange(size, dtype=np.int64)
    inner = np.arange(size, dtype=np.int64).reshape(tuple(shape[1:]) + (shape[0],))
    return np.moveaxis(inner, -1, 0).reshape(-1)


def to_internal(t: TensorType, per_sample: np.ndarray) -> np.ndarray:
    """A per-sample NCHW array laid out internally (flat)."""
    flat = np.asarray(per_sample).reshape(-1)
    out = np.empty_like(flat)
    out[internal_of_nchw(t)] = flat
    return out


class Blob:
    """Byte layout of one blob: named, aligned regions."""

    def __init__(self):
        self.size = 0
        self.arrays: list[tuple[int, np.ndarray]] = []

    def reserve(self, count: int, dtype: str) -> int:
        itemsize = {"f32": 4, "i32": 4, "u32": 4, "f64": 8, "i64": 8, "u64": 8, "u8": 1}[dtype]
        offset = -(-self.size // ALIGN) * ALIGN
        self.size = offset + max(int(count), 1) * itemsize
        return offset

    def add(self, array: np.ndarray, dtype: str) -> int:
        npdt = {"f32": np.float32, "i32": np.int32, "u32": np.uint32, "f64": np.float64, "i64": np.int64}[dtype]
        arr = np.ascontiguousarray(array, dtype=npdt).reshape(-1)
        offset = self.reserve(arr.size, dtype)
        self.arrays.append((offset, arr))
        return offset

    def build(self) -> np.ndarray:
        out = np.zeros(max(self.size, 1), np.uint8)
        for offset, arr in self.arrays:
            out[offset:offset + arr.nbytes] = arr.view(np.uint8)
        return out


@dataclass
class Slot:
    """How a value lives in the simulation."""

    value: Value
    events: bool
    size: int
    idx: int = -1        # events: i32 indices (scratch)
    sgn: int = -1        # events: f32 signs (scratch)
    count: int = -1      # events: i32 count (scratch)
    buf: int = -1        # dense: f32 buffer (scratch)
    invariant: bool = False
    recycled: bool = False
    """Reset to its start value (bias or 0) by its only consumer right after reading, not by its producer."""


@dataclass
class Plan:
    consts: Blob = field(default_factory=Blob)
    scratch: Blob = field(default_factory=Blob)
    slots: dict[int, Slot] = field(default_factory=dict)
    counters: list[str] = field(default_factory=list)


# --------------------------------------------------------------- generator
class Generator:
    def __init__(self, graph: Graph):
        LOWER.check(graph, hint="run it on spike-numpy, or change the network")
        self.g = graph
        self.plan = Plan()
        readouts = graph.find("Readout")
        if len(graph.outputs) != 1 or len(readouts) != 1 or graph.outputs[0] is not readouts[0].output:
            raise UnsupportedError("spike-llvm runs networks with exactly one readout output")
        if len(graph.inputs) != 1:
            raise UnsupportedError("spike-llvm runs networks with one input")
        self.readout = readouts[0]
        self.input = graph.inputs[0]
        self.neurons = neuron_nodes(graph)
        self.synaptic = synaptic_nodes(graph)
        self.counter_of: dict[str, int] = {}
        for n in self.neurons:
            self.counter_of["spikes:" + n.name] = len(self.plan.counters)
            self.plan.counters.append("spikes:" + n.name)
        for n in self.synaptic:
            self.counter_of["synops:" + n.name] = len(self.plan.counters)
            self.plan.counters.append("synops:" + n.name)

    # -------------------------------------------------------------- slots
    def slot(self, v: Value) -> Slot:
        return self.plan.slots[id(v)]

    def allocate(self) -> None:
        sc = self.plan.scratch
        invariant_ids: set[int] = set()
        for n in self.g.nodes:
            if n.op == "Readout":
                continue
            v = n.output
            size = v.type.static_size()
            events = v.type.domain == Domain.SPIKE
            s = Slot(v, events, size)
            if events:
                s.idx, s.sgn, s.count = sc.reserve(size, "i32"), sc.reserve(size, "f32"), sc.reserve(1, "i32")
            else:
                s.buf = sc.reserve(size, "f32")
                data = [u for u in n.inputs if u is not None and not u.is_param]
                if n.op == "Encode" or (data and all(id(u) in invariant_ids for u in data)):
                    s.invariant = True
                    invariant_ids.add(id(v))
                users = self.g.consumers(v)
                s.recycled = (not s.invariant and n.op in ("Conv", "Dense", "ScaleShift") and len(users) == 1
                              and users[0].op in ("IF", "Readout") and self.g.num_uses(v) == 1)
            self.plan.slots[id(v)] = s

    # --------------------------------------------------------------- build
    def build(self) -> tuple[str, Plan]:
        self.allocate()
        self.module = ir.Module("irc_spiking")
        import llvmlite.binding as llvm

        self.module.triple = llvm.get_process_triple()
        i8p = I8.as_pointer()
        f = Function(self.module, ENTRY, [i8p, i8p, F32.as_pointer(), I64, I64, I64, I64, I64.as_pointer(), I64,
                                          F32.as_pointer(), I64.as_pointer(), I64.as_pointer()], ARGS)
        self.f = f
        self.b = f.b
        self.counters = f.region("scratch", self.plan.scratch.reserve(len(self.plan.counters), "i64"), "i64", "counters")
        self.node_state: dict[str, dict] = {}
        self.tap_tables: dict = {}
        for n in self.g.nodes:
            self.prepare(n)
        a = f.args
        with f.loop(a["n_begin"], a["n_end"], "n") as n:
            self.sample = n
            self.emit_reset()
            for node in self.g.nodes:
                s = self.plan.slots.get(id(node.output))
                if s is not None and s.invariant:
                    self.emit_node(node)
            self.emit_time_loop()
        f.finish()
        return str(self.module), self.plan

    # ------------------------------------------------------ per-node state
    def cptr(self, array: np.ndarray, dtype: str, name: str):
        return self.f.region("consts", self.plan.consts.add(array, dtype), dtype, name)

    def sptr(self, count: int, dtype: str, name: str):
        return self.f.region("scratch", self.plan.scratch.reserve(count, dtype), dtype, name)

    def slot_ptrs(self, v: Value) -> dict:
        s = self.slot(v)
        f = self.f
        if s.events:
            return {"idx": f.region("scratch", s.idx, "i32", "ev_idx"), "sgn": f.region("scratch", s.sgn, "f32", "ev_sgn"),
                    "count": f.region("scratch", s.count, "i32", "ev_n")}
        return {"buf": f.region("scratch", s.buf, "f32", "buf")}

    def prepare(self, n: Node) -> None:
        """Constants and state of one node, laid out at compile time (the op's own part: its lowering's prepare)."""
        st: dict = {}
        if n.op != "Readout":
            st["out"] = self.slot_ptrs(n.output)
        st["ins"] = [self.slot_ptrs(v) if v is not None and not v.is_param and id(v) in self.plan.slots else None
                     for v in n.inputs]
        if n in self.synaptic:
            st["fanout"] = self.cptr(to_internal(n.inputs[0].type, fanout(n, self.g)), "i32", "fanout")
        prepare = LOWER.lower(n).prepare
        if prepare is not None:
            prepare(self, n, st)
        self.node_state[n.name] = st

    def channel_const(self, n: Node, index: int, key: str, st: dict) -> None:
        """A per-channel parameter (input ``index``, if present) broadcast over the output, laid out internally."""
        if len(n.inputs) > index and n.inputs[index] is not None:
            t = n.output.type
            full = np.broadcast_to(_channel_full(self.g.param(n.inputs[index]), t), t.sample_shape)
            st[key] = self.cptr(to_internal(t, full), "f32", key)

    def prepare_sparse_conv(self, st: dict, w: np.ndarray, mask: np.ndarray) -> None:
        """Per input channel, only its connected outputs (N2D2 mappings): CSR by channel, then tap, then output."""
        m, c, kh, kw = w.shape
        starts, outs, weights = [0], [], []
        for ch in range(c):
            connected = np.flatnonzero(mask[:, ch])
            outs.extend(connected)
            weights.append(w[connected, ch].reshape(len(connected), kh * kw).T.reshape(-1))  # [tap][j]
            starts.append(starts[-1] + len(connected))
        st["sparse"] = (self.cptr(np.array(starts), "i32", "conn_start"), self.cptr(np.array(outs or [0]), "i32", "conn_out"),
                        self.cptr(np.concatenate(weights) if weights else np.zeros(1), "f32", "conn_w"))

    def prepare_avgpool(self, n: Node, st: dict) -> None:
        mode, per_position = avgpool_divisor(n)
        c = n.output.type.shape[1]
        st["div_mode"] = mode
        # internal layout (OH, OW, C): one value per position, repeated over channels
        st["div"] = self.cptr(np.repeat(per_position.reshape(-1, 1), c, axis=1), "f32", "pool_div")

    # -------------------------------------------------------------- reset
    def emit_reset(self) -> None:
        f = self.f
        with f.loop(0, len(self.plan.counters), "r") as i:
            f.store(i64(0), self.counters, i)
        for n in self.g.nodes:
            slot = self.plan.slots.get(id(n.output))
            if slot is not None and slot.recycled:
                init = self.start_value(n.output)
                buf = self.node_state[n.name]["out"]["buf"]
                with f.loop(0, slot.size, "z") as i:
                    f.store(f.load(init, i) if init is not None else f32(0), buf, i)
        for n in self.g.nodes:
            reset = LOWER.lower(n).reset
            if reset is not None:
                reset(self, n, self.node_state[n.name])

    # ---------------------------------------------------------- time loop
    def emit_time_loop(self) -> None:
        f, b = self.f, self.b
        a = f.args
        total = b.load(f.at(a["checkpoints"], b.sub(a["n_checkpoints"], i64(1))))
        self.k_var = f.var(I64, "k")
        b.store(i64(0), self.k_var)
        with f.loop(0, total, "t") as t:
            self.t = t
            stop = b.load(self.node_state[self.readout.name]["stop"])
            with f.when(b.icmp_signed("<", stop, i64(0))):
                for node in self.g.nodes:
                    s = self.plan.slots.get(id(node.output))
                    if s is not None and s.invariant:
                        continue  # computed (and its synaptic ops counted) once per sample, before the loop
                    self.emit_node(node)
                self.emit_checkpoints(t)

    def add_counter(self, index: int, amount) -> None:
        p = self.f.at(self.counters, i64(index))
        self.b.store(self.b.add(self.b.load(p), amount), p)

    # ------------------------------------------------------------ dispatch
    def emit_node(self, n: Node) -> None:
        LOWER.lower(n).emit(self, n, self.node_state[n.name])

    # -------------------------------------------------------------- events
    def for_each_input(self, ins: dict, slot: Slot, body) -> None:
        """Call body(index_i64, value_f32) for every event, or every nonzero element of a buffer."""
        f, b = self.f, self.b
        if slot.events:
            count = b.sext(f.load(ins["count"], i64(0)), I64)
            with f.loop(0, count, "e") as e:
                body(b.sext(f.load(ins["idx"], e), I64), f.load(ins["sgn"], e))
        else:
            with f.loop(0, slot.size, "j") as j:
                val = f.load(ins["buf"], j)
                with f.when(b.fcmp_ordered("!=", val, f32(0))):
                    body(j, val)

    def push_event(self, out: dict, index, sign) -> None:
        f, b = self.f, self.b
        cp = f.at(out["count"], i64(0))
        c = b.load(cp)
        c64 = b.sext(c, I64)
        f.store(b.trunc(index, I32), out["idx"], c64)
        f.store(sign, out["sgn"], c64)
        b.store(b.add(c, i32(1)), cp)

    def clear_events(self, out: dict) -> None:
        self.b.store(i32(0), self.f.at(out["count"], i64(0)))

    def zero(self, buf, size: int) -> None:
        with self.f.loop(0, size, "z") as i:
            self.f.store(f32(0), buf, i)

    def count_sops(self, n: Node, st: dict, index) -> None:
        """Add the fan-out of one input element to the node's synaptic-op counter."""
        f, b = self.f, self.b
        amount = b.sext(f.load(st["fanout"], index), I64)
        self.add_counter(self.counter_of["synops:" + n.name], amount)

    def start_buffer(self, n: Node, st: dict) -> None:
        """Zero a synaptic op's output before its scatter (a recycled buffer already holds its start value)."""
        if not self.slot(n.output).recycled:
            self.zero(st["out"]["buf"], n.output.type.static_size())

    def end_buffer(self, n: Node, st: dict, bias_key: str) -> None:
        if not self.slot(n.output).recycled:
            self.add_bias(st, bias_key, n.output.type.static_size())

    def start_value(self, v: Value):
        """Pointer to the per-element start value of a recycled buffer (its bias), or None for zeros."""
        st = self.node_state[v.producer.name]
        return st.get("bias", st.get("shift"))

    def recycle(self, v: Value, index) -> None:
        """Called by the only consumer of a recycled buffer right after it read element ``index``."""
        if self.slot(v).recycled:
            f = self.f
            init = self.start_value(v)
            f.store(f.load(init, index) if init is not None else f32(0), self.slot_ptrs_cached(v), index)

    def slot_ptrs_cached(self, v: Value):
        return self.node_state[v.producer.name]["out"]["buf"]

    def add_bias(self, st: dict, key: str, size: int) -> None:
        if key in st:
            f, b = self.f, self.b
            out = st["out"]["buf"]
            with f.loop(0, size, "bias") as i:
                f.store(b.fadd(f.load(out, i), f.load(st[key], i)), out, i)

    # ------------------------------------------------------------- encode
    def emit_Encode(self, n: Node, st: dict) -> None:
        f, b = self.f, self.b
        a = n.attrs
        size = n.output.type.static_size()
        x_base = b.mul(self.sample, i64(size))
        if a["mode"] == "current":
            out = st["out"]["buf"]
            with f.loop(0, size, "x") as j:
                xv = f.load(f.args["x"], b.add(x_base, j))
                f.store(b.fmul(xv, f32(a["gain"])), out, b.sext(f.load(st["order"], j), I64))
            return
        # rate encodings: per-sample constants on the first step
        with f.when(b.icmp_signed("==", self.t, i64(0))):
            with f.loop(0, size, "x") as j:
                xv = f.load(f.args["x"], b.add(x_base, j))
                ax = b.call(self._fabs(), [xv])
                p = b.fmul(ax, f32(a["gain"]))
                p = b.select(b.fcmp_ordered("<", p, f32(1.0)), p, f32(1.0))
                q = b.fptoui(b.fmul(p, f32(float(1 << 24))), I32)
                f.store(q, st["q"], j)
                sign = b.select(b.fcmp_ordered(">", xv, f32(0)), f32(1.0),
                                b.select(b.fcmp_ordered("<", xv, f32(0)), f32(-1.0), f32(0.0)))
                f.store(sign, st["esign"], j)
                if a["mode"] == "periodic":
                    ph = self.hash(a["seed"] ^ PHASE_SALT, self.sample_id(), i64(0), j)
                    f.store(b.lshr(ph, i32(8)), st["phase"], j)
        out = st["out"]
        self.clear_events(out)
        counter = self.counter_of["spikes:" + n.name]
        with f.loop(0, size, "x") as j:
            q = f.load(st["q"], j)
            if a["mode"] == "poisson":
                h = b.lshr(self.hash(a["seed"], self.sample_id(), self.t, j), i32(8))
                fired = b.icmp_unsigned("<", h, q)
            else:
                ph = b.zext(f.load(st["phase"], j), I64)
                q64 = b.zext(q, I64)
                now = b.lshr(b.add(ph, b.mul(q64, b.add(self.t, i64(1)))), i64(24))
                before = b.lshr(b.add(ph, b.mul(q64, self.t)), i64(24))
                fired = b.icmp_unsigned(">", now, before)
            with f.when(fired):
                self.push_event(out, b.sext(f.load(st["order"], j), I64), f.load(st["esign"], j))
                self.add_counter(counter, i64(1))

    def intrinsic(self, name: str, fnty: ir.FunctionType):
        """Declare an intrinsic with its exact signature (once per module)."""
        existing = self.module.globals.get(name)
        return existing if existing is not None else ir.Function(self.module, fnty, name)

    def _fabs(self):
        return self.module.declare_intrinsic("llvm.fabs", [F32])

    def sample_id(self):
        return self.b.trunc(self.b.add(self.sample, self.f.args["sample_offset"]), I32)

    def fmix(self, h):
        b = self.b
        h = b.xor(h, b.lshr(h, i32(16)))
        h = b.mul(h, i32(0x85EBCA6B - (1 << 32)))
        h = b.xor(h, b.lshr(h, i32(13)))
        h = b.mul(h, i32(0xC2B2AE35 - (1 << 32)))
        return b.xor(h, b.lshr(h, i32(16)))

    def hash(self, seed: int, sample, step, index):
        """The IR's spike_hash, in uint32 arithmetic."""
        b = self.b
        s0 = (seed + GOLDEN) & 0xFFFFFFFF
        h = self.fmix(i32(s0 - (1 << 32) if s0 >= 1 << 31 else s0))
        h = self.fmix(b.xor(h, sample))
        h = self.fmix(b.xor(h, b.mul(b.trunc(step, I32), i32(STEP_MUL - (1 << 32)))))
        return self.fmix(b.xor(h, b.mul(b.trunc(index, I32), i32(INDEX_MUL - (1 << 32)))))

    # ------------------------------------------------------------ neurons
    def emit_IF(self, n: Node, st: dict) -> None:
        f, b = self.f, self.b
        a = n.attrs
        size = n.output.type.static_size()
        src = st["ins"][0]
        src_slot = self.slot(n.inputs[0])
        if src_slot.events:  # spikes straight into neurons: densify
            tmp = st.setdefault("tmp", self.sptr(size, "f32", "if_in"))
            self.zero(tmp, size)
            self.for_each_input(src, src_slot, lambda i, v: f.store(b.fadd(f.load(tmp, i), v), tmp, i))
            current = tmp
        else:
            current = src["buf"]
        counter = self.counter_of["spikes:" + n.name]
        neg = a["negative"]
        spk = st["spk"]
        # 1. every neuron, branch-free (vectorised): integrate, fire, reset; the sign goes to spk
        with f.loop(0, size, "nrn") as i:
            v = f.load(st["v"], i)
            if a["decay"] != 1.0:
                v = b.fmul(v, f32(a["decay"]))
            v = b.fadd(v, f.load(current, i))
            if not src_slot.events:
                self.recycle(n.inputs[0], i)
            th = f.load(st["th"], i)
            pos = b.fcmp_ordered(">=", v, th)
            if neg == "bipolar":
                negc = b.fcmp_ordered("<=", v, b.fneg(th))
            elif neg == "corrective":
                cnt = f.load(st["cnt"], i)
                negc = b.and_(b.fcmp_ordered("<", v, f32(0)), b.fcmp_ordered(">", cnt, f32(0)))
            else:
                negc = ir.Constant(ir.IntType(1), 0)
            sgn = b.select(pos, f32(1.0), b.select(negc, f32(-1.0), f32(0.0)))
            back = b.fsub(v, b.fmul(sgn, th))  # a negative event adds the threshold back
            v = b.select(b.fcmp_ordered(">", sgn, f32(0)), f32(0.0), back) if a["reset"] == "zero" else back
            f.store(v, st["v"], i)
            f.store(sgn, spk, i)
            if neg == "corrective":
                f.store(b.fadd(cnt, sgn), st["cnt"], i)
        # 2. the few that fired, sixteen at a time: a vector compare, then the set bits
        self.compact_events(spk, size, st["out"], counter)

    def compact_events(self, spk, size: int, out: dict, counter: int) -> None:
        """Append the nonzero entries of spk (padded with zeros to a multiple of 16) to an event list."""
        f, b = self.f, self.b
        vec_t = ir.VectorType(F32, 16)
        i16 = ir.IntType(16)
        cttz = self.intrinsic("llvm.cttz.i32", ir.FunctionType(I32, [I32, ir.IntType(1)]))
        ctpop = self.module.declare_intrinsic("llvm.ctpop", [I32])
        n_events = f.var(I32, "nev")
        b.store(i32(0), n_events)
        total = f.var(I64, "fired")
        b.store(i64(0), total)
        with f.loop(0, (size + 15) // 16, "chunk") as c:
            base = b.mul(c, i64(16))
            vec = b.load(b.bitcast(f.at(spk, base), vec_t.as_pointer()), align=4)
            bits = b.fcmp_ordered("!=", vec, ir.Constant(vec_t, [0.0] * 16))
            mask = b.zext(b.bitcast(bits, i16), I32)
            with f.when(b.icmp_unsigned("!=", mask, i32(0))):
                b.store(b.add(b.load(total), b.zext(b.call(ctpop, [mask]), I64)), total)
                m = f.var(I32, "mask")
                b.store(mask, m)
                head = b.append_basic_block("bits.head")
                body = b.append_basic_block("bits.body")
                done = b.append_basic_block("bits.done")
                b.branch(head)
                b.position_at_end(head)
                cur = b.load(m)
                b.cbranch(b.icmp_unsigned("!=", cur, i32(0)), body, done)
                b.position_at_end(body)
                j = b.zext(b.call(cttz, [cur, ir.Constant(ir.IntType(1), 1)]), I64)
                idx = b.add(base, j)
                k = b.load(n_events)
                k64 = b.sext(k, I64)
                f.store(b.trunc(idx, I32), out["idx"], k64)
                f.store(f.load(spk, idx), out["sgn"], k64)
                b.store(b.add(k, i32(1)), n_events)
                b.store(b.and_(cur, b.sub(cur, i32(1))), m)
                b.branch(head)
                b.position_at_end(done)
        b.store(b.load(n_events), f.at(out["count"], i64(0)))
        self.add_counter(counter, b.load(total))

    # -------------------------------------------------------- synaptic ops
    def emit_Conv(self, n: Node, st: dict) -> None:
        f, b = self.f, self.b
        x = n.inputs[0].type
        c, h, w = x.shape[1], x.shape[2], x.shape[3]
        m, oh, ow = n.output.type.shape[1], n.output.type.shape[2], n.output.type.shape[3]
        kh, kw = self.g.param(n.inputs[1]).shape[2:]
        (sh, sw), pads, (dh, dw) = spatial_attrs(n.attrs, 2)
        grp = n.attrs["group"]
        cg, mg = c // grp, m // grp
        out = st["out"]["buf"]
        wt = st["w"]
        table = self.tap_table((h, w), (kh, kw), (sh, sw), pads, (dh, dw), (oh, ow))
        self.start_buffer(n, st)

        def scatter(idx, val):
            self.count_sops(n, st, idx)
            ch = b.srem(idx, i64(c))
            pix = b.sdiv(idx, i64(c))
            gbase = b.mul(b.sdiv(ch, i64(cg)), i64(mg))
            wch = b.mul(ch, i64(kh * kw))

            def tap(k, opix):
                obase = b.add(b.mul(opix, i64(m)), gbase)
                wbase = b.mul(b.add(wch, k), i64(mg))
                with f.loop(0, mg, "m") as mm:
                    po = f.at(out, b.add(obase, mm))
                    wv = f.load(wt, b.add(wbase, mm))
                    b.store(b.fadd(b.load(po), b.fmul(val, wv)), po)

            def sparse_tap(k, opix):
                # a mapped channel reaches only its connected outputs: skip the others
                starts, outs, wcsr = st["sparse"]
                lo = b.sext(f.load(starts, ch), I64)
                count = b.sub(b.sext(f.load(starts, b.add(ch, i64(1))), I64), lo)
                wbase = b.add(b.mul(lo, i64(kh * kw)), b.mul(k, count))
                obase = b.mul(opix, i64(m))
                with f.loop(0, count, "j") as j:
                    o = b.sext(f.load(outs, b.add(lo, j)), I64)
                    po = f.at(out, b.add(obase, o))
                    b.store(b.fadd(b.load(po), b.fmul(val, f.load(wcsr, b.add(wbase, j)))), po)

            self.windows_of(pix, table, sparse_tap if "sparse" in st else tap)

        self.for_each_input(st["ins"][0], self.slot(n.inputs[0]), scatter)
        self.end_buffer(n, st, "bias")

    def tap_table(self, in_hw, kernel, strides, pads, dilations, out_dims):
        """For each input pixel, the (tap, output pixel) pairs whose window reads it (compile-time CSR table)."""
        key = (tuple(in_hw), tuple(kernel), tuple(strides), tuple(pads), tuple(dilations), tuple(out_dims))
        if key not in self.tap_tables:
            (h, w), (kh, kw), (sh, sw), (dh, dw), (oh, ow) = in_hw, kernel, strides, dilations, out_dims
            rows: list[list[tuple[int, int]]] = [[] for _ in range(h * w)]
            for oy in range(oh):
                for ox in range(ow):
                    for ky in range(kh):
                        iy = oy * sh - pads[0] + ky * dh
                        if not 0 <= iy < h:
                            continue
                        for kx in range(kw):
                            ix = ox * sw - pads[1] + kx * dw
                            if 0 <= ix < w:
                                rows[iy * w + ix].append((ky * kw + kx, oy * ow + ox))
            start = np.cumsum([0] + [len(r) for r in rows])
            flat = [pair for r in rows for pair in r] or [(0, 0)]
            taps = np.array([p[0] for p in flat])
            outs = np.array([p[1] for p in flat])
            self.tap_tables[key] = (self.cptr(start, "i32", "tap_start"), self.cptr(taps, "i32", "tap_k"),
                                    self.cptr(outs, "i32", "tap_out"))
        return self.tap_tables[key]

    def windows_of(self, pix, table, body) -> None:
        """Call body(tap, out_pixel) for every window tap that reads input pixel ``pix``."""
        f, b = self.f, self.b
        start, taps, outs = table
        lo = b.sext(f.load(start, pix), I64)
        hi = b.sext(f.load(start, b.add(pix, i64(1))), I64)
        with f.loop(lo, hi, "tap") as k:
            body(b.sext(f.load(taps, k), I64), b.sext(f.load(outs, k), I64))

    def emit_Dense(self, n: Node, st: dict) -> None:
        f, b = self.f, self.b
        o = n.output.type.shape[1]
        out = st["out"]["buf"]
        self.start_buffer(n, st)

        def scatter(idx, val):
            self.count_sops(n, st, idx)
            base = b.mul(idx, i64(o))
            with f.loop(0, o, "o") as k:
                po = f.at(out, k)
                b.store(b.fadd(b.load(po), b.fmul(val, f.load(st["w"], b.add(base, k)))), po)

        self.for_each_input(st["ins"][0], self.slot(n.inputs[0]), scatter)
        self.end_buffer(n, st, "bias")

    def emit_ScaleShift(self, n: Node, st: dict) -> None:
        f, b = self.f, self.b
        out = st["out"]["buf"]
        self.start_buffer(n, st)

        def scatter(idx, val):
            self.count_sops(n, st, idx)
            po = f.at(out, idx)
            b.store(b.fadd(b.load(po), b.fmul(val, f.load(st["scale"], idx))), po)

        self.for_each_input(st["ins"][0], self.slot(n.inputs[0]), scatter)
        self.end_buffer(n, st, "shift")

    def emit_AvgPool(self, n: Node, st: dict) -> None:
        f, b = self.f, self.b
        c, h, w, oh, ow, (kh, kw), (sh, sw), pads, (dh, dw) = pool_geometry(n)
        size = n.output.type.static_size()
        out = st["out"]["buf"]
        self.zero(out, size)

        table = self.tap_table((h, w), (kh, kw), (sh, sw), pads, (dh, dw), (oh, ow))

        def scatter(idx, val):
            ch = b.srem(idx, i64(c))

            def tap(k, opix):
                po = f.at(out, b.add(b.mul(opix, i64(c)), ch))
                b.store(b.fadd(b.load(po), val), po)

            self.windows_of(b.sdiv(idx, i64(c)), table, tap)

        self.for_each_input(st["ins"][0], self.slot(n.inputs[0]), scatter)
        with f.loop(0, size, "avg") as i:
            v = f.load(out, i)
            d = f.load(st["div"], i)
            f.store(b.fmul(v, d) if st["div_mode"] == "mul" else b.fdiv(v, d), out, i)

    def emit_GlobalAvgPool(self, n: Node, st: dict) -> None:
        f, b = self.f, self.b
        x = n.inputs[0].type
        c = x.shape[1]
        count = x.static_size() // c
        out = st["out"]["buf"]
        self.zero(out, c)

        def scatter(idx, val):
            po = f.at(out, b.srem(idx, i64(c)))
            b.store(b.fadd(b.load(po), val), po)

        self.for_each_input(st["ins"][0], self.slot(n.inputs[0]), scatter)
        with f.loop(0, c, "gap") as i:
            f.store(b.fdiv(f.load(out, i), f32(float(count))), out, i)

    # ------------------------------------------------------- elementwise
    def dense_operand(self, n: Node, st: dict, k: int, tmp_iter):
        """Input k of an elementwise node as a dense buffer pointer."""
        v = n.inputs[k]
        if v.is_param:
            return st["k"][k]
        slot = self.slot(v)
        if not slot.events:
            return st["ins"][k]["buf"]
        tmp = next(tmp_iter)
        f, b = self.f, self.b
        self.zero(tmp, slot.size)
        self.for_each_input(st["ins"][k], slot, lambda i, val: f.store(b.fadd(f.load(tmp, i), val), tmp, i))
        return tmp

    ARITHMETIC = {"Add": "fadd", "Sub": "fsub", "Mul": "fmul", "Div": "fdiv"}
    """Elementwise arithmetic op -> IRBuilder instruction."""

    def emit_binary(self, n: Node, st: dict) -> None:
        f, b = self.f, self.b
        tmps = iter(st.get("dense_tmp", []))
        x = self.dense_operand(n, st, 0, tmps)
        y = self.dense_operand(n, st, 1, tmps)
        out = st["out"]["buf"]
        fn = getattr(b, self.ARITHMETIC[n.op])
        with f.loop(0, n.output.type.static_size(), "ew") as i:
            f.store(fn(f.load(x, i), f.load(y, i)), out, i)

    # ------------------------------------------------------------- layout
    def emit_layout(self, n: Node, st: dict) -> None:
        f, b = self.f, self.b
        out_slot = self.slot(n.output)
        out = st["out"]
        data = [v for v in n.inputs if v is not None]
        if out_slot.events:
            self.clear_events(out)
            for v, ins, table in zip(data, [s for s in st["ins"] if s is not None], st["remap"]):
                def move(idx, val, table=table):
                    dest = b.sext(f.load(table, idx), I64)
                    with f.when(b.icmp_signed(">=", dest, i64(0))):
                        self.push_event(out, dest, val)
                self.for_each_input(ins, self.slot(v), move)
            return
        self.zero(out["buf"], out_slot.size)
        for v, ins, table in zip(data, [s for s in st["ins"] if s is not None], st["remap"]):
            src_slot = self.slot(v)
            def put(idx, val, table=table):
                dest = b.sext(f.load(table, idx), I64)
                with f.when(b.icmp_signed(">=", dest, i64(0))):
                    f.store(val, out["buf"], dest)
            self.for_each_input(ins, src_slot, put)

    # -------------------------------------------------------- gated pool
    def emit_GatedMaxPool(self, n: Node, st: dict) -> None:
        f, b = self.f, self.b
        c, h, w, oh, ow, (kh, kw), (sh, sw), pads, (dh, dw) = pool_geometry(n)
        nlist = f.var(I64, "touched_n")
        b.store(i64(0), nlist)

        def on_event(idx, val):
            pc = f.at(st["cnt"], idx)
            b.store(b.fadd(b.load(pc), val), pc)
            ch = b.srem(idx, i64(c))

            def tap(k, opix):
                win = b.add(b.mul(opix, i64(c)), ch)
                pt = f.at(st["touched"], win)
                with f.when(b.icmp_unsigned("==", b.load(pt), ir.Constant(I8, 0))):
                    b.store(ir.Constant(I8, 1), pt)
                    k = b.load(nlist)
                    f.store(b.trunc(win, I32), st["list"], k)
                    b.store(b.add(k, i64(1)), nlist)

            self.windows_of(b.sdiv(idx, i64(c)), table, tap)

        table = self.tap_table((h, w), (kh, kw), (sh, sw), pads, (dh, dw), (oh, ow))
        self.for_each_input(st["ins"][0], self.slot(n.inputs[0]), on_event)
        out = st["out"]
        self.clear_events(out)
        with f.loop(0, b.load(nlist), "win") as k:
            win = b.sext(f.load(st["list"], k), I64)
            b.store(ir.Constant(I8, 0), f.at(st["touched"], win))
            ch = b.srem(win, i64(c))
            pix = b.sdiv(win, i64(c))
            ox, oy = b.srem(pix, i64(ow)), b.sdiv(pix, i64(ow))
            best = f.var(F32, "best")
            b.store(f32(float("-inf")), best)
            with f.loop(0, kh, "wy") as ky:
                iy = b.add(b.mul(oy, i64(sh)), b.sub(b.mul(ky, i64(dh)), i64(pads[0])))
                with f.when(b.and_(b.icmp_signed(">=", iy, i64(0)), b.icmp_signed("<", iy, i64(h)))):
                    with f.loop(0, kw, "wx") as kx:
                        ix = b.add(b.mul(ox, i64(sw)), b.sub(b.mul(kx, i64(dw)), i64(pads[1])))
                        with f.when(b.and_(b.icmp_signed(">=", ix, i64(0)), b.icmp_signed("<", ix, i64(w)))):
                            cv = f.load(st["cnt"], b.add(b.mul(b.add(b.mul(iy, i64(w)), ix), i64(c)), ch))
                            cur = b.load(best)
                            b.store(b.select(b.fcmp_ordered(">", cv, cur), cv, cur), best)
            lead = f.load(st["lead"], win)
            new = b.load(best)
            diff = b.fsub(new, lead)
            with f.when(b.fcmp_ordered("!=", diff, f32(0))):
                f.store(new, st["lead"], win)
                self.push_event(out, win, diff)

    # ------------------------------------------------------------ readout
    def emit_Readout(self, n: Node, st: dict) -> None:
        f, b = self.f, self.b
        src_slot = self.slot(n.inputs[0])
        acc = st["acc"]

        def add(idx, val):
            p = f.at(acc, idx)
            b.store(b.fadd(b.load(p), b.fpext(val, F64)), p)

        if src_slot.events:
            self.for_each_input(st["ins"][0], src_slot, add)
        else:
            with f.loop(0, src_slot.size, "ro") as j:
                add(j, f.load(st["ins"][0]["buf"], j))
                self.recycle(n.inputs[0], j)
        delta = n.attrs["terminate_delta"]
        if delta > 0:
            size = src_slot.size
            top1, top2 = f.var(F64, "top1"), f.var(F64, "top2")
            b.store(f64(float("-inf")), top1)
            b.store(f64(float("-inf")), top2)
            with f.loop(0, size, "top") as j:
                v = f.load(acc, j)
                t1, t2 = b.load(top1), b.load(top2)
                above1 = b.fcmp_ordered(">", v, t1)
                b.store(b.select(above1, t1, b.select(b.fcmp_ordered(">", v, t2), v, t2)), top2)
                b.store(b.select(above1, v, t1), top1)
            unit = 1.0 if n.attrs["mode"] == "count" else n.attrs["unit"]
            margin = b.fdiv(b.fsub(b.load(top1), b.load(top2)), f64(unit))
            with f.when(b.fcmp_unordered(">=", margin, f64(delta))):
                b.store(b.add(self.t, i64(1)), st["stop"])

    def emit_checkpoints(self, t) -> None:
        """Snapshot scores, steps and counters for every checkpoint reached (all of them once stopped)."""
        f, b = self.f, self.b
        a = f.args
        st = self.node_state[self.readout.name]
        stop = b.load(st["stop"])
        used = b.add(t, i64(1))
        stopped = b.icmp_signed(">=", stop, i64(0))
        size = self.slot(self.readout.inputs[0]).size
        mode = self.readout.attrs["mode"]
        head = b.append_basic_block("cp.head")
        body = b.append_basic_block("cp.body")
        done = b.append_basic_block("cp.done")
        b.branch(head)
        b.position_at_end(head)
        k = b.load(self.k_var)
        more = b.icmp_signed("<", k, a["n_checkpoints"])
        cp = b.load(f.at(a["checkpoints"], b.select(more, k, i64(0))))
        due = b.and_(more, b.or_(stopped, b.icmp_signed("==", cp, used)))
        b.cbranch(due, body, done)
        b.position_at_end(body)
        row = b.add(b.mul(k, a["n_total"]), self.sample)
        with f.loop(0, size, "sc") as j:
            v = f.load(st["acc"], j)
            if mode == "potential":
                v = b.fdiv(v, b.sitofp(used, F64))
            f.store(b.fptrunc(v, F32), a["scores"], b.add(b.mul(row, i64(size)), j))
        f.store(used, a["steps"], row)
        nc = len(self.plan.counters)
        with f.loop(0, nc, "cc") as j:
            f.store(f.load(self.counters, j), a["counters"], b.add(b.mul(row, i64(nc)), j))
        b.store(b.add(k, i64(1)), self.k_var)
        b.branch(head)
        b.position_at_end(done)


# ------------------------------------------------------- per-op preparation
def _prepare_conv(gen: Generator, n: Node, st: dict) -> None:
    w = masked_weight(n, gen.g.param)
    mask = conv_mask(n, gen.g.param)
    if mask is not None and n.attrs["group"] == 1 and not (mask != 0).all():
        gen.prepare_sparse_conv(st, w, mask != 0)
    grp = n.attrs["group"]
    m, cg = w.shape[0], w.shape[1]
    mg = m // grp
    # W_t[c, ky, kx, m_local] = w[g*mg + m_local, c % cg, ky, kx] with g = c // cg
    wt = w.reshape(grp, mg, cg, w.shape[2], w.shape[3]).transpose(0, 2, 3, 4, 1).reshape(
        grp * cg, w.shape[2], w.shape[3], mg)
    st["w"] = gen.cptr(wt, "f32", "w")
    gen.channel_const(n, 2, "bias", st)


def _prepare_dense(gen: Generator, n: Node, st: dict) -> None:
    w = gen.g.param(n.inputs[1])  # (out, in); the input is rank 2: internal == NCHW
    st["w"] = gen.cptr(np.ascontiguousarray(w.T), "f32", "w")
    gen.channel_const(n, 2, "bias", st)


def _prepare_scale_shift(gen: Generator, n: Node, st: dict) -> None:
    gen.channel_const(n, 1, "scale", st)
    gen.channel_const(n, 2, "shift", st)


def _prepare_binary(gen: Generator, n: Node, st: dict) -> None:
    t = n.output.type
    st["k"] = [gen.cptr(to_internal(t, sample_constant(gen.g.param(v), t)), "f32", "k") if v.is_param else None
               for v in n.inputs]
    for v in n.inputs:
        if not v.is_param and gen.slot(v).events:
            st.setdefault("dense_tmp", []).append(gen.sptr(gen.slot(v).size, "f32", "densify"))


def _prepare_neuron(gen: Generator, n: Node, st: dict) -> None:
    t = n.output.type
    gen.channel_const(n, 1, "th", st)
    st["v"] = gen.sptr(t.static_size(), "f32", "v")
    st["cnt"] = gen.sptr(t.static_size(), "f32", "cnt")
    st["spk"] = gen.sptr(-(-t.static_size() // 16) * 16, "f32", "spk")  # zero padding stays zero


def _prepare_gated_pool(gen: Generator, n: Node, st: dict) -> None:
    out = n.output.type.static_size()
    st["cnt"] = gen.sptr(n.inputs[0].type.static_size(), "f32", "pool_cnt")
    st["lead"] = gen.sptr(out, "f32", "pool_lead")
    st["touched"] = gen.sptr(out, "u8", "pool_touched")
    st["list"] = gen.sptr(out, "i32", "pool_list")


def _prepare_layout(gen: Generator, n: Node, st: dict) -> None:
    st["remap"] = [gen.cptr(r, "i32", "remap") for r in remap_tables(n, internal_of_nchw)]


def _prepare_encode(gen: Generator, n: Node, st: dict) -> None:
    size = n.output.type.static_size()
    st["order"] = gen.cptr(internal_of_nchw(n.output.type), "i32", "order")
    if n.attrs["mode"] != "current":
        st["q"] = gen.sptr(size, "u32", "q")
        st["esign"] = gen.sptr(size, "f32", "esign")
        st["phase"] = gen.sptr(size, "u32", "phase")


def _prepare_readout(gen: Generator, n: Node, st: dict) -> None:
    st["acc"] = gen.sptr(n.inputs[0].type.static_size(), "f64", "acc")
    st["stop"] = gen.f.var(I64, "stop")


def _reset_neuron(gen: Generator, n: Node, st: dict) -> None:
    f, b = gen.f, gen.b
    init = f32(n.attrs["init"])
    with f.loop(0, n.output.type.static_size(), "z") as i:
        f.store(b.fmul(init, f.load(st["th"], i)), st["v"], i)
        f.store(f32(0), st["cnt"], i)


def _reset_gated_pool(gen: Generator, n: Node, st: dict) -> None:
    f = gen.f
    with f.loop(0, n.inputs[0].type.static_size(), "z") as i:
        f.store(f32(0), st["cnt"], i)
    with f.loop(0, n.output.type.static_size(), "z") as i:
        f.store(f32(0), st["lead"], i)
        f.store(ir.Constant(I8, 0), st["touched"], i)


def _reset_readout(gen: Generator, n: Node, st: dict) -> None:
    f = gen.f
    with f.loop(0, n.inputs[0].type.static_size(), "z") as i:
        f.store(f64(0), st["acc"], i)
    gen.b.store(i64(-1), st["stop"])


def _no_check(node: Node) -> str | None:
    return None


LOWER.register("Encode", check=_no_check)(NodeLowering(Generator.emit_Encode, _prepare_encode))
LOWER.register("IF")(NodeLowering(Generator.emit_IF, _prepare_neuron, _reset_neuron))
LOWER.register("GatedMaxPool", check=_two_d)(NodeLowering(Generator.emit_GatedMaxPool, _prepare_gated_pool,
                                                          _reset_gated_pool))
LOWER.register("Readout")(NodeLowering(Generator.emit_Readout, _prepare_readout, _reset_readout))
LOWER.register("Conv", check=lambda n: _two_d(n) or _unfused(n))(NodeLowering(Generator.emit_Conv, _prepare_conv))
LOWER.register("Dense", check=lambda n: _time_varying_inputs(n) or _unfused(n))(
    NodeLowering(Generator.emit_Dense, _prepare_dense))
LOWER.register("ScaleShift", check=lambda n: _time_varying_inputs(n) or _unfused(n))(
    NodeLowering(Generator.emit_ScaleShift, _prepare_scale_shift))
LOWER.register("AvgPool", check=_two_d)(NodeLowering(Generator.emit_AvgPool, Generator.prepare_avgpool))
LOWER.register("GlobalAvgPool")(NodeLowering(Generator.emit_GlobalAvgPool))
LOWER.register("Add", "Sub", "Mul", "Div", check=lambda n: _time_varying_inputs(n) or _unfused(n))(
    NodeLowering(Generator.emit_binary, _prepare_binary))
LOWER.register_trait("layout op", lambda op: op.layout, check=_time_varying_inputs)(
    NodeLowering(Generator.emit_layout, _prepare_layout))


def pool_geometry(n: Node):
    """Channels, input and output sizes, kernel, strides, pads and dilations of a 2-d pooling node."""
    x, y = n.inputs[0].type, n.output.type
    strides, pads, dil = spatial_attrs(n.attrs, 2)
    return x.shape[1], x.shape[2], x.shape[3], y.shape[2], y.shape[3], n.attrs["kernel"], strides, pads, dil


def _channel_full(vec: np.ndarray, t: TensorType) -> np.ndarray:
    """A per-channel (axis 1) vector shaped to broadcast over one sample."""
    vec = np.asarray(vec, np.float32).reshape(-1)
    return vec.reshape((-1,) + (1,) * (t.rank - 2)) if t.rank > 2 else vec


def generate(graph: Graph) -> tuple[str, Plan]:
    return Generator(graph).build()
