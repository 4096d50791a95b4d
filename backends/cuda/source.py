"""CUDA C for each kernel irc launches, specialised on shapes (all constants are literals).

Every kernel is one-dimensional, uses no shared memory and no atomics, and
takes ``(const long long n, ...)`` with one thread per output element (or per
sample, or per neuron): the same source therefore compiles with nvcc for the
GPU and, through a small header, with a C++ compiler for tests on machines
without one.  Arithmetic that must match the reference bit for bit (neurons,
encoders, readout) uses the ``__fadd_rn``/``__fmul_rn`` intrinsics so nvcc
cannot contract it into fused multiply-adds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from irc.ops.spiking import GOLDEN, INDEX_MUL, PHASE_SALT, STEP_MUL

PRELUDE = r"""
typedef unsigned int irc_u32;
typedef unsigned long long irc_u64;
#define IRC_INDEX ((long long)blockIdx.x * (long long)blockDim.x + (long long)threadIdx.x)

__device__ __forceinline__ irc_u32 irc_fmix(irc_u32 h) {
    h ^= h >> 16; h *= 0x85EBCA6Bu; h ^= h >> 13; h *= 0xC2B2AE35u; return h ^ (h >> 16);
}

/* spike_hash of irc.ops.spiking: one integer function of (seed, sample, step, index) */
__device__ __forceinline__ irc_u32 irc_hash(irc_u32 seed, irc_u32 sample, irc_u32 step, irc_u32 index) {
    irc_u32 h = irc_fmix(seed + %(golden)du);
    h = irc_fmix(h ^ sample);
    h = irc_fmix(h ^ (step * %(step_mul)du));
    return irc_fmix(h ^ (index * %(index_mul)du));
}
""" % {"golden": GOLDEN, "step_mul": STEP_MUL, "index_mul": INDEX_MUL}

ACTIVATIONS = {
    "Relu": "fmaxf({v}, 0.0f)",
    "LeakyRelu": "({v} >= 0.0f ? {v} : {v} * {p0})",
    "Elu": "({v} > 0.0f ? {v} : {p0} * expm1f({v}))",
    "Clip": "fminf(fmaxf({v}, {p0}), {p1})",
    "Sigmoid": "(1.0f / (1.0f + expf(-{v})))",
    "Tanh": "tanhf({v})",
    "HardSigmoid": "fminf(fmaxf({v} * {p0} + {p1}, 0.0f), 1.0f)",
    "HardSwish": "({v} * fminf(fmaxf({v} * (1.0f / 6.0f) + 0.5f, 0.0f), 1.0f))",
    "Erf": "erff({v})",
    "Neg": "(-{v})",
    "Abs": "fabsf({v})",
    "Reciprocal": "(1.0f / {v})",
    "Sign": "({v} > 0.0f ? 1.0f : ({v} < 0.0f ? -1.0f : {v}))",
    "Floor": "floorf({v})",
    "Ceil": "ceilf({v})",
    "Round": "rintf({v})",
    "Softplus": "({v} > 0.0f ? {v} + log1pf(expf(-{v})) : log1pf(expf({v})))",
    "Softsign": "({v} / (1.0f + fabsf({v})))",
    "Selu": "({p1} * ({v} > 0.0f ? {v} : {p0} * expm1f({v})))",
    "Celu": "(fmaxf({v}, 0.0f) + fminf(0.0f, {p0} * expm1f({v} / {p0})))",
    "Mish": "({v} * tanhf({v} > 0.0f ? {v} + log1pf(expf(-{v})) : log1pf(expf({v}))))",
    "ThresholdedRelu": "({v} > {p0} ? {v} : 0.0f)",
    "Shrink": "({v} < -{p1} ? {v} + {p0} : ({v} > {p1} ? {v} - {p0} : 0.0f))",
    # Gelu's one parameter: 0 exact (erf), 1 the tanh approximation
    "Gelu": "({p0} != 0.0f ? 0.5f * {v} * (1.0f + tanhf(0.7978845608f * ({v} + 0.044715f * {v} * {v} * {v})))"
            " : 0.5f * {v} * (1.0f + erff({v} * 0.70710678118f)))",
}
"""Per activation op: its CUDA expression of ``{v}`` and its fused parameters ``{p0}``, ``{p1}``, ... (the
cuda targets run exactly these activations, fused or on their own)."""

ARITHMETIC = {"Add": "({a} + {b})", "Sub": "({a} - {b})", "Mul": "({a} * {b})", "Div": "({a} / {b})",
              "PRelu": "({a} < 0.0f ? {a} * {b} : {a})"}
"""Elementwise ops of two operands and their C expression of ``{a}`` and ``{b}``."""


def flt(v: float) -> str:
    """A float literal that reads back exactly (also inf)."""
    v = float(v)
    if v == float("inf"):
        return "INFINITY"
    if v == float("-inf"):
        return "(-INFINITY)"
    return repr(v)


def f32_literal(v: float) -> str:
    """A float32 literal: ``0.5f``, ``INFINITY``, ``(-INFINITY)``."""
    text = flt(v)
    return text if "INFINITY" in text else text + "f"


def activation(expr: str, name: str, params: list[float]) -> str:
    """The (fused) activation ``name`` applied to ``expr`` (a variable name); '' is none."""
    if not name:
        return expr
    return ACTIVATIONS[name].format(v=expr, **{f"p{i}": f32_literal(p) for i, p in enumerate(params)})


@dataclass
class Kernel:
    """One kernel: its name, parameters (ctype, name) after ``n``, and body."""

    name: str
    params: list[tuple[str, str]]
    body: str
    doc: str = ""
    per_output: int = 1
    """Output elements each thread writes (a softmax row writes its whole row)."""

    def source(self) -> str:
        args = ", ".join(["const long long n"] + [f"{t} {p}" for t, p in self.params])
        comment = f"/* {self.doc} */\n" if self.doc else ""
        return (f"{comment}extern \"C\" __global__ void {self.name}({args}) {{\n"
                f"    const long long i = IRC_INDEX;\n    if (i >= n) return;\n{self.body}}}\n")


@dataclass
class Module:
    kernels: list[Kernel] = field(default_factory=list)

    def add(self, kernel: Kernel) -> Kernel:
        self.kernels.append(kernel)
        return kernel

    def source(self) -> str:
        return PRELUDE + "\n" + "\n".join(k.source() for k in self.kernels)


# ------------------------------------------------------------- synaptic ops
def _weighted_params(has_bias: bool) -> list[tuple[str, str]]:
    """(x, weights[, bias], y): the parameters of a kernel that applies weights."""
    params = [("const float* __restrict__", "x"), ("const float* __restrict__", "wt")]
    if has_bias:
        params.append(("const float* __restrict__", "bias"))
    return params + [("float* __restrict__", "y")]


def conv2d(name, c, h, w, m, oh, ow, kh, kw, strides, pads, dil, group, has_bias, act, act_params) -> Kernel:
    cg, mg = c // group, m // group
    sh, sw = strides
    dh, dw = dil
    bias = " + bias[m]" if has_bias else ""
    body = f"""    const int ox = (int)(i % {ow}); long long r = i / {ow};
    const int oy = (int)(r % {oh}); r /= {oh};
    const int m = (int)(r % {m}); const long long b = r / {m};
    const int g = m / {mg};
    float acc = 0.0f;
    for (int cl = 0; cl < {cg}; ++cl) {{
        const float* xc = x + (b * {c} + g * {cg} + cl) * {h * w};
        const float* wc = wt + ((long long)m * {cg} + cl) * {kh * kw};
        for (int ky = 0; ky < {kh}; ++ky) {{
            const int iy = oy * {sh} - {pads[0]} + ky * {dh};
            if (iy < 0 || iy >= {h}) continue;
            for (int kx = 0; kx < {kw}; ++kx) {{
                const int ix = ox * {sw} - {pads[1]} + kx * {dw};
                if (ix < 0 || ix >= {w}) continue;
                acc += wc[ky * {kw} + kx] * xc[iy * {w} + ix];
            }}
        }}
    }}
    const float v = acc{bias};
    y[i] = {activation("v", act, act_params)};
