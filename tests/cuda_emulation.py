"""Run irc's generated CUDA kernels on the CPU, for tests on machines without a GPU.

The kernels are one-dimensional with no shared memory or atomics, so a
header that defines the CUDA built-ins and a launcher that loops over the
thread index run them exactly as written.  Compiled with -ffp-contract=off so
that, like the ``__f*_rn`` intrinsics on the GPU, no multiply-add is fused.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile

import numpy as np

SHIM = r"""
#include <math.h>
#include <stdint.h>
struct irc_dim3 { unsigned int x, y, z; };
static irc_dim3 blockIdx, threadIdx, blockDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
"""

_CTYPES = {"int": ctypes.c_int, "long long": ctypes.c_longlong, "float": ctypes.c_float}
_BUILT: dict[str, ctypes.CDLL] = {}
_DIR = tempfile.mkdtemp(prefix="irc-cuda-emulation-")


def compiler() -> str | None:
    return shutil.which("g++") or shutil.which("clang++")


def launcher(kernel) -> str:
    params = ", ".join(["long long threads"] + [f"{t} {p}" for t, p in kernel.params])
    args = ", ".join(["threads"] + [p for _, p in kernel.params])
    return (f'extern "C" void irc_launch_{kernel.name}({params}) {{\n'
            f"    blockDim.x = 256;\n"
            f"    for (long long k = 0; k < threads; ++k) {{ blockIdx.x = (unsigned)(k / 256); "
            f"threadIdx.x = (unsigned)(k % 256); {kernel.name}({args}); }}\n}}\n")


def build(source: str, kernels) -> ctypes.CDLL:
    text = SHIM + source + "\n" + "\n".join(launcher(k) for k in kernels)
    key = hashlib.sha256(text.encode()).hexdigest()[:20]
    if key not in _BUILT:
        cpp = os.path.join(_DIR, key + ".cpp")
        lib = os.path.join(_DIR, key + ".so")
        with open(cpp, "w") as f:
            f.write(text)
        r = subprocess.run([compiler(), "-O1", "-shared", "-fPIC", "-ffp-contract=off", "-w", "-o", lib, cpp],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("the generated CUDA source does not compile as C++:\n" + r.stderr[-4000:])
        _BUILT[key] = ctypes.CDLL(lib)
    return _BUILT[key]


class EmulatedExecutor:
    """The executor interface of irc.backends.cuda.plan, over numpy arrays and the compiled emulation."""

    def __init__(self, source: str, kernels):
        self.lib = build(source, kernels)
        self._consts = None

    def constants(self, consts):
        if self._consts is None:
            self._consts = {k: np.ascontiguousarray(v) for k, v in consts.items()}
        return self._consts

    def upload(self, arr):
        return np.ascontiguousarray(arr).copy()

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype)

    def tile(self, arr, reps):
        return np.tile(arr.reshape(-1), reps)

    def download(self, arr):
        return np.array(arr)

    def launch(self, kernel, threads, args):
        fn = getattr(self.lib, "irc_launch_" + kernel.name)
        values = [ctypes.c_longlong(threads)]
        for (ctype, _), a in zip(kernel.params, args):
            values.append(ctypes.c_void_p(a.ctypes.data) if "*" in ctype else _CTYPES[ctype](a))
        fn(*values)


def emulate(program) -> None:
    """Make a cuda/spike-cuda program run its kernels on the CPU."""
    program.use_executor(EmulatedExecutor)
