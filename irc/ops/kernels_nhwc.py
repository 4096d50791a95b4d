"""Channels-last numpy kernels: the numpy target's fast formulations of the ops in kernels.py.

kernels.py is the reference semantics (NCHW).  The numpy target keeps 4-d
activations channels-last (N, H, W, C) between layers instead, because then a
pointwise convolution is one GEMM over every pixel, a depthwise tap is a
multiply-add over contiguous rows of W*C values, and im2col reads runs of
KW*C contiguous values.  Which kernel a layer calls is decided at compile time,
by irc.backends.numpy_lowering, and weights arrive already packed in the
layout each kernel reads, in the activations' dtype.  Like
kernels.py this module needs numpy only: the numpy backend embeds it, after
kernels.py, in every program it generates.

Scratch buffers (padded inputs, im2col columns, tap products) are kept between
calls, one set per thread: a padded buffer's border is written once, so a
convolution copies its input into the interior and never calls np.pad.
"""
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

# --- imports: the generated module has these from kernels.py
from irc.ops.kernels import _activate, _lowest, _pool_slices
# --- end imports

_SCRATCH = threading.local()
_SCRATCH_LIMIT = 64
_SCRATCH_BYTES = 1 << 28
"""At most this many buffers, and bytes, are kept per thread; past either the cache starts again."""


def _scratch(role, shape, dtype, fill=None):
    """A buffer of this role and shape kept between calls (per thread); ``fill`` is written once, at creation.

    Callers only ever write the part of a filled buffer that the fill does not
    cover (a padded buffer's interior), so the key holds everything that
    decides which part that is.
    """
    cache = _SCRATCH.__dict__.setdefault("buffers", {})
    key = (role, tuple(shape), np.dtype(dtype).str, fill)
    buf = cache.get(key)
    if buf is None:
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if len(cache) >= _SCRATCH_LIMIT or size + sum(b.nbytes for b in cache.values()) > _SCRATCH_BYTES:
            cache.clear()
        buf = np.empty(shape, dtype) if fill is None else np.full(shape, fill, dtype)
        cache[key] = buf
    return buf


def to_nhwc(x):
    """(N, C, H, W) -> (N, H, W, C), contiguous.  Few channels: one strided copy per channel, whose loop
    runs over all pixels (a plain transpose copy would loop over the few channels innermost)."""
    if x.shape[1] == 1:
        return np.ascontiguousarray(x).reshape(x.shape[0], x.shape[2], x.shape[3], 1)  # the same memory
    if x.shape[1] > 8:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    y = np.empty((x.shape[0],) + x.shape[2:] + (x.shape[1],), x.dtype)
    for c in range(x.shape[1]):
        y[..., c] = x[:, c]
    return y


def to_nchw(x):
    """(N, H, W, C) -> (N, C, H, W), contiguous (few channels: one strided copy per channel)."""
    if x.shape[3] == 1:
        return np.ascontiguousarray(x).reshape(x.shape[0], 1, x.shape[1], x.shape[2])
    if x.shape[3] > 8:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    y = np.empty((x.shape[0], x.shape[3]) + x.shape[1:3], x.dtype)
    for c in range(x.shape[3]):
        y[:, c] = x[..., c]
    return y


def _padded(x, pads, size, fill=0.0):
    """x (N, H, W, C) inside a (N, *size, C) buffer whose border holds ``fill``; x itself when nothing pads."""
    n, h, w, c = x.shape
    top, left = pads[0], pads[1]
    if (h, w) == tuple(size) and top == left == 0:
        return np.ascontiguousarray(x)
    buf = _scratch(("pad", top, left, h, w), (n, size[0], size[1], c), x.dtype, fill)
    buf[:, top:top + h, left:left + w] = x
    return buf