"""
    return Kernel(name, _weighted_params(has_bias), body, "Conv: one thread per output element")


def dense(name, k, o, has_bias, act, act_params) -> Kernel:
    bias = " + bias[j]" if has_bias else ""
    body = f"""    const int j = (int)(i % {o}); const long long b = i / {o};
    const float* xb = x + b * {k};
    const float* wj = wt + (long long)j * {k};
    float acc = 0.0f;
    for (int q = 0; q < {k}; ++q) acc += wj[q] * xb[q];
    const float v = acc{bias};
    y[i] = {activation("v", act, act_params)};
"""
    return Kernel(name, _weighted_params(has_bias), body, "Dense: one thread per output")


def scale_shift(name, channels, inner, has_shift, act, act_params) -> Kernel:
    shift = " + shift[c]" if has_shift else ""
    body = f"""    const int c = (int)((i / {inner}) % {channels});
    const float v = x[i] * scale[c]{shift};
    y[i] = {activation("v", act, act_params)};
"""
    params = [("const float* __restrict__", "x"), ("const float* __restrict__", "scale")]
    if has_shift:
        params.append(("const float* __restrict__", "shift"))
    params.append(("float* __restrict__", "y"))
    return Kernel(name, params, body, "ScaleShift (per channel)")


def pool2d(name, kind, c, h, w, oh, ow, kernel, strides, pads, dil, div_mode) -> Kernel:
    kh, kw = kernel
    sh, sw = strides
    dh, dw = dil
    init = "-INFINITY" if kind == "max" else "0.0f"
    update = "acc = fmaxf(acc, v);" if kind == "max" else "acc += v;"
    if kind == "max":
        finish = "y[i] = acc;"
    elif div_mode == "mul":
        finish = "y[i] = acc * div[i % " + str(oh * ow) + "];"
    else:
        finish = "y[i] = acc / div[i % " + str(oh * ow) + "];"
    body = f"""    const int ox = (int)(i % {ow}); long long r = i / {ow};
    const int oy = (int)(r % {oh}); const long long bc = r / {oh};
    const float* xc = x + bc * {h * w};
    float acc = {init};
    for (int ky = 0; ky < {kh}; ++ky) {{
        const int iy = oy * {sh} - {pads[0]} + ky * {dh};
        if (iy < 0 || iy >= {h}) continue;
        for (int kx = 0; kx < {kw}; ++kx) {{
            const int ix = ox * {sw} - {pads[1]} + kx * {dw};
            if (ix < 0 || ix >= {w}) continue;
            const float v = xc[iy * {w} + ix];
            {update}
        }}
    }}
    {finish}
