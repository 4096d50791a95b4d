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
from irc.errors import IRCError, UnsupportedError
from irc.feeds import bind_inputs
from irc.graph import Graph, Node
from irc.limits import MAX_WORK
from irc.ops import get_op
from irc.options import MAX_TIMESTEPS, Option
from irc.program import Program
from irc.types import Domain

from .spike_tally import SpikeTally

E_AC_PJ = 0.9
E_MAC_PJ = 4.6
ENERGY_MODEL = "45 nm CMOS, 32-bit float (Horowitz 2014): 0.9 pJ per accumulate, 4.6 pJ per MAC; memory traffic not counted"

SPIKING_OPTIONS: dict[str, Option] = {
    "calibration": Option("array", None, "calibration inputs (array, source layout) that set the thresholds"),
    "timesteps": Option("int", 64, "timesteps per sample", minimum=1, maximum=MAX_TIMESTEPS, nullable=False),
    "encoding": Option("str", None, "input encoding (default: current, or the model's own)",
                       choices=("current", "poisson", "periodic")),
    "thresholds": Option("str", "auto", "calibrated (from calibration data) | model (the file's own, N2D2) | auto",
                         choices=("auto", "calibrated", "model")),
    "threshold": Option("str", "fitted", "how calibrated thresholds are chosen: fitted (per channel, layer by "
                        "layer, for the compiled timesteps) | percentile (the percentile rule below)",
                        choices=("fitted", "percentile")),
    "bias_correction": Option("bool", None, "shift each layer's biases so its mean spiking rate meets the analog "
                              "mean on calibration data (default: on with threshold=fitted)"),
    "output_check": Option("bool", True, "with threshold=fitted: compare the fitted network's outputs with the "
                           "percentile rule's on the calibration data and keep the rule where it is closer to the "
                           "analog outputs"),
    "fit_samples": Option("int", 256, "calibration inputs used to fit thresholds and biases, at most (a seeded "
                          "subsample; fewer at large timesteps, samples x timesteps <= 4096, at least 32)",
                          minimum=1),
    "percentile": Option("float", 99.9, "threshold = this percentile of each layer's positive activations "
                         "(100 = max)", minimum=1e-3, maximum=100.0),
    "per_channel": Option("bool", True, "one threshold per channel (False: one per layer)"),
    "normalize": Option("str", "thresholds", "where the scale lives", choices=("thresholds", "weights")),
    "scale_rounding": Option("str", "none", "thresholds rounded to powers of two (pow2) or not",
                             choices=("none", "pow2")),
    "reset": Option("str", "subtract", "neuron reset", choices=("subtract", "zero")),
    "negative": Option("str", None, "negative events (default corrective: take back over-firing; N2D2 models: "
                       "their own)", choices=("corrective", "none", "bipolar")),
    "neuron_init": Option("float", None, "initial membrane as a fraction of the threshold (default 0.5; N2D2 "
                          "models: 0)", minimum=-10.0, maximum=10.0),
    "decay": Option("float", 1.0, "membrane kept per step (1 = IF, < 1 = LIF)", minimum=1e-9, maximum=1.0),
    "readout": Option("str", None, "potential (non-spiking output layer; the default) | count (spike counts; "
                      "N2D2 models)", choices=("potential", "count")),
    "terminate_delta": Option("float", None, "early decision: stop a sample when its leader is this many "
                              "spikes ahead (0: off)", minimum=0.0),
    "maxpool": Option("str", "gated", "max-pool: gated (by accumulated spike counts) | avg",
                      choices=("gated", "avg")),
    "seed": Option("int", 0, "seed of the random encodings", minimum=0, maximum=2**32 - 1),
    "batch_size": Option("int", None, "samples per chunk (default: sized to keep memory under ~1 GiB)",
                         minimum=1),
}


def is_spiking(graph: Graph) -> bool:
    """Whether the graph is already a spiking network (it has spiking ops): no conversion then."""
    return any(get_op(n.op).spiking for n in graph.nodes)


def spike_pipeline(options: Mapping[str, Any]) -> list[str]:
    from irc.passes import FOUNDATION

    names = FOUNDATION + ["unfuse_activations", "canonicalize_for_spiking", "drop_final_softmax", "calibrate",
                          "fit_thresholds", "correct_bias", "to_spiking"]
    if options.get("normalize", "thresholds") == "weights":
        names.append("thresholds_to_weights")
    return names + ["fold_pooling"]


class SpikingBackend(Backend):
    options = SPIKING_OPTIONS

    @staticmethod
    def analog_of(ctx) -> Graph | None:
        """The analog graph the conversion started from (left in the pass context by calibrate)."""
        return ctx.analog_graph if ctx is not None else None

    def pipeline(self, options, graph=None):
        if graph is not None and any(graph.meta.get("output_batch_axes") or []):
            raise UnsupportedError("a spiking program reads out (batch, classes) scores; this model's output is "
                                   "time-major (its batch axis is not the first)",
                                   hint="compile it for the numpy or cuda target")
        if graph is not None and is_spiking(graph):
            return ["simplify", "fold_constants"]  # a spiking network as it is (NIR, a saved spiking IR)
        return spike_pipeline(options)


