"""The ``spike-numpy`` target: the clock-driven reference simulator.

It evaluates the spiking IR with the ops' own semantics (irc.ops.spiking and
the analog kernels), layer by layer over all timesteps at once: a value is an
array (T, N, ...), stateless ops see the T*N steps as one batch, stateful ops
run their recurrence over T.  With no synaptic delay this is the same as
stepping the whole network T times, and much faster in numpy.  An early
decision (terminate_delta) is applied at readout: scores and statistics are
those of the steps each sample used.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from irc.graph import Graph, Node
from irc.interp import Interpreter
from irc.lowering import LoweringTable
from irc.ops import get_op
from irc.ops.spiking import IF, Encode, GatedMaxPool, Readout
from irc.types import Domain

from .spiking_common import Counters, SpikingBackend, SpikingProgram

Simulation = Callable[["_SpikeRun", Node, list], list]
SIMULATE: LoweringTable[Simulation] = LoweringTable("spike-numpy")


def _steps_mask(steps: np.ndarray, timesteps: int) -> np.ndarray:
    """(T, N) 1.0 where step t < steps[n]."""
    return (np.arange(timesteps)[:, None] < steps[None, :]).astype(np.float64)


class _SpikeRun(Interpreter):
    """One simulation of a chunk of samples: every value is a (T, N, ...) array (constants as they are)."""

    def __init__(self, prog: "SpikeNumpyProgram", offset: int, checkpoints: list[int], keep: dict | None):
        super().__init__(prog.graph)
        self.prog = prog
        self.offset = offset
        self.checkpoints = checkpoints
        self.timesteps = checkpoints[-1]
        self.keep = keep
        self.readouts: list[list] = []
        self.spikes_t: dict[str, np.ndarray] = {}   # node -> (T, N) events per step
        self.synops_t: dict[str, np.ndarray] = {}   # node -> (T, N) synaptic ops per step
        self.args: list = []

    def run_node(self, node: Node, args: list) -> list:
        self.args = args
        return SIMULATE.lower(node)(self, node, args)

    def after_node(self, node: Node, outs: list) -> None:
        out = outs[0]
        fanouts = self.prog.fanouts
        if node.name in fanouts:
            x = self.args[0]
            once = _time_invariant(x)  # computed once (_per_step), so counted once: at the first step
            rows = x[:1] if once else x
            nz = (rows != 0).reshape(rows.shape[0], rows.shape[1], -1).astype(np.float64)
            ops = nz @ fanouts[node.name].reshape(-1).astype(np.float64)
            if once:
                ops = np.concatenate([ops, np.zeros((x.shape[0] - 1,) + ops.shape[1:])])
            self.synops_t[node.name] = ops
        if node.name in self.prog.neuron_names:
            self.spikes_t[node.name] = np.abs(out).reshape(out.shape[0], out.shape[1], -1).sum(axis=2)
        if self.keep is not None and node.output.type.domain == Domain.SPIKE and out.dtype == np.float32:
            self.keep[node.name] = np.array(out)

    def counters(self) -> list[Counters]:
        results = []
        for k, tk in enumerate(self.checkpoints):
            scores = [r[k][0] for r in self.readouts]
            steps = self.readouts[0][k][1]
            mask = _steps_mask(steps, self.timesteps)
            results.append(Counters(
                scores, steps,
                {name: (s * mask).sum(axis=0) for name, s in self.spikes_t.items()},
                {name: np.rint((s * mask).sum(axis=0)).astype(np.int64) for name, s in self.synops_t.items()}))
        return results


@SIMULATE.register("Encode")
def _encode(run: _SpikeRun, node: Node, args: list) -> list:
    return [Encode.simulate(args[0], node.attrs, run.timesteps, run.offset)]


@SIMULATE.register("IF")
def _neuron(run: _SpikeRun, node: Node, args: list) -> list:
    return [IF.simulate(args[0], args[1], node.attrs)]


@SIMULATE.register("GatedMaxPool")
def _gated_max_pool(run: _SpikeRun, node: Node, args: list) -> list:
    return [GatedMaxPool.simulate(args[0], node.attrs)]


@SIMULATE.register("Readout")
def _readout(run: _SpikeRun, node: Node, args: list) -> list:
    run.readouts.append(Readout.simulate(args[0], node.attrs, run.checkpoints))
    return [None]


def _time_invariant(x: np.ndarray) -> bool:
    """A (T, N, ...) value that is the same at every step: a broadcast view, stride 0 over T."""
    return x.ndim > 0 and x.strides[0] == 0


@SIMULATE.register_trait("per-step op with a numpy kernel", lambda op: op.kernel is not None and not op.spiking)
def _per_step(run: _SpikeRun, node: Node, args: list) -> list:
    """A stateless op: the T steps of every time-varying input are folded into the batch.

    Where every time-varying input is the same at each step (a broadcast view, stride 0 over T: the
    synapses behind a direct 'current' encoding), the op runs once and its result is broadcast: T times
    less work on the first layer, the same numbers.
    """
    timed = [x for v, x in zip(node.inputs, args)
             if not (v is None or v.is_param or v.type.domain == Domain.ANALOG)]
    constant = bool(timed) and all(_time_invariant(x) for x in timed)
    folded = []
    n = None
    for v, x in zip(node.inputs, args):
        if v is None or v.is_param or v.type.domain == Domain.ANALOG:
            folded.append(x)
        elif constant:
            n = x.shape[1]
            folded.append(x[0])
        else:
            n = x.shape[1]
            folded.append(x.reshape((-1,) + x.shape[2:]))
    y = get_op(node.op).reference(folded, node.attrs, node.input_types(), [o.type for o in node.outputs])[0]
    if constant:
        return [np.broadcast_to(y, (run.timesteps,) + y.shape)]
    return [y.reshape((run.timesteps, n) + y.shape[1:])]


class SpikeNumpyProgram(SpikingProgram):
    target = "spike-numpy"

    def __init__(self, graph: Graph, options, source=None, analog=None):
        SIMULATE.check(graph)
        super().__init__(graph, options, source, analog=analog)
        self.neuron_names = {n.name for n in self.neurons}

    def trace(self, *inputs, timesteps: int | None = None, **named) -> dict[str, np.ndarray]:
        """Every spiking layer's events, (T, N, ...) arrays by node name (for raster plots and tests)."""
        from irc.feeds import bind_inputs

        feeds = bind_inputs(self.graph, inputs, named)
        kept: dict[str, np.ndarray] = {}
        self._simulate(feeds, 0, [timesteps or int(self.options["timesteps"])], keep=kept)
        return kept

    def _simulate(self, feeds: dict[str, Any], offset: int, checkpoints: list[int], keep: dict | None = None):
        run = _SpikeRun(self, offset, checkpoints, keep)
        run.run(feeds)
        return run.counters()


class SpikeNumpyBackend(SpikingBackend):
    @classmethod
    def lowering_table(cls):
        return SIMULATE

    target = "spike-numpy"
    summary = "clock-driven spiking simulation in numpy: the reference for the other spiking targets"

    def build(self, graph, options, ctx=None):
        return SpikeNumpyProgram(graph, options, analog=self.analog_of(ctx))