"""
    params = [("const float* __restrict__", "x")]
    if kind != "max":
        params.append(("const float* __restrict__", "div"))
    params.append(("float* __restrict__", "y"))
    return Kernel(name, params, body, f"{kind} pool: one thread per output")


def global_pool(name, kind, size) -> Kernel:
    op = "acc = fmaxf(acc, xc[q]);" if kind == "max" else "acc += xc[q];"
    finish = "acc" if kind == "max" else f"acc / {flt(size)}f"
    body = f"""    const float* xc = x + i * {size};
    float acc = {"-INFINITY" if kind == "max" else "0.0f"};
    for (int q = 0; q < {size}; ++q) {op}
    y[i] = {finish};
"""
    return Kernel(name, [("const float* __restrict__", "x"), ("float* __restrict__", "y")], body,
                  f"global {kind} pool: one thread per (sample, channel)")


def elementwise(name, op, sample, operands: list[str], act="", act_params=()) -> Kernel:
    """y = a (op) b; operands are 'data' (same shape as y) or 'const' (one sample, broadcast)."""
    terms = [f"a{k}[i]" if kind == "data" else f"a{k}[i % {sample}]" for k, kind in enumerate(operands)]
    expr = ARITHMETIC[op].format(a=terms[0], b=terms[1])
    body = f"""    const float v = {expr};
    y[i] = {activation("v", act, act_params)};