# ------------------------------------------------------------------- fan-out
def fanout(node: Node, graph: Graph) -> np.ndarray:
    """Weights each input element of a synaptic node is multiplied by (per-sample shape)."""
    return get_op(node.op).fanout(node, graph.param)


def synaptic_nodes(graph: Graph) -> list[Node]:
    """Nodes that apply weights to a per-step input (where synaptic operations happen)."""
    return [n for n in graph.nodes if get_op(n.op).synaptic and n.inputs[0].type.domain != Domain.ANALOG]


def neuron_nodes(graph: Graph) -> list[Node]:
    """Nodes whose output events are counted per layer: neurons and rate encoders."""
    return [n for n in graph.nodes if get_op(n.op).neuron_kind and n.output.type.domain == Domain.SPIKE]


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
    tally: SpikeTally | None = None
    """The integer totals behind ``stats``; tallies of disjoint batches add up (see irc.evaluate)."""


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
              offset: int = 0, **named) -> list[SweepPoint]:
        """One simulation of max(timesteps) steps, read out at every requested T.

        ``offset`` is the index of the first sample in the whole data set: random encodings are
        seeded per sample index, so a batch run at its offset gets the spikes of the full run.
        """
        checkpoints = sorted({int(t) for t in timesteps})
        if not checkpoints or checkpoints[0] < 1:
            raise IRCError(f"timesteps must be positive, got {timesteps}")
        feeds = bind_inputs(self.graph, inputs, named)
        n = len(next(iter(feeds.values())))
        neurons = sum(v.type.static_size() for node in self.graph.nodes for v in node.outputs)
        MAX_WORK.check(checkpoints[-1] * n * neurons, f"a run of {checkpoints[-1]} timesteps x {n} samples x "
                       f"{neurons:,} values per step")
        chunk = batch_size or self.options.get("batch_size") or self.auto_chunk(checkpoints[-1])
        parts: list[list[Counters]] = []
        for start in range(0, n, chunk):
            sub = {k: v[start:start + chunk] for k, v in feeds.items()}
            parts.append(self._simulate(sub, offset + start, checkpoints))
            if progress is not None:
                progress(min(start + chunk, n), n)
        points = []
        for k, tk in enumerate(checkpoints):
            counters = [p[k] for p in parts]
            scores = [np.concatenate([c.scores[i] for c in counters]) for i in range(len(counters[0].scores))]
            tally = SpikeTally.of(counters)
            points.append(SweepPoint(tk, scores[0] if len(scores) == 1 else scores, self.stats_of(tk, tally), tally))
        return points

    def auto_chunk(self, timesteps: int) -> int:
        largest = max([v.type.static_size() for n in self.graph.nodes for v in n.outputs] + [1])
        per_sample = timesteps * largest * 4 * 6
        return int(max(1, min(4096, self.memory_budget // per_sample)))

    def _simulate(self, feeds: dict[str, np.ndarray], offset: int, checkpoints: list[int]) -> list[Counters]:
        raise NotImplementedError

    # ---------------------------------------------------------------- stats
    def _stats(self, timesteps: int, n: int, counters: list[Counters]) -> dict[str, Any]:
        return self.stats_of(timesteps, SpikeTally.of(counters))

    def stats_of(self, timesteps: int, tally: SpikeTally) -> dict[str, Any]:
        """``prog.stats`` from the integer totals of a run (or of merged batches)."""
        n = tally.samples
        layers = {}
        total_spikes = 0
        for node in self.neurons:
            spikes = tally.spikes.get(node.name, 0)
            neurons = node.output.type.static_size()
            kind = get_op(node.op).neuron_kind
            layers[node.name] = {"kind": kind, "neurons": neurons,
                                 "spikes": spikes, "rate": spikes / max(1, neurons * tally.steps)}
            if kind == "neuron":
                total_spikes += spikes
        ac = mac = 0
        per_layer_synops = {}
        for node in self.synaptic:
            ops = tally.synops.get(node.name, 0)
            per_layer_synops[node.name] = ops
            if node.name in self.mac_inputs:
                mac += ops
            else:
                ac += ops
        analog_macs = int(self.graph.meta.get("analog_macs", 0)) * n
        virtual = int(self.graph.meta.get("virtual_synapses", 0))
        sops = ac + mac
        from irc.meta import meta_json

        fit = meta_json(self.graph, "thresholds")
        return {
            "timesteps": timesteps,
            "thresholds": {"method": fit.get("method"), "fitted_for_timesteps": fit.get("fitted_for_timesteps")},
            "samples": n,
            "mean_timesteps": tally.steps / n if n else 0.0,
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
