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
    """Apply a fused activation: ``activation`` names its kernel (a function of this module), called with the
    keyword parameters ``activation_params``.  y is a fresh array owned by the caller, so the few kernels with
    an in-place form (``_IN_PLACE``) write into it."""
    if not activation:
        return y
    if activation in _IN_PLACE:
        return _IN_PLACE[activation](y, **activation_params)
    return globals()[activation](y, **activation_params)


_IN_PLACE = {
    # clip to [0, inf] computes maximum(y, 0) (NaN stays NaN) about 4x faster than numpy 2's maximum with a
    # scalar on large float32 arrays (0.24 against 1.0 ms on 2 M values); small ones: clip's call costs more
    "relu": lambda y: (np.clip(y, 0, np.inf, out=y) if y.dtype.kind == "f" and y.size > 1 << 14
                       else np.maximum(y, 0, out=y)),
    "tanh": lambda y: np.tanh(y, out=y),
    "clip": lambda y, min, max: np.clip(y, np.asarray(min).astype(y.dtype), np.asarray(max).astype(y.dtype), out=y),
}


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


def _like(x, p):
    """A parameter in the activations' float dtype: a float64 weight must not make a float32 layer float64."""
    if p is None or p.dtype == x.dtype or x.dtype.kind != "f":
        return p
    return p.astype(x.dtype, copy=False)


