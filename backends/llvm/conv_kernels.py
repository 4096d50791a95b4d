"""Channels-last convolution kernels for the numpy target, written as LLVM IR and JIT-compiled with llvmlite.

Numpy has no fused multiply-add: a depthwise convolution in numpy makes two full
passes over its output per kernel tap.  These kernels keep a block of channels
in vector registers, add every tap into it with one FMA each, clamp (ReLU,
ReLU6, Clip) and store once.  The geometry is a runtime argument, so one
compiled object (cached on disk by :mod:`irc.backends.llvm.jit`) serves every
layer.  The work is split over output rows (batch x height), each part a ctypes
call in its own Python thread (ctypes releases the GIL).

Layouts: x (N, H, W, C), y (N, OH, OW, M), contiguous float32.

* ``depthwise``: one input channel per group (M = C * multiplier, weight
  (KH, KW, M)); vectorised over the output channels.
* ``grouped``: cg input channels per group, mg outputs each (weight
  (KH, KW, cg, M)); each input value is broadcast against the group's outputs,
  vectorised over them.  A dense convolution is the one-group case.
"""
from __future__ import annotations

import ctypes
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import llvmlite.ir as ir
import numpy as np

from irc.ops.kernels_nhwc import BATCH_THREAD_PREFIX, _divisors, _padded, _padded_nchw, _padded_size

from .emit import F32, I64, Function, i64

VEC = 8  # floats per AVX2 register; LLVM legalises the vector type on narrower targets
V8 = ir.VectorType(F32, VEC)
GEOMETRY = ("H", "W", "C", "OH", "OW", "M", "KH", "KW", "SH", "SW", "DH", "DW", "PT", "PL", "CG", "MG", "ACT")
"""The i64 fields of the geometry array every kernel reads, in order (ACT: the fused activation's code)."""
ACTIVATION_CODES = {"": 0, "relu": 0, "clip": 0, "tanh": 1, "sigmoid": 2, "leaky_relu": 3}
"""0: clamp to [lo, hi]; 1: tanh; 2: sigmoid; 3: leaky ReLU with slope lo."""

# Eigen's rational approximation of tanh on [-7.9053, 7.9053] (float32, within a few ulp)
TANH_ALPHA = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
              -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)
TANH_BETA = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)
TANH_CLAMP = 7.90531110763549805
"""The i64 fields of the geometry array every kernel reads, in order."""


class _Emitter:
    """One conv kernel function: its arguments, the geometry loaded once, and vector helpers."""

    def __init__(self, module: ir.Module, name: str):
        ptr = F32.as_pointer()
        self.f = Function(module, name, [ptr, ptr, ptr, ptr, I64.as_pointer(), F32, F32, I64, I64],
                          ["x", "w", "b", "y", "geom", "lo", "hi", "row0", "row1"])
        self.b = self.f.b
        geom = self.f.args["geom"]
        self.g = {k: self.f.entry.load(self.f.entry.gep(geom, [i64(i)]), name=k) for i, k in enumerate(GEOMETRY)}
        self.fma_v = _intrinsic(module, "llvm.fma.v8f32", V8, 3)
        self.fma_s = _intrinsic(module, "llvm.fma.f32", F32, 3)
        self.lo, self.hi = self.f.args["lo"], self.f.args["hi"]

    def vload(self, base, index):
        p = self.b.bitcast(self.b.gep(base, [index], inbounds=True), V8.as_pointer())
        return self.b.load(p, align=4)

    def vstore(self, value, base, index) -> None:
        p = self.b.bitcast(self.b.gep(base, [index], inbounds=True), V8.as_pointer())
        self.b.store(value, p, align=4)

    def splat(self, scalar):
        vec = ir.Constant(V8, ir.Undefined)
        vec = self.b.insert_element(vec, scalar, ir.Constant(I64, 0))
        return self.b.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(ir.IntType(32), VEC), [0] * VEC))

    def clamp(self, v, lo, hi):
        """min(max(v, lo), hi) with NaN passing through, as numpy's maximum/clip do."""
        v = self.b.select(self.b.fcmp_ordered("<", v, lo), lo, v)
        return self.b.select(self.b.fcmp_ordered(">", v, hi), hi, v)

    def const(self, value: float):
        return ir.Constant(V8, [ir.Constant(F32, float(value))] * VEC)

    def tanh(self, v):
        b = self.b
        limit = self.const(TANH_CLAMP)
        x = self.clamp(v, b.fneg(limit), limit)
        x2 = b.fmul(x, x)
        p = self.const(TANH_ALPHA[-1])
        for a in reversed(TANH_ALPHA[:-1]):
            p = b.call(self.fma_v, [p, x2, self.const(a)])
        p = b.fmul(p, x)
        q = self.const(TANH_BETA[-1])
        for a in reversed(TANH_BETA[:-1]):
            q = b.call(self.fma_v, [q, x2, self.const(a)])
        return b.fdiv(p, q)

    def activate(self, v):
        """The fused activation of a vector, by the ACT code (a branch the predictor always gets right)."""
        b, code = self.b, self.g["ACT"]
        result = self.f.var(V8, "act")
        b.store(self.clamp(v, self.splat(self.lo), self.splat(self.hi)), result)
        with b.if_then(b.icmp_signed("==", code, i64(1))):
            b.store(self.tanh(v), result)
        with b.if_then(b.icmp_signed("==", code, i64(2))):
            half = self.const(0.5)
            b.store(b.call(self.fma_v, [self.tanh(b.fmul(v, half)), half, half]), result)
        with b.if_then(b.icmp_signed("==", code, i64(3))):
            b.store(b.select(b.fcmp_ordered(">=", v, self.const(0.0)), v, b.fmul(v, self.splat(self.lo))), result)
        return b.load(result)

    def activate_scalar(self, value):
        vec = self.b.insert_element(ir.Constant(V8, ir.Undefined), value, ir.Constant(I64, 0))
        return self.b.extract_element(self.activate(vec), ir.Constant(I64, 0))

    def inside(self, index, size):
        """0 <= index < size, as one unsigned compare."""
        return self.b.icmp_unsigned("<", index, size)

    def rows(self):
        """for r in [row0, row1): yields (n, oh) of output row r."""
        return self.f.loop(self.f.args["row0"], self.f.args["row1"], "row")

    def taps(self, n, oh, ow, body) -> None:
        """Call body(x_pixel_offset, tap_index) for every kernel tap that lands inside the input."""
        g, b = self.g, self.b
        with self.f.loop(0, g["KH"], "i") as i:
            ih = b.add(b.sub(b.mul(oh, g["SH"]), g["PT"]), b.mul(i, g["DH"]))
            with self.f.when(self.inside(ih, g["H"])):
                with self.f.loop(0, g["KW"], "j") as j:
                    iw = b.add(b.sub(b.mul(ow, g["SW"]), g["PL"]), b.mul(j, g["DW"]))
                    with self.f.when(self.inside(iw, g["W"])):
                        pixel = b.mul(b.add(b.mul(b.add(b.mul(n, g["H"]), ih), g["W"]), iw), g["C"])
                        body(pixel, b.add(b.mul(i, g["KW"]), j))


