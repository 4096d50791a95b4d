"""The ``numpy`` target: the analog network as a generated, readable numpy module.

The generated module holds the kernels of :mod:`irc.ops.kernels` (copied
verbatim: the same functions that define the IR's semantics) and the
channels-last formulations of :mod:`irc.ops.kernels_nhwc`, one ``run``
function with a line per node (its formulation chosen at compile time by
:mod:`irc.backends.numpy_lowering`), and a small ``__main__``.  It needs only
numpy and the weights ``.npz`` written beside it (the JIT kernels it may call
are imported from irc when irc is there, the numpy formulations stand in
otherwise).  The Program runs exactly that source.
"""
from __future__ import annotations

import builtins
import io
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from irc import __version__
from irc.backend import Backend
from irc.graph import Graph
from irc.naming import sanitize
from irc.ops import kernels, kernels_nhwc
from irc.program import Program

from irc.options import Option

from .numpy_lowering import JIT_KERNELS, KERNEL_MODES, LOWER, Lowering, literal  # noqa: F401 (literal: API)

KERNELS_SOURCE = Path(kernels.__file__).read_text()
NHWC_SOURCE = Path(kernels_nhwc.__file__).read_text()


def embedded(module_source: str) -> str:
    """A kernels module's source without its import block (the generated module has those names already)."""
    head, sep, rest = module_source.partition("# --- imports:")
    if not sep:
        return module_source
    return head + rest.partition("# --- end imports\n")[2]


def extra_kernel_sources(graph: Graph) -> str:
    """The source of every kernel given as a function object (ops declared outside irc.ops.kernels), embedded so
    the generated module still needs numpy alone."""
    import inspect
    import textwrap

    from irc.ops import get_op

    found = {}
    for n in graph.nodes:
        opdef = get_op(n.op)
        if opdef.kernel is not None and not isinstance(opdef.kernel, str):
            found[opdef.kernel_name] = textwrap.dedent(inspect.getsource(type(opdef).kernel))
    return "\n\n".join(found.values())


def jit_imports(names: set[str]) -> str:
    if not names:
        return ""
    imports = ", ".join(f"{JIT_RUNTIME[n]} as {n}" for n in sorted(names))
    fallbacks = "".join(f"    {n} = {JIT_KERNELS[n]}\n" for n in sorted(names))
    return (f"\ntry:  # the JIT-compiled kernels (irc, llvmlite); without irc the numpy formulations stand in\n"
            f"    from irc.backends.llvm.conv_kernels import {imports}\n"
            f"except ImportError:\n{fallbacks}")


def threaded_entry(graph: Graph, inputs: list[str]) -> str:
    """``run``: BLAS on one thread per call, the batch split over threads when every input and output has one."""
    args = ", ".join(inputs)
    splits = all(v.type.has_batch for v in graph.inputs) and all(v.type.has_batch for v in graph.outputs)
    call = (f"run_in_threads(run_batch, W, [{args}], threads or THREADS, MIN_ROWS, CHUNK)" if splits
            else f"run_batch(W, {args})")
    return f'''THREADS = os.cpu_count() or 1
MIN_ROWS = {MIN_ROWS_PER_THREAD}  # smaller batches run in one thread (the JIT kernels split their rows instead)
CHUNK = {batch_chunk(graph)}  # samples per call of run_batch (0: all): its largest activation stays in cache


def run(W, {args}, threads=None):
    """Run the network; W maps weight names to arrays (see load_weights).

    The batch is split over ``threads`` Python threads (numpy and BLAS
    release the GIL), each calling BLAS single-threaded.
    """
    with single_threaded_blas():
        return {call}

'''


MIN_ROWS_PER_THREAD = 8
CHUNK_BYTES = 1 << 20
"""A thread runs its part of the batch in chunks whose largest activation is about this big, so that each
layer reads its input from cache rather than memory (measured, one thread, 128 samples: ResNet-8 91 -> 41 ms
in chunks of 8, DS-CNN 33 -> 26 ms in chunks of 32, MobileNetV2 96x96 best in chunks of 4)."""
MIN_CHUNK = 4
"""Fewer samples per call and the per-node call overhead outweighs the cache (MobileNetV2: chunks of 1 and 2
slower than 4)."""