def _channel(v, ndim):
    """Reshape a per-channel vector to broadcast along axis 1 of an ndim array."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


# --------------------------------------------------------------- synaptic ops
def conv(x, w, b=None, mask=None, *, strides, pads, dilations, group, out_dims,
         activation="", activation_params=None):
    """N-d convolution (cross-correlation) with groups: im2col, then one GEMM per group.

    The columns are laid out (C*K, N*O) so that the copy reads rows of the
    input and the GEMM's long axis is the batch; the result is transposed
    back to NCHW in the same pass that adds the bias.
    """
    if mask is not None:
        w = w * mask.reshape(mask.shape + (1,) * (w.ndim - 2)).astype(w.dtype)
    w, b = _like(x, w), _like(x, b)
    if w.ndim == 4 and group == 1 and list(strides) == [1, 1] and x.shape[1] >= 16 and w.shape[2] * w.shape[3] > 1:
        return _conv2d_shifted(x, w, b, pads, dilations, out_dims, activation, activation_params)
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


def _conv2d_shifted(x, w, b, pads, dilations, out_dims, activation, activation_params):
    """A stride-1 2-d convolution as one GEMM per kernel tap over the flattened padded image.

    With the padded input laid out (C, N*Hp*Wp), tap (i, j) reads every
    output position's input at one fixed offset, i*dh*Wp + j*dw: a contiguous
    slice of each channel row, which BLAS takes as it is.  The taps' products
    are summed over the whole padded grid and the positions past the output's
    edge dropped.  No column matrix is built: copying the columns of a
    sliding-window view is what made im2col slow where channels are many
    (measured: 1.6-2x on 16-channel 3x3 layers; no gain for few channels, where
    im2col's column matrix is small, or for strided layers).
    """
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    oh, ow = out_dims
    dh, dw = dilations
    hp = max(h + pads[0] + pads[2], oh + dh * (kh - 1))
    wp = max(wd + pads[1] + pads[3], ow + dw * (kw - 1))
    dtype = np.result_type(x, w)
    padded = np.zeros((c, n, hp, wp), dtype)
    padded[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + wd] = x.transpose(1, 0, 2, 3)
    rows = padded.reshape(c, n * hp * wp)
    offsets = [i * dh * wp + j * dw for i in range(kh) for j in range(kw)]
    span = n * hp * wp - offsets[-1]
    taps = w.transpose(2, 3, 0, 1).reshape(kh * kw, m, c).astype(dtype, copy=False)
    grid = np.empty((m, n * hp * wp), dtype)
    np.matmul(taps[0], rows[:, :span], out=grid[:, :span])
    part = np.empty((m, span), dtype)
    for tap, offset in zip(taps[1:], offsets[1:]):
        np.matmul(tap, rows[:, offset:offset + span], out=part)
        grid[:, :span] += part
    y = grid.reshape(m, n, hp, wp)[:, :, :oh, :ow].transpose(1, 0, 2, 3)
    out = np.empty(y.shape, dtype)
    if b is not None:
        np.add(y, _channel(b, 4), out=out)
    else:
        np.copyto(out, y)
    return _activate(out, activation, activation_params)


def dense(x, w, b=None, *, activation="", activation_params=None):
    """y = x @ w.T + b, with w stored (out_features, in_features)."""
    w, b = _like(x, w), _like(x, b)
    y = x @ w.T
    if b is not None:
        y += b
    return _activate(y, activation, activation_params)


def matmul(a, b):
    return np.matmul(a, b)


def batch_norm(x, scale, bias, mean, var, *, epsilon):
    k = scale / np.sqrt(var + epsilon)
    return x * _channel(k.astype(x.dtype), x.ndim) + _channel((bias - mean * k).astype(x.dtype), x.ndim)


def scale_shift(x, scale, shift=None, *, activation="", activation_params=None):
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
    out = None
    for part in _pool_slices(x, kernel, strides, pads, dilations, out_dims, _lowest(x.dtype)):
        out = part.copy() if out is None else np.maximum(out, part, out=out)
    return out


def avg_pool_divisor(spatial, *, kernel, strides, pads, dilations, out_dims, count_include_pad):
    """What each output position's window sum is divided by: its real inputs, plus explicit padding if
    counted (positions beyond the explicit padding, from ceil_mode, never count).  Every code generator
    divides by exactly this."""
    nd = len(kernel)
    ones = np.ones(tuple(spatial), dtype=np.float32)
    if count_include_pad:
        ones = np.pad(ones, [(pads[i], pads[nd + i]) for i in range(nd)], constant_values=1.0)
        pads = [0] * (2 * nd)
    return sum(_pool_slices(ones, kernel, strides, pads, dilations, out_dims, 0.0))


def avg_pool(x, *, kernel, strides, pads, dilations, out_dims, count_include_pad):
    total = None
    for part in _pool_slices(x, kernel, strides, pads, dilations, out_dims, 0):
        total = part.astype(x.dtype if x.dtype == np.float64 else np.float32) if total is None \
            else np.add(total, part, out=total)
    divisor = avg_pool_divisor(x.shape[-len(kernel):], kernel=kernel, strides=strides, pads=pads,
                               dilations=dilations, out_dims=out_dims, count_include_pad=count_include_pad)
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
def add(a, b, *, activation="", activation_params=None):
    return _activate(np.add(a, b), activation, activation_params)


def sub(a, b):
    return np.subtract(a, b)


def mul(a, b):
    return np.multiply(a, b)


def div(a, b):
    if np.issubdtype(np.result_type(a, b), np.integer):
        return np.trunc(np.true_divide(a, b)).astype(np.result_type(a, b))
    return np.true_divide(a, b)


def sqrt(x):
    with np.errstate(invalid="ignore"):
        return np.sqrt(x)


def power(a, b):
    """``a ** b`` in a's dtype (ONNX Pow: the exponent's type may differ)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if np.issubdtype(a.dtype, np.floating):
            return np.power(a, np.asarray(b).astype(a.dtype))
        return np.power(a, np.asarray(b).astype(np.int64)).astype(a.dtype)


def add_n(*xs):
    out = np.array(xs[0])
    for x in xs[1:]:
        out = out + x
    return out


def exp(x):
    with np.errstate(over="ignore"):
        return np.exp(x)


def log(x):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(x)


# comparisons and logic: numpy's ufuncs as they are
less, greater, equal = np.less, np.greater, np.equal
less_or_equal, greater_or_equal = np.less_equal, np.greater_equal
logical_or, logical_and = np.logical_or, np.logical_and


def where(condition, a, b):
    return np.where(condition, a, b)


def maximum(*xs):
    out = np.array(xs[0])
    for x in xs[1:]:
        out = np.maximum(out, x)
    return out


def minimum(*xs):
    out = np.array(xs[0])
    for x in xs[1:]:
        out = np.minimum(out, x)
    return out


def relu(x):
    return np.maximum(x, 0)


