"""Shape specialisation: binding a model's symbolic non-batch dims (``['N', 3, 'H', 'W']``) to sizes.

The IR's ops work on concrete dims (only the batch axis ``N`` stays symbolic).  A frontend that meets an
input with other symbolic dims and was given no sizes returns an *unspecialised* graph: its inputs only,
typed with the symbols, and ``origin['recipe']`` saying how to load it again.  Sizes become known

* at compile time: ``irc.load(path, input_shapes={"x": (1, 3, 224, 224)})``,
  ``irc.compile(g, input_shapes=...)`` or ``irc compile --input-shape x=1x3x224x224``; the frontend
  then lowers the model with concrete input types, so its shape arithmetic (Shape/Gather/Concat/If)
  folds to constants;
* from a spiking target's calibration data (its shape is the input's);
* or at run time: :class:`SpecialisingProgram` compiles once per distinct input shape, caches the
  program and says so once on stderr (and the ``irc`` logger).

A saved program is always specialised: saving a :class:`SpecialisingProgram` is an IRCError asking for
``--input-shape`` (an artifact never reloads the model file it came from).
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import IRCError
from .graph import Graph
from .program import Program
from .types import BATCH, Dim, TensorType

log = logging.getLogger("irc")

ShapeSpec = Mapping[Any, Sequence[Any]]
"""``{input name: sizes}``; the name may be None when the model has one input (``--input-shape 1x3x8x8``)."""

Declared = list[tuple[str, tuple[Dim, ...]]]
"""(name, dims) of each model input as the file declares it; a non-batch symbol is a str."""


def is_free(dims: Sequence[Dim]) -> bool:
    """Whether ``dims`` has a symbolic axis other than the batch axis."""
    return any(isinstance(d, str) and not (i == 0 and d == BATCH) for i, d in enumerate(dims))


def unspecialised(graph: Graph) -> bool:
    """Whether ``graph`` is a stub waiting for its input shapes (see the module docstring)."""
    return bool(graph.meta.get("unspecialised"))


def symbol_name(name: str, axis: int) -> str:
    """An IR symbol for a file's dim name (``dim_param``): the name when it is a plain identifier other than
    the batch symbol, else ``d<axis>``."""
    return name if name.isidentifier() and name != BATCH else f"d{axis}"


def parse_input_shape(text: str) -> tuple[str | None, tuple[int, ...]]:
    """``'x=1x3x224x224'`` or ``'1x3x224x224'`` (the model's only input) as (name, sizes)."""
    name, sep, dims = text.rpartition("=")
    parts = dims.strip().lower().split("x")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise IRCError(f"--input-shape {text!r}: sizes must be integers separated by 'x'",
                       hint="e.g. --input-shape x=1x3x224x224 (or 1x3x224x224 for a model with one input)") from None
    return (name.strip() or None) if sep else None, sizes


def bind_shapes(declared: Declared, input_shapes: ShapeSpec | None, where: str = "") -> dict[str, tuple[Dim, ...]]:
    """Each input's dims with the given sizes in place of its symbols (the batch axis stays ``N``).

    Wrong rank, a size that is not a positive integer, a size that contradicts a fixed dim, or an unknown
    input name is an IRCError naming the input.
    """
    out = {name: tuple(dims) for name, dims in declared}
    if not input_shapes:
        return out
    names = [name for name, _ in declared]
    if not isinstance(input_shapes, Mapping):
        raise IRCError(f"input_shapes must map input names to sizes, got {type(input_shapes).__name__}")
    for key, sizes in input_shapes.items():
        if key is None or key == "":
            if len(names) != 1:
                raise IRCError(f"an input shape without a name needs a model with one input; this one has "
                               f"{len(names)} ({', '.join(names)})", hint="write --input-shape NAME=1x3x224x224")
            key = names[0]
        if key not in out:
            raise IRCError(f"input_shapes names {key!r}, which is not an input{where}; the inputs are "
                           f"{', '.join(names)}")
        out[key] = _bind_one(key, dict(declared)[key], sizes)
    return out


def _bind_one(name: str, dims: tuple[Dim, ...], sizes: Sequence[Any]) -> tuple[Dim, ...]:
    try:
        if isinstance(sizes, (str, bytes)):
            raise TypeError
        sizes = tuple(sizes)
    except TypeError:
        raise IRCError(f"the shape given for input {name!r} must be a sequence of sizes, got {sizes!r}") from None
    shown = "x".join(str(s) for s in sizes)
    if len(sizes) != len(dims):
        raise IRCError(f"the shape {shown} given for input {name!r} has rank {len(sizes)}; the input has rank "
                       f"{len(dims)} ({_show(dims)})")
    bound: list[Dim] = []
    for axis, (d, s) in enumerate(zip(dims, sizes)):
        if axis == 0 and d == BATCH and s == BATCH:
            bound.append(BATCH)
            continue
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
            raise IRCError(f"the shape given for input {name!r} has a non-integer size {s!r} on axis {axis}")
        if s <= 0:
            raise IRCError(f"the shape {shown} given for input {name!r} has size {s} on axis {axis}; sizes must "
                           f"be positive")
        if axis == 0 and d == BATCH:
            bound.append(BATCH)  # the batch stays symbolic whatever size is given
        elif isinstance(d, str):
            bound.append(int(s))
        elif d != s:
            raise IRCError(f"the shape {shown} given for input {name!r} has {s} on axis {axis}, where the model "
                           f"fixes {d} ({_show(dims)})")
        else:
            bound.append(d)
    return tuple(bound)


def _show(dims: Sequence[Any]) -> str:
    return "x".join(str(d) for d in dims)


def stub_graph(name: str, declared: Declared, dtypes: Mapping[str, str], source_format: str) -> Graph:
    """The unspecialised graph of a model whose inputs have symbolic non-batch dims: its inputs only."""
    g = Graph(name)
    for n, dims in declared:
        g.add_input(n, TensorType(tuple(dims), dtypes[n]))
    g.meta.update(source_format=source_format, unspecialised=True)
    return g


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def specialise(graph: Graph, input_shapes: ShapeSpec) -> Graph:
    """``graph`` for these input shapes: loaded again from its file (``origin['recipe']``) when they differ from
    the shapes it has."""
    declared: Declared = [(n, tuple(d)) for n, d in graph.origin.get("declared_inputs")
                          or [(v.name, v.type.shape) for v in graph.inputs]]
    bound = bind_shapes(declared, input_shapes)
    if not unspecialised(graph) and all(tuple(v.type.shape) == bound[v.name] for v in graph.inputs):
        return graph
    recipe = graph.origin.get("recipe")
    if recipe is None:
        raise IRCError(f"the graph {graph.name!r} was not loaded from a file, so it cannot be loaded again for "
                       f"other input shapes", hint="load it with irc.load(path, input_shapes=...)")
    return reload(recipe, bound)


def reload(recipe: Mapping[str, Any], shapes: Mapping[str, tuple[Dim, ...]]) -> Graph:
    """Load the recipe's model again with these input shapes."""
    from .driver import load

    if "model" in recipe:  # an in-memory ONNX model (frontends.onnx.from_model)
        from .frontends.onnx import from_model

        return from_model(recipe["model"], name=recipe.get("name"), input_shapes=dict(shapes),
                          **recipe.get("options", {}))
    path = recipe["path"]
    if not os.path.exists(path):
        raise IRCError("the model file is gone; it is needed to compile for a new input shape", file=path)
    if recipe.get("sha256") and file_digest(path) != recipe["sha256"]:
        raise IRCError("the model file changed since it was loaded; load it again", file=path)
    return load(path, input_shapes=dict(shapes), **recipe.get("options", {}))


def shapes_of(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """The input shapes ``feeds`` show, for the inputs that have free dims."""
    return {v.name: tuple(int(s) for s in np.shape(feeds[v.name])) for v in graph.inputs if is_free(v.type.shape)}


def calibration_shapes(graph: Graph, calibration: Any) -> dict[str, tuple[int, ...]]:
    """A spiking target's calibration inputs say the input shape."""
    if isinstance(calibration, Mapping):
        return {k: tuple(np.shape(v)) for k, v in calibration.items()}
    if len(graph.inputs) != 1:
        raise IRCError(f"the model has {len(graph.inputs)} inputs with symbolic sizes; give input_shapes")
    return {graph.inputs[0].name: tuple(np.shape(calibration))}


Compiler = Callable[[Graph], Program]


class SpecialisingProgram(Program):
    """A program for an unspecialised graph: compiled on first use for each distinct input shape (batch aside),
    and kept.  ``specialisations`` maps each shape seen to its program."""

    def __init__(self, graph: Graph, target: str, options: Mapping[str, Any], compiler: Compiler):
        super().__init__(graph, options)
        self.target = target
        self._compiler = compiler
        self.specialisations: dict[tuple, Program] = {}

    def specialised(self, feeds: Mapping[str, np.ndarray]) -> Program:
        """The program for the shapes of ``feeds`` (compiled now if they are new)."""
        batched = {v.name for v in self.graph.inputs if v.type.has_batch}
        shapes = {n: (BATCH, *s[1:]) if n in batched else s for n, s in shapes_of(self.graph, feeds).items()}
        key = tuple(sorted(shapes.items()))
        if key not in self.specialisations:
            text = ", ".join(f"{n}={_show(s)}" for n, s in shapes.items())
            message = f"irc: {self.graph.name}: specialised for {text}; compiling"
            print(message, file=sys.stderr)
            log.info(message)
            self.specialisations[key] = self._compiler(specialise(self.graph, shapes))
        return self.specialisations[key]

    def run(self, *inputs: Any, batch_size: int | None = None, progress=None, **named: Any):
        from .feeds import bind_inputs

        feeds = bind_inputs(self.graph, inputs, named)
        prog = self.specialised(feeds)
        out = prog.run(feeds, batch_size=batch_size, progress=progress)
        self.stats = prog.stats
        return out

    def refuse(self, what: str):
        """The IRCError for what needs the input sizes (saving, writing source, printing the lowered IR)."""
        free = "; ".join(f"{v.name}: {_show(v.type.shape)}" for v in self.graph.inputs if is_free(v.type.shape))
        raise IRCError(f"cannot {what} a program whose input sizes are not known yet ({free})",
                       hint="compile with --input-shape NAME=1x3x224x224 (irc.compile(..., input_shapes={...}))")

    def save(self, path: str) -> None:
        self.refuse("save")

    def write_source(self, path: str) -> list[str]:
        self.refuse("write the source of")
        return []