def _padded_size(x, kernel, strides, pads, dilations, out_dims):
    """Rows and columns a padded input needs: its pads, and more at the end for ceil-mode windows."""
    return tuple(max(x.shape[1 + i] + pads[i] + pads[2 + i], (out_dims[i] - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1)
                 for i in range(2))


def _padded_nchw(x, kernel, strides, pads, dilations, out_dims):
    """A channels-first x inside a zero-bordered scratch buffer of the size the windows need (x itself when
    nothing pads)."""
    n, c, h, w = x.shape
    size = _padded_size(x.transpose(0, 2, 3, 1), kernel, strides, pads, dilations, out_dims)
    if (h, w) == size and not any(pads[:2]):
        return np.ascontiguousarray(x)
    xp = _scratch(("pad_nchw", pads[0], pads[1], h, w), (n, c) + size, x.dtype, 0.0)
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + w] = x
    return xp


def _finish(y, b, activation, activation_params):
    """Bias and activation, written into y (some activations make a new array: copied back)."""
    if b is not None:
        np.add(y, b, out=y)
    out = _activate(y, activation, activation_params)
    if out is not y:
        np.copyto(y, out)
    return y


# ---------------------------------------------------------------- convolutions
POINTWISE_CHUNK = 1 << 17
"""Output values per GEMM step of a pointwise convolution: bias and activation follow while it is in cache."""