def leaky_relu(x, *, alpha):
    return np.where(x >= 0, x, x * np.asarray(alpha, x.dtype)).astype(x.dtype)


def elu(x, *, alpha):
    with np.errstate(over="ignore"):
        return np.where(x > 0, x, np.asarray(alpha, x.dtype) * np.expm1(np.minimum(x, 0))).astype(x.dtype)


def hard_sigmoid(x, *, alpha, beta):
    return np.clip(x * np.asarray(alpha, x.dtype) + np.asarray(beta, x.dtype), 0, 1).astype(x.dtype, copy=False)


def hard_swish(x):
    return x * hard_sigmoid(x, alpha=1.0 / 6.0, beta=0.5)


def erf(x):
    """erf by Abramowitz & Stegun 7.1.26 in float64 (|error| < 1.5e-7, float32's resolution): numpy has no erf
    and generated programs import numpy alone."""
    z = np.abs(x.astype(np.float64))
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return (np.sign(x) * (1.0 - poly * np.exp(-z * z))).astype(x.dtype)


def gelu(x, *, approximate):
    """GELU; ``approximate`` is 'none'/'tanh' (a node's attribute) or 0.0/1.0 (a host's fused parameter)."""
    if approximate in ("tanh", 1.0):
        x64 = x.astype(np.float64)
        return (0.5 * x64 * (1.0 + np.tanh(0.7978845608028654 * (x64 + 0.044715 * x64 ** 3)))).astype(x.dtype)
    return (0.5 * x * (1.0 + erf(x * np.asarray(0.7071067811865476, x.dtype)))).astype(x.dtype)


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


# ------------------------------------------------------------- reductions
def _lowest(dtype):
    """The identity of max: what a max over nothing (an empty set, a padded window) is."""
    if dtype == np.bool_:
        return False
    return -np.inf if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).min


def _highest(dtype):
    if dtype == np.bool_:
        return True
    return np.inf if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).max


def reduce_max(x, *, axes, keepdims):
    return np.max(x, axis=tuple(axes), keepdims=keepdims, initial=_lowest(x.dtype))


def reduce_min(x, *, axes, keepdims):
    return np.min(x, axis=tuple(axes), keepdims=keepdims, initial=_highest(x.dtype))


def reduce_sum(x, *, axes, keepdims):
    return np.sum(x, axis=tuple(axes), keepdims=keepdims, dtype=x.dtype)


def reduce_mean(x, *, axes, keepdims):
    acc = np.float64 if x.dtype == np.float64 else np.float32
    return np.mean(x, axis=tuple(axes), keepdims=keepdims, dtype=acc).astype(x.dtype, copy=False)


# ---------------------------------------------------------------- layout
def reshape(x, *, shape):
    """Reshape to ``shape``; a leading -1 stands for the batch size."""
    if x.size == 0 and shape and shape[0] == -1:  # numpy cannot infer a -1 from an empty array
        shape = (x.shape[0], *shape[1:])
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


# ---------------------------------------------------------- normalisations
def layer_norm(x, scale, bias=None, *, axis, epsilon):
    """(x - mean) / sqrt(var + epsilon) * scale + bias over the axes from ``axis`` on, computed in float32
    (ONNX LayerNormalization's stash_type=1)."""
    axes = tuple(range(axis, x.ndim))
    acc = np.float64 if x.dtype == np.float64 else np.float32
    xf = x.astype(acc, copy=False)
    mean = xf.mean(axis=axes, keepdims=True)
    d = xf - mean
    var = (d * d).mean(axis=axes, keepdims=True)
    y = d / np.sqrt(var + np.asarray(epsilon, acc)) * scale.astype(acc, copy=False)
    if bias is not None:
        y = y + bias.astype(acc, copy=False)
    return y.astype(x.dtype, copy=False)


