"""ONNX handlers of data-movement ops that irc writes with its own layout ops: Split, Tile, Expand, DepthToSpace,
SpaceToDepth, the non-constant Pad modes (reflect, edge, wrap), and Gather with constant indices.

Each becomes crops (``Pad`` with negative pads), ``Concat``, ``Reshape`` and ``Transpose``, so every target
that runs layout ops runs them, and the spike conversion moves spike trains through them unchanged: a copy of
an element is the same events.  Constant operands fold while loading, as everywhere in frontends/onnx.py.
Registered into :data:`frontends.onnx.HANDLERS` on import (the last lines of frontends/onnx.py).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from irc.errors import IRCError, UnsupportedError
from irc.limits import check_shape
from irc.types import BATCH

from .onnx import SYM_BATCH, _Lowering, attrs_of, handler

NP_PAD_MODES = {"reflect": "reflect", "edge": "edge", "wrap": "wrap"}
"""ONNX Pad modes other than 'constant' and the np.pad mode with the same meaning."""


def shape_of(x) -> tuple:
    return tuple(x.shape) if isinstance(x, np.ndarray) else tuple(x.type.shape)


@contextmanager
def _naming(L: _Lowering, n, output: str):
    """Name what is emitted inside after the ONNX node's output ``output`` (a Split's second part, say)."""
    outer = L.node
    m = type(n)()
    m.CopyFrom(n)
    del m.output[:]
    m.output.append(output)
    L.node = m
    try:
        yield
    finally:
        L.node = outer


def crop(L: _Lowering, x, axis: int, lo: int, hi: int):
    """Elements lo..hi-1 of ``x`` along ``axis`` (a Pad with negative pads; the whole tensor as it is)."""
    shape = shape_of(x)
    if (lo, hi) == (0, shape[axis]):
        return x
    pads = [0] * (2 * len(shape))
    pads[axis], pads[len(shape) + axis] = -lo, -(shape[axis] - hi)
    return L.emit("Pad", [x], {"pads": pads, "value": 0.0})


def gather_runs(L: _Lowering, x, axis: int, index: np.ndarray):
    """``x`` indexed along ``axis`` by the (non-negative) source positions ``index``: one crop per run of
    consecutive positions, concatenated (a single run is just the crop)."""
    runs: list[list[int]] = []
    for i in (int(v) for v in index):
        if runs and i == runs[-1][1]:
            runs[-1][1] += 1
        else:
            runs.append([i, i + 1])
    if not runs:
        return crop(L, x, axis, 0, 0)
    crops: dict[tuple[int, int], object] = {}  # an edge pad repeats one crop: made once
    for run in runs:
        if tuple(run) not in crops:
            crops[tuple(run)] = crop(L, x, axis, *run)
    parts = [crops[tuple(run)] for run in runs]
    return parts[0] if len(parts) == 1 else L.emit("Concat", parts, {"axis": axis})


def _not_batch(shape: tuple, axis: int, what: str) -> None:
    if shape[axis] == BATCH:
        raise UnsupportedError(f"{what} along the batch axis is not supported",
                               hint="every sample is computed on its own; keep the batch axis whole")


def _axis(axis: int, rank: int, what: str) -> int:
    if not -rank <= axis < rank:
        raise IRCError(f"{what} axis {axis} is out of range for rank {rank}")
    return axis % rank


# ------------------------------------------------------------------ Split
@handler("Split")
def Split(L, n):
    """Split into parts along ``axis``: sizes from ``split`` (an attribute before opset 13, an input since),
    ``num_outputs`` (opset 18: equal parts, the last one smaller), or equal parts, one per output."""
    a = attrs_of(n)
    x = L.arg(n, 0)
    shape = shape_of(x)
    axis = _axis(int(a.get("axis", 0)), len(shape), "Split")
    _not_batch(shape, axis, "Split")
    dim = shape[axis]
    if L.opset < 13:
        sizes = list(a["split"]) if "split" in a else None
    else:
        sizes = [int(v) for v in L.const(n, 1, "split")] if L.has(n, 1) else None
    count = len(n.output)
    if sizes is None:
        if "num_outputs" in a:
            count = int(a["num_outputs"])
            if count < 1 or count != len(n.output):
                raise IRCError(f"Split num_outputs={count} but the node has {len(n.output)} outputs")
            step = -(-dim // count)
            sizes = [max(0, min(step, dim - i * step)) for i in range(count)]
        elif dim % count:
            raise IRCError(f"Split of {dim} elements into {count} equal parts is impossible",
                           hint="give the part sizes (the 'split' input)")
        else:
            sizes = [dim // count] * count
    if len(sizes) != len(n.output) or sum(sizes) != dim or min(sizes, default=0) < 0:
        raise IRCError(f"Split sizes {sizes} do not cut axis {axis} of {dim} elements into {len(n.output)} parts")
    out, start = [], 0
    for name, size in zip(n.output, sizes):
        with _naming(L, n, name or n.output[0]):
            out.append(crop(L, x, axis, start, start + size))
        start += size
    return out


# ------------------------------------------------------------- Tile, Expand
def _checked_size(shape: tuple, what: str) -> None:
    """Refuse (irc.limits) an output that a damaged repeat count or pad would make absurdly large, before any
    node is made."""
    check_shape([1 if d == BATCH else d for d in shape], what)


def _repeat(L: _Lowering, x, axis: int, times: int):
    """``x`` repeated ``times`` times along ``axis`` (0 times: an empty axis): Concats of doublings, so a large
    count makes O(log times) nodes of two inputs, not one node of ``times`` inputs."""
    if times == 1:
        return x
    shape = list(shape_of(x))
    shape[axis] *= times
    _checked_size(tuple(shape), f"repeating axis {axis} {times:,} times")
    if times == 0:
        return crop(L, x, axis, 0, 0)
    parts, power = [], x
    while times:
        if times & 1:
            parts.append(power)
        times >>= 1
        if times:
            power = L.emit("Concat", [power, power], {"axis": axis})
    return parts[0] if len(parts) == 1 else L.emit("Concat", parts, {"axis": axis})


@handler("Tile")
def Tile(L, n):
    x = L.arg(n, 0)
    repeats = [int(r) for r in np.asarray(L.const(n, 1, "repeats")).reshape(-1)]
    shape = shape_of(x)
    if isinstance(x, np.ndarray):
        if len(repeats) != x.ndim or any(r < 0 for r in repeats):
            raise IRCError(f"Tile repeats {repeats} do not fit rank {x.ndim}")
        return [np.tile(x, repeats)]
    if len(repeats) != len(shape) or any(r < 0 for r in repeats):
        raise IRCError(f"Tile needs one repeat count >= 0 per axis of {list(shape)}, got {repeats}")
    for axis, r in enumerate(repeats):
        if r != 1:
            _not_batch(shape, axis, "Tile")
            x = _repeat(L, x, axis, r)
    return [x]


@handler("Expand")
def Expand(L, n):
    """Broadcast to ``shape`` (ONNX's two-way rule): an axis of 1 repeats; a target of 1 keeps the input's."""
    x = L.arg(n, 0)
    target = [int(s) for s in np.asarray(L.const(n, 1, "shape")).reshape(-1)]
    if isinstance(x, np.ndarray):
        if SYM_BATCH in target:
            raise UnsupportedError("Expand of a constant to the batch size is not supported")
        return [np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(target))).copy()]
    shape = shape_of(x)
    if len(target) > len(shape):
        if BATCH in shape:
            raise UnsupportedError(f"Expand of {list(shape)} to rank {len(target)} puts axes before the batch axis")
        shape = (1,) * (len(target) - len(shape)) + shape
        x = L.emit("Reshape", [x], {"shape": list(shape)})
    target = [1] * (len(shape) - len(target)) + target
    for axis, (have, want) in enumerate(zip(shape, target)):
        if have == BATCH or want == SYM_BATCH:
            if not (axis == 0 and have == BATCH and want in (SYM_BATCH, 1)):
                raise UnsupportedError(f"Expand of {list(shape)} to {target} changes the batch axis")
        elif want == 1 or want == have:
            continue
        elif have == 1 and want > 1:
            x = _repeat(L, x, axis, want)
        else:
            raise IRCError(f"Expand: {list(shape)} does not broadcast to {target}")
    return [x]


# --------------------------------------------------- DepthToSpace, SpaceToDepth
def _block(L: _Lowering, n, what: str) -> tuple:
    x = L.arg(n, 0)
    b = int(attrs_of(n).get("blocksize", 0))
    shape = shape_of(x)
    if len(shape) != 4:
        raise UnsupportedError(f"{what} needs an (N, C, H, W) input, got rank {len(shape)}")
    if b < 1:
        raise IRCError(f"{what} blocksize must be >= 1, got {b}")
    return x, b, shape


@handler("DepthToSpace")
def DepthToSpace(L, n):
    """ONNX's own definition: reshape to 6-d, transpose (DCR: depth-column-row, or CRD), reshape back."""
    x, b, (_, c, h, w) = _block(L, n, "DepthToSpace")
    mode = attrs_of(n).get("mode", "DCR")
    if c % (b * b):
        raise IRCError(f"DepthToSpace: {c} channels do not divide by blocksize² = {b * b}")
    if mode == "DCR":
        inner, perm = [0, b, b, c // (b * b), h, w], [0, 3, 4, 1, 5, 2]
    elif mode == "CRD":
        inner, perm = [0, c // (b * b), b, b, h, w], [0, 1, 4, 2, 5, 3]
    else:
        raise IRCError(f"DepthToSpace mode must be 'DCR' or 'CRD', got {mode!r}")
    y = L.emit("Reshape", [x], {"shape": inner})
    y = L.emit("Transpose", [y], {"perm": perm})
    return [L.emit("Reshape", [y], {"shape": [0, c // (b * b), h * b, w * b]})]


@handler("SpaceToDepth")
def SpaceToDepth(L, n):
    x, b, (_, c, h, w) = _block(L, n, "SpaceToDepth")
    if h % b or w % b:
        raise IRCError(f"SpaceToDepth: {h}x{w} does not divide by blocksize {b}")
    y = L.emit("Reshape", [x], {"shape": [0, c, h // b, b, w // b, b]})
    y = L.emit("Transpose", [y], {"perm": [0, 3, 5, 1, 2, 4]})
    return [L.emit("Reshape", [y], {"shape": [0, c * b * b, h // b, w // b]})]


# -------------------------------------------------------------------- Pad
def pad_mode(L: _Lowering, x, pads: list[int], mode: str):
    """Pad ``x`` in ``mode`` (reflect, edge, wrap): negative pads crop first; then, per padded axis, the
    source position of every output position (np.pad of an index range) is gathered from crops."""
    if mode not in NP_PAD_MODES:
        raise UnsupportedError(f"Pad mode {mode!r} is not supported (constant, reflect, edge and wrap are)")
    shape = shape_of(x)
    rank = len(shape)
    if len(pads) != 2 * rank:
        raise IRCError(f"Pad needs {2 * rank} pads for rank {rank}, got {len(pads)}")
    if any(p < 0 for p in pads):
        x = L.emit("Pad", [x], {"pads": [min(p, 0) for p in pads], "value": 0.0})
        shape = shape_of(x)
    for axis in range(rank):
        lo, hi = max(pads[axis], 0), max(pads[rank + axis], 0)
        if not lo and not hi:
            continue
        _not_batch(shape, axis, "Pad")
        dim = shape[axis]
        _checked_size(tuple(d + lo + hi if i == axis else d for i, d in enumerate(shape)), f"Pad of axis {axis}")
        if dim == 0 or (mode == "reflect" and dim == 1):
            raise IRCError(f"Pad mode {mode!r} cannot pad an axis of {dim} element(s)")
        index = np.pad(np.arange(dim), (lo, hi), mode=NP_PAD_MODES[mode])
        x = gather_runs(L, x, axis, index)
    return x


# ------------------------------------------------------------------ Gather
def gather_constant_indices(L: _Lowering, n, x, idx: np.ndarray, axis: int):
    """Run-time data indexed by constant indices (``x[:, 0]``, a channel selection): crops along a non-batch
    axis; a scalar index drops the axis."""
    shape = shape_of(x)
    axis = _axis(axis, len(shape), "Gather")
    _not_batch(shape, axis, "Gather")
    if idx.ndim > 1:
        raise UnsupportedError(f"Gather of run-time data by {idx.ndim}-d constant indices is not supported")
    dim = shape[axis]
    flat = idx.reshape(-1).astype(np.int64)
    if ((flat < -dim) | (flat >= dim)).any():
        raise IRCError(f"Gather indices {flat.tolist()} are out of range for an axis of {dim}")
    y = gather_runs(L, x, axis, flat % dim)
    if idx.ndim == 0:
        y = L.emit("Reshape", [y], {"shape": [0 if d == BATCH else d for i, d in enumerate(shape) if i != axis]})
    return y
