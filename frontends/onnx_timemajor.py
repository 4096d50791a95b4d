"""ONNX tensors whose batch axis is not the first: the time-major layout of recurrent networks.

PyTorch's CRNNs feed ``LSTM``/``GRU`` a ``(T, N, C)`` tensor (a ``Transpose`` that moves the batch to axis 1)
and often return ``(T, N, classes)``.  The IR keeps the batch on axis 0, so the frontend holds such a tensor
with its batch axis moved to the front (``L.batch_axes[name]`` says where the batch is in ONNX's view) and
lowers the ops on it here, in ONNX's semantics re-indexed onto the IR's layout: a recurrent op on a
time-major input runs in its batch-first layout (``layout=1``), a Transpose or Reshape keeps the batch as its
own axis, a Squeeze/Unsqueeze/Concat or an elementwise op or softmax remaps its axes and constants.  A graph output that ONNX gives
time-major is moved back by the Program (``meta['output_batch_axes']``).  Any other op on such a tensor is
refused by name.
"""
from __future__ import annotations

import math

import numpy as np

from irc.errors import IRCError, UnsupportedError
from irc.types import BATCH

from .onnx import HANDLERS, SYM_BATCH, _Lowering, attrs_of


def onnx_axis_to_ir(axis: int, batch: int) -> int:
    """Where ONNX axis ``axis`` of a tensor whose batch is ONNX axis ``batch`` lies in the IR's layout."""
    return 0 if axis == batch else axis + 1 if axis < batch else axis


def onnx_shape(L: _Lowering, name: str) -> tuple:
    """The shape of ``name`` as ONNX sees it (the IR holds it with the batch first)."""
    shape = tuple(L.type_of(name).shape)
    b = L.batch_axes.get(name, 0)
    return shape[1:b + 1] + shape[:1] + shape[b + 1:] if b else shape


def batch_axis(L: _Lowering, name: str) -> int | None:
    """The ONNX axis of ``name`` holding the batch, or None for a tensor without one."""
    if name in L.batch_axes:
        return L.batch_axes[name]
    return 0 if name not in L.consts and L.type_of(name).has_batch else None


def lower(L: _Lowering, n) -> list:
    """Lower node ``n``, one of whose inputs holds its batch off axis 0."""
    fn = MOVED.get(n.op_type)
    if fn is None:
        axes = sorted({L.batch_axes[i] for i in n.input if i in L.batch_axes})
        raise UnsupportedError(f"{n.op_type} of a tensor whose batch axis is {axes[0]} (a time-major layout) is not "
                               f"supported", hint="supported on such tensors: " + ", ".join(sorted(MOVED)))
    return fn(L, n)


def _mark(L: _Lowering, name: str, axis: int) -> None:
    if axis:
        L.batch_axes[name] = axis


# ------------------------------------------------------------------ layout
def transpose(L: _Lowering, n) -> list:
    """A Transpose of a batched tensor: in the IR the batch stays first; where ONNX puts it is recorded."""
    x = n.input[0]
    rank = L.type_of(x).rank
    perm = [int(p) for p in attrs_of(n).get("perm", [])] or list(range(rank))[::-1]
    if sorted(perm) != list(range(rank)):
        raise IRCError(f"Transpose perm {perm} is not a permutation of {rank} axes")
    bi = batch_axis(L, x)
    bo = perm.index(bi)
    order = [bo] + [j for j in range(rank) if j != bo]
    ir_perm = [onnx_axis_to_ir(perm[j], bi) for j in order]
    y = L.value(x) if ir_perm == list(range(rank)) else L.emit("Transpose", [L.value(x)], {"perm": ir_perm})
    _mark(L, n.output[0], bo)
    return [y]