def lrn(x, *, size, alpha, beta, bias):
    """Local response normalisation across channels (axis 1), as ONNX defines it: the window holds channels
    c - floor((size-1)/2) .. c + ceil((size-1)/2), and alpha is divided by size."""
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = np.square(x.astype(np.float64))
    pad = [(0, 0)] * x.ndim
    pad[1] = (lo + 1, hi)
    csum = np.cumsum(np.pad(sq, pad), axis=1)
    c = x.shape[1]
    window = np.take(csum, np.arange(lo + 1 + hi, lo + 1 + hi + c), axis=1) - np.take(csum, np.arange(c), axis=1)
    return (x / (bias + alpha / size * window) ** beta).astype(x.dtype)


# ------------------------------------------------ structured ops (irc.ops.resize, irc.ops.recurrent)
def _resize_source(out_len, in_len, scale, mode):
    """ONNX Resize's coordinate transformation: the input coordinate of each output index along one axis."""
    o = np.arange(out_len, dtype=np.float64)
    if mode == "half_pixel":
        return (o + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if out_len > 1 else np.zeros(out_len)
    if mode == "align_corners":
        return o * (in_len - 1) / (out_len - 1) if out_len > 1 else np.zeros(out_len)
    if mode == "half_pixel_symmetric":
        adj = out_len / (scale * in_len)
        return (in_len / 2.0) * (1 - adj) + (o + 0.5) / scale - 0.5
    return o / scale  # asymmetric


def _nearest_index(src, nearest_mode):
    if nearest_mode == "floor":
        return np.floor(src)
    if nearest_mode == "ceil":
        return np.ceil(src)
    if nearest_mode == "round_prefer_ceil":
        return np.floor(src + 0.5)
    return np.ceil(src - 0.5)  # round_prefer_floor


def resize(x, *, mode, coordinate_transformation_mode, nearest_mode, scales, out_dims):
    """ONNX Resize (nearest or linear), one axis at a time: both modes are separable."""
    y = x
    for axis in range(x.ndim):
        n_in, n_out = x.shape[axis], out_dims[axis] or x.shape[axis]  # 0: the batch axis, kept
        if n_in == n_out and scales[axis] == 1.0:
            continue
        src = _resize_source(n_out, n_in, scales[axis], coordinate_transformation_mode)
        if mode == "nearest":
            idx = np.clip(_nearest_index(src, nearest_mode), 0, n_in - 1).astype(np.int64)
            y = np.take(y, idx, axis=axis)
            continue
        src = np.clip(src, 0, n_in - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        shape = [1] * x.ndim
        shape[axis] = n_out
        frac = (src - lo).astype(x.dtype).reshape(shape)
        y = np.take(y, lo, axis=axis) * (1 - frac) + np.take(y, hi, axis=axis) * frac
    return y.astype(x.dtype)


def conv_transpose(x, w, b=None, *, strides, pads, dilations, group, output_padding, out_dims):
    """ONNX ConvTranspose: every input pixel scatters its kernel-weighted copy to the output; pads crop the full
    result (negative pads, from an output_shape larger than the full result, extend it with zeros)."""
    nd = x.ndim - 2
    n, c = x.shape[:2]
    cg, mg = w.shape[0] // group, w.shape[1]
    kernel = w.shape[2:]
    offs = [max(0, -p) for p in pads[:nd]]
    full = [(x.shape[2 + i] - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1 + output_padding[i]
            for i in range(nd)]
    size = [offs[i] + max(full[i], pads[i] + out_dims[i]) for i in range(nd)]
    buf = np.zeros((n, group, mg, *size), x.dtype)
    xg = x.reshape(n, group, cg, *x.shape[2:])
    wg = w.reshape(group, cg, mg, *kernel)
    for tap in np.ndindex(*kernel):
        contrib = np.einsum("ngc...,gcm->ngm...", xg, wg[(slice(None), slice(None), slice(None)) + tap])
        index = tuple(slice(offs[i] + tap[i] * dilations[i],
                            offs[i] + tap[i] * dilations[i] + (x.shape[2 + i] - 1) * strides[i] + 1, strides[i])
                      for i in range(nd))
        buf[(slice(None), slice(None), slice(None)) + index] += contrib
    crop = tuple(slice(offs[i] + pads[i], offs[i] + pads[i] + out_dims[i]) for i in range(nd))
    y = buf[(slice(None), slice(None), slice(None)) + crop].reshape(n, group * mg, *out_dims)
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * nd).astype(x.dtype)
    return np.ascontiguousarray(y, dtype=x.dtype)


def _sigmoid32(v):
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-v))).astype(v.dtype)