def batch_chunk(graph: Graph) -> int:
    """Samples per run_batch call: CHUNK_BYTES over the largest activation of one sample (0: no limit, where a
    sample's size is not known at compile time)."""
    largest = 0
    for node in graph.nodes:
        for v in node.outputs:
            if not v.type.has_batch:
                continue  # not per sample (a shape, a constant)
            shape = v.type.sample_shape
            if not all(isinstance(d, int) for d in shape):
                return 0
            largest = max(largest, int(np.prod(shape, dtype=np.int64)) * v.type.np_dtype.itemsize)
    return max(MIN_CHUNK, CHUNK_BYTES // max(largest, 1))


JIT_RUNTIME = {"jit_depthwise": "depthwise_conv2d", "jit_conv": "direct_conv2d", "jit_few_outputs": "few_outputs_conv2d",
               "jit_max_pool": "max_pool2d", "jit_avg_pool": "avg_pool2d"}


def generate(graph: Graph, kernels: str = "llvm") -> tuple[str, dict[str, np.ndarray]]:
    """Generate the module source; returns it and the weights it reads, by key."""
    low = Lowering(graph, kernels).lower()
    in_doc = ", ".join(f"{n}: {v.type}" for n, v in zip(low.inputs, graph.inputs))
    out_doc = ", ".join(str(v.type) for v in graph.outputs)
    name = sanitize(graph.name)
    sources = KERNELS_SOURCE if kernels == "reference" else KERNELS_SOURCE + "\n\n" + embedded(NHWC_SOURCE)
    entry, body_name = "", "run"
    if kernels != "reference":
        entry, body_name = threaded_entry(graph, low.inputs), "run_batch"
    src = f'''"""{name}: generated by irc {__version__} (target numpy, kernels={kernels}).

Needs numpy and the weights .npz of the same name beside this module.
    python {name}.py INPUT.npy      prints the predicted class of each sample
Inputs: {in_doc}
Outputs: {out_doc}
"""
import os
import sys

{sources}
{extra_kernel_sources(graph)}
{jit_imports(low.jit)}

# ----------------------------------------------------------------- network
{entry}
def {body_name}(W, {", ".join(low.inputs)}):
    """Run the network; W maps weight names to arrays (see load_weights)."""
{chr(10).join(low.lines)}
    return [{", ".join(low.returns)}]


def load_weights(path=None):
    path = path or os.path.splitext(os.path.abspath(__file__))[0] + ".npz"
    with np.load(path, allow_pickle=False) as f:
        return {{k: f[k] for k in f.files}}


if __name__ == "__main__":
    weights = load_weights()
    inputs = [np.load(p, allow_pickle=False).astype(np.float32) for p in sys.argv[1:]]
    result = run(weights, *inputs)[0]
    print(result.reshape(len(result), -1).argmax(axis=1))
'''
    return src, low.weights


class NumpyProgram(Program):
    target = "numpy"
    source_suffix = ".py"

    def __init__(self, graph: Graph, options: Mapping[str, Any]):
        source, self._weights = generate(graph, options.get("kernels", "llvm"))
        super().__init__(graph, options, source)
        namespace: dict[str, Any] = {"__name__": f"irc_generated_{sanitize(graph.name)}", "__file__": "<irc>"}
        exec(builtins.compile(source, f"<irc numpy: {sanitize(graph.name)}>", "exec"), namespace)
        self._fn = namespace["run"]

    def _run_chunk(self, feeds, offset):
        inputs = [feeds[v.name] for v in self.graph.inputs]
        if self.options.get("kernels") == "reference":
            return self._fn(self._weights, *inputs)
        return self._fn(self._weights, *inputs, threads=self.options.get("threads"))

    def weights_npz(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **self._weights)
        return buf.getvalue()

    def write_source(self, path: str) -> list[str]:
        """Write the module and its weights beside it; returns the paths written."""
        stem = os.path.splitext(path)[0]
        with open(stem + ".py", "w") as f:
            f.write(self.source or "")
        with open(stem + ".npz", "wb") as f:
            f.write(self.weights_npz())
        return [stem + ".py", stem + ".npz"]


class NumpyBackend(Backend):
    target = "numpy"
    summary = "the analog network as generated numpy source (numpy only)"
    options = {
        **Backend.options,
        "kernels": Option("str", "llvm", "llvm: JIT-compiled kernels where numpy is slow (depthwise convs), numpy: "
                          "numpy formulations only, reference: one kernels.py call per node, channels-first",
                          choices=KERNEL_MODES, nullable=False),
        "threads": Option("int", None, "threads to split a batch over (default: all cores)", minimum=1,
                          maximum=4096),
    }

    @classmethod
    def lowering_table(cls):
        return LOWER

    def pipeline(self, options, graph=None):
        from irc.passes import PIPELINES

        return PIPELINES["analog"]

    def build(self, graph, options, ctx=None):
        return NumpyProgram(graph, options)
