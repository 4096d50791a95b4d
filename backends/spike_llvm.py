"""The ``spike-llvm`` target: event-driven spiking code, JIT-compiled with llvmlite.

The generated function (see irc.backends.llvm.codegen) simulates a range of
samples; the program splits a batch across all cores and calls it from
Python threads (ctypes releases the GIL), each with its own scratch memory.
Compiled machine code is cached on disk by the IR's hash and the CPU.
"""
from __future__ import annotations

import ctypes
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from irc.errors import IRCError
from irc.options import Option

from .spiking_common import Counters, SpikingBackend, SpikingProgram

_P = ctypes.c_void_p
_I = ctypes.c_int64


def aligned_zeros(nbytes: int, align: int = 64) -> np.ndarray:
    """A zeroed byte buffer whose data starts on an ``align``-byte boundary."""
    raw = np.zeros(nbytes + align, np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start:start + nbytes]


class SpikeLLVMProgram(SpikingProgram):
    target = "spike-llvm"
    source_suffix = ".ll"

    def __init__(self, graph, options, analog=None):
        from .llvm.codegen import ENTRY, generate, internal_of_nchw
        from .llvm.jit import compile_cached

        start = time.perf_counter()
        text, plan = generate(graph)
        super().__init__(graph, options, source=text, analog=analog)
        self.plan = plan
        self.consts = aligned_zeros(plan.consts.size)
        self.consts[:] = plan.consts.build()[:plan.consts.size]
        compiled = compile_cached(text, use_cache=bool(options.get("cache", True)))
        self._compiled = compiled  # keeps the machine code alive
        self._fn = compiled.function(ENTRY, None, _P, _P, _P, _I, _I, _I, _I, _P, _I, _P, _P, _P)
        self.compile_seconds = time.perf_counter() - start
        self.compiled_from_cache = compiled.from_cache
        readout_in = graph.find("Readout")[0].inputs[0].type
        self._out_type = readout_in
        self._out_order = internal_of_nchw(readout_in)  # NCHW position -> internal index
        self.threads = int(options.get("threads") or os.cpu_count() or 1)

    def auto_chunk(self, timesteps: int) -> int:
        return 1 << 16  # state lives in per-thread scratch; only the outputs grow with the batch

    def _simulate(self, feeds, offset, checkpoints):
        x = np.ascontiguousarray(feeds[self.graph.inputs[0].name], dtype=np.float32)
        n = len(x)
        k = len(checkpoints)
        cps = np.asarray(checkpoints, np.int64)
        out_size = self._out_type.static_size()
        nc = len(self.plan.counters)
        scores = np.zeros((k, n, out_size), np.float32)
        steps = np.zeros((k, n), np.int64)
        counters = np.zeros((k, n, nc), np.int64)
        threads = max(1, min(self.threads, n))
        bounds = np.linspace(0, n, threads + 1).astype(np.int64)

        def work(i: int) -> None:
            scratch = aligned_zeros(self.plan.scratch.size)
            self._fn(self.consts.ctypes.data, scratch.ctypes.data, x.ctypes.data, int(bounds[i]), int(bounds[i + 1]),
                     n, offset, cps.ctypes.data, k, scores.ctypes.data, steps.ctypes.data, counters.ctypes.data)

        if threads == 1:
            work(0)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, range(threads)))
        sample_shape = self._out_type.sample_shape
        results = []
        for j in range(k):
            s = scores[j][:, self._out_order].reshape((n,) + sample_shape)
            spikes = {name[7:]: counters[j, :, i] for i, name in enumerate(self.plan.counters) if name.startswith("spikes:")}
            synops = {name[7:]: counters[j, :, i] for i, name in enumerate(self.plan.counters) if name.startswith("synops:")}
            results.append(Counters([s], steps[j].copy(), spikes, synops))
        return results


class SpikeLLVMBackend(SpikingBackend):
    target = "spike-llvm"
    summary = "event-driven spiking code generated as LLVM IR and JIT-compiled (llvmlite); all cores"
    options = {**SpikingBackend.options,
               "threads": Option("int", None, "worker threads (default: all cores)", minimum=1, maximum=4096),
               "cache": Option("bool", True, "reuse compiled machine code from the on-disk cache")}

    @classmethod
    def lowering_table(cls):
        from .llvm.codegen import LOWER

        return LOWER

    @classmethod
    def available(cls):
        try:
            import llvmlite.binding  # noqa: F401
        except ImportError as e:
            return False, f"llvmlite is not installed ({e})"
        return True, ""

    def build(self, graph, options, ctx=None):
        ok, why = self.available()
        if not ok:
            raise IRCError(f"spike-llvm is unavailable: {why}", hint="pip install llvmlite")
        return SpikeLLVMProgram(graph, options, analog=self.analog_of(ctx))