def _rnn_state(s, layout, dirs, n, hidden, dtype):
    """An initial state as (D, N, H) from either ONNX layout (zeros when absent; a batch of 1 broadcasts)."""
    if s is None:
        return np.zeros((dirs, n, hidden), dtype)
    s = np.swapaxes(s, 0, 1) if layout == 1 else s
    return np.broadcast_to(s, (dirs, n, hidden)).astype(dtype)


def _rnn_outputs(ys, states, layout):
    """Y (T, D, N, H) and the final states (D, N, H), or batch-first for layout 1."""
    y = np.stack(ys, axis=1)
    if layout == 1:
        return (np.ascontiguousarray(np.transpose(y, (2, 0, 1, 3))),) + tuple(
            np.ascontiguousarray(np.swapaxes(s, 0, 1)) for s in states)
    return (y,) + tuple(states)


def _rnn_steps(t, direction, d):
    backward = direction == "reverse" or (direction == "bidirectional" and d == 1)
    return range(t - 1, -1, -1) if backward else range(t)


def lstm(x, w, r, b=None, initial_h=None, initial_c=None, *, hidden_size, direction, layout):
    """ONNX LSTM, default activations (sigmoid, tanh, tanh), gates ordered i, o, f, c."""
    dirs = w.shape[0]
    x = np.swapaxes(x, 0, 1) if layout == 1 else x
    h0 = _rnn_state(initial_h, layout, dirs, x.shape[1], hidden_size, x.dtype)
    c0 = _rnn_state(initial_c, layout, dirs, x.shape[1], hidden_size, x.dtype)
    t = x.shape[0]
    hs, cs, ys = [], [], []
    for d in range(dirs):
        bias = np.zeros(8 * hidden_size, x.dtype) if b is None else b[d]
        xw = x @ w[d].T + (bias[:4 * hidden_size] + bias[4 * hidden_size:])
        h, c = h0[d], c0[d]
        out = [None] * t
        for step in _rnn_steps(t, direction, d):
            g = xw[step] + h @ r[d].T
            i, o, f, cand = np.split(g, 4, axis=-1)
            c = _sigmoid32(f) * c + _sigmoid32(i) * np.tanh(cand)
            h = _sigmoid32(o) * np.tanh(c)
            out[step] = h
        ys.append(np.stack(out))
        hs.append(h)
        cs.append(c)
    return _rnn_outputs(ys, [np.stack(hs), np.stack(cs)], layout)


def gru(x, w, r, b=None, initial_h=None, *, hidden_size, direction, layout, linear_before_reset):
    """ONNX GRU, default activations (sigmoid, tanh), gates ordered z, r, h."""
    dirs = w.shape[0]
    x = np.swapaxes(x, 0, 1) if layout == 1 else x
    h0 = _rnn_state(initial_h, layout, dirs, x.shape[1], hidden_size, x.dtype)
    t, hid = x.shape[0], hidden_size
    hs, ys = [], []
    for d in range(dirs):
        bias = np.zeros(6 * hid, x.dtype) if b is None else b[d]
        wb, rb = bias[:3 * hid], bias[3 * hid:]
        xw = x @ w[d].T + wb
        rz, rh = r[d][:2 * hid], r[d][2 * hid:]
        h = h0[d]
        out = [None] * t
        for step in _rnn_steps(t, direction, d):
            zr = _sigmoid32(xw[step, :, :2 * hid] + h @ rz.T + rb[:2 * hid])
            z, rr = zr[:, :hid], zr[:, hid:]
            if linear_before_reset:
                cand = np.tanh(xw[step, :, 2 * hid:] + rr * (h @ rh.T + rb[2 * hid:]))
            else:
                cand = np.tanh(xw[step, :, 2 * hid:] + (rr * h) @ rh.T + rb[2 * hid:])
            h = (1 - z) * cand + z * h
            out[step] = h
        ys.append(np.stack(out))
        hs.append(h)
    return _rnn_outputs(ys, [np.stack(hs)], layout)