def reshape(L: _Lowering, n) -> list:
    """A Reshape that keeps the batch as its own axis: (A, N, B) -> (A', N, B') with |A| = |A'|, |B| = |B'|
    is (N, A, B) -> (N, A', B') in the IR."""
    x = n.input[0]
    bi = L.batch_axes[x]
    src = onnx_shape(L, x)
    allowzero = bool(attrs_of(n).get("allowzero", 0))
    target = [int(s) for s in L.const(n, 1, "shape")]
    dims = [src[i] if s == 0 and not allowzero and i < len(src) else (BATCH if s == SYM_BATCH else s)
            for i, s in enumerate(target)]
    if dims.count(BATCH) != 1 or dims.count(-1) > 1:
        raise UnsupportedError("Reshape of a time-major tensor that does not keep the batch as its own axis")
    bo = dims.index(BATCH)
    static = math.prod(d for d in src if d != BATCH)
    known = math.prod(d for d in dims if d not in (-1, BATCH))
    if -1 in dims:
        if known == 0 or static % known:
            raise UnsupportedError(f"Reshape: cannot reshape {list(src)} to {target}")
        dims[dims.index(-1)] = static // known
    if math.prod(d for d in dims if d != BATCH) != static or math.prod(src[:bi]) != math.prod(dims[:bo]):
        raise UnsupportedError(f"Reshape {list(src)} -> {target} mixes the batch axis with other axes")
    y = L.emit("Reshape", [L.value(x)], {"shape": [0] + dims[:bo] + dims[bo + 1:]})
    _mark(L, n.output[0], bo)
    return [y]


def _axes_of(L: _Lowering, n) -> list[int] | None:
    if L.opset < 13:
        a = attrs_of(n)
        return [int(v) for v in a["axes"]] if "axes" in a else None
    return [int(v) for v in L.const(n, 1, "axes")] if L.has(n, 1) else None


def squeeze(L: _Lowering, n) -> list:
    """Squeeze of unit axes other than the batch (Y of a one-direction LSTM, (T, 1, N, H) -> (T, N, H))."""
    x = n.input[0]
    bi, shape = L.batch_axes[x], onnx_shape(L, x)
    axes = _axes_of(L, n)
    axes = sorted({a % len(shape) for a in axes}) if axes else [i for i, d in enumerate(shape) if d == 1]
    if bi in axes:
        raise UnsupportedError("Squeeze of the batch axis is not supported")
    y = L.emit("Squeeze", [L.value(x)], {"axes": [onnx_axis_to_ir(a, bi) for a in axes]})
    _mark(L, n.output[0], bi - sum(a < bi for a in axes))
    return [y]


def unsqueeze(L: _Lowering, n) -> list:
    x = n.input[0]
    bi, rank = L.batch_axes[x], L.type_of(x).rank
    axes = _axes_of(L, n)
    if not axes:
        raise UnsupportedError("Unsqueeze needs axes")
    out_rank = rank + len(axes)
    axes = sorted({a % out_rank for a in axes})
    kept = [i for i in range(out_rank) if i not in axes]  # the input's axes, in order, in the output
    bo = kept[bi]
    y = L.emit("Unsqueeze", [L.value(x)], {"axes": [onnx_axis_to_ir(a, bo) for a in axes]})
    _mark(L, n.output[0], bo)
    return [y]


def concat(L: _Lowering, n) -> list:
    names = [i for i in n.input if i]
    axes = {L.batch_axes.get(i) for i in names}
    if len(axes) != 1 or None in axes:
        raise UnsupportedError("Concat of tensors whose batch axes differ is not supported")
    bi, rank = axes.pop(), L.type_of(names[0]).rank
    axis = int(attrs_of(n)["axis"]) % rank
    if axis == bi:
        raise UnsupportedError("Concat along the batch axis is not supported")
    y = L.emit("Concat", [L.value(i) for i in names], {"axis": onnx_axis_to_ir(axis, bi)})
    _mark(L, n.output[0], bi)
    return [y]


def identity(L: _Lowering, n) -> list:
    _mark(L, n.output[0], L.batch_axes[n.input[0]])
    return [L.value(n.input[0])]


