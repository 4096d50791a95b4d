"""Numpy kernels: the reference semantics of every analog op.

This module imports nothing but numpy on purpose: the numpy backend copies its
source verbatim into the programs it generates, so a generated program runs
with numpy alone and computes exactly what the IR's reference computes.
Layout is NCHW (N, C, *spatial); float32 in, float32 out.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


# ------------------------------------------------------------------ helpers
def _activate(y, activation, activation_params):
    """Apply a fused activation in place (y is a fresh array owned by the caller)."""
    if not activation:
        return y
    if activation == "Relu":
        return np.maximum(y, 0, out=y)
    if activation == "LeakyRelu":
        return leaky_relu(y, alpha=activation_params[0])
    if activation == "Clip":
        return np.clip(y, activation_params[0], activation_params[1], out=y)
    if activation == "Sigmoid":
        return sigmoid(y)
    if activation == "Tanh":
        return np.tanh(y, out=y)
    raise ValueError("unknown activation " + str(activation))


def _windows(x, kernel, strides, pads, dilations, out_dims, pad_value=0.0):
    """Sliding windows over the trailing len(kernel) axes: shape (..., *out_dims, *kernel).

    ``pads`` is [begin..., end...]; windows that run past the end (ceil_mode)
    see ``pad_value``.
    """
    nd = len(kernel)
    lead = x.ndim - nd
    eff = [d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
    pad_width = [(0, 0)] * lead
    for i in range(nd):
        size = x.shape[lead + i]
        need = (out_dims[i] - 1) * strides[i] + eff[i]
        end = max(pads[nd + i], need - size - pads[i])
        pad_width.append((pads[i], end))
    if any(p != (0, 0) for p in pad_width):
        x = np.pad(x, pad_width, constant_values=pad_value)
    win = sliding_window_view(x, eff, axis=tuple(range(lead, x.ndim)))
    index = [slice(None)] * lead
    index += [slice(0, (o - 1) * s + 1, s) for o, s in zip(out_dims, strides)]
    index += [slice(None, None, d) for d in dilations]
    return win[tuple(index)]


def _channel(v, ndim):
    """Reshape a per-channel vector to broadcast along axis 1 of an ndim array."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


# --------------------------------------------------------------- synaptic ops
def conv(x, w, b=None, mask=None, *, strides, pads, dilations, group, out_dims,
         activation="", activation_params=()):
    """N-d convolution (cross-correlation) with groups: im2col, then one GEMM per group.

    The columns are laid out (C*K, N*O) so that the copy reads rows of the
    input and the GEMM's long axis is the batch; the result is transposed
    back to NCHW in the same pass that adds the bias.
    """
    if mask is not None:
        w = w * mask.reshape(mask.shape + (1,) * (w.ndim - 2)).astype(w.dtype)
    nd = w.ndim - 2
    n, c = x.shape[0], x.shape[1]
    m = w.shape[0]
    kernel = w.shape[2:]
    osize = int(np.prod(out_dims))
    ksize = int(np.prod(kernel))
    cg, mg = c // group, m // group
    win = _windows(x, kernel, strides, pads, dilations, out_dims)  # (N, C, *O, *K)
    perm = (1,) + tuple(range(2 + nd, 2 + 2 * nd)) + (0,) + tuple(range(2, 2 + nd))
    cols = np.ascontiguousarray(win.transpose(perm)).reshape(group, cg * ksize, n * osize)
    y = np.matmul(w.reshape(group, mg, cg * ksize), cols)  # (g, mg, N*O)
    y = y.reshape((m, n) + tuple(out_dims)).swapaxes(0, 1)
    out = np.empty(y.shape, dtype=np.result_type(x, w))
    if b is not None:
        np.add(y, _channel(b, y.ndim), out=out)
    else:
        np.copyto(out, y)
    return _activate(out, activation, activation_params)


def dense(x, w, b=None, *, activation="", activation_params=()):
    """y = x @ w.T + b, with w stored (out_features, in_features)."""
    y = x @ w.T
    if b is not None:
        y += b
    return _activate(y, activation, activation_params)


def matmul(a, b):
    return np.matmul(a, b)


def batch_norm(x, scale, bias, mean, var, *, epsilon):
    k = scale / np.sqrt(var + epsilon)
    return x * _channel(k.astype(x.dtype), x.ndim) + _channel((bias - mean * k).astype(x.dtype), x.ndim)


def scale_shift(x, scale, shift=None, *, activation="", activation_params=()):
    """Per-channel affine map along axis 1 (a standalone BatchNorm, a branch scale)."""
    y = x * _channel(scale, x.ndim)
    if shift is not None:
        y += _channel(shift, x.ndim)
    return _activate(y, activation, activation_params)


