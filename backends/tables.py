"""Compile-time tables that code generators share (LLVM and CUDA)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from irc.graph import Node
from irc.ops import get_op
from irc.types import TensorType

Layout = Callable[[TensorType], np.ndarray]


def nchw(t: TensorType) -> np.ndarray:
    """The identity layout: per-sample NCHW flat index -> itself."""
    return np.arange(t.static_size(), dtype=np.int64)


def remap_tables(n: Node, layout: Layout = nchw) -> list[np.ndarray]:
    """For a layout op, per data input: element index in the input -> index in the output (-1: dropped).

    The op's own reference is run on an image of indices, so every layout op
    (Reshape, Transpose, Concat, Pad with crops, ...) gets its table for free;
    ``layout`` maps NCHW positions to the generator's own element order.
    """
    out_t = n.output.type
    data = [v for v in n.inputs if v is not None]
    opdef = get_op(n.op)
    attrs = opdef.with_fill(n.attrs, -1.0)
    in_types = [u.type.with_(shape=(1,) + u.type.sample_shape, dtype="f64") for u in data]
    out_types = [out_t.with_(shape=(1,) + out_t.sample_shape, dtype="f64")]
    dest = layout(out_t)
    tables = []
    for k, v in enumerate(data):
        images = [(layout(u.type).astype(np.float64) if j == k else np.full(u.type.static_size(), -1.0))
                  .reshape((1,) + u.type.sample_shape) for j, u in enumerate(data)]
        mapped = opdef.reference(images, attrs, in_types, out_types)[0].reshape(-1)
        table = np.full(v.type.static_size(), -1, np.int64)
        keep = mapped >= 0
        table[mapped[keep].astype(np.int64)] = dest[keep]
        tables.append(table)
    return tables


def avgpool_divisor(n: Node) -> tuple[str, np.ndarray]:
    """How the AvgPool reference turns window sums into averages, per output position (OH, OW).

    ('mul', factor) when every window has the same count (the kernel multiplies by
    float32(1/count)), else ('div', count) (it divides).  Generated code must do the same.
    """
    from irc.ops.kernels import avg_pool_divisor

    opdef = get_op(n.op)
    args = opdef.kernel_args(n.input_types(), [o.type for o in n.outputs], n.attrs)
    divisor = avg_pool_divisor(n.inputs[0].type.shape[2:], **args)
    if np.all(divisor == divisor.flat[0]):
        return "mul", np.full(divisor.shape, np.float32(1.0 / float(divisor.flat[0])), np.float32)
    return "div", np.maximum(divisor, 1).astype(np.float32)


def sample_constant(arr: np.ndarray, t: TensorType) -> np.ndarray:
    """A constant operand broadcast to one sample of ``t``, flat (a leading batch axis of 1 dropped)."""
    a = np.asarray(arr, np.float32)
    shape = t.sample_shape
    full = np.broadcast_to(a, np.broadcast_shapes(a.shape, (1,) + shape))
    return np.ascontiguousarray(full.reshape(shape)).reshape(-1)