def _intrinsic(module: ir.Module, name: str, ty, arity: int) -> ir.Function:
    if name in module.globals:
        return module.globals[name]
    return ir.Function(module, ir.FunctionType(ty, [ty] * arity), name)


def _emit_depthwise(module: ir.Module) -> None:
    """y[n,oh,ow,m] = b[m] + sum_taps x[n,ih,iw,m // MG] * w[i,j,m]; blocks of 4, then 1 vector, then scalars."""
    e = _Emitter(module, "depthwise")
    f, b, g = e.f, e.b, e.g
    x, w, bias, y = (f.args[k] for k in ("x", "w", "b", "y"))
    lo_v, hi_v = e.splat(e.lo), e.splat(e.hi)
    with e.rows() as r:
        n, oh = b.sdiv(r, g["OH"]), b.srem(r, g["OH"])
        with f.loop(0, g["OW"], "ow") as ow:
            out = b.mul(b.add(b.mul(r, g["OW"]), ow), g["M"])

            def block(c, width: int) -> None:
                accs = [f.var(V8, "acc") for _ in range(width)]
                for k, acc in enumerate(accs):
                    b.store(e.vload(bias, b.add(c, i64(k * VEC))), acc)

                def tap(pixel, t) -> None:
                    for k, acc in enumerate(accs):
                        ch = b.add(c, i64(k * VEC))
                        xv = e.vload(x, b.add(pixel, ch))
                        wv = e.vload(w, b.add(b.mul(t, g["M"]), ch))
                        b.store(b.call(e.fma_v, [xv, wv, b.load(acc)]), acc)
                e.taps(n, oh, ow, tap)
                for k, acc in enumerate(accs):
                    e.vstore(e.activate(b.load(acc)), y, b.add(out, b.add(c, i64(k * VEC))))

            # vector blocks read input channel m for output m: only without a channel multiplier
            vectors = b.select(b.icmp_signed("==", g["MG"], i64(1)), g["M"], i64(0))
            wide = b.sdiv(vectors, i64(4 * VEC))
            with f.loop(0, wide, "c4") as q:
                block(b.mul(q, i64(4 * VEC)), 4)
            done4 = b.mul(wide, i64(4 * VEC))
            single = b.sdiv(b.sub(vectors, done4), i64(VEC))
            with f.loop(0, single, "c1") as q:
                block(b.add(done4, b.mul(q, i64(VEC))), 1)
            done1 = b.add(done4, b.mul(single, i64(VEC)))
            with f.loop(done1, g["M"], "cs") as c:
                acc = f.var(F32, "acc_s")
                b.store(b.load(b.gep(bias, [c])), acc)
                # depthwise with a multiplier: output m reads input channel m // MG
                cin = b.sdiv(c, g["MG"])

                def tap_s(pixel, t) -> None:
                    xv = b.load(b.gep(x, [b.add(pixel, cin)]))
                    wv = b.load(b.gep(w, [b.add(b.mul(t, g["M"]), c)]))
                    b.store(b.call(e.fma_s, [xv, wv, b.load(acc)]), acc)
                e.taps(n, oh, ow, tap_s)
                b.store(e.activate_scalar(b.load(acc)), b.gep(y, [b.add(out, c)]))
    f.finish()


DEPTHWISE_UNROLLED = ((3, 3),)
"""Depthwise kernel sizes with their own kernel function: the taps unrolled, their weights held in registers."""


