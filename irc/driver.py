"""The driver: load -> passes -> backend -> Program."""
from __future__ import annotations

import contextlib
import gc
import os
from typing import Any, Callable

from .errors import IRCError
from .graph import Graph
from .registry import backend_for, frontend_for


def load(path: str | os.PathLike, **options: Any) -> Graph:
    """Read a model file (.onnx, .keras, .h5, .ini) into the IR."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise IRCError("file not found", file=path)
    return frontend_for(path)(path, **options)


def compile(model: Graph | str | os.PathLike, target: str = "numpy", *, verify: bool | None = None,
            print_ir: Callable[[str], None] | None = None, **options: Any):
    """Lower ``model`` through the target's pipeline and build a Program.

    ``options`` are the target's (``irc targets`` lists them): e.g.
    ``calibration=x_cal, timesteps=64`` for spiking targets.
    """
    from .passes import PassContext, run_pipeline

    graph = model if isinstance(model, Graph) else load(model)
    backend = backend_for(target)()
    options = backend.check_options(options)
    ctx = PassContext(options=options, print_ir=print_ir)
    if verify is not None:
        ctx.verify = verify
    with _no_gc_pauses():
        lowered = run_pipeline(graph, backend.pipeline(options, graph), ctx)
        return backend.build(lowered, options, ctx=ctx)


@contextlib.contextmanager
def _no_gc_pauses():
    """No cyclic garbage collection while compiling: graphs are webs of references (values <-> nodes), so the
    collector's full passes over an ever larger heap made compile time grow faster than the graph.  Whatever
    compiling leaves behind is collected when it ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