# -------------------------------------------------------------------- pooling
def _pool_slices(x, kernel, strides, pads, dilations, out_dims, pad_value):
    """Padded input and, per kernel offset, the strided slice it contributes to each output."""
    nd = len(kernel)
    lead = x.ndim - nd
    pad_width = [(0, 0)] * lead
    for i in range(nd):
        need = (out_dims[i] - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1
        pad_width.append((pads[i], max(pads[nd + i], need - x.shape[lead + i] - pads[i])))
    if any(p != (0, 0) for p in pad_width):
        x = np.pad(x, pad_width, constant_values=pad_value)
    for offset in np.ndindex(*kernel):
        index = [slice(None)] * lead
        for i in range(nd):
            start = offset[i] * dilations[i]
            index.append(slice(start, start + (out_dims[i] - 1) * strides[i] + 1, strides[i]))
        yield x[tuple(index)]


def max_pool(x, *, kernel, strides, pads, dilations, out_dims):
    lowest = -np.inf if np.issubdtype(x.dtype, np.floating) else np.iinfo(x.dtype).min
    out = None
    for part in _pool_slices(x, kernel, strides, pads, dilations, out_dims, lowest):
        out = part.copy() if out is None else np.maximum(out, part, out=out)
    return out


def avg_pool(x, *, kernel, strides, pads, dilations, out_dims, count_include_pad):
    total = None
    for part in _pool_slices(x, kernel, strides, pads, dilations, out_dims, 0):
        total = part.astype(x.dtype if x.dtype == np.float64 else np.float32) if total is None \
            else np.add(total, part, out=total)
    # divisor per output position: real inputs, plus explicit padding if counted;
    # positions beyond the explicit padding (ceil_mode) never count.
    nd = len(kernel)
    ones = np.ones(x.shape[-nd:], dtype=np.float32)
    if count_include_pad:
        ones = np.pad(ones, [(pads[i], pads[nd + i]) for i in range(nd)], constant_values=1.0)
        pads = [0] * (2 * nd)
    divisor = sum(_pool_slices(ones, kernel, strides, pads, dilations, out_dims, 0.0))
    if np.all(divisor == divisor.flat[0]):
        total *= np.asarray(1.0 / divisor.flat[0], total.dtype)
        return total.astype(x.dtype, copy=False)
    return (total / np.maximum(divisor, 1)).astype(x.dtype)


def global_avg_pool(x):
    axes = tuple(range(2, x.ndim))
    return x.mean(axis=axes, keepdims=True, dtype=np.float32).astype(x.dtype)


def global_max_pool(x):
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)


# ------------------------------------------------------------- elementwise
def add(a, b, *, activation="", activation_params=()):
    return _activate(np.add(a, b), activation, activation_params)


def sub(a, b):
    return np.subtract(a, b)


def mul(a, b):
    return np.multiply(a, b)


def div(a, b):
    if np.issubdtype(np.result_type(a, b), np.integer):
        return np.trunc(np.true_divide(a, b)).astype(np.result_type(a, b))
    return np.true_divide(a, b)


def relu(x):
    return np.maximum(x, 0)


def leaky_relu(x, *, alpha):
    return np.where(x >= 0, x, x * np.asarray(alpha, x.dtype)).astype(x.dtype)


def clip(x, *, min, max):
    return np.clip(x, np.asarray(min).astype(x.dtype), np.asarray(max).astype(x.dtype))


def sigmoid(x):
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x))).astype(x.dtype)


def tanh(x):
    return np.tanh(x)


def softmax(x, *, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, *, axis):
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def identity(x):
    return x


# ---------------------------------------------------------------- layout
def reshape(x, *, shape):
    """Reshape to ``shape``; a leading -1 stands for the batch size."""
    return x.reshape(shape)


def transpose(x, *, perm):
    return np.ascontiguousarray(np.transpose(x, perm))


def concat(*xs, axis):
    return np.concatenate(xs, axis=axis)


def pad(x, *, pads, value):
    nd = x.ndim
    return np.pad(x, [(pads[i], pads[nd + i]) for i in range(nd)], constant_values=value)


def slice_pad(x, *, pads, value):
    """Pad with possibly negative pads (negative = crop), as ONNX Pad allows."""
    nd = x.ndim
    crop = tuple(slice(max(-pads[i], 0), x.shape[i] - max(-pads[nd + i], 0)) for i in range(nd))
    return pad(x[crop], pads=[max(p, 0) for p in pads], value=value)