"""
    params = [("const float* __restrict__", f"a{k}") for k in range(len(operands))] + [("float* __restrict__", "y")]
    return Kernel(name, params, body, f"{op} elementwise")


def unary(name, op, params_: list[float]) -> Kernel:
    return Kernel(name, [("const float* __restrict__", "x"), ("float* __restrict__", "y")],
                  f"    const float v = x[i];\n    y[i] = {activation('v', op, params_)};\n", f"{op}")


def softmax(name, length, inner, log: bool) -> Kernel:
    out = "(x[p] - mx) - logf(s)" if log else "expf(x[p] - mx) / s"
    body = f"""    const long long base = (i / {inner}) * {length * inner} + i % {inner};
    float mx = -INFINITY;
    for (int q = 0; q < {length}; ++q) mx = fmaxf(mx, x[base + (long long)q * {inner}]);
    float s = 0.0f;
    for (int q = 0; q < {length}; ++q) s += expf(x[base + (long long)q * {inner}] - mx);
    for (int q = 0; q < {length}; ++q) {{ const long long p = base + (long long)q * {inner}; y[p] = {out}; }}
"""
    return Kernel(name, [("const float* __restrict__", "x"), ("float* __restrict__", "y")], body,
                  "softmax: one thread per row", per_output=length)


def gather(name, out_size, in_sizes: list[int], pad_value: float) -> Kernel:
    """Layout ops: y[b, j] = input src[j] at index idx[j] (or pad_value when src[j] < 0)."""
    cases = "\n".join(f"        case {k}: v = x{k}[b * {size} + idx[j]]; break;" for k, size in enumerate(in_sizes))
    body = f"""    const long long j = i % {out_size}; const long long b = i / {out_size};
    float v = {flt(pad_value)}f;
    switch (src[j]) {{
{cases}
        default: break;
    }}
    y[i] = v;
"""
    params = [("const float* __restrict__", f"x{k}") for k in range(len(in_sizes))]
    params += [("const int* __restrict__", "src"), ("const int* __restrict__", "idx"), ("float* __restrict__", "y")]
    return Kernel(name, params, body, "layout op: gather through a table")


# ---------------------------------------------------------------- spiking
def encode_rate(name, size, mode, gain, seed) -> Kernel:
    """Poisson or periodic events for ``steps`` steps from t0; one thread per (sample, input element)."""
    if mode == "poisson":
        fire = "(irc_hash(SEED, sample, (irc_u32)t, (irc_u32)j) >> 8) < q"
        setup = ""
    else:
        setup = "    const irc_u64 phase = irc_hash(SEED ^ PHASE, sample, 0u, (irc_u32)j) >> 8;\n"
        fire = "((phase + (irc_u64)q * (irc_u64)(t + 1)) >> 24) > ((phase + (irc_u64)q * (irc_u64)t) >> 24)"
    body = f"""    const long long j = i % {size}; const long long nn = i / {size};
    if (done[nn]) return;
    const float xv = x[i];
    const float p = fminf(__fmul_rn(fabsf(xv), {flt(gain)}f), 1.0f);
    const irc_u32 q = (irc_u32)__fmul_rn(p, 16777216.0f);
    const float sgn = xv > 0.0f ? 1.0f : (xv < 0.0f ? -1.0f : 0.0f);
    const irc_u32 sample = (irc_u32)(sample0 + nn);
{setup}    for (int s = 0; s < steps; ++s) {{
        const long long t = t0 + s;
        y[((long long)s * batch + nn) * {size} + j] = ({fire}) ? sgn : 0.0f;
    }}
