"""From the IR to CUDA kernels and the launches that run them.

``AnalogPlan`` runs the analog network node by node (batch N).
``SpikingPlan`` runs the spiking network layer by layer over chunks of steps:
each synaptic op computes its input for every step of the chunk as one batched
product (batch = steps x samples), then a neuron kernel scans time per neuron
with its state in registers.  Values computed only from a constant-current
input are computed once.  With an early decision the chunk is one step, and
kernels skip the samples already decided.

A plan talks to an *executor* (cupy on a GPU; a C++ emulation in tests):
``upload``, ``zeros``, ``launch(kernel, threads, args)``, ``download``.
"""
from __future__ import annotations

import numpy as np

from irc.errors import UnsupportedError
from irc.graph import Graph, Node, Value
from irc.ops.nn import spatial_attrs
from irc.types import Domain

from ..spiking_common import Counters, fanout, neuron_nodes, synaptic_nodes
from ..tables import avgpool_divisor, remap_tables
from . import source as S

LAYOUT_OPS = ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Pad", "Identity", "Dropout")


def _channel_vector(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(arr, np.float32).reshape(-1))


def _sample_const(arr: np.ndarray, like: Value) -> np.ndarray:
    """A constant operand broadcast to one sample of ``like`` (flat)."""
    a = np.asarray(arr, np.float32)
    shape = like.type.sample_shape
    full = np.broadcast_to(a, np.broadcast_shapes(a.shape, (1,) + shape))
    return np.ascontiguousarray(full.reshape(shape)).reshape(-1)


