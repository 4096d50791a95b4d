"""Running generated kernels on a GPU through cupy.

The module is built once per Program: with NVRTC when cupy has it
(``pip install "cupy-cuda13x[ctk]"``), else with nvcc into a cubin loaded by
``RawModule(path=...)``; cubins are cached on disk by a hash of the source,
the options, the GPU architecture and the toolchain.  Functions are fetched
once.  Without cupy or a GPU the targets say so (``irc targets``) and running
raises an IRCError; generating source needs neither.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile

import numpy as np

from irc.errors import IRCError

from ..llvm.jit import cache_dir as _llvm_cache_dir
from .source import Kernel

BLOCK = 256
OPTIONS = ("-std=c++14",)


def availability() -> tuple[bool, str]:
    try:
        import cupy
    except ImportError:
        return False, "cupy is not installed (pip install 'irc-compiler[cuda]')"
    try:
        if not cupy.cuda.is_available():
            return False, "no CUDA GPU (or driver) is visible to cupy"
    except Exception as e:  # cupy raises CUDARuntimeError without a driver
        return False, f"CUDA is not usable here ({type(e).__name__})"
    return True, ""


def cache_dir() -> str:
    return os.path.join(os.path.dirname(_llvm_cache_dir()), "cuda")


def _nvrtc_available(cupy) -> bool:
    try:
        cupy.cuda.nvrtc.getVersion()
        return True
    except Exception:
        return False


def load_module(source: str):
    """A cupy RawModule for ``source`` (NVRTC, or an nvcc-built cubin from the cache)."""
    import cupy

    if _nvrtc_available(cupy):
        return cupy.RawModule(code=source, options=OPTIONS)
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise IRCError("neither NVRTC nor nvcc is available to compile CUDA code",
                       hint="pip install 'cupy-cuda13x[ctk]' (NVRTC), or install the CUDA toolkit")
    arch = f"sm_{cupy.cuda.Device().compute_capability}"
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([source, " ".join(OPTIONS), arch, version]).encode()).hexdigest()
    path = os.path.join(cache_dir(), key + ".cubin")
    if not os.path.exists(path):
        os.makedirs(cache_dir(), exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            cu = os.path.join(tmp, "k.cu")
            with open(cu, "w") as f:
                f.write(source)
            out = os.path.join(tmp, "k.cubin")
            r = subprocess.run([nvcc, "-cubin", f"-arch={arch}", *OPTIONS, cu, "-o", out], capture_output=True,
                               text=True)
            if r.returncode != 0:
                raise RuntimeError(f"nvcc failed on generated code:\n{r.stderr}")
            shutil.move(out, path)
    return cupy.RawModule(path=path)


class CupyExecutor:
    """Runs a plan's kernels on the current GPU."""

    def __init__(self, module_source: str, kernels: list[Kernel]):
        import cupy

        self.cp = cupy
        self.module = load_module(module_source)
        self.functions = {k.name: self.module.get_function(k.name) for k in kernels}
        self.kernels = {k.name: k for k in kernels}
        self._consts = None

    def constants(self, consts: dict[str, np.ndarray]) -> dict:
        if self._consts is None:
            self._consts = {k: self.cp.asarray(v) for k, v in consts.items()}
        return self._consts

    def upload(self, arr: np.ndarray):
        return self.cp.asarray(arr)

    def zeros(self, shape, dtype):
        return self.cp.zeros(shape, dtype)

    def tile(self, arr, reps: int):
        return self.cp.tile(arr.reshape(-1), reps)

    def download(self, arr) -> np.ndarray:
        return self.cp.asnumpy(arr)

    def launch(self, kernel: Kernel, threads: int, args: list) -> None:
        typed = [np.int64(threads)]
        for (ctype, _), a in zip(kernel.params, args):
            if "*" in ctype:
                typed.append(a)
            elif ctype == "int":
                typed.append(np.int32(a))
            elif ctype == "float":
                typed.append(np.float32(a))
            else:
                typed.append(np.int64(a))
        blocks = max(1, (threads + BLOCK - 1) // BLOCK)
        self.functions[kernel.name]((blocks,), (BLOCK,), tuple(typed))

    def synchronize(self) -> None:
        self.cp.cuda.Device().synchronize()