"""
    body = body.replace("SEED", f"{seed & 0xFFFFFFFF}u").replace("PHASE", f"{PHASE_SALT}u")
    params = [("const float* __restrict__", "x"), ("const int* __restrict__", "done"), ("long long", "t0"),
              ("int", "steps"), ("long long", "batch"), ("long long", "sample0"), ("float* __restrict__", "y")]
    return Kernel(name, params, body, f"{mode} encoding")


def neuron(name, size, channels, inner, reset, negative, init, decay) -> Kernel:
    """IF/LIF neurons over ``steps`` steps, state in registers; one thread per (sample, neuron)."""
    leak = f"v = __fmul_rn(v, {flt(decay)}f);\n        " if decay != 1.0 else ""
    neg = {"bipolar": " else if (v <= -th) sp = -1.0f;",
           "corrective": " else if (v < 0.0f && cnt > 0.0f) sp = -1.0f;", "none": ""}[negative]
    # a negative event always adds the threshold back; reset 'zero' applies to positive events only
    back = "__fsub_rn(v, __fmul_rn(sp, th))"
    reset_code = f"v = (sp > 0.0f) ? 0.0f : {back};" if reset == "zero" else f"v = {back};"
    body = f"""    const long long j = i % {size}; const long long nn = i / {size};
    if (done[nn]) return;
    const float th = thresh[(j / {inner}) % {channels}];
    float v = first ? __fmul_rn({flt(init)}f, th) : state_v[i];
    float cnt = first ? 0.0f : state_c[i];
    for (int s = 0; s < steps; ++s) {{
        {leak}v = __fadd_rn(v, in[(long long)s * tstride + nn * {size} + j]);
        float sp = 0.0f;
        if (v >= th) sp = 1.0f;{neg}
        {reset_code}
        cnt += sp;
        y[((long long)s * batch + nn) * {size} + j] = sp;
    }}
    state_v[i] = v;
    state_c[i] = cnt;
"""
    params = [("const float* __restrict__", "in"), ("long long", "tstride"), ("const float* __restrict__", "thresh"),
              ("const int* __restrict__", "done"), ("int", "first"), ("int", "steps"), ("long long", "batch"),
              ("float* __restrict__", "state_v"), ("float* __restrict__", "state_c"), ("float* __restrict__", "y")]
    return Kernel(name, params, body, f"IF neurons (reset {reset}, negative {negative}, decay {decay})")


def pool_counts(name, size) -> Kernel:
    """Running spike counts of a gated pool's inputs (one thread per (sample, input))."""
    body = f"""    const long long j = i % {size}; const long long nn = i / {size};
    if (done[nn]) return;
    float c = first ? 0.0f : state[i];
    for (int s = 0; s < steps; ++s) {{
        const long long p = ((long long)s * batch + nn) * {size} + j;
        c += x[p];
        cum[p] = c;
    }}
    state[i] = c;
"""
    params = [("const float* __restrict__", "x"), ("const int* __restrict__", "done"), ("int", "first"),
              ("int", "steps"), ("long long", "batch"), ("float* __restrict__", "state"), ("float* __restrict__", "cum")]
    return Kernel(name, params, body, "gated max-pool: running counts")


