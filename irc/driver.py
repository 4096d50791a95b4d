"""The driver: load -> passes -> backend -> Program."""
from __future__ import annotations

import contextlib
import gc
import os
from typing import Any, Callable, Mapping

from .errors import IRCError
from .graph import Graph
from .registry import backend_for, frontend_for


SPECIALISING = (".onnx", ".keras", ".h5", ".hdf5")
"""Suffixes whose frontends bind symbolic input dims from ``input_shapes`` (irc/shapes.py)."""


def load(path: str | os.PathLike, *, input_shapes: Mapping[Any, Any] | None = None, **options: Any) -> Graph:
    """Read a model file (.onnx, .keras, .h5, .ini) into the IR.

    ``input_shapes`` (``{"x": (1, 3, 224, 224)}``) binds an input's symbolic non-batch dims; without it such a
    model loads unspecialised and is compiled per input shape at run time (irc/shapes.py).
    """
    from .shapes import bind_shapes, file_digest, unspecialised

    path = os.fspath(path)
    if not os.path.exists(path):
        raise IRCError("file not found", file=path)
    if input_shapes and path.lower().endswith(SPECIALISING):
        graph = frontend_for(path)(path, input_shapes=input_shapes, **options)
    else:
        graph = frontend_for(path)(path, **options)
        if input_shapes:  # formats with static inputs: the sizes given must be theirs
            try:
                bind_shapes([(v.name, v.type.shape) for v in graph.inputs], input_shapes)
            except IRCError as e:
                raise e.with_file(path)
    if "declared_inputs" in graph.origin:
        graph.origin["recipe"] = {"path": os.path.abspath(path), "options": dict(options),
                                "sha256": file_digest(path) if unspecialised(graph) else None}
    return graph


def compile(model: Graph | str | os.PathLike, target: str = "numpy", *, verify: bool | None = None,
            print_ir: Callable[[str], None] | None = None, **options: Any):
    """Lower ``model`` through the target's pipeline and build a Program.

    ``options`` are the target's (``irc targets`` lists them): e.g.
    ``calibration=x_cal, timesteps=64`` for spiking targets; ``input_shapes`` binds symbolic input dims
    (irc/shapes.py).  A model whose input sizes stay unknown gives a program that compiles itself for each
    input shape it is run on.
    """
    from .passes import PassContext, run_pipeline
    from .shapes import SpecialisingProgram, calibration_shapes, specialise, unspecialised

    input_shapes = options.pop("input_shapes", None)
    graph = model if isinstance(model, Graph) else load(model, input_shapes=input_shapes)
    if input_shapes and isinstance(model, Graph):
        graph = specialise(graph, input_shapes)
    backend = backend_for(target)()
    options = backend.check_options(options)
    if unspecialised(graph):
        if options.get("calibration") is not None:  # spiking targets: the calibration data has the input shape
            graph = specialise(graph, calibration_shapes(graph, options["calibration"]))
        else:
            return SpecialisingProgram(graph, target, options, lambda g: compile(
                g, target, verify=verify, print_ir=print_ir, **options))
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