DEPTHWISE_UNROLLED_WIDTH = 8
DEPTHWISE_UNROLLED_BYTES = 8 << 20
"""The unrolled kernel runs where the output rows are at most DEPTHWISE_UNROLLED_WIDTH pixels or the input is
at most DEPTHWISE_UNROLLED_BYTES (one thread, against the generic kernel: 40-90% faster on DS-CNN's 25x5x64
and on MobileNetV2's layers at 4 samples a call, which is how a program runs them (its CHUNK); 10-30% slower
on a 14 MB input with wide rows, where both wait on memory)."""
DEPTHWISE_PIXELS = 4
"""Output pixels per block of an unrolled depthwise kernel: independent FMA chains that hide the latency."""


def _emit_depthwise_unrolled(module: ir.Module, kh: int, kw: int, name: str = "", pixels: int = 0,
                             tails: tuple = (1,)) -> None:
    """Depthwise convolution with a KHxKW kernel known at compile time, one input channel per output (M = C,
    a multiple of VEC), no padded copy: per block of DEPTHWISE_PIXELS output pixels of a row and 8
    channels, the KH*KW weight vectors are loaded once and each pixel is one FMA chain over the taps.
    Kernel rows outside the input are skipped per output row; blocks away from the left and right edges
    take no column checks, the others check each tap, as does the tail of a row."""
    e = _Emitter(module, name or f"depthwise{kh}x{kw}")
    f, b, g = e.f, e.b, e.g
    x, w, bias, y = (f.args[k] for k in ("x", "w", "b", "y"))
    P = pixels or DEPTHWISE_PIXELS
    with e.rows() as r:
        n, oh = b.sdiv(r, g["OH"]), b.srem(r, g["OH"])
        ih0 = b.sub(b.mul(oh, g["SH"]), g["PT"])
        rows = []  # per kernel row: inside the input?, and the flat pixel index of that input row's start
        for i in range(kh):
            ih = b.add(ih0, b.mul(i64(i), g["DH"]))
            rows.append((e.inside(ih, g["H"]), b.mul(b.add(b.mul(n, g["H"]), ih), g["W"])))
        span = b.add(b.mul(i64(P - 1), g["SW"]), b.mul(i64(kw - 1), g["DW"]))  # input columns a block reads

        def block(ow0, pixels: int, checked: bool) -> None:
            with f.loop(0, b.sdiv(g["M"], i64(VEC)), "cv") as cv:
                c = b.mul(cv, i64(VEC))
                wv = [e.vload(w, b.add(b.mul(i64(t), g["M"]), c)) for t in range(kh * kw)]
                bv = e.vload(bias, c)
                accs = [f.var(V8, "acc") for _ in range(pixels)]
                for acc in accs:
                    b.store(bv, acc)
                iw0 = [b.sub(b.mul(b.add(ow0, i64(p)), g["SW"]), g["PL"]) for p in range(pixels)]
                for i, (row_in, row_base) in enumerate(rows):
                    with b.if_then(row_in):
                        for j in range(kw):
                            for p, acc in enumerate(accs):
                                iw = b.add(iw0[p], b.mul(i64(j), g["DW"]))

                                def tap(iw=iw, acc=acc, t=i * kw + j, row_base=row_base) -> None:
                                    xv = e.vload(x, b.add(b.mul(b.add(row_base, iw), g["C"]), c))
                                    b.store(b.call(e.fma_v, [xv, wv[t], b.load(acc)]), acc)
                                if checked:
                                    with b.if_then(e.inside(iw, g["W"])):
                                        tap()
                                else:
                                    tap()
                for p, acc in enumerate(accs):
                    out = b.add(b.mul(b.add(b.mul(r, g["OW"]), b.add(ow0, i64(p))), g["M"]), c)
                    e.vstore(e.activate(b.load(acc)), y, out)

        blocks = b.sdiv(g["OW"], i64(P))
        with f.loop(0, blocks, "owb") as q:
            ow0 = b.mul(q, i64(P))
            left = b.sub(b.mul(ow0, g["SW"]), g["PL"])
            interior = b.and_(b.icmp_signed(">=", left, i64(0)), b.icmp_signed("<", b.add(left, span), g["W"]))
            with b.if_else(interior) as (fast, edge):
                with fast:
                    block(ow0, P, False)
                with edge:
                    block(ow0, P, True)
        done = b.mul(blocks, i64(P))
        for width in tails:  # the row's last pixels, fewer than P
            count = b.sdiv(b.sub(g["OW"], done), i64(width))
            with f.loop(0, count, f"owt{width}") as q:
                block(b.add(done, b.mul(q, i64(width))), width, True)
            done = b.add(done, b.mul(count, i64(width)))
    f.finish()


DIRECT_PIXELS = (4, 3, 2, 1)
"""Pixel tiles of the direct kernel, widest first: a row's pixels go 4 at a time, and the 1 to 3 left over
as one tile (not one by one: LeNet's 10-pixel rows 35 -> 43, 3-pixel rows 17 -> 30 GMAC/s, one thread)."""
DIRECT_CHANNEL_TILES = {
    # 32 vector registers (AVX-512VL): 4 pixels x 4 vectors, 16 FMA chains (ResNet-8's 32- and 64-channel
    # layers 10-15% faster, DS-CNN's first layer 30%, than 4 x 2)
    True: {4: (4, 2, 1), 3: (2, 1), 2: (4, 2, 1), 1: (8, 2, 1)},
    False: {4: (2, 1), 3: (2, 1), 2: (4, 2, 1), 1: (8, 2, 1)},  # 16 (AVX2)
}
"""Vectors of output channels per tile of the direct kernel, by tile pixels, widest first, by whether the CPU
has 32 vector registers; a lone pixel takes 8 vectors so that it too has 8 independent FMA chains."""


