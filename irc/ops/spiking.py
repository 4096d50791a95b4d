"""Spiking ops: input encoders, integrate-and-fire neurons, gated max-pool, readout.

These are the IR's definition of spiking semantics; spike-numpy runs exactly
these functions and every other spiking backend must match them bit for bit
on exactly representable networks.

Time is discrete, t = 0..T-1.  A spiking graph is evaluated once per step, in
topological order, with no synaptic delay: events a layer emits at step t reach
the next layer at step t.  Stateless ops (Conv, Dense, pools, Add, layout) act
on each step independently.  The ops below carry state across steps; their
``simulate`` functions take the whole time sequence at once, arrays shaped
(T, N, ...), and are written as the per-step recurrences they define.

Random encodings draw from :func:`spike_hash`, one integer function of
(seed, sample, step, index), written identically in numpy, LLVM IR and CUDA.
"""
from __future__ import annotations

import numpy as np

from ..errors import IRCError
from ..types import Domain, TensorType
from . import Attr, OpDef, OpExample, register
from .pool import POOL_ATTRS, pool_example, pool_out_shape

# ------------------------------------------------------------------ the hash
GOLDEN = 0x9E3779B9
STEP_MUL = 0x85EBCA77
INDEX_MUL = 0xC2B2AE3D
PHASE_SALT = 0xA5A5A5A5
ONE_24 = 1 << 24


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (uint32 arithmetic, wrapping)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def spike_hash(seed: int, sample, step, index) -> np.ndarray:
    """uint32 hash of (seed, sample, step, index); arguments broadcast.

    h = fmix32(seed + GOLDEN); h = fmix32(h ^ sample);
    h = fmix32(h ^ step * STEP_MUL); h = fmix32(h ^ index * INDEX_MUL)
    """
    with np.errstate(over="ignore"):
        u32 = np.uint32
        h = fmix32(np.asarray((seed + GOLDEN) & 0xFFFFFFFF, dtype=u32))
        h = fmix32(h ^ np.asarray(sample, dtype=u32))
        h = fmix32(h ^ (np.asarray(step, dtype=u32) * u32(STEP_MUL)))
        return fmix32(h ^ (np.asarray(index, dtype=u32) * u32(INDEX_MUL)))


def rate_q24(x: np.ndarray, gain: float) -> np.ndarray:
    """Firing probability per step as a 24-bit fixed-point integer: trunc(min(|x|*gain, 1) * 2^24)."""
    p = np.minimum(np.abs(x).astype(np.float32) * np.float32(gain), np.float32(1.0))
    return (p * np.float32(ONE_24)).astype(np.uint32)


# ------------------------------------------------------------------- encoders
ENCODINGS = ("current", "poisson", "periodic")


