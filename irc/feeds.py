"""Binding user inputs to a graph's inputs, with the checks a user needs."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .errors import IRCError
from .stream import check_dtype, shape_error
from .graph import Graph
from .types import BATCH


def bind_inputs(graph: Graph, args: Sequence[Any], kwargs: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Map ``run(*inputs)`` or ``run({name: array})`` onto the graph inputs.

    Arrays are cast to the declared element type; a shape that does not match
    the declared one (batch axis aside) is an IRCError naming the input.
    """
    kwargs = dict(kwargs or {})
    if len(args) == 1 and isinstance(args[0], Mapping):
        kwargs.update(args[0])
        args = ()
    if args and kwargs:
        raise IRCError("give the inputs either by position or by name, not both")
    names = [v.name for v in graph.inputs]
    if args:
        if len(args) != len(names):
            raise IRCError(f"the model takes {len(names)} input(s) ({', '.join(names)}), got {len(args)}")
        kwargs = dict(zip(names, args))
    missing = [n for n in names if n not in kwargs]
    extra = [k for k in kwargs if k not in names]
    if missing or extra:
        raise IRCError(f"inputs {missing} missing / {extra} unknown; the model's inputs are {names}")
    feeds: dict[str, np.ndarray] = {}
    batch = None
    for v in graph.inputs:
        arr = np.asarray(kwargs[v.name])
        want = v.type.shape
        ok = arr.ndim == len(want) and all(isinstance(d, str) or d == a for d, a in zip(want, arr.shape))
        if not ok:
            raise shape_error(v, arr.shape, None)
        check_dtype(v, arr.dtype, None)
        if v.type.has_batch:
            if batch is not None and arr.shape[0] != batch:
                raise IRCError(f"inputs have different batch sizes ({batch} and {arr.shape[0]})")
            batch = arr.shape[0]
        feeds[v.name] = np.ascontiguousarray(arr, dtype=v.type.np_dtype)
    return feeds


def batch_size(graph: Graph, feeds: Mapping[str, np.ndarray]) -> int:
    for v in graph.inputs:
        if v.type.has_batch:
            return int(feeds[v.name].shape[0])
    return 1