def conv_pointwise(x, w, b=None, *, strides, activation="", activation_params=None):
    """1x1 convolution (no padding) as a GEMM over all pixels, (N*H*W, C) @ w (C, M), in row blocks."""
    if strides != [1, 1]:
        x = x[:, ::strides[0], ::strides[1]]
    n, h, wd, c = x.shape
    m = w.shape[1]
    y = np.empty((n, h, wd, m), x.dtype)
    rows, out = x.reshape(n * h * wd, c), y.reshape(n * h * wd, m)
    step = max(512, POINTWISE_CHUNK // max(m, c))
    for start in range(0, len(rows), step):
        part = out[start:start + step]
        np.matmul(rows[start:start + step], w, out=part)
        _finish(part, b, activation, activation_params)
    return y


IM2COL_CHUNK = 1 << 18
"""Column values copied and multiplied per step (1 MB of float32): the copy stays in cache for the GEMM."""


def conv_im2col(x, w, b=None, *, kernel, strides, pads, dilations, out_dims, activation="", activation_params=None):
    """Convolution as GEMMs: columns (pixels, KH*KW*C) @ w (KH*KW*C, M), a few samples at a time.

    The columns are copied from a strided view of the padded input; without
    dilation along W one kernel row of one pixel (KW*C values) is contiguous
    in the input, so the copy moves runs of KW*C.  Each step copies about
    IM2COL_CHUNK values, multiplies them while they are in cache, and adds the
    bias and activation to its part of the output.
    """
    n, _, _, c = x.shape
    kh, kw = kernel
    (sh, sw), (dh, dw), (oh, ow) = strides, dilations, out_dims
    m = w.shape[1]
    xp = _padded(x, pads, _padded_size(x, kernel, strides, pads, dilations, out_dims))
    s3 = xp.itemsize  # from the shape: numpy may give size-1 axes of a contiguous array any stride
    s2 = c * s3
    s1 = xp.shape[2] * s2
    s0 = xp.shape[1] * s1
    if dw == 1:
        view = as_strided(xp, (n, oh, ow, kh, kw * c), (s0, s1 * sh, s2 * sw, s1 * dh, s3), writeable=False)
    else:
        view = as_strided(xp, (n, oh, ow, kh, kw, c), (s0, s1 * sh, s2 * sw, s1 * dh, s2 * dw, s3), writeable=False)
    k = kh * kw * c
    step = max(1, IM2COL_CHUNK // (oh * ow * k))
    cols = _scratch("cols", (min(step, n),) + view.shape[1:], x.dtype)
    y = np.empty((n, oh, ow, m), x.dtype)
    for start in range(0, n, step):
        part = view[start:start + step]
        cols_part = cols[:len(part)]
        np.copyto(cols_part, part)
        out = y[start:start + step].reshape(-1, m)
        np.matmul(cols_part.reshape(-1, k), w, out=out)
        _finish(out, b, activation, activation_params)
    return y


def conv_few_outputs(x, w, b=None, *, kernel, strides, pads, dilations, out_dims, activation="",
                     activation_params=None):
    """A convolution with few output channels, channels-first in and out: per sample w (M, C*KH*KW) @
    columns (C*KH*KW, OH*OW), whose long axis is the pixels, a few samples at a time (in cache).

    The columns of sample n are rows of its padded input read at each tap's offset (runs of OW values)."""
    n, c, h, wd = x.shape
    kh, kw = kernel
    (sh, sw), (dh, dw), (oh, ow) = strides, dilations, out_dims
    m = w.shape[0]
    xp = _padded_nchw(x, kernel, strides, pads, dilations, out_dims)
    size = xp.shape[2:]
    e = xp.itemsize
    s3, s2 = e, size[1] * e
    s1, s0 = size[0] * s2, c * size[0] * s2
    view = as_strided(xp, (n, c, kh, kw, oh, ow), (s0, s1, s2 * dh, s3 * dw, s2 * sh, s3 * sw), writeable=False)
    k = c * kh * kw
    step = max(1, IM2COL_CHUNK // (oh * ow * k))
    cols = _scratch("cols_nchw", (min(step, n), c, kh, kw, oh, ow), x.dtype)
    y = np.empty((n, m, oh, ow), x.dtype)
    bias = None if b is None else b.reshape(m, 1)
    for start in range(0, n, step):
        part = view[start:start + step]
        cols_part = cols[:len(part)]
        np.copyto(cols_part, part)
        out = y[start:start + step].reshape(len(part), m, oh * ow)
        np.matmul(w, cols_part.reshape(len(part), k, oh * ow), out=out)
        _finish(out, bias, activation, activation_params)
    return y


def conv_direct(x, w, b=None, *, kernel, strides, pads, dilations, out_dims, channels, activation="",
                activation_params=None):
    """The JIT direct kernel's numpy stand-in: w (KH, KW, C, MP) and b (MP) padded past ``channels``."""
    w = np.ascontiguousarray(w[..., :channels]).reshape(-1, channels)
    return conv_im2col(x, w, None if b is None else b[:channels], kernel=kernel, strides=strides, pads=pads,
                       dilations=dilations, out_dims=out_dims, activation=activation,
                       activation_params=activation_params)


def _tap_planes(xp, kernel, strides, dilations, out_dims):
    """For each kernel tap, the (N, OH, OW, C) view of the padded input it multiplies.

    A strided convolution reads every s-th pixel; its taps come from the
    stride phase planes (xp[:, p::sh, q::sw], copied contiguous once), where
    each tap is a plain window whose rows are contiguous runs of OW*C values.
    """
    (sh, sw), (dh, dw), (oh, ow) = strides, dilations, out_dims
    planes = {}
    views = []
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            r, q = i * dh, j * dw
            if sh == sw == 1:
                views.append(xp[:, r:r + oh, q:q + ow])
                continue
            phase = (r % sh, q % sw)
            if phase not in planes:
                planes[phase] = np.ascontiguousarray(xp[:, phase[0]::sh, phase[1]::sw])
            views.append(planes[phase][:, r // sh:r // sh + oh, q // sw:q // sw + ow])
    return views


def _phase_planes(xp, strides, rows):
    """The stride phase planes of a padded input, each (N, rows, Wq, C) with one width Wq for all: plane
    (p, q) holds xp[:, p::sh, q::sw] (zeros past its end).  Stride 1: the input itself when it has the rows."""
    sh, sw = strides
    n, hp, wp, c = xp.shape
    wq = -(-wp // sw)
    if sh == sw == 1 and hp >= rows:
        return {(0, 0): xp}, wq
    planes = {}
    for p in range(sh):
        for q in range(sw):
            plane = _scratch(("phase", p, q, sh, sw, hp, wp), (n, rows, wq, c), xp.dtype, 0.0)
            src = xp[:, p::sh, q::sw]
            plane[:, :src.shape[1], :src.shape[2]] = src
            planes[(p, q)] = plane
    return planes, wq


DEPTHWISE_TILES = 1 << 19
"""Bytes of tap weights a flat depthwise convolution may tile over its whole output (else over one row)."""


def _depthwise_flat(x, w, b, kernel, strides, pads, dilations, out_dims, activation, activation_params):
    """Depthwise convolution as one einsum per stride phase over flat shifts of the unpadded input.

    With the output's row length (OW * M) as the input's (or its stride phase
    planes') row length, every tap (i, j) reads the flattened input at one
    offset from the flattened output: a contiguous run per sample.  Taps are
    a regular grid of offsets, so one strided view holds them all and
    ``einsum`` multiplies and sums them in one pass (numpy's two passes per
    tap, multiply then add, measured 2x slower).  Padding costs nothing:
    rows above and below are zero rows of the buffer the input (or its
    phase planes) is copied into, contiguous per sample; columns past a row's
    edge wrap into the next row, where the tap's weight, tiled along the row,
    is zero.  Returns None where a phase plane is wider than the output (a
    strided or unpadded layer whose rows do not line up), for the padded form.
    The weight tiles and the geometry are worked out once per weight and shape.
    """
    n, h, wd, m = x.shape
    plan = _depthwise_plan(x.shape[1:], x.dtype, w, b, kernel, strides, pads, dilations, out_dims)
    if plan is None:
        return None
    oh, ow = out_dims
    sh, sw = strides
    shape, spec, bias, groups = plan
    y = np.empty((n, oh, ow, m), x.dtype)
    out = y.reshape((n,) + shape)
    e = x.itemsize
    parts = []
    for key, size, start, rows, cols, first, tail, steps, tiles in groups:
        buf = _scratch(key, (n, size), x.dtype, 0.0)
        src = x if sh == sw == 1 else x[:, key[1]::sh, key[2]::sw]
        if cols == ow:
            buf[:, start:start + rows * ow * m].reshape(src.shape)[...] = src
        else:  # a narrower plane: its columns past the edge stay zero
            buf[:, start:start + rows * ow * m].reshape(n, rows, ow, m)[:, :, :cols] = src
        parts.append((as_strided(buf[:, first:], (n,) + tail, (buf.strides[0],) + tuple(s * e for s in steps),
                                 writeable=False), tiles))
    chunk = max(1, DEPTHWISE_CHUNK // (oh * ow * m))
    tmp = _scratch("dw_flat_tmp", (min(chunk, n),) + shape, x.dtype) if len(parts) > 1 else None
    for begin in range(0, n, chunk):
        acc = out[begin:begin + chunk]
        for k, (view, tiles) in enumerate(parts):
            if k == 0:
                np.einsum(spec, view[begin:begin + chunk], tiles, out=acc)
            else:
                t = tmp[:len(acc)]
                np.einsum(spec, view[begin:begin + chunk], tiles, out=t)
                np.add(acc, t, out=acc)
        _finish(acc, bias, activation, activation_params)
    return y


_DW_PLANS = {}


def _depthwise_plan(sample, dtype, w, b, kernel, strides, pads, dilations, out_dims):
    """_depthwise_flat's geometry and weight tiles for one layer (None where it does not apply), made once."""
    key = (id(w), id(b), tuple(sample), np.dtype(dtype).str, tuple(kernel), tuple(strides), tuple(pads),
           tuple(dilations), tuple(out_dims))
    hit = _DW_PLANS.get(key)
    if hit is not None and hit[0] is w and hit[1] is b:
        return hit[2]
    if len(_DW_PLANS) > 256:
        _DW_PLANS.clear()
    plan = _make_depthwise_plan(sample, dtype, w, b, kernel, strides, pads, dilations, out_dims)
    _DW_PLANS[key] = (w, b, plan)
    return plan


def _make_depthwise_plan(sample, dtype, w, b, kernel, strides, pads, dilations, out_dims):
    h, wd, m = sample
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, strides, dilations, out_dims
    row = ow * m
    span = oh * row
    phases = {}  # stride phase -> [(i, j, plane row offset, plane column offset)]
    for i in range(kh):
        for j in range(kw):
            a, c = i * dh - pads[0], j * dw - pads[1]
            phases.setdefault((a % sh, c % sw), []).append((i, j, a // sh, c // sw))
    plane_rows = {p: -(-(h - p) // sh) for p, _ in phases}
    plane_cols = {q: -(-(wd - q) // sw) for _, q in phases}
    if any(plane_cols[q] > ow for _, q in phases):
        return None
    taps = [t for g in phases.values() for t in g]
    top = max(0, -min(t[2] for t in taps))
    bottom = max(0, max(t[2] + oh - plane_rows[p] for (p, _), g in phases.items() for t in g))
    guard = max(abs(t[3]) for t in taps) * m
    whole = kh * kw * span * np.dtype(dtype).itemsize <= DEPTHWISE_TILES  # weights tiled over the output, else a row
    cols = np.arange(ow)
    groups = []
    for (p, q), g in phases.items():
        rows = plane_rows[p]
        rs, cs = sorted({t[2] for t in g}), sorted({t[3] for t in g})
        first = guard + (top + rs[0]) * row + cs[0] * m
        drow = (rs[1] - rs[0]) * row if len(rs) > 1 else 0
        dcol = (cs[1] - cs[0]) * m if len(cs) > 1 else 0
        tail = (len(rs), len(cs)) + ((span,) if whole else (oh, row))
        steps = (drow, dcol) + ((1,) if whole else (row, 1))
        tiles = np.zeros((len(rs), len(cs), row), dtype)
        for i, j, r, c in g:
            inside = ((cols + c >= 0) & (cols + c < ow)).astype(dtype)
            tiles[rs.index(r), cs.index(c)] = (inside[:, None] * w[i, j][None, :]).reshape(-1)
        tiles = np.tile(tiles, (1, 1, oh)) if whole else tiles[:, :, None, :]
        key = ("dw_flat", p, q, sh, sw, h, wd, m, top, bottom, ow, oh)
        groups.append((key, (top + rows + bottom) * row + 2 * guard, guard + top * row, rows, plane_cols[q], first,
                       tail, steps, tiles))
    shape = (span,) if whole else (oh, row)
    bias = None if b is None else np.tile(np.asarray(b, dtype), ow * (oh if whole else 1))
    return shape, "nijs,ijs->ns" if whole else "nijrs,ijrs->nrs", bias, groups


def conv_depthwise(x, w, b=None, *, kernel, strides, pads, dilations, out_dims, activation="",
                   activation_params=None):
    """Depthwise convolution (one input channel per group): flat shifts and einsum (_depthwise_flat) where
    the rows line up, else tap by tap over whole padded rows.

    w is (KH, KW, M) with M = C * multiplier.  Every output row is computed
    over the full width of the padded input (the columns past the output's
    edge are dropped at the end), so each tap is one contiguous slice of the
    flattened (stride phase plane of the) input, multiplied by the tap's
    channel weights tiled along a row and added in place.  The batch goes
    through in chunks small enough that the running sum stays in cache.
    """
    n, _, _, c = x.shape
    m = w.shape[-1]
    if m != c:
        x = np.repeat(x, m // c, axis=3)  # output channel k reads input channel k // multiplier
    flat = _depthwise_flat(x, w, b, kernel, strides, pads, dilations, out_dims, activation, activation_params)
    if flat is not None:
        return flat
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, strides, dilations, out_dims
    xp = _padded(x, pads, _padded_size(x, kernel, strides, pads, dilations, out_dims))
    rows = oh + ((kh - 1) * dh) // sh + 1  # one spare row: the last tap's slice runs past its last row
    planes, wq = _phase_planes(xp, strides, rows)
    row = wq * m
    span = oh * row
    tiles = _row_tiles(w, wq)
    taps = []
    for i in range(kh):
        for j in range(kw):
            r, q = i * dh, j * dw
            plane = planes[(r % sh, q % sw)].reshape(n, -1)
            offset = ((r // sh) * wq + q // sw) * m
            taps.append((plane[:, offset:offset + span], tiles[i * kw + j]))
    chunk = max(1, DEPTHWISE_CHUNK // span)
    grid = _scratch("dw_grid", (min(chunk, n), oh, row), x.dtype)
    tmp = _scratch("dw_tmp", (min(chunk, n), oh, row), x.dtype)
    y = np.empty((n, oh, ow, m), x.dtype)
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        acc, t = grid[:size], tmp[:size]
        for k, (source, tap) in enumerate(taps):
            part = source[start:start + size].reshape(size, oh, row)
            if k == 0:
                np.multiply(part, tap, out=acc)
            else:
                np.multiply(part, tap, out=t)
                np.add(acc, t, out=acc)
        out = acc.reshape(size, oh, wq, m)[:, :, :ow]
        if b is not None:
            np.add(out, b, out=y[start:start + size])
        else:
            np.copyto(y[start:start + size], out)
    return _activate(y, activation, activation_params)


_TILES = {}


def _row_tiles(w, wq):
    """Each tap's channel weights repeated along a padded row of wq pixels; made once per weight and width."""
    key = (id(w), wq)
    hit = _TILES.get(key)
    if hit is None or hit[0] is not w:
        if len(_TILES) > 256:
            _TILES.clear()
        hit = _TILES[key] = (w, np.tile(w.reshape(-1, 1, w.shape[-1]), (1, wq, 1)).reshape(-1, wq * w.shape[-1]))
    return hit[1]


DEPTHWISE_CHUNK = 1 << 16
"""Values of a depthwise convolution's running sum per step (256 kB of float32, in cache)."""


# ------------------------------------------------------------------ pooling
def max_pool_nhwc(x, *, kernel, strides, pads, dilations, out_dims):
    xp = _padded(x, pads, _padded_size(x, kernel, strides, pads, dilations, out_dims), _lowest(x.dtype))
    views = _tap_planes(xp, kernel, strides, dilations, out_dims)
    y = views[0].copy()
    for view in views[1:]:
        np.maximum(y, view, out=y)
    return y


def avg_pool_nhwc(x, *, kernel, strides, pads, dilations, out_dims, count_include_pad):
    xp = _padded(x, pads, _padded_size(x, kernel, strides, pads, dilations, out_dims))
    views = _tap_planes(xp, kernel, strides, dilations, out_dims)
    y = views[0].copy()
    for view in views[1:]:
        np.add(y, view, out=y)
    divisor = _divisors(x.shape[1:3], kernel, strides, pads, dilations, out_dims, count_include_pad)
    if np.all(divisor == divisor.flat[0]):
        return np.multiply(y, np.asarray(1.0 / divisor.flat[0], y.dtype), out=y)
    return np.divide(y, divisor[None, :, :, None].astype(y.dtype), out=y)


_DIVISORS = {}


def _divisors(size, kernel, strides, pads, dilations, out_dims, count_include_pad):
    """Per output position, how many inputs an average divides by (kernels.avg_pool's rule); computed once
    per geometry."""
    key = (tuple(size), tuple(kernel), tuple(strides), tuple(pads), tuple(dilations), tuple(out_dims),
           count_include_pad)
    if key not in _DIVISORS:
        _DIVISORS[key] = _divisor_image(size, kernel, strides, pads, dilations, out_dims, count_include_pad)
    return _DIVISORS[key]


def _divisor_image(size, kernel, strides, pads, dilations, out_dims, count_include_pad):
    ones = np.ones(size, np.float32)
    if count_include_pad:
        ones = np.pad(ones, [(pads[0], pads[2]), (pads[1], pads[3])], constant_values=1.0)
        pads = [0, 0, 0, 0]
    return np.maximum(sum(_pool_slices(ones, kernel, strides, pads, dilations, out_dims, 0.0)), 1)


def avg_pool_gemm(x, p, *, kernel, out_dims):
    """Average pooling over non-overlapping windows (stride = kernel, no padding), channels-first: the KH
    input rows of each output row, side by side, times p (KH*W, OW), which holds 1/(KH*KW) where a column
    falls in a window.  One BLAS call, whatever the batch (b1 LeNet: 4 us against the reference's 90)."""
    n, c = x.shape[:2]
    oh, ow = out_dims
    if x.shape[2] != oh * kernel[0]:
        x = x[:, :, :oh * kernel[0]]  # rows past the last whole window
    rows = np.ascontiguousarray(x).reshape(n * c * oh, p.shape[0])
    return np.matmul(rows, p).reshape(n, c, oh, ow)


def global_avg_pool_nhwc(x):
    """(N, H, W, C) -> (N, 1, 1, C), the mean over pixels as one product with a ones vector per sample."""
    n, h, w, c = x.shape
    ones = np.full((1, h * w), 1.0 / (h * w), x.dtype)
    return np.matmul(ones, x.reshape(n, h * w, c)).reshape(n, 1, 1, c)


def global_max_pool_nhwc(x):
    return x.max(axis=(1, 2), keepdims=True)


# ------------------------------------------------------- per-channel and merges
def scale_shift_nhwc(x, scale, shift=None, *, activation="", activation_params=None):
    """x * scale + shift along the last (channel) axis; also an unfused BatchNorm, its factors packed."""
    y = np.multiply(x, scale)
    return _finish(y, shift, activation, activation_params)


def add_into(a, b, *, activation="", activation_params=None):
    """a + b written over a (a value nothing reads afterwards)."""
    return _activate(np.add(a, b, out=a), activation, activation_params)


# ------------------------------------------------------------------ threads
BATCH_THREAD_PREFIX = "irc-batch"
"""Worker threads running a chunk of the batch are named so: kernels inside them do not split work again."""

_POOL = []
_BLAS = []


def _blas_controller():
    """threadpoolctl's controller for the BLAS numpy uses, if threadpoolctl is installed (else None)."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS.append(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # not installed, or a BLAS it cannot drive: BLAS keeps its own threads
            _BLAS.append([])
    return _BLAS[0]


class single_threaded_blas:
    """BLAS on one thread from the network's first run on: the batch is split over threads instead.

    A multithreaded BLAS wakes its threads for every small GEMM; on a busy
    machine each wake-up can cost a scheduler time slice (a 1024x144x16 GEMM:
    32 ms instead of 0.08).  The setting is not undone after the run: giving
    OpenBLAS its threads back wakes them, and they spin for a while, taking a
    core from whatever runs next (measured: the next batch-1 run 5-10x slower
    on 2 cores).  threadpoolctl's ``threadpool_limits`` restores it for code
    that wants BLAS threads again.
    """

    def __enter__(self):
        if len(_BLAS) < 2:  # once: the setting is kept (see above)
            for lib in _blas_controller():
                lib.set_num_threads(1)
            _BLAS.append(True)

    def __exit__(self, *exc):
        pass


def run_in_threads(fn, W, inputs, threads, min_rows, chunk=0):
    """fn(W, *inputs) with the batch split into up to ``threads`` parts of at least ``min_rows`` rows, each
    in its own thread (numpy and BLAS release the GIL), and each part run ``chunk`` samples at a time (0: at
    once) so that a layer's activations stay in cache; the outputs joined along the batch axis."""
    n = len(inputs[0])
    parts = max(1, min(threads, n // max(min_rows, 1)))
    if parts == 1 and (not chunk or n <= chunk):
        return fn(W, *inputs)
    bounds = [n * k // parts for k in range(parts + 1)]
    if parts == 1:
        results = _run_chunks(fn, W, inputs, 0, n, chunk)
    else:
        if not _POOL:
            from concurrent.futures import ThreadPoolExecutor

            _POOL.append(ThreadPoolExecutor(max_workers=threads, thread_name_prefix=BATCH_THREAD_PREFIX))
        futures = [_POOL[0].submit(_run_chunks, fn, W, inputs, bounds[k], bounds[k + 1], chunk) for k in range(parts)]
        results = [r for f in futures for r in f.result()]
    return [np.concatenate([r[i] for r in results]) for i in range(len(results[0]))]


def _run_chunks(fn, W, inputs, start, stop, chunk):
    """fn's outputs on rows start:stop of the inputs, ``chunk`` rows per call (all at once if 0)."""
    step = chunk or (stop - start)
    return [fn(W, *[x[s:min(s + step, stop)] for x in inputs]) for s in range(start, stop, step)]