# ------------------------------------------------------------- arithmetic
def _constant_for(c: np.ndarray, rank: int, bi: int) -> np.ndarray:
    """A broadcast operand of a rank-``rank`` time-major tensor, re-laid out like it."""
    if c.ndim > rank:
        raise UnsupportedError("broadcasting a time-major tensor to a higher rank is not supported")
    if c.ndim <= rank - 1 - bi:  # it does not reach the batch axis: the trailing axes are the same
        return c
    full = c.reshape((1,) * (rank - c.ndim) + c.shape)
    if full.shape[bi] != 1:
        raise UnsupportedError("a constant that varies along the batch axis is not supported")
    return np.moveaxis(full, bi, 0)


def elementwise(L: _Lowering, n) -> list:
    """Unary ops, and broadcasting ones whose other operands are constants or laid out alike."""
    moved = {L.batch_axes[i] for i in n.input if i in L.batch_axes}
    batched = [i for i in n.input if i and i not in L.consts]
    if len(moved) != 1 or any(i not in L.batch_axes for i in batched):
        raise UnsupportedError(f"{n.op_type} mixes tensors whose batch axes differ")
    bi = moved.pop()
    rank = max(L.type_of(i).rank for i in batched)
    if any(L.type_of(i).rank != rank for i in batched):
        raise UnsupportedError(f"{n.op_type} broadcasts time-major tensors of different ranks")
    if n.op_type in BINARY:
        args = [_constant_for(np.asarray(L.consts[i]), rank, bi) if i in L.consts else L.value(i)
                for i in n.input if i]
        results = [L.emit(n.op_type, args)]
    else:  # unary: any constant operands are scalars (Clip's bounds)
        results = HANDLERS[n.op_type](L, n)
    _mark(L, n.output[0], bi)
    return results


def softmax(L: _Lowering, n) -> list:
    x = n.input[0]
    bi, rank = L.batch_axes[x], L.type_of(x).rank
    axis = int(attrs_of(n).get("axis", -1 if L.opset >= 13 else 1)) % rank
    if axis == bi or (L.opset < 13 and axis != rank - 1):
        raise UnsupportedError(f"{n.op_type} over axis {axis} of a time-major tensor is not supported")
    y = L.emit(n.op_type, [L.value(x)], {"axis": onnx_axis_to_ir(axis, bi)})
    _mark(L, n.output[0], bi)
    return [y]


def matmul(L: _Lowering, n) -> list:
    """A time-major (..., N, ..., K) @ constant (K, M): the batch is never the contracted axis."""
    a = n.input[0]
    if a not in L.batch_axes or not L.is_const(n.input[1]) or np.ndim(L.consts[n.input[1]]) not in (1, 2):
        raise UnsupportedError("MatMul of a time-major tensor is supported only by a constant matrix on the right")
    bi, rank = L.batch_axes[a], L.type_of(a).rank
    if bi == rank - 1:
        raise UnsupportedError("MatMul contracting the batch axis is not supported")
    y = L.emit("MatMul", [L.value(a), L.consts[n.input[1]]])
    _mark(L, n.output[0], bi)
    return [y]


def recurrent(L: _Lowering, n) -> list:
    from .onnx_structured import _recurrent

    return _recurrent(L, n, n.op_type)


UNARY = ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "HardSigmoid", "HardSwish", "Erf", "Gelu", "Sqrt", "Exp",
         "Log", "Clip", "Dropout")
BINARY = ("Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Sum")
"""ONNX ops lowered onto the IR op of the same name and operands."""

MOVED = {"Shape": lambda L, n: HANDLERS["Shape"](L, n), "Transpose": transpose, "Reshape": reshape,
         "Squeeze": squeeze, "Unsqueeze": unsqueeze, "Concat": concat, "Identity": identity, "Softmax": softmax,
         "LogSoftmax": softmax, "MatMul": matmul, "LSTM": recurrent, "GRU": recurrent,
         **{op: elementwise for op in UNARY + BINARY}}
"""The ops lowered on tensors whose batch axis is not the first, and how."""
