"""Compile LLVM IR text to machine code for this CPU, with an on-disk cache.

All LLVM use goes through here: one target machine per process (host CPU and
features), the new pass manager at O3 with loop and SLP vectorisation, MCJIT
loading an object file.  The cache key is a hash of the IR text, the CPU, its
features and the llvmlite version, so a cached object is only reused where it
was built for.  Cache folder: $IRC_CACHE_DIR, else $XDG_CACHE_HOME/irc, else
~/.cache/irc.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass

_LOCK = threading.Lock()
_TM = None


def cache_dir() -> str:
    base = os.environ.get("IRC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "irc")
    return os.path.join(base, "llvm")


def _new_target_machine():
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3, codemodel="jitdefault")


def _target_machine():
    """The process's target machine for optimising and emitting code (never handed to an engine)."""
    global _TM
    if _TM is None:
        _TM = _new_target_machine()
    return _TM


def cache_key(ir_text: str) -> str:
    import llvmlite
    import llvmlite.binding as llvm

    h = hashlib.sha256()
    for part in (ir_text, llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten(), llvmlite.__version__):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def compile_object(ir_text: str) -> bytes:
    """Parse, verify, optimise (O3, vectorised) and emit an object file."""
    import llvmlite.binding as llvm

    tm = _target_machine()
    mod = llvm.parse_assembly(ir_text)
    mod.verify()
    pto = llvm.PipelineTuningOptions(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return tm.emit_object(mod)


@dataclass
class Compiled:
    """A loaded object: keep it referenced for as long as its functions are called."""

    engine: object
    object_code: bytes
    from_cache: bool

    def function(self, name: str, restype, *argtypes):
        addr = self.engine.get_function_address(name)
        if not addr:
            raise RuntimeError(f"symbol {name} not found in the compiled object")
        return ctypes.CFUNCTYPE(restype, *argtypes)(addr)


def compile_cached(ir_text: str, use_cache: bool = True) -> Compiled:
    """Machine code for ``ir_text``: from the cache when it is there, else compiled (and stored)."""
    import llvmlite.binding as llvm

    with _LOCK:
        path = os.path.join(cache_dir(), cache_key(ir_text) + ".o")
        obj = None
        if use_cache and os.path.exists(path):
            with open(path, "rb") as f:
                obj = f.read()
        from_cache = obj is not None
        if obj is None:
            obj = compile_object(ir_text)
            if use_cache:
                try:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
                    with os.fdopen(fd, "wb") as f:
                        f.write(obj)
                    os.replace(tmp, path)
                except OSError:
                    pass  # a read-only cache folder only costs the next compile
        empty = llvm.parse_assembly("")
        empty.triple = llvm.get_process_triple()
        # an execution engine owns the target machine it is given: each gets its own
        engine = llvm.create_mcjit_compiler(empty, _new_target_machine())
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        engine.finalize_object()
        return Compiled(engine, obj, from_cache)