def wide_registers() -> bool:
    """Whether this CPU has 32 vector registers (AVX-512VL), which wider register tiles need."""
    return _host_has("avx512vl")


@functools.cache
def _host_has(feature: str) -> bool:
    import llvmlite.binding as llvm

    try:
        return bool(llvm.get_host_cpu_features().get(feature, False))
    except Exception:  # a host whose features LLVM cannot tell: the narrower tiles work everywhere
        return False


def _emit_direct(module: ir.Module, name: str = "direct", pixel_tiles=DIRECT_PIXELS, channel_tiles=None) -> None:
    """A dense convolution over a pre-padded input: y[n,oh,ow,m] = b[m] + sum_{i,j,c} x[n,ih,iw,c] w[i,j,c,m].

    w is (KH, KW, C, MP) with MP = M rounded up to whole vectors (zeros past
    M).  A tile of 4 output pixels x 2 vectors of output channels stays in 8
    registers; per input channel and tap it takes 2 weight vectors and 4
    broadcast inputs.  Tails: 1 pixel, 1 vector, lanes stored one by one.
    """
    channel_tiles = channel_tiles or DIRECT_CHANNEL_TILES[wide_registers()]
    e = _Emitter(module, name)
    f, b, g = e.f, e.b, e.g
    x, w, bias, y = (f.args[k] for k in ("x", "w", "b", "y"))
    mp = b.mul(b.sdiv(b.add(g["M"], i64(VEC - 1)), i64(VEC)), i64(VEC))
    with e.rows() as r:
        n, oh = b.sdiv(r, g["OH"]), b.srem(r, g["OH"])

        def tile(ow0, pixels: int, m0, vectors: int) -> None:
            accs = [[f.var(V8, "acc") for _ in range(vectors)] for _ in range(pixels)]
            for v in range(vectors):
                bv = e.vload(bias, b.add(m0, i64(v * VEC)))
                for t in range(pixels):
                    b.store(bv, accs[t][v])
            with f.loop(0, g["KH"], "i") as i:
                ih = b.add(b.mul(oh, g["SH"]), b.mul(i, g["DH"]))
                row = b.mul(b.add(b.mul(n, g["H"]), ih), g["W"])
                with f.loop(0, g["KW"], "j") as j:
                    px = [b.mul(b.add(row, b.add(b.mul(b.add(ow0, i64(t)), g["SW"]), b.mul(j, g["DW"]))), g["C"])
                          for t in range(pixels)]
                    pw = b.add(b.mul(b.mul(b.add(b.mul(i, g["KW"]), j), g["CG"]), mp), m0)
                    # CG values from each pixel on: its C channels, or (KW = 1) a whole kernel row of them
                    with f.loop(0, g["CG"], "c") as c:
                        wrow = b.add(pw, b.mul(c, mp))
                        wv = [e.vload(w, b.add(wrow, i64(v * VEC))) for v in range(vectors)]
                        for t in range(pixels):
                            xs = e.splat(b.load(b.gep(x, [b.add(px[t], c)], inbounds=True)))
                            for v in range(vectors):
                                b.store(b.call(e.fma_v, [xs, wv[v], b.load(accs[t][v])]), accs[t][v])
            for t in range(pixels):
                out = b.mul(b.add(b.mul(r, g["OW"]), b.add(ow0, i64(t))), g["M"])
                for v in range(vectors):
                    value = e.activate(b.load(accs[t][v]))
                    m = b.add(m0, i64(v * VEC))
                    # A whole vector may run past M into the next pixel's first channels when those are
                    # written afterwards: this tile holds channel 0, the pixel does not end its row, and
                    # the overhang stays inside the next pixel (m + VEC <= 2 M).
                    whole = b.icmp_signed("<=", b.add(m, i64(VEC)), g["M"])
                    later = b.and_(b.and_(b.icmp_signed("==", m0, i64(0)),
                                          b.icmp_signed("<", b.add(ow0, i64(t + 1)), g["OW"])),
                                   b.icmp_signed("<=", b.add(m, i64(VEC)), b.mul(g["M"], i64(2))))
                    with b.if_else(b.or_(whole, later)) as (full, part):
                        with full:
                            e.vstore(value, y, b.add(out, m))
                        with part:
                            for lane in range(VEC):
                                with b.if_then(b.icmp_signed("<", b.add(m, i64(lane)), g["M"])):
                                    b.store(b.extract_element(value, i64(lane)),
                                            b.gep(y, [b.add(out, b.add(m, i64(lane)))], inbounds=True))

        def channel_blocks(ow0, pixels: int) -> None:
            done = i64(0)  # vectors of channels done
            for vectors in channel_tiles[pixels]:
                blocks = b.sdiv(b.sub(b.sdiv(mp, i64(VEC)), done), i64(vectors))
                with f.loop(0, blocks, f"mb{vectors}") as q:
                    tile(ow0, pixels, b.mul(b.add(done, b.mul(q, i64(vectors))), i64(VEC)), vectors)
                done = b.add(done, b.mul(blocks, i64(vectors)))

        done = i64(0)  # pixels of the row done
        for width in pixel_tiles:
            blocks = b.sdiv(b.sub(g["OW"], done), i64(width))
            with f.loop(0, blocks, f"ow{width}") as q:
                channel_blocks(b.add(done, b.mul(q, i64(width))), width)
            done = b.add(done, b.mul(blocks, i64(width)))
    f.finish()