def _inner(t) -> int:
    return int(np.prod(t.shape[2:], dtype=np.int64)) if t.rank > 2 else 1


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

    def stateless(self, n: Node) -> tuple[S.Kernel, list] | None:
        """Kernel and argument template for a per-step op; args: ('in', k) | ('const', key) | ('out',)."""
        g = self.g
        a = n.attrs
        if n.op == "Conv":
            if n.inputs[0].type.rank != 4:
                raise UnsupportedError(f"the CUDA targets run 2-d convolutions only (node {n.name!r})")
            w = g.param(n.inputs[1])
            if len(n.inputs) > 3 and n.inputs[3] is not None:
                mask = g.param(n.inputs[3])
                w = w * mask.reshape(mask.shape + (1, 1))
            x, y = n.inputs[0].type, n.output.type
            strides, pads, dil = spatial_attrs(a, 2)
            has_bias = len(n.inputs) > 2 and n.inputs[2] is not None
            k = self.module.add(S.conv2d(self.name(n, "conv"), x.shape[1], x.shape[2], x.shape[3], y.shape[1],
                                         y.shape[2], y.shape[3], w.shape[2], w.shape[3], strides, pads, dil,
                                         a["group"], has_bias, a["activation"], a["activation_params"]))
            args = [("in", 0), ("const", self.const(n.name + ".w", w.astype(np.float32)))]
            if has_bias:
                args.append(("const", self.const(n.name + ".b", _channel_vector(g.param(n.inputs[2])))))
            return k, args + [("out",)]
        if n.op == "Dense":
            w = g.param(n.inputs[1])
            has_bias = len(n.inputs) > 2 and n.inputs[2] is not None
            k = self.module.add(S.dense(self.name(n, "dense"), w.shape[1], w.shape[0], has_bias, a["activation"],
                                        a["activation_params"]))
            args = [("in", 0), ("const", self.const(n.name + ".w", np.ascontiguousarray(w, np.float32)))]
            if has_bias:
                args.append(("const", self.const(n.name + ".b", _channel_vector(g.param(n.inputs[2])))))
            return k, args + [("out",)]
        if n.op == "ScaleShift":
            t = n.output.type
            has_shift = len(n.inputs) > 2 and n.inputs[2] is not None
            k = self.module.add(S.scale_shift(self.name(n, "scale"), t.shape[1], _inner(t), has_shift,
                                              a["activation"], a["activation_params"]))
            args = [("in", 0), ("const", self.const(n.name + ".s", _channel_vector(g.param(n.inputs[1]))))]
            if has_shift:
                args.append(("const", self.const(n.name + ".t", _channel_vector(g.param(n.inputs[2])))))
            return k, args + [("out",)]
        if n.op in ("MaxPool", "AvgPool"):
            x, y = n.inputs[0].type, n.output.type
            if x.rank != 4:
                raise UnsupportedError(f"the CUDA targets run 2-d pools only (node {n.name!r})")
            strides, pads, dil = spatial_attrs(a, 2)
            div_mode, div = avgpool_divisor(n) if n.op == "AvgPool" else ("", None)
            k = self.module.add(S.pool2d(self.name(n, "pool"), "max" if n.op == "MaxPool" else "avg", x.shape[1],
                                         x.shape[2], x.shape[3], y.shape[2], y.shape[3], a["kernel"], strides,
                                         pads, dil, div_mode))
            args = [("in", 0)]
            if div is not None:
                args.append(("const", self.const(n.name + ".div", div.reshape(-1))))
            return k, args + [("out",)]
        if n.op in ("GlobalAvgPool", "GlobalMaxPool"):
            x = n.inputs[0].type
            k = self.module.add(S.global_pool(self.name(n, "gpool"), "max" if n.op == "GlobalMaxPool" else "avg",
                                              _inner(x)))
            return k, [("in", 0), ("out",)]
        if n.op in ("Add", "Sub", "Mul", "Div"):
            kinds, args = [], []
            for i, v in enumerate(n.inputs):
                if v.is_param:
                    kinds.append("const")
                    args.append(("const", self.const(f"{n.name}.{i}", _sample_const(g.param(v), n.output))))
                else:
                    if v.type.shape != n.output.type.shape:
                        raise UnsupportedError(f"the CUDA targets do not broadcast run-time operands (node {n.name!r})")
                    kinds.append("data")
                    args.append(("in", i))
            k = self.module.add(S.elementwise(self.name(n, n.op.lower()), n.op, n.output.type.static_size(), kinds,
                                              a.get("activation", ""), a.get("activation_params", [])))
            return k, args + [("out",)]
        if n.op in ("Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh"):
            params = {"LeakyRelu": [a.get("alpha", 0.0)], "Clip": [a.get("min", 0.0), a.get("max", 0.0)]}.get(n.op, [])
            return self.module.add(S.unary(self.name(n, n.op.lower()), n.op, params)), [("in", 0), ("out",)]
        if n.op in ("Softmax", "LogSoftmax"):
            t = n.output.type
            axis = a["axis"] % t.rank
            inner = int(np.prod(t.shape[axis + 1:], dtype=np.int64))
            k = self.module.add(S.softmax(self.name(n, "softmax"), t.shape[axis], inner, n.op == "LogSoftmax"))
            return k, [("in", 0), ("out",)]
        if n.op in LAYOUT_OPS:
            data = [v for v in n.inputs if v is not None]
            if n.op in ("Identity", "Dropout"):
                tables = [np.arange(data[0].type.static_size())]
            else:
                tables = remap_tables(n)
            out_size = n.output.type.static_size()
            src = np.full(out_size, -1, np.int32)
            idx = np.zeros(out_size, np.int32)
            for k_, table in enumerate(tables):
                keep = table >= 0
                src[table[keep]] = k_
                idx[table[keep]] = np.flatnonzero(keep)
            pad_value = a.get("value", 0.0) if n.op == "Pad" else 0.0
            k = self.module.add(S.gather(self.name(n, "layout"), out_size, [v.type.static_size() for v in data],
                                         pad_value))
            args = [("in", i) for i in range(len(data))]
            args += [("const", self.const(n.name + ".src", src)), ("const", self.const(n.name + ".idx", idx)), ("out",)]
            return k, args
        return None


