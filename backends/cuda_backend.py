"""The ``cuda`` and ``spike-cuda`` targets: CUDA C generated per network, launched through cupy.

Building a program needs no GPU (``irc compile --emit source`` writes the
.cu anywhere); running it needs cupy and a CUDA GPU, and says so clearly when
they are missing.  Tests without a GPU run the same kernels through a C++
emulation (``use_executor``).
"""
from __future__ import annotations

from typing import Callable

from irc.backend import Backend
from irc.errors import IRCError

from .cuda.plan import AnalogPlan, SpikingPlan
from .cuda.runtime import CupyExecutor, availability
from irc.program import Program
from .spiking_common import SpikingBackend, SpikingProgram

ExecutorFactory = Callable[[str, list], object]


class _Executes:
    """Lazy executor: a GPU one on first run, unless a test supplied another."""

    _executor = None
    _factory: ExecutorFactory | None = None

    def use_executor(self, factory: ExecutorFactory) -> None:
        self._factory = factory
        self._executor = None

    def executor(self):
        if self._executor is None:
            if self._factory is not None:
                self._executor = self._factory(self.source, self.plan.module.kernels)
            else:
                ok, why = availability()
                if not ok:
                    raise IRCError(f"target {self.target!r} cannot run here: {why}",
                                   hint="compile with --emit source to get the .cu, or run on spike-llvm / numpy")
                self._executor = CupyExecutor(self.source, self.plan.module.kernels)
        return self._executor


class CudaProgram(_Executes, Program):
    target = "cuda"
    source_suffix = ".cu"

    def __init__(self, graph, options):
        self.plan = AnalogPlan(graph)
        super().__init__(graph, options, source=self.plan.module.source())

    def _run_chunk(self, feeds, offset):
        return self.plan.run(self.executor(), feeds)


class SpikeCudaProgram(_Executes, SpikingProgram):
    target = "spike-cuda"
    source_suffix = ".cu"

    def __init__(self, graph, options, analog=None):
        self.plan = SpikingPlan(graph)
        super().__init__(graph, options, source=self.plan.module.source(), analog=analog)

    def _simulate(self, feeds, offset, checkpoints):
        return self.plan.run(self.executor(), feeds[self.graph.inputs[0].name], offset, checkpoints)


class CudaBackend(Backend):
    target = "cuda"
    summary = "the analog network as CUDA kernels generated per network (cupy)"

    @classmethod
    def lowering_table(cls):
        from .cuda.plan import KERNELS

        return KERNELS

    @classmethod
    def available(cls):
        return availability()

    def pipeline(self, options, graph=None):
        from irc.passes import PIPELINES

        return PIPELINES["analog"]

    def build(self, graph, options, ctx=None):
        return CudaProgram(graph, options)


class SpikeCudaBackend(SpikingBackend):
    target = "spike-cuda"
    summary = "the spiking network as CUDA kernels: batched synaptic products, neurons scanning time (cupy)"

    @classmethod
    def lowering_table(cls):
        from .cuda.plan import SPIKING

        return SPIKING

    @classmethod
    def available(cls):
        return availability()

    def build(self, graph, options, ctx=None):
        return SpikeCudaProgram(graph, options, analog=self.analog_of(ctx))
