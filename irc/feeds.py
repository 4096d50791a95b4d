"""Binding user inputs to a graph's inputs, with the checks a user needs."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .errors import IRCError
from .stream import check_dtype, shape_error
from .graph import Graph


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
    rows = fixed_rows(graph)
    for v in graph.inputs:
        arr = np.asarray(kwargs[v.name])
        want = v.type.shape
        if rows is not None:  # a fixed leading axis: any positive multiple of it, fed that many rows at a time
            ok = (arr.ndim == len(want) and arr.shape[0] > 0 and arr.shape[0] % rows == 0
                  and all(isinstance(d, str) or d == a for d, a in zip(want[1:], arr.shape[1:])))
        else:  # N, or a size not known yet (irc/shapes.py)
            ok = arr.ndim == len(want) and all(isinstance(d, str) or d == a for d, a in zip(want, arr.shape))
        if not ok:
            raise shape_error(v, arr.shape, None)
        check_dtype(v, arr.dtype, None)
        if v.type.has_batch or rows is not None:
            if batch is not None and arr.shape[0] != batch:
                raise IRCError(f"inputs have different batch sizes ({batch} and {arr.shape[0]})")
            batch = arr.shape[0]
        feeds[v.name] = np.ascontiguousarray(arr, dtype=v.type.np_dtype)
    return feeds


def fixed_rows(graph: Graph) -> int | None:
    """The leading size of a model exported without a batch axis (``torch.onnx.export`` without
    ``dynamic_axes`` fixes it at 1): irc feeds such a model that many rows at a time, as the CLI's
    data streams do.  None when an input has a symbolic batch axis or the inputs' leading sizes differ."""
    if not graph.inputs or any(v.type.has_batch for v in graph.inputs):
        return None
    lead = {v.type.shape[0] for v in graph.inputs if v.type.rank > 0}
    if len(lead) != 1 or not all(v.type.rank > 0 for v in graph.inputs) or isinstance(size := lead.pop(), str):
        return None
    return int(size) or None  # a leading size of 0 is an empty tensor (ONNX's empty-set cases), not rows


def batch_size(graph: Graph, feeds: Mapping[str, np.ndarray]) -> int:
    """Samples (rows along axis 0) in ``feeds``: the batch, or the rows given to a fixed-batch model."""
    for v in graph.inputs:
        if v.type.has_batch:
            return int(feeds[v.name].shape[0])
    if fixed_rows(graph) is not None:
        return int(feeds[graph.inputs[0].name].shape[0])
    return 1