def pool_leader(name, c, h, w, oh, ow, kernel, strides, pads, dil) -> Kernel:
    """Gated max-pool output: the change of the window's largest running count."""
    kh, kw = kernel
    sh, sw = strides
    dh, dw = dil
    size_in, size_out = c * h * w, c * oh * ow
    body = f"""    const long long j = i % {size_out}; const long long nn = i / {size_out};
    if (done[nn]) return;
    const int ox = (int)(j % {ow}); const int oy = (int)((j / {ow}) % {oh}); const int ch = (int)(j / {oh * ow});
    float lead = first ? 0.0f : state[i];
    for (int s = 0; s < steps; ++s) {{
        const float* cc = cum + ((long long)s * batch + nn) * {size_in} + (long long)ch * {h * w};
        float best = -INFINITY;
        for (int ky = 0; ky < {kh}; ++ky) {{
            const int iy = oy * {sh} - {pads[0]} + ky * {dh};
            if (iy < 0 || iy >= {h}) continue;
            for (int kx = 0; kx < {kw}; ++kx) {{
                const int ix = ox * {sw} - {pads[1]} + kx * {dw};
                if (ix < 0 || ix >= {w}) continue;
                best = fmaxf(best, cc[iy * {w} + ix]);
            }}
        }}
        y[((long long)s * batch + nn) * {size_out} + j] = best - lead;
        lead = best;
    }}
    state[i] = lead;
"""
    params = [("const float* __restrict__", "cum"), ("const int* __restrict__", "done"), ("int", "first"),
              ("int", "steps"), ("long long", "batch"), ("float* __restrict__", "state"), ("float* __restrict__", "y")]
    return Kernel(name, params, body, "gated max-pool: leader count changes")


def readout(name, size, mode, delta, unit) -> Kernel:
    """Accumulate, decide early, snapshot at checkpoints; one thread per sample."""
    decide = ""
    if delta > 0:
        decide = f"""        double t1 = -INFINITY, t2 = -INFINITY;
        for (int k = 0; k < {size}; ++k) {{
            const double a = acc[nn * {size} + k];
            if (a > t1) {{ t2 = t1; t1 = a; }} else if (a > t2) t2 = a;
        }}
        if ((t1 - t2) / {flt(unit)} >= {flt(delta)}) {{ stop[nn] = t + 1; done[nn] = 1; }}
"""
    value = "acc[nn * %d + k] / (double)used" % size if mode == "potential" else "acc[nn * %d + k]" % size
    body = f"""    const long long nn = i;
    if (done[nn]) return;
    for (int s = 0; s < steps; ++s) {{
        const long long t = t0 + s;
        for (int k = 0; k < {size}; ++k)
            acc[nn * {size} + k] += (double)in[(long long)s * tstride + nn * {size} + k];
{decide}        const long long used = t + 1;
        while (next_cp[nn] < n_checkpoints && (done[nn] || checkpoints[next_cp[nn]] == used)) {{
            const long long row = (long long)next_cp[nn] * n_total + sample0 + nn;
            for (int k = 0; k < {size}; ++k) scores[row * {size} + k] = (float)({value});
            steps_used[row] = used;
            next_cp[nn] += 1;
        }}
        if (done[nn]) return;
    }}
"""
    params = [("const float* __restrict__", "in"), ("long long", "tstride"), ("double* __restrict__", "acc"),
              ("int* __restrict__", "done"), ("long long* __restrict__", "stop"), ("int* __restrict__", "next_cp"),
              ("const long long* __restrict__", "checkpoints"), ("long long", "n_checkpoints"), ("long long", "t0"),
              ("int", "steps"), ("long long", "sample0"), ("long long", "n_total"), ("float* __restrict__", "scores"),
              ("long long* __restrict__", "steps_used")]
    return Kernel(name, params, body, f"readout ({mode})")


def count_events(name, size) -> Kernel:
    """Per (step, sample): events of a layer (|value| summed)."""
    body = f"""    const float* xs = x + i * {size};
    double c = 0.0;
    for (int q = 0; q < {size}; ++q) c += (double)fabsf(xs[q]);
    out[i] = c;
"""
    return Kernel(name, [("const float* __restrict__", "x"), ("double* __restrict__", "out")], body, "event counts")


def count_synops(name, size) -> Kernel:
    """Per (step, sample): synaptic operations, the fan-out of every nonzero input."""
    body = f"""    const float* xs = x + i * {size};
    double c = 0.0;
    for (int q = 0; q < {size}; ++q) if (xs[q] != 0.0f) c += (double)fanout[q];
    out[i] = c;
"""
    return Kernel(name, [("const float* __restrict__", "x"), ("const int* __restrict__", "fanout"),
                         ("double* __restrict__", "out")], body, "synaptic-op counts")