FEW_OUTPUTS_MAX = 8
"""Output channels one few-outputs tile keeps in registers (one or two vectors of 8 pixels each: with 32
vector registers and rows of 16+ pixels, two, measured 1.4-1.8x faster, LeNet's first layer 18 -> 31 GMAC/s
one thread)."""


def _emit_few_outputs(module: ir.Module, name: str = "few_outputs", pixel_vectors: int = 1) -> None:
    """A dense convolution with few output channels, channels-first in and out, over a pre-padded input:
    vectorised over 8 x ``pixel_vectors`` output pixels of a row (one unaligned load per tap and vector
    serves every output channel).

    x (N, C, H, W) padded, w (M, C*KH*KW) (the numpy formulation's packing), y (N, M, OH, OW); needs
    SW = 1 and OW >= 8 x pixel_vectors: a row's last block starts at OW minus that and overlaps the one
    before (same values).
    Tiles of up to FEW_OUTPUTS_MAX channels, one accumulator vector each, each tap's weight broadcast.
    """
    e = _Emitter(module, name)
    f, b, g = e.f, e.b, e.g
    x, w, bias, y = (f.args[k] for k in ("x", "w", "b", "y"))
    taps_per_output = g["CG"]  # C * KH * KW
    PV = pixel_vectors
    span = PV * VEC  # pixels per block
    with e.rows() as r:
        n, oh = b.sdiv(r, g["OH"]), b.srem(r, g["OH"])
        blocks = b.sdiv(b.add(g["OW"], i64(span - 1)), i64(span))

        def tile(ow0, m0, count: int) -> None:
            accs = [[f.var(V8, "acc") for _ in range(count)] for _ in range(PV)]
            for t in range(count):
                bv = e.splat(b.load(b.gep(bias, [b.add(m0, i64(t))], inbounds=True)))
                for p in range(PV):
                    b.store(bv, accs[p][t])
            wrows = [b.mul(b.add(m0, i64(t)), taps_per_output) for t in range(count)]
            with f.loop(0, g["C"], "c") as c:
                plane = b.mul(b.add(b.mul(n, g["C"]), c), g["H"])
                with f.loop(0, g["KH"], "i") as i:
                    row = b.add(b.mul(b.add(plane, b.add(b.mul(oh, g["SH"]), b.mul(i, g["DH"]))), g["W"]), ow0)
                    wtap = b.mul(b.add(b.mul(c, g["KH"]), i), g["KW"])
                    with f.loop(0, g["KW"], "j") as j:
                        at = b.add(row, b.mul(j, g["DW"]))
                        xv = [e.vload(x, b.add(at, i64(p * VEC))) for p in range(PV)]
                        k = b.add(wtap, j)
                        for t in range(count):
                            wv = e.splat(b.load(b.gep(w, [b.add(wrows[t], k)], inbounds=True)))
                            for p in range(PV):
                                b.store(b.call(e.fma_v, [xv[p], wv, b.load(accs[p][t])]), accs[p][t])
            for t in range(count):
                out = b.add(b.mul(b.add(b.mul(b.add(b.mul(n, g["M"]), b.add(m0, i64(t))), g["OH"]), oh), g["OW"]), ow0)
                for p in range(PV):
                    e.vstore(e.activate(b.load(accs[p][t])), y, b.add(out, i64(p * VEC)))

        with f.loop(0, blocks, "owb") as q:
            ow0 = b.select(b.icmp_signed("<", b.mul(q, i64(span)), b.sub(g["OW"], i64(span))),
                           b.mul(q, i64(span)), b.sub(g["OW"], i64(span)))
            mblocks = b.sdiv(b.add(g["M"], i64(FEW_OUTPUTS_MAX - 1)), i64(FEW_OUTPUTS_MAX))
            with f.loop(0, mblocks, "mb") as mb:
                m0 = b.mul(mb, i64(FEW_OUTPUTS_MAX))
                count = b.sub(g["M"], m0)
                for k in range(1, FEW_OUTPUTS_MAX + 1):
                    # the last block holds M - m0 channels, every other one FEW_OUTPUTS_MAX
                    cond = (b.icmp_signed(">=", count, i64(k)) if k == FEW_OUTPUTS_MAX
                            else b.icmp_signed("==", count, i64(k)))
                    with b.if_then(cond):
                        tile(ow0, m0, k)
    f.finish()


def _emit_pool(module: ir.Module, name: str, is_max: bool) -> None:
    """Max or average pooling, channels-last: every output row accumulated in place over the taps inside
    the input (so padding is never read: -inf for max, nothing for the average, whose per-position divisor
    comes in ``w``); vectorised over channels by LLVM."""
    e = _Emitter(module, name)
    f, b, g = e.f, e.b, e.g
    x, divisor, y = f.args["x"], f.args["w"], f.args["y"]
    init = ir.Constant(F32, float("-inf") if is_max else 0.0)
    with e.rows() as r:
        n, oh = b.sdiv(r, g["OH"]), b.srem(r, g["OH"])
        with f.loop(0, g["OW"], "ow") as ow:
            out = b.mul(b.add(b.mul(r, g["OW"]), ow), g["C"])
            with f.loop(0, g["C"], "c0") as c:
                b.store(init, b.gep(y, [b.add(out, c)], inbounds=True))

            def tap(pixel, t) -> None:
                with f.loop(0, g["C"], "c") as c:
                    dst = b.gep(y, [b.add(out, c)], inbounds=True)
                    xv, yv = b.load(b.gep(x, [b.add(pixel, c)], inbounds=True)), b.load(dst)
                    if is_max:  # numpy's maximum: a NaN wins
                        take = b.or_(b.fcmp_unordered("uno", xv, xv), b.fcmp_ordered(">", xv, yv))
                        b.store(b.select(take, xv, yv), dst)
                    else:
                        b.store(b.fadd(yv, xv), dst)
            e.taps(n, oh, ow, tap)
            if not is_max:
                scale = b.fdiv(ir.Constant(F32, 1.0), b.load(b.gep(divisor, [b.add(b.mul(oh, g["OW"]), ow)])))
                with f.loop(0, g["C"], "c1") as c:
                    dst = b.gep(y, [b.add(out, c)], inbounds=True)
                    b.store(b.fmul(b.load(dst), scale), dst)
    f.finish()