def _bind(args: list, inputs: list, output, consts: dict):
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
        self.g = graph
        b = _Builder(graph)
        self.steps = []
        for n in graph.nodes:
            made = b.stateless(n)
            if made is None:
                raise UnsupportedError(f"the cuda target cannot run {n.op} (node {n.name!r})")
            self.steps.append((n, made[0], made[1]))
        self.module = b.module
        self.consts = b.consts

    def run(self, ex, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        g = self.g
        consts = ex.constants(self.consts)
        n = len(next(iter(feeds.values())))
        env: dict[int, object] = {id(v): ex.upload(feeds[v.name]) for v in g.inputs}
        for name, arr in g.params.items():
            env[id(g.values[name])] = None
        for node, kernel, args in self.steps:
            out = ex.zeros((n,) + node.output.type.sample_shape, np.float32)
            data_ins = [env[id(v)] if v is not None and not v.is_param else None for v in node.inputs]
            ex.launch(kernel, n * node.output.type.static_size() // kernel.per_output, _bind(args, data_ins, out, consts))
            env[id(node.output)] = out
        return [ex.download(env[id(v)]) for v in g.outputs]


# ---------------------------------------------------------------- spiking
class SpikingPlan:
    def __init__(self, graph: Graph):
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
            data = [v for v in n.inputs if v is not None and not v.is_param]
            if n.op == "Encode" and n.attrs["mode"] == "current" or (
                    n.op not in ("Encode", "IF", "GatedMaxPool", "Readout") and data
                    and all(id(v) in self.invariant for v in data)):
                self.invariant.add(id(n.output))
            self.steps.append((n,) + self.kernels(n))
        for n in self.neurons:
            self.stats.append(("spikes", n, b.module.add(S.count_events(b.name(n, "count"), n.output.type.static_size())),
                               None))
        for n in self.synaptic:
            key = b.const(n.name + ".fanout", fanout(n, graph).reshape(-1).astype(np.int32))
            self.stats.append(("synops", n, b.module.add(S.count_synops(b.name(n, "synops"),
                                                                          n.inputs[0].type.static_size())), key))
        self.module = b.module
        self.consts = b.consts

    def kernels(self, n: Node) -> tuple:
        b, a = self.builder, n.attrs
        t = n.output.type if n.op != "Readout" else n.inputs[0].type
        if n.op == "Encode":
            if a["mode"] == "current":
                return b.module.add(S.elementwise(b.name(n, "encode"), "Mul", t.static_size(), ["data", "const"])), \
                    [("in", 0), ("const", b.const(n.name + ".gain", np.full(t.static_size(), a["gain"], np.float32))),
                     ("out",)]
            return b.module.add(S.encode_rate(b.name(n, "encode"), t.static_size(), a["mode"], a["gain"], a["seed"])), None
        if n.op == "IF":
            th = b.const(n.name + ".th", _channel_vector(self.g.param(n.inputs[1])))
            return b.module.add(S.neuron(b.name(n, "if"), t.static_size(), t.shape[1], _inner(t), a["reset"],
                                         a["negative"], a["init"], a["decay"])), th
        if n.op == "GatedMaxPool":
            x = n.inputs[0].type
            strides, pads, dil = spatial_attrs(a, 2)
            counts = b.module.add(S.pool_counts(b.name(n, "poolcnt"), x.static_size()))
            leader = b.module.add(S.pool_leader(b.name(n, "poollead"), x.shape[1], x.shape[2], x.shape[3],
                                                t.shape[2], t.shape[3], a["kernel"], strides, pads, dil))
            return (counts, leader), None
        if n.op == "Readout":
            return b.module.add(S.readout(b.name(n, "readout"), t.static_size(), a["mode"], a["terminate_delta"],
                                          a["unit"])), None
        made = b.stateless(n)
        if made is None:
            raise UnsupportedError(f"spike-cuda cannot run {n.op} (node {n.name!r})")
        return made

    # -------------------------------------------------------------- run
    def run(self, ex, x: np.ndarray, offset: int, checkpoints: list[int], n_total_cap: int = 0) -> list[Counters]:
        g = self.g
        consts = ex.constants(self.consts)
        n = len(x)
        total = checkpoints[-1]
        chunk = 1 if self.readout.attrs["terminate_delta"] > 0 else total
        k_cp = len(checkpoints)
        out_size = self.readout.inputs[0].type.static_size()
        scores = ex.zeros((k_cp, n, out_size), np.float32)
        steps_used = ex.zeros((k_cp, n), np.int64)
        cps = ex.upload(np.asarray(checkpoints, np.int64))
        done = ex.zeros((n,), np.int32)
        stop = ex.zeros((n,), np.int64)
        next_cp = ex.zeros((n,), np.int32)
        state: dict[str, tuple] = {}
        xin = ex.upload(np.ascontiguousarray(x, np.float32))
        per_step = {("spikes", nd.name): np.zeros((total, n)) for nd in self.neurons}
        per_step.update({("synops", nd.name): np.zeros((total, n)) for nd in self.synaptic})
        env: dict[int, object] = {id(g.inputs[0]): xin}
        for t0 in range(0, total, chunk):
            steps = min(chunk, total - t0)
            first = int(t0 == 0)
            for node, kernel, extra in self.steps:
                if id(node.output) in self.invariant and not first:
                    continue
                self.launch_node(ex, node, kernel, extra, env, consts, state, xin, n, steps, t0, first, offset, done,
                                 stop, next_cp, cps, k_cp, scores, steps_used)
            for kind, node, kernel, key in self.stats:
                value = node.output if kind == "spikes" else node.inputs[0]
                rows = n if id(value) in self.invariant else steps * n
                counts = ex.zeros((rows,), np.float64)
                args = [env[id(value)], counts] if key is None else [env[id(value)], consts[key], counts]
                ex.launch(kernel, rows, args)
                host = ex.download(counts).reshape(-1, n)
                per_step[(kind, node.name)][t0:t0 + steps] = host  # broadcasts an invariant row over the chunk
            if chunk == 1 and ex.download(done).all():
                break
        scores_h, steps_h = ex.download(scores), ex.download(steps_used)
        results = []
        for k in range(k_cp):
            used = steps_h[k]
            mask = (np.arange(total)[:, None] < used[None, :]).astype(np.float64)
            results.append(Counters(
                [scores_h[k].reshape((n,) + self.readout.inputs[0].type.sample_shape)], used.copy(),
                {nd.name: (per_step[("spikes", nd.name)] * mask).sum(axis=0) for nd in self.neurons},
                {nd.name: np.rint((per_step[("synops", nd.name)] * mask).sum(axis=0)).astype(np.int64)
                 for nd in self.synaptic}))
        return results

    def launch_node(self, ex, node, kernel, extra, env, consts, state, xin, n, steps, t0, first, offset, done, stop,
                    next_cp, cps, k_cp, scores, steps_used) -> None:
        size = node.output.type.static_size() if node.op != "Readout" else node.inputs[0].type.static_size()
        invariant_out = id(node.output) in self.invariant
        batch_out = n if invariant_out else steps * n

        def src(v: Value):
            return env[id(v)]

        def tstride(v: Value) -> int:
            return 0 if id(v) in self.invariant else n * v.type.static_size()

        if node.op == "Encode" and node.attrs["mode"] != "current":
            out = ex.zeros((steps * n * size,), np.float32)
            ex.launch(kernel, n * size, [xin, done, t0, steps, n, offset, out])
        elif node.op == "IF":
            if first:
                state[node.name] = (ex.zeros((n * size,), np.float32), ex.zeros((n * size,), np.float32))
            v_state, c_state = state[node.name]
            out = ex.zeros((steps * n * size,), np.float32)
            inp = node.inputs[0]
            ex.launch(kernel, n * size, [src(inp), tstride(inp), consts[extra], done, first, steps, n, v_state,
                                         c_state, out])
        elif node.op == "GatedMaxPool":
            counts_k, leader_k = kernel
            in_size = node.inputs[0].type.static_size()
            if first:
                state[node.name] = (ex.zeros((n * in_size,), np.float32), ex.zeros((n * size,), np.float32))
            cnt_state, lead_state = state[node.name]
            cum = ex.zeros((steps * n * in_size,), np.float32)
            ex.launch(counts_k, n * in_size, [src(node.inputs[0]), done, first, steps, n, cnt_state, cum])
            out = ex.zeros((steps * n * size,), np.float32)
            ex.launch(leader_k, n * size, [cum, done, first, steps, n, lead_state, out])
        elif node.op == "Readout":
            if first:
                state[node.name] = (ex.zeros((n * size,), np.float64),)
            (acc,) = state[node.name]
            inp = node.inputs[0]
            ex.launch(kernel, n, [src(inp), tstride(inp), acc, done, stop, next_cp, cps, k_cp, t0, steps, 0, n,
                                  scores, steps_used])
            return
        else:
            out = ex.zeros((batch_out * size,), np.float32)
            data = []
            for v in node.inputs:
                if v is None or v.is_param:
                    data.append(None)
                elif id(v) in self.invariant and not invariant_out:
                    data.append(ex.tile(env[id(v)], steps))  # a constant input meets a time-varying one
                else:
                    data.append(env[id(v)])
            ex.launch(kernel, batch_out * size // kernel.per_output, _bind(extra, data, out, consts))
        env[id(node.output)] = out
