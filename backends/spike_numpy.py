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

import numpy as np

from irc.interp import initial_env, last_uses
from irc.ops import get_op
from irc.ops.spiking import IF, Encode, GatedMaxPool, Readout

from .spiking_common import Counters, SpikingBackend, SpikingProgram


def _steps_mask(steps: np.ndarray, timesteps: int) -> np.ndarray:
    """(T, N) 1.0 where step t < steps[n]."""
    return (np.arange(timesteps)[:, None] < steps[None, :]).astype(np.float64)


class SpikeNumpyProgram(SpikingProgram):
    target = "spike-numpy"

    def trace(self, *inputs, timesteps: int | None = None, **named) -> dict[str, np.ndarray]:
        """Every spiking layer's events, (T, N, ...) arrays by node name (for raster plots and tests)."""
        from irc.feeds import bind_inputs

        feeds = bind_inputs(self.graph, inputs, named)
        kept: dict[str, np.ndarray] = {}
        self._simulate(feeds, 0, [timesteps or int(self.options["timesteps"])], keep=kept)
        return kept

    def _simulate(self, feeds, offset, checkpoints, keep: dict | None = None):
        g = self.graph
        timesteps = checkpoints[-1]
        env = initial_env(g, feeds)
        last_use = last_uses(g)
        spikes_t: dict[str, np.ndarray] = {}   # node -> (T, N) events per step
        synops_t: dict[str, np.ndarray] = {}   # node -> (T, N) synaptic ops per step
        readouts: list[list] = []
        for i, node in enumerate(g.nodes):
            a = node.attrs
            if node.op == "Encode":
                out = Encode.simulate(env[id(node.inputs[0])], a, timesteps, offset)
            elif node.op == "IF":
                out = IF.simulate(env[id(node.inputs[0])], env[id(node.inputs[1])], a)
            elif node.op == "GatedMaxPool":
                out = GatedMaxPool.simulate(env[id(node.inputs[0])], a)
            elif node.op == "Readout":
                readouts.append(Readout.simulate(env[id(node.inputs[0])], a, checkpoints))
                continue
            else:
                out = self._stateless(node, env, timesteps)
            env[id(node.output)] = out
            if node.name in self.fanouts:
                x = env[id(node.inputs[0])]
                nz = (x != 0).reshape(x.shape[0], x.shape[1], -1).astype(np.float64)
                synops_t[node.name] = nz @ self.fanouts[node.name].reshape(-1).astype(np.float64)
            if node in self.neurons:
                spikes_t[node.name] = np.abs(out).reshape(out.shape[0], out.shape[1], -1).sum(axis=2)
            if keep is not None and out.dtype == np.float32 and node.output.type.domain.value == "spike":
                keep[node.name] = np.array(out)
            for v in node.inputs:
                if v is not None and last_use.get(id(v)) == i and not v.is_param:
                    env.pop(id(v), None)
        results = []
        for k, tk in enumerate(checkpoints):
            scores = [r[k][0] for r in readouts]
            steps = readouts[0][k][1]
            mask = _steps_mask(steps, timesteps)
            results.append(Counters(
                scores, steps,
                {name: (s * mask).sum(axis=0) for name, s in spikes_t.items()},
                {name: np.rint((s * mask).sum(axis=0)).astype(np.int64) for name, s in synops_t.items()}))
        return results

    @staticmethod
    def _stateless(node, env, timesteps):
        """A per-step op: the T steps of every time-varying input are folded into the batch."""
        opdef = get_op(node.op)
        args = []
        n = None
        for v in node.inputs:
            if v is None:
                args.append(None)
            elif v.is_param or v.type.domain.value == "analog":
                args.append(env[id(v)])
            else:
                x = env[id(v)]
                n = x.shape[1]
                args.append(x.reshape((-1,) + x.shape[2:]))
        y = opdef.reference(args, node.attrs, node.input_types(), [o.type for o in node.outputs])[0]
        return y.reshape((timesteps, n) + y.shape[1:])


class SpikeNumpyBackend(SpikingBackend):
    target = "spike-numpy"
    summary = "clock-driven spiking simulation in numpy: the reference for the other spiking targets"

    def build(self, graph, options, ctx=None):
        return SpikeNumpyProgram(graph, options, analog=self.analog_of(ctx))
