"""Small registries that let the core find frontends, targets and passes lazily.

The core never imports a frontend, pass or backend module at import time; it
keeps ``"module:attribute"`` strings and imports on first use.
"""
from __future__ import annotations

import importlib
import os
from typing import Any

from .errors import IRCError

FRONTENDS: dict[str, str] = {
    ".onnx": "irc.frontends.onnx:load",
    ".ini": "irc.frontends.n2d2:load",
    ".keras": "irc.frontends.keras:load",
    ".h5": "irc.frontends.keras:load",
    ".hdf5": "irc.frontends.keras:load",
    ".nir": "irc.frontends.nir_import:load",
}

TARGETS: dict[str, str] = {
    "numpy": "irc.backends.numpy_backend:NumpyBackend",
    "spike-numpy": "irc.backends.spike_numpy:SpikeNumpyBackend",
    "spike-llvm": "irc.backends.spike_llvm:SpikeLLVMBackend",
    "cuda": "irc.backends.cuda_backend:CudaBackend",
    "spike-cuda": "irc.backends.cuda_backend:SpikeCudaBackend",
}


def resolve(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def frontend_for(path: str):
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FRONTENDS:
        raise IRCError(f"no frontend reads {suffix or 'files without a suffix'!r} files",
                       file=path, hint="irc reads " + ", ".join(sorted(FRONTENDS)))
    return resolve(FRONTENDS[suffix])


def backend_for(target: str):
    if target not in TARGETS:
        raise IRCError(f"unknown target {target!r}", hint="irc targets: " + ", ".join(TARGETS))
    return resolve(TARGETS[target])