@register
class Encode(OpDef):
    name = "Encode"
    spiking = True
    neuron_kind = "input"
    attrs = {
        "mode": Attr("str", "current", "current | poisson | periodic"),
        "gain": Attr("float", 1.0, "input scale: current = x*gain; rate = |x|*gain (clipped to 1)"),
        "seed": Attr("int", 0),
    }
    doc = ("Turns an analog input into a per-step signal.  current: x*gain every step.  poisson: a "
           "spike (sign of x) when hash(seed, n, t, i) >> 8 < q, q = rate_q24(x, gain).  periodic: N2D2's "
           "jittered periodic code, a spike whenever floor((phase + q*(t+1)) / 2^24) increases, with "
           "phase = hash(seed ^ PHASE_SALT, n, 0, i) >> 8.")

    def infer(self, ins, a):
        x = ins[0]
        if a["mode"] not in ENCODINGS:
            raise IRCError(f"unknown encoding {a['mode']!r}", hint="encodings: " + ", ".join(ENCODINGS))
        if x.domain != Domain.ANALOG:
            raise IRCError("Encode takes an analog input")
        if not x.has_batch:
            raise IRCError("spiking graphs need a symbolic batch axis")
        return [x.with_(domain=Domain.CURRENT if a["mode"] == "current" else Domain.SPIKE)]

    def example(self, rng):
        mode = str(rng.choice(ENCODINGS))
        return OpExample([rng.uniform(-1, 1, (3, 2, 4)).astype(np.float32)], {"mode": mode, "gain": 0.75, "seed": 3})

    @staticmethod
    def simulate(x: np.ndarray, a: dict, timesteps: int, sample_offset: int = 0) -> np.ndarray:
        """x (N, ...) -> (T, N, ...) float32."""
        n = x.shape[0]
        if a["mode"] == "current":
            y = x.astype(np.float32) * np.float32(a["gain"])
            return np.broadcast_to(y, (timesteps,) + y.shape)
        flat = x.reshape(n, -1)
        q = rate_q24(flat, a["gain"])
        sign = np.sign(flat).astype(np.float32)
        sample = (np.arange(n, dtype=np.uint64) + sample_offset).astype(np.uint32)[:, None]
        index = np.arange(flat.shape[1], dtype=np.uint32)[None, :]
        out = np.zeros((timesteps,) + flat.shape, np.float32)
        if a["mode"] == "poisson":
            for t in range(timesteps):
                u = spike_hash(a["seed"], sample, t, index) >> np.uint32(8)
                out[t] = np.where(u < q, sign, np.float32(0))
        else:
            phase = (spike_hash(a["seed"] ^ PHASE_SALT, sample, 0, index) >> np.uint32(8)).astype(np.uint64)
            q64 = q.astype(np.uint64)
            for t in range(timesteps):
                fired = ((phase + q64 * np.uint64(t + 1)) >> np.uint64(24)) > ((phase + q64 * np.uint64(t)) >> np.uint64(24))
                out[t] = np.where(fired, sign, np.float32(0))
        return out.reshape((timesteps,) + x.shape)


# -------------------------------------------------------------------- neurons
RESETS = ("subtract", "zero")
NEGATIVE = ("none", "bipolar", "corrective")