def _module_ir() -> str:
    import llvmlite.binding as llvm

    module = ir.Module("irc_conv_kernels")
    module.triple = llvm.get_process_triple()
    _emit_depthwise(module)
    for kh, kw in DEPTHWISE_UNROLLED:
        _emit_depthwise_unrolled(module, kh, kw)
    _emit_direct(module)
    _emit_few_outputs(module)
    _emit_few_outputs(module, "few_outputs16", 2)
    _emit_pool(module, "max_pool", True)
    _emit_pool(module, "avg_pool", False)
    offset = array_data_offset()
    if offset is not None:
        for fn in list(module.functions):
            if not fn.is_declaration:
                _emit_object_entry(module, fn, offset)
    return str(module)


def array_data_offset() -> int | None:
    """Where a numpy array object holds its data pointer (PyArrayObject's first field after the object
    header: 16 bytes on the usual CPython builds), found by looking; None if it is not found."""
    import sys

    a = np.zeros(8, np.float32)
    views = (a, a[2:])
    raw = [ctypes.string_at(id(v), 64) for v in views]
    for off in range(8, 57, 8):
        if all(int.from_bytes(r[off:off + 8], sys.byteorder) == v.__array_interface__["data"][0]
               for r, v in zip(raw, views)):
            return off
    return None


def _emit_object_entry(module: ir.Module, kernel: ir.Function, offset: int) -> None:
    """``<kernel>_obj``: the kernel taking x and y as numpy array objects, their data pointers read from the
    objects (ctypes hands a Python object over as its address for free, while asking numpy for the data
    pointer costs about 2 us an array, as much as the call itself)."""
    i8p = ir.IntType(8).as_pointer()
    types = list(kernel.function_type.args)
    types[0] = types[3] = i8p
    entry = ir.Function(module, ir.FunctionType(kernel.function_type.return_type, types), kernel.name + "_obj")
    b = ir.IRBuilder(entry.append_basic_block())

    def data(obj, ty):
        return b.load(b.bitcast(b.gep(obj, [i64(offset)]), ty.as_pointer()))
    args = list(entry.args)
    args[0] = data(args[0], kernel.function_type.args[0])
    args[3] = data(args[3], kernel.function_type.args[3])
    b.call(kernel, args)
    b.ret_void()


_COMPILE_LOCK = threading.Lock()


@functools.cache
def _compiled():
    from .jit import compile_cached

    return compile_cached(_module_ir())


_FUNCTIONS: dict = {}


def _function(name: str):
    """The compiled kernel by name; ``<name>_obj`` takes x and y as numpy arrays (see _emit_object_entry)."""
    with _COMPILE_LOCK:
        if name not in _FUNCTIONS:
            arrays = ctypes.py_object if name.endswith("_obj") else ctypes.c_void_p
            _FUNCTIONS[name] = _compiled().function(
                name, None, arrays, ctypes.c_void_p, ctypes.c_void_p, arrays, ctypes.c_void_p,
                *([ctypes.c_float] * 2 + [ctypes.c_int64] * 2))
    return _FUNCTIONS[name]


@functools.cache
def _object_entries() -> bool:
    """Whether the kernels have their array-object entry points (the data pointer's place was found)."""
    return array_data_offset() is not None


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="irc-conv")


def threads() -> int:
    return os.cpu_count() or 1


SPLIT_MACS = 64_000_000
"""Below this many multiply-adds a kernel runs in the calling thread: waking a second thread costs more
(on a busy machine a woken thread may wait a whole scheduler slice)."""


_PLANS: dict = {}
"""Per (kernel, weights, geometry): the geometry array and the constant pointers, made once."""


