"""What every spiking target shares: options, the conversion pipeline, the run
loop (chunks, checkpoints at several timesteps), and the statistics.

A backend's simulator returns, per checkpoint T_k, the scores and the steps
each sample used, plus per-sample counters per layer (events, synaptic
operations); this module turns them into ``prog.stats``.

Synaptic operations are counted where weights are applied: for every Conv,
Dense, MatMul or ScaleShift whose input varies per step, each nonzero input
element costs its fan-out (the number of weights it is multiplied by).  An
event costs an accumulate (AC); a real-valued input (a constant-current
input layer, a current between two linear layers) costs a multiply-accumulate
(MAC).  Pooling costs nothing, as in N2D2.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from irc.backend import Backend
from irc.errors import IRCError
from irc.feeds import bind_inputs
from irc.graph import Graph, Node
from irc.ops import get_op
from irc.ops.nn import spatial_attrs
from irc.program import Program
from irc.types import Domain

E_AC_PJ = 0.9
E_MAC_PJ = 4.6
ENERGY_MODEL = "45 nm CMOS, 32-bit float (Horowitz 2014): 0.9 pJ per accumulate, 4.6 pJ per MAC; memory traffic not counted"

SPIKING_OPTIONS: dict[str, tuple[Any, str]] = {
    "calibration": (None, "calibration inputs (array, source layout) that set the thresholds"),
    "timesteps": (64, "timesteps per sample"),
    "encoding": (None, "input encoding: current | poisson | periodic (default: current, or the model's own)"),
    "thresholds": ("auto", "calibrated (from calibration data) | model (the file's own, N2D2) | auto"),
    "percentile": (99.9, "threshold = this percentile of each layer's positive activations (100 = max)"),
    "per_channel": (True, "one threshold per channel (False: one per layer)"),
    "normalize": ("thresholds", "where the scale lives: thresholds | weights"),
    "scale_rounding": ("none", "none | pow2 (thresholds rounded to powers of two)"),
    "reset": ("subtract", "neuron reset: subtract | zero"),
    "negative": (None, "negative events: corrective (default; take back over-firing) | none | bipolar"),
    "neuron_init": (None, "initial membrane as a fraction of the threshold (default 0.5; N2D2 models: 0)"),
    "decay": (1.0, "membrane decay per step (1 = IF, < 1 = LIF)"),
    "readout": (None, "potential (non-spiking output layer; the default) | count (spike counts; N2D2 models)"),
    "terminate_delta": (None, "early decision: stop a sample when its leader is this many spikes ahead (0: off)"),
    "maxpool": ("gated", "max-pool: gated (by accumulated spike counts) | avg"),
    "seed": (0, "seed of the random encodings"),
    "batch_size": (None, "samples per chunk (default: sized to keep memory under ~1 GiB)"),
}


def spike_pipeline(options: Mapping[str, Any]) -> list[str]:
    """The conversion of an analog network, run by one pass that skips it for a graph that already spikes."""
    conversion_passes(options)  # option errors before any pass runs
    return ["convert_to_spiking"]


def conversion_passes(options: Mapping[str, Any]) -> list[str]:
    from irc.passes import FOUNDATION

    names = FOUNDATION + ["unfuse_activations", "canonicalize_for_spiking", "drop_final_softmax", "calibrate",
                          "to_spiking"]
    normalize = options.get("normalize", "thresholds")
    if normalize == "weights":
        names.append("thresholds_to_weights")
    elif normalize != "thresholds":
        raise IRCError(f"normalize must be 'thresholds' or 'weights', got {normalize!r}")
    return names + ["fold_pooling"]


def is_spiking(graph: Graph) -> bool:
    """A graph that already has neurons (a NIR import): it runs as it is, without calibration or conversion."""
    return any(get_op(n.op).spiking for n in graph.nodes)


def _convert_to_spiking(graph: Graph, ctx) -> Graph:
    """The conversion passes (each verified and printed as usual), or nothing for an already spiking graph."""
    from irc.passes import run_pipeline

    if is_spiking(graph):
        return graph
    return run_pipeline(graph, conversion_passes(ctx.options), ctx)


def _register() -> None:
    from irc.passes import PASSES, register_pass

    if "convert_to_spiking" not in PASSES:
        register_pass("convert_to_spiking")(_convert_to_spiking)


_register()


class SpikingBackend(Backend):
    options = SPIKING_OPTIONS

    @staticmethod
    def analog_of(ctx) -> Graph | None:
        """The analog graph the conversion started from (left in the pass context by calibrate)."""
        return ctx.notes.get("analog_graph") if ctx is not None else None

    def pipeline(self, options):
        return spike_pipeline(options)

    def check_options(self, options):
        out = super().check_options(options)
        if int(out["timesteps"]) < 1:
            raise IRCError(f"timesteps must be at least 1, got {out['timesteps']}")
        return out


# ------------------------------------------------------------------- fan-out
def _cover(size: int, out: int, k: int, stride: int, pad: int, dil: int) -> np.ndarray:
    """How many (output position, kernel tap) pairs read each input position along one axis."""
    counts = np.zeros(size, np.int64)
    for o in range(out):
        for j in range(k):
            i = o * stride - pad + j * dil
            if 0 <= i < size:
                counts[i] += 1
    return counts


def fanout(node: Node, graph: Graph) -> np.ndarray:
    """Weights each input element of a synaptic node is multiplied by (per-sample shape)."""
    x = node.inputs[0].type
    if node.op == "Conv":
        w = graph.param(node.inputs[1])
        nd = w.ndim - 2
        strides, pads, dil = spatial_attrs(node.attrs, nd)
        out_dims = node.output.type.shape[2:]
        g = node.attrs["group"]
        m, cg = w.shape[0], w.shape[1]
        mask = graph.param(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] is not None else np.ones((m, cg))
        # outputs connected to each input channel: its group's output channels, minus masked pairs
        conn = np.zeros(x.shape[1], np.int64)
        for c in range(x.shape[1]):
            grp = c // cg
            conn[c] = int(np.count_nonzero(mask[grp * (m // g):(grp + 1) * (m // g), c % cg]))
        spatial = np.ones((), np.int64)
        for i in range(nd):
            cov = _cover(x.shape[2 + i], out_dims[i], w.shape[2 + i], strides[i], pads[i], dil[i])
            spatial = np.multiply.outer(spatial, cov)
        return conn.reshape((-1,) + (1,) * nd) * spatial
    if node.op == "Dense":
        return np.full(x.sample_shape, graph.param(node.inputs[1]).shape[0], np.int64)
    if node.op == "MatMul":
        b = node.inputs[1].type
        return np.full(x.sample_shape, b.shape[-1] if b.rank > 1 else 1, np.int64)
    if node.op == "ScaleShift":
        return np.ones(x.sample_shape, np.int64)
    raise ValueError(node.op)


def synaptic_nodes(graph: Graph) -> list[Node]:
    """Nodes that apply weights to a per-step input (where synaptic operations happen)."""
    return [n for n in graph.nodes if n.op in ("Conv", "Dense", "MatMul", "ScaleShift")
            and n.inputs[0].type.domain != Domain.ANALOG]


def neuron_nodes(graph: Graph) -> list[Node]:
    return [n for n in graph.nodes if n.op in ("IF", "Encode") and n.output.type.domain == Domain.SPIKE]


# ------------------------------------------------------------------- results
@dataclass
class Counters:
    """Per-sample counters of one checkpoint, from a simulator."""

    scores: list[np.ndarray]
    steps: np.ndarray
    spikes: dict[str, np.ndarray] = field(default_factory=dict)
    synops: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class SweepPoint:
    timesteps: int
    scores: Any
    stats: dict[str, Any]


class SpikingProgram(Program):
    """A spiking program: ``run`` at the compiled timesteps, or ``sweep`` several at once."""

    spiking = True
    memory_budget = 1 << 30

    def __init__(self, graph: Graph, options: Mapping[str, Any], source: str | None = None,
                 analog: Graph | None = None):
        super().__init__(graph, options, source, companions={"analog": analog} if analog is not None else None)
        self._analog_program = None
        self.synaptic = synaptic_nodes(graph)
        self.fanouts = {n.name: fanout(n, graph) for n in self.synaptic}
        self.neurons = neuron_nodes(graph)
        self.mac_inputs = {n.name for n in self.synaptic if n.inputs[0].type.domain == Domain.CURRENT}

    # ------------------------------------------------------------------ api
    def analog(self):
        """The analog network this program was converted from, as a numpy Program (for side-by-side runs)."""
        if "analog" not in self.companions:
            raise IRCError("this program was saved without its analog network")
        if self._analog_program is None:
            from irc.driver import compile as irc_compile

            self._analog_program = irc_compile(self.companions["analog"], target="numpy")
        return self._analog_program

    def to_nir(self, path: str | None = None, *, lossy: bool = False, dt: float | None = None):
        """This program as a ``nir.NIRGraph`` (written to ``path`` if given); see irc.backends.nir_export."""
        from .nir_export import to_nir

        return to_nir(self, path, lossy=lossy, **({} if dt is None else {"dt": dt}))

    def run(self, *inputs, timesteps: int | None = None, batch_size: int | None = None, progress=None, **named):
        """Scores after ``timesteps`` steps (default: the compiled value); sets ``stats``."""
        point = self.sweep(*inputs, timesteps=[timesteps or int(self.options["timesteps"])],
                           batch_size=batch_size, progress=progress, **named)[0]
        self.stats = point.stats
        return point.scores

    def sweep(self, *inputs, timesteps: list[int], batch_size: int | None = None, progress=None,
              **named) -> list[SweepPoint]:
        """One simulation of max(timesteps) steps, read out at every requested T."""
        checkpoints = sorted({int(t) for t in timesteps})
        if not checkpoints or checkpoints[0] < 1:
            raise IRCError(f"timesteps must be positive, got {timesteps}")
        feeds = bind_inputs(self.graph, inputs, named)
        n = len(next(iter(feeds.values())))
        chunk = batch_size or self.options.get("batch_size") or self.auto_chunk(checkpoints[-1])
        parts: list[list[Counters]] = []
        for start in range(0, n, chunk):
            sub = {k: v[start:start + chunk] for k, v in feeds.items()}
            parts.append(self._simulate(sub, start, checkpoints))
            if progress is not None:
                progress(min(start + chunk, n), n)
        points = []
        for k, tk in enumerate(checkpoints):
            counters = [p[k] for p in parts]
            scores = [np.concatenate([c.scores[i] for c in counters]) for i in range(len(counters[0].scores))]
            points.append(SweepPoint(tk, scores[0] if len(scores) == 1 else scores,
                                     self._stats(tk, n, counters)))
        return points

    def auto_chunk(self, timesteps: int) -> int:
        largest = max([v.type.static_size() for n in self.graph.nodes for v in n.outputs] + [1])
        per_sample = timesteps * largest * 4 * 6
        return int(max(1, min(4096, self.memory_budget // per_sample)))

    def _simulate(self, feeds: dict[str, np.ndarray], offset: int, checkpoints: list[int]) -> list[Counters]:
        raise NotImplementedError

    # ---------------------------------------------------------------- stats
    def _stats(self, timesteps: int, n: int, counters: list[Counters]) -> dict[str, Any]:
        steps = np.concatenate([c.steps for c in counters])
        layers = {}
        total_spikes = 0
        for node in self.neurons:
            spikes = int(sum(c.spikes[node.name].sum() for c in counters))
            neurons = node.output.type.static_size()
            layers[node.name] = {"kind": "input" if node.op == "Encode" else "neuron", "neurons": neurons,
                                 "spikes": spikes, "rate": spikes / max(1, neurons * steps.sum())}
            if node.op == "IF":
                total_spikes += spikes
        ac = mac = 0
        per_layer_synops = {}
        for node in self.synaptic:
            ops = int(sum(c.synops[node.name].sum() for c in counters))
            per_layer_synops[node.name] = ops
            if node.name in self.mac_inputs:
                mac += ops
            else:
                ac += ops
        analog_macs = int(self.graph.meta.get("analog_macs", 0)) * n
        virtual = int(self.graph.meta.get("virtual_synapses", 0))
        sops = ac + mac
        return {
            "timesteps": timesteps,
            "samples": n,
            "mean_timesteps": float(steps.mean()) if n else 0.0,
            "spikes": total_spikes,
            "layers": layers,
            "synaptic_ops": sops,
            "synaptic_ops_ac": ac,
            "synaptic_ops_mac": mac,
            "synaptic_ops_per_layer": per_layer_synops,
            "macs": analog_macs,
            "sops_per_mac": sops / analog_macs if analog_macs else float("nan"),
            "read_events_per_virtual_synapse": sops / virtual / n if virtual and n else float("nan"),
            "energy_pj": {"snn": ac * E_AC_PJ + mac * E_MAC_PJ, "ann": analog_macs * E_MAC_PJ,
                          "model": ENERGY_MODEL},
        }