@register
class IF(OpDef):
    name = "IF"
    spiking = True
    neuron_kind = "neuron"
    inputs = ("current", "threshold")
    params = ("threshold",)
    attrs = {
        "reset": Attr("str", "subtract", "subtract | zero"),
        "negative": Attr("str", "none", "none | bipolar | corrective (see the doc)"),
        "init": Attr("float", 0.5, "initial membrane as a fraction of the threshold"),
        "decay": Attr("float", 1.0, "membrane kept per step (1: IF; < 1: LIF, leak applied first)"),
    }
    doc = ("Integrate-and-fire neurons, threshold th per channel (axis 1), at most one event per step.  "
           "Per step: v = v*decay; v += I; if v >= th: emit +1 and v -= th (reset 'zero': v = 0).  "
           "Negative events: 'bipolar' (N2D2's BipolarThreshold) emits -1 when v <= -th, and v += th; "
           "'corrective' emits -1 when v < 0 while the neuron's net count is positive, and v += th: it takes "
           "back an earlier spike, so the net count follows floor((v0 + sum of inputs) / th) clipped at 0, "
           "the ReLU of the running input, instead of over-firing on early input.  A negative event always "
           "adds the threshold back (v -= s*th with s = -1), whatever the reset; reset 'zero' applies to "
           "positive events only.")

    def infer(self, ins, a):
        x, th = ins
        if a["reset"] not in RESETS:
            raise IRCError(f"unknown reset {a['reset']!r}", hint="resets: " + ", ".join(RESETS))
        if a["negative"] not in NEGATIVE:
            raise IRCError(f"unknown negative-event mode {a['negative']!r}", hint="modes: " + ", ".join(NEGATIVE))
        if x.rank < 2 or tuple(th.shape) != (x.shape[1],):
            raise IRCError(f"IF threshold has shape {list(th.shape)}, expected [{x.shape[1] if x.rank > 1 else '?'}]")
        if not 0.0 < a["decay"] <= 1.0:
            raise IRCError(f"IF decay must be in (0, 1], got {a['decay']}")
        if x.domain == Domain.ANALOG:
            raise IRCError("IF takes a current or spike input, not an analog one")
        return [x.with_(domain=Domain.SPIKE)]

    @staticmethod
    def steps(current: np.ndarray, threshold: np.ndarray, a: dict):
        """Yields the events (N, C, ...) of each step in turn (one buffer, overwritten at the next step).

        In-place float32 arithmetic, the same numbers as the per-step formulas in the doc (s*th is exact
        for s in {-1, 0, 1}; under reset 'zero' a positive event sets v to 0, a negative one adds th).
        """
        th = np.broadcast_to(threshold.astype(np.float32).reshape((1, -1) + (1,) * (current.ndim - 3)),
                             current.shape[1:])
        v = (np.float32(a["init"]) * th).astype(np.float32)
        decay = np.float32(a["decay"])
        negative = a["negative"]
        zero = a["reset"] == "zero"
        count = np.zeros(current.shape[1:], np.float32) if negative == "corrective" else None
        s = np.empty(current.shape[1:], np.float32)
        pos = np.empty(current.shape[1:], bool)
        neg = np.empty(current.shape[1:], bool)
        step = np.empty(current.shape[1:], np.float32)
        for t in range(current.shape[0]):
            if decay != 1:
                v *= decay
            v += current[t]
            np.greater_equal(v, th, out=pos)
            if negative == "bipolar":
                np.less_equal(v, -th, out=neg)
            elif negative == "corrective":
                np.less(v, 0, out=neg)
                np.logical_and(neg, count > 0, out=neg)
            else:
                neg.fill(False)
            np.subtract(pos, neg, out=s, dtype=np.float32)
            if count is not None:
                count += s
            if zero:
                v[pos] = 0
                np.multiply(neg, th, out=step)
                v += step
            else:
                np.multiply(s, th, out=step)
                v -= step
            yield s

    @staticmethod
    def simulate(current: np.ndarray, threshold: np.ndarray, a: dict) -> np.ndarray:
        """current (T, N, C, ...) -> spikes (T, N, C, ...) in {-1, 0, 1} float32."""
        out = np.empty(current.shape, np.float32)
        for t, s in enumerate(IF.steps(current, threshold, a)):
            out[t] = s
        return out

    @staticmethod
    def count(current: np.ndarray, threshold: np.ndarray, a: dict) -> np.ndarray:
        """The net event count (N, C, ...) of ``simulate`` over all steps, without keeping the steps."""
        total = np.zeros(current.shape[1:], np.float32)
        for s in IF.steps(current, threshold, a):
            total += s
        return total

    def example(self, rng):
        x = np.round(rng.uniform(-1, 2, (2, 3, 4)) * 4).astype(np.float32) / 4
        th = rng.choice([0.5, 1.0, 2.0], 3).astype(np.float32)
        return OpExample([x, th], {"reset": str(rng.choice(RESETS)), "negative": str(rng.choice(NEGATIVE)),
                                   "init": float(rng.choice([0.0, 0.5]))}, params=(1,), domains=("current",))