def run_rows(name: str, x: np.ndarray, w: np.ndarray, b: np.ndarray, y: np.ndarray, geom: tuple,
             lo: float, hi: float, macs: int = 0, min_rows_per_thread: int = 8, rows: int = 0) -> np.ndarray:
    """Run kernel ``name`` over all output rows of y (``rows`` of them, else y's first two axes: batch x
    height), split into one contiguous range per thread when the work (``macs``) is large and the caller is
    not already one of the batch's threads."""
    key = (name, id(w), id(b), geom)
    plan = _PLANS.get(key)
    if plan is None or plan[0] is not w or plan[1] is not b:
        g = np.array(geom, np.int64)
        plan = (w, b, g, w.ctypes.data, b.ctypes.data, g.ctypes.data)  # holding w and b keeps their ids
        if len(_PLANS) > 1024:
            _PLANS.clear()
        _PLANS[key] = plan
    fn = _FUNCTIONS.get(name) or _function(name)
    rows = rows or y.shape[0] * y.shape[1]
    ptrs = (x.__array_interface__["data"][0], plan[3], plan[4], y.__array_interface__["data"][0], plan[5])
    parts = 1
    if macs >= SPLIT_MACS and not threading.current_thread().name.startswith(BATCH_THREAD_PREFIX):
        parts = max(1, min(threads(), rows // min_rows_per_thread))  # (not inside one of the batch's threads)
    if parts == 1:
        fn(*ptrs, lo, hi, 0, rows)
        return y
    bounds = [rows * k // parts for k in range(parts + 1)]
    futures = [_pool().submit(fn, *ptrs, lo, hi, bounds[k], bounds[k + 1]) for k in range(1, parts)]
    fn(*ptrs, lo, hi, bounds[0], bounds[1])
    for fut in futures:
        fut.result()
    return y


# ------------------------------------------------------------- numpy-facing calls
JIT_ACTIVATIONS = {
    "relu": lambda p: (0.0, np.inf, ACTIVATION_CODES["relu"]),
    "clip": lambda p: (float(p["min"]), float(p["max"]), ACTIVATION_CODES["clip"]),
    "leaky_relu": lambda p: (float(p["alpha"]), 0.0, ACTIVATION_CODES["leaky_relu"]),
    "tanh": lambda p: (-np.inf, np.inf, ACTIVATION_CODES["tanh"]),
    "sigmoid": lambda p: (-np.inf, np.inf, ACTIVATION_CODES["sigmoid"]),
}
"""Fused activations the JIT kernels apply (by kernel name, with the kernel's keyword parameters): (lo, hi,
code); a convolution with another fused activation runs in numpy."""


def _clamp(activation: str, params) -> tuple[float, float, int]:
    """The fused activation as the kernels apply it: (lo, hi, code), see ACTIVATION_CODES."""
    if not activation:
        return -np.inf, np.inf, 0
    return JIT_ACTIVATIONS[activation](params or {})


class Launch:
    """One layer's kernel call, worked out once per weight, input shape and geometry: the compiled function,
    the constant pointers (weights, bias, geometry array), the output's shape and how its rows split."""

    __slots__ = ("w", "b", "g", "fn", "objects", "wp", "bp", "gp", "lo", "hi", "rows", "split", "shape", "size")

    def __init__(self, name: str, w: np.ndarray, b: np.ndarray, geom: tuple, lo: float, hi: float, macs: int,
                 shape: tuple, rows: int, size: tuple = ()):
        self.w, self.b, self.g = w, b, np.array(geom, np.int64)  # held: their ids key the cache
        self.objects = _object_entries()
        self.fn = _function(name + "_obj" if self.objects else name)
        self.wp, self.bp, self.gp = w.ctypes.data, b.ctypes.data, self.g.ctypes.data
        self.lo, self.hi, self.rows, self.shape, self.size = lo, hi, rows, shape, size
        self.split = max(1, min(threads(), rows // 8)) if macs >= SPLIT_MACS else 1

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The output of the kernel on x (contiguous float32 of the shape the launch was made for)."""
        y = np.empty(self.shape, np.float32)
        if self.objects:
            xp, yp = x, y
        else:
            xp, yp = x.__array_interface__["data"][0], y.__array_interface__["data"][0]
        parts = self.split
        if parts > 1 and threading.current_thread().name.startswith(BATCH_THREAD_PREFIX):
            parts = 1  # already one of the batch's threads
        if parts == 1:
            self.fn(xp, self.wp, self.bp, yp, self.gp, self.lo, self.hi, 0, self.rows)
            return y
        bounds = [self.rows * k // parts for k in range(parts + 1)]
        args = (xp, self.wp, self.bp, yp, self.gp, self.lo, self.hi)
        futures = [_pool().submit(self.fn, *args, bounds[k], bounds[k + 1]) for k in range(1, parts)]
        self.fn(*args, bounds[0], bounds[1])
        for fut in futures:
            fut.result()
        return y


_LAUNCHES: dict = {}


def _launch(key: tuple, w, b, make) -> Launch:
    """The cached Launch for this call site (key: the kernel, weight and bias ids, input shape, geometry)."""
    hit = _LAUNCHES.get(key)
    if hit is None or hit.w is not w or hit.b is not b:
        if len(_LAUNCHES) > 1024:
            _LAUNCHES.clear()
        hit = _LAUNCHES[key] = make()
    return hit


def _f32(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == np.float32 and x.flags.c_contiguous else np.ascontiguousarray(x, np.float32)


def depthwise_conv2d(x, w, b, *, kernel, strides, pads, dilations, out_dims, activation="", activation_params=None):
    """kernels_nhwc.conv_depthwise's arguments and result, computed by the JIT kernel (float32)."""
    x = _f32(x)

    def make() -> Launch:
        n, h, wd, c = x.shape
        m = w.shape[-1]
        (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, strides, dilations, out_dims
        lo, hi, code = _clamp(activation, activation_params)
        geom = (h, wd, c, oh, ow, m, kh, kw, sh, sw, dh, dw, pads[0], pads[1], 1, m // c, code)
        unrolled = ((kh, kw) in DEPTHWISE_UNROLLED and m == c and m % VEC == 0
                    and (ow <= DEPTHWISE_UNROLLED_WIDTH or x.nbytes <= DEPTHWISE_UNROLLED_BYTES))
        name = f"depthwise{kh}x{kw}" if unrolled else "depthwise"
        return Launch(name, w, b, geom, lo, hi, n * oh * ow * m * kh * kw, (n, oh, ow, m), n * oh)
    return _launch(("dw", id(w), id(b), x.shape, activation, *kernel, *strides, *pads, *dilations), w, b, make)(x)


def packed_direct_weight(w: np.ndarray) -> np.ndarray:
    """An IR weight (M, C, KH, KW) as the direct kernel reads it: (KH, KW, C, MP), zeros past M."""
    m = w.shape[0]
    mp = -(-m // VEC) * VEC
    out = np.zeros(w.shape[2:] + (w.shape[1], mp), np.float32)
    out[..., :m] = w.transpose(2, 3, 1, 0)
    return out


def direct_conv2d(x, w, b, *, kernel, strides, pads, dilations, out_dims, channels, activation="",
                  activation_params=None):
    """A dense convolution, channels-last, by the JIT kernel: w from packed_direct_weight, b padded like it."""
    x = _f32(x)

    def make() -> Launch:
        n, _, _, c = x.shape
        size = hp, wp = _padded_size(x, kernel, strides, pads, dilations, out_dims)
        (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, strides, dilations, out_dims
        # without dilation along W one kernel row of a pixel is KW*C contiguous values: one loop over them
        row_run = dw == 1
        lo, hi, code = _clamp(activation, activation_params)
        macs = n * oh * ow * channels * kh * kw * c
        rows = n * oh
        if kh == kw == sh == sw == 1 and (hp, wp) == (oh, ow) and macs < SPLIT_MACS:
            # 1x1 over every pixel: the batch's pixels as one row, so that only its end is a partial tile of
            # pixels rather than the end of every row (DS-CNN's 5-pixel rows: one pixel in five alone)
            hp, wp, oh, ow, rows = 1, n * oh * ow, 1, n * oh * ow, 1
        geom = (hp, wp, c, oh, ow, channels, kh, 1 if row_run else kw, sh, sw, dh, dw, 0, 0,
                kw * c if row_run else c, channels, code)
        return Launch("direct", w, b, geom, lo, hi, macs, (n,) + tuple(out_dims) + (channels,), rows, size)
    launch = _launch(("direct", id(w), id(b), x.shape, activation, *kernel, *strides, *pads, *dilations), w, b, make)
    return launch(_padded(x, pads, launch.size))


def few_outputs_conv2d(x, w, b, *, kernel, strides, pads, dilations, out_dims, activation="",
                       activation_params=None):
    """kernels_nhwc.conv_few_outputs's arguments and result (channels-first, w (M, C*KH*KW)), by the JIT
    kernel vectorised over pixels; b may be None.  Needs strides[1] == 1 and out_dims[1] >= 8."""
    x = _f32(x)
    xp = _padded_nchw(x, kernel, strides, pads, dilations, out_dims)

    def make() -> Launch:
        n, c, hp, wp = xp.shape
        (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, strides, dilations, out_dims
        m = w.shape[0]
        lo, hi, code = _clamp(activation, activation_params)
        geom = (hp, wp, c, oh, ow, m, kh, kw, sh, sw, dh, dw, 0, 0, c * kh * kw, m, code)
        bias = np.zeros(m, np.float32) if b is None else b
        name = "few_outputs16" if ow >= 2 * VEC and wide_registers() else "few_outputs"
        return Launch(name, w, bias, geom, lo, hi, n * m * oh * ow * c * kh * kw, (n, m, oh, ow), n * oh)
    key = ("few", id(w), id(b), x.shape, activation, *kernel, *strides, *pads, *dilations)
    hit = _LAUNCHES.get(key)
    if hit is None or hit.w is not w or (b is not None and hit.b is not b):
        hit = _LAUNCHES[key] = make()
    return hit(xp)


_ZERO = np.zeros(1, np.float32)


def _run_pool(name, x, divisor, kernel, strides, pads, dilations, out_dims):
    x = _f32(x)
    w = _ZERO if divisor is None else divisor

    def make() -> Launch:
        n, h, wd, c = x.shape
        (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, strides, dilations, out_dims
        geom = (h, wd, c, oh, ow, c, kh, kw, sh, sw, dh, dw, pads[0], pads[1], 1, 1, 0)
        return Launch(name, w, _ZERO, geom, 0.0, 0.0, n * oh * ow * c * kh * kw, (n, oh, ow, c), n * oh)
    return _launch((name, id(w), x.shape, *kernel, *strides, *pads, *dilations), w, _ZERO, make)(x)


def max_pool2d(x, *, kernel, strides, pads, dilations, out_dims):
    """kernels_nhwc.max_pool_nhwc by the JIT kernel (float32)."""
    return _run_pool("max_pool", x, None, kernel, strides, pads, dilations, out_dims)


def avg_pool2d(x, *, kernel, strides, pads, dilations, out_dims, count_include_pad):
    """kernels_nhwc.avg_pool_nhwc by the JIT kernel (float32), with the reference's divisors."""
    key = (tuple(x.shape[1:3]), *kernel, *strides, *pads, *dilations, *out_dims, count_include_pad)
    divisor = _DIVISOR_F32.get(key)
    if divisor is None:
        divisor = _DIVISOR_F32[key] = np.ascontiguousarray(
            _divisors(x.shape[1:3], kernel, strides, pads, dilations, out_dims, count_include_pad), np.float32)
    return _run_pool("avg_pool", x, divisor, kernel, strides, pads, dilations, out_dims)


_DIVISOR_F32: dict = {}