# ------------------------------------------------------------ gated max-pool
@register
class GatedMaxPool(OpDef):
    name = "GatedMaxPool"
    spiking = True
    attrs = dict(POOL_ATTRS)
    doc = ("Spiking max-pool gated by accumulated counts: each window's output count always equals the "
           "largest count among its inputs, M(t) = max_i sum_{s<=t} x_i(s), so at step t it emits "
           "M(t) - M(t-1) (+1, 0 or -1; M(-1) = 0; padding never counts).  Equivalently it passes the "
           "events of the input that has fired most so far, a tie going to the input that led before.")

    def infer(self, ins, a):
        x = ins[0]
        if x.domain != Domain.SPIKE:
            raise IRCError("GatedMaxPool takes spikes")
        return [TensorType(pool_out_shape(x, a), x.dtype, Domain.SPIKE)]

    @staticmethod
    def simulate(spikes: np.ndarray, a: dict) -> np.ndarray:
        """spikes (T, N, C, *S) -> (T, N, C, *O)."""
        from .kernels import max_pool
        from .nn import spatial_attrs

        nd = len(a["kernel"])
        strides, pads, dil = spatial_attrs(a, nd)
        out_dims = pool_out_shape(TensorType(("N",) + spikes.shape[2:]), a)[2:]
        counts = np.cumsum(spikes, axis=0, dtype=np.float32)
        t, n = spikes.shape[:2]
        leader = max_pool(counts.reshape((t * n,) + spikes.shape[2:]), kernel=a["kernel"], strides=strides,
                          pads=pads, dilations=dil, out_dims=list(out_dims))
        leader = leader.reshape((t, n) + leader.shape[1:])
        return np.diff(leader, axis=0, prepend=np.zeros((1,) + leader.shape[1:], np.float32))

    def example(self, rng):
        ex = pool_example(rng)
        return OpExample(ex.inputs, ex.attrs, domains=("spike",))


# -------------------------------------------------------------------- readout
READOUTS = ("potential", "count")


@register
class Readout(OpDef):
    name = "Readout"
    spiking = True
    attrs = {
        "mode": Attr("str", "potential", "potential: mean input per step; count: spike count"),
        "terminate_delta": Attr("float", 0.0, "stop a sample once its leader is this far ahead (0: never)"),
        "unit": Attr("float", 1.0, "the accumulated input worth one spike, for terminate_delta"),
    }
    doc = ("The network's answer after T steps.  potential: the accumulated input of a non-spiking "
           "output layer divided by the steps used (it approximates the analog logits); count: spike "
           "counts.  With terminate_delta > 0 a sample stops at the first step where its top score leads "
           "the second by terminate_delta (in spikes, or accumulated input / unit).")

    def infer(self, ins, a):
        x = ins[0]
        if a["mode"] not in READOUTS:
            raise IRCError(f"unknown readout {a['mode']!r}", hint="readouts: " + ", ".join(READOUTS))
        if x.domain == Domain.ANALOG:
            raise IRCError("Readout takes a current or spike input")
        if a["mode"] == "count" and x.domain != Domain.SPIKE:
            raise IRCError("a count readout needs spikes; use the potential readout for a non-spiking layer")
        return [x.with_(domain=Domain.ANALOG)]

    @staticmethod
    def simulate(x: np.ndarray, a: dict, checkpoints: list[int]):
        """x (T, N, ...) -> per checkpoint T_k: (scores (N, ...), steps used (N,)).

        Scores at T_k are those of the first T_k steps, as if the run had
        been T_k steps long (early stopping included).
        """
        acc = np.cumsum(x.astype(np.float64), axis=0)  # (T, N, ...)
        t_total, n = x.shape[:2]
        stop = np.full(n, t_total, dtype=np.int64)  # steps used if never decided
        if a["terminate_delta"] > 0:
            flat = acc.reshape(t_total, n, -1)
            top2 = -np.sort(-flat, axis=2)[:, :, :2] if flat.shape[2] > 1 else np.concatenate(
                [flat, np.full_like(flat, -np.inf)], axis=2)
            margin = (top2[:, :, 0] - top2[:, :, 1]) / (1.0 if a["mode"] == "count" else a["unit"])
            decided = margin >= a["terminate_delta"]
            first = np.where(decided.any(axis=0), decided.argmax(axis=0) + 1, t_total)
            stop = first.astype(np.int64)
        results = []
        for tk in checkpoints:
            used = np.minimum(stop, tk)
            scores = acc[used - 1, np.arange(n)]
            if a["mode"] == "potential":
                scores = scores / used.reshape((n,) + (1,) * (scores.ndim - 1))
            results.append((scores.astype(np.float32), used))
        return results

    def example(self, rng):
        return OpExample([rng.standard_normal((2, 5)).astype(np.float32)],
                         {"mode": "potential", "terminate_delta": float(rng.choice([0.0, 2.0]))}, domains=("current",))
