"""Thresholds fitted for the compiled number of timesteps, then bias correction.

At T steps an IF neuron with threshold th can only say 0, th/T, ..., th: its
output is the analog activation clipped at th and quantised to T levels (the
QCFS view, Bu et al. 2022).  A high threshold (the 99.9th percentile) clips
little but quantises coarsely; at small T a lower one is better.  Two passes,
both between ``calibrate`` and ``to_spiking``, both working layer by layer in
topological order on the spike-numpy reference of the network converted so far:

* ``fit_thresholds`` (option ``threshold="fitted"``, the default): for each
  neuron layer, the spiking network with the thresholds already fitted is run
  on the calibration data up to that layer's input current (so the layer is
  fitted to the rates the converted layers before it really produce), and each
  channel's threshold is the candidate that minimises the mean squared error
  between the analog activation and th * count / T of an IF neuron simulated
  exactly (the ops' own ``IF.count``, with the program's reset, initial
  membrane, decay and negative events) on that current.  Candidates: 12
  fractions of the channel's largest calibration activation and the
  percentile threshold itself, then two bisections around the best, so the fit is never worse than the percentile
  rule on the calibration data.  A neuron feeding a max-pool is fitted on the
  positions the pool passes on (each window's largest analog activation, per
  channel): only those reach the next layer, and they are the upper tail, so
  a fit over all positions clipped them (digits BN+MaxPool CNN at T=2: 3.3 pp
  -> 2.2 pp loss); its bias correction still uses all positions.  Of the
  candidates within SPARSE_SLACK (2 %) of a channel's least error, the highest
  threshold is taken: fewer events for an error no one can measure, and in
  deeper layers a better network (T=2 loss: digits CNN 1.1 -> 0.7 pp, BN+MaxPool
  CNN 2.2 -> 1.1 pp, MNIST BN LeNet 4.9 -> 3.5 pp on 2000 test images; 5 % was
  measured too: better on the digits CNN at T=2, worse on the LeNets at T=4).
  ``threshold="percentile"`` keeps the rule.
* ``correct_bias`` (on by default with fitted thresholds, Li et al. 2021's bias
  correction): for each layer in order, the mean per-channel difference between
  the analog activation and the spiking rate (in the same units) is added to
  the bias of the Conv/Dense feeding the neuron, a few Newton-like steps,
  interleaved with the threshold fit (a layer's thresholds, then its biases, then the next layer),
  so the layer's mean rate matches the analog mean on calibration data.

* the output check (option ``output_check``, on by default): both whole networks, the fitted one and the
  plain percentile rule's, run on all the calibration inputs (at most CHECK_SAMPLE_STEPS samples x steps,
  more than the fit's subsample) and the one whose readout is closer to the analog outputs (relative mean
  squared error) is kept.  Per-layer errors are a proxy for the network's, and a fit on a subsample can clip
  a rare extreme input the rule lets through: the breast-cancer MLP at T=16 (fitted on 256 of its 426
  calibration inputs) had one with 1.7 relative error, and the rule's network was 4x closer overall.

Bounded work: at most ``fit_samples`` calibration inputs (default 256; fewer at
large T, samples x T <= SAMPLE_STEPS) are simulated, and at most FIT_ELEMENTS
positions per channel (a seeded subsample of samples x spatial positions, fewer
for wide layers: steps x positions x channels <= FIT_BUDGET) enter each fit.
Each candidate threshold is one IF simulation of those positions; a coarse grid
then two log-space bisections per channel.  Fitting layer k re-simulates only
what changed: values are cached by content (op, attributes, parameter bytes),
and a bias is added after its cached product, so a bias step re-runs one neuron.  The chosen thresholds are the IF nodes'
threshold parameters; a summary (method, T fitted for, per-layer ranges) goes
to ``graph.meta["thresholds"]`` as JSON, so the IR text and artifacts show it.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from irc.graph import Graph, Node
from irc.interp import Interpreter, run_graph
from irc.meta import meta_json
from irc.ops import get_op
from irc.ops.spiking import IF

from .manager import PassContext, register_pass

FIT_ELEMENTS = 4096
"""Positions (sample x spatial) per channel that enter a fit, at most."""
FIT_MIN_ELEMENTS = 256
"""Positions per channel that enter a fit, at least (whatever the budget)."""
FIT_BUDGET = 1_000_000
"""Elements (steps x positions x channels) one candidate simulation may touch."""
SAMPLE_STEPS = 4096  # README and the fit_samples option say so
"""Calibration samples x timesteps that one prefix simulation runs, at most (fewer samples at large T)."""
MIN_SAMPLES = 32
"""Calibration samples a fit uses, at least (when there are that many)."""
CHECK_SAMPLE_STEPS = 4 * SAMPLE_STEPS
"""Calibration samples x timesteps the output check runs, at most (all calibration samples where that allows:
the fit's own subsample would hide the rare extreme inputs a too-low threshold clips)."""
GRID = np.geomspace(0.08, 1.0, 12).astype(np.float32)
"""Candidate thresholds as fractions of a channel's largest calibration activation (then refined)."""
REFINE = 2
"""Bisections around each channel's best grid candidate (2: a grid four times as fine)."""
ROUNDS = 1
"""Threshold fit + bias correction rounds per layer (a second round refits to the corrected currents)."""
SPARSE_SLACK = 0.02
"""A channel takes the highest candidate threshold whose calibration error is within this fraction of the least."""
BIAS_ITERATIONS = 4
"""Bias steps per layer at most (each one simulates the network up to that layer)."""
BIAS_TOLERANCE = 2e-3
"""A layer's bias correction stops once every channel's mean rate is this close (relative to the largest mean)."""
MIN_SLOPE = 0.1
"""Smallest per-channel slope of mean rate per unit bias a step assumes (bounds one step to 10x the residual)."""
SHIFT_GRID = 1024.0
"""With scale_rounding='pow2', bias shifts are multiples of 1/1024 (exact sums on every backend)."""
METHODS = ("fitted", "percentile")


def threshold_method(ctx: PassContext) -> str:
    return ctx.option("threshold", "fitted") or "fitted"


def _active(graph: Graph, ctx: PassContext) -> bool:
    return ctx.conversion is not None and ctx.conversion.mode == "calibrated"


# --------------------------------------------------------------- simulation
def _param_key(a: np.ndarray) -> str:
    arr = np.ascontiguousarray(a)
    return f"{arr.dtype}{arr.shape}" + hashlib.blake2b(arr.view(np.uint8).reshape(-1), digest_size=16).hexdigest()


class _Prefix(Interpreter):
    """spike-numpy's reference semantics on a cut of the spiking graph; keeps one node's input and output.

    Values are content-addressed (op, attributes, parameter bytes, input keys): a node whose key was computed
    by the previous run is not simulated again, so fitting layer k (or one more bias step on it) re-runs only
    the nodes from the first changed parameter on, not the whole prefix from the input.  ``cache`` holds the
    previous run's values; ``fresh`` collects this run's (the caller keeps it for the next run).
    """

    def __init__(self, graph: Graph, timesteps: int, watch: str, cache: dict | None = None):
        super().__init__(graph)
        from irc.backends.spike_numpy import SIMULATE

        self.simulate = SIMULATE
        self.timesteps = timesteps
        self.offset = 0
        self.watch = watch
        self.current: np.ndarray | None = None
        self.cache = cache if cache is not None else {}
        self.fresh: dict[str, list] = {}
        self.keys: dict[int, str] = {id(v): "input:" + v.name for v in graph.inputs}
        for name in graph.params:
            v = graph.values[name]
            self.keys[id(v)] = _param_key(graph.params[name])

    def run_node(self, node: Node, args: list) -> list:
        if node.name == self.watch:
            self.current = np.asarray(args[0], np.float32)
        ins = [self.keys[id(v)] if v is not None else "-" for v in node.inputs]
        split = _split_bias(node)
        if split is not None:  # cached without its bias: a bias step re-runs only the neuron after it
            ins[split] = "-"
        ins.append(str(split))
        key = hashlib.blake2b(repr((node.op, sorted(node.attrs.items()), ins)).encode(), digest_size=16).hexdigest()
        for i, o in enumerate(node.outputs):
            self.keys[id(o)] = f"{key}:{i}:{self.keys[id(node.inputs[split])] if split is not None else ''}"
        outs = self.cache.get(key)
        if outs is None:
            outs = self.simulate.lower(node)(self, node, [None if i == split else a for i, a in enumerate(args)])
        self.fresh[key] = outs
        if split is not None:
            y = outs[0]
            b = args[split].astype(y.dtype, copy=False).reshape((1, 1, -1) + (1,) * (y.ndim - 3))
            outs = [np.broadcast_to(y[:1] + b, y.shape) if y.strides[0] == 0 else y + b]
        return outs


def _split_bias(node: Node) -> int | None:
    """The index of a weighted op's parameter bias that can be added after the cached product, or None.

    Exact: the kernels add the bias after the product (conv, dense), in float32 both ways.
    """
    op = get_op(node.op)
    if op.rate_rule != "weighted" or "bias?" not in op.inputs or node.attrs.get("activation"):
        return None
    i = op.inputs.index("bias?")
    return i if len(node.inputs) > i and node.inputs[i] is not None and node.inputs[i].is_param else None


def _trial(graph: Graph, ctx: PassContext) -> Graph:
    """The spiking graph ``to_spiking`` would build now (with the scales and biases fitted so far)."""
    from .spiking import _Converter

    return _Converter(graph, ctx, ctx.conversion).convert()


def _neuron_of(spiking: Graph, name: str) -> Node | None:
    v = spiking.values.get(name)
    p = v.producer if v is not None else None
    return p if p is not None and p.op == "IF" else None


def simulate_prefix(spiking: Graph, node: Node, x: np.ndarray, timesteps: int,
                    cache: dict | None = None, spikes: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The input current (T, N, C, ...) and the spikes of neuron ``node`` on inputs ``x``.

    ``cache`` (a dict, updated in place to this run's values): reuse the nodes an earlier call computed.
    ``spikes=False``: stop at the current (the neuron itself is not simulated; None for its spikes).
    """
    cut = spiking.copy()
    cut.outputs = [cut.values[(node.output if spikes else node.inputs[0]).name]]
    cut.prune()
    run = _Prefix(cut, timesteps, node.name, cache)
    out = run.run({cut.inputs[0].name: x})[0]
    if cache is not None:
        cache.clear()
        cache.update(run.fresh)
    return (run.current, out) if spikes else (np.asarray(out, np.float32), None)


def _positions(shape: tuple[int, ...], cap: int, seed: int = 0) -> np.ndarray:
    """A seeded subsample of the flat (sample x spatial) positions of an (N, C, ...) array."""
    n = shape[0] * int(np.prod(shape[2:], dtype=np.int64))
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def by_channel(a: np.ndarray, idx: np.ndarray, timed: bool = False) -> np.ndarray:
    """(N, C, *S) -> (M, C), or (T, N, C, *S) -> (T, M, C) when ``timed``: the positions ``idx`` per channel.

    ``idx`` (M,): the same flat (sample x spatial) positions for every channel; (M, C): its own per channel.
    Gathers only the M positions (never copies the whole array); C-contiguous, steps outermost.
    """
    lead = 1 if timed else 0
    n, c = a.shape[lead], a.shape[lead + 1]
    space = int(np.prod(a.shape[lead + 2:], dtype=np.int64))
    flat = a.reshape(a.shape[:lead] + (n, c, space))
    sample, pos = np.divmod(np.asarray(idx, np.int64), space)
    if sample.ndim == 2:
        ch = np.arange(c)[None, :]
        return np.ascontiguousarray(flat[:, sample, ch, pos] if timed else flat[sample, ch, pos])
    picked = flat[:, sample, :, pos] if timed else flat[sample, :, pos]  # (M, [T,] C)
    return np.ascontiguousarray(np.swapaxes(picked, 0, 1) if timed else picked)


def _pooled_positions(a: np.ndarray, pool: Node, cap: int, seed: int = 0) -> np.ndarray | None:
    """(M, C) flat positions of each channel's largest activation in (a subsample of) the max-pool's windows.

    A max-pool passes on only its windows' largest inputs (the spiking max-pool: the largest count, which
    quantisation, being monotone, keeps in place), so a neuron feeding one is fitted on those positions.
    None where the windows are not a plain tiling (kernel = strides, no padding, no dilation).
    """
    k = list(pool.attrs.get("kernel") or [])
    strides = list(pool.attrs.get("strides") or k)
    if (a.ndim != 2 + len(k) or strides != k or any(pool.attrs.get("pads") or [])
            or any(d != 1 for d in (pool.attrs.get("dilations") or []))):
        return None
    n, c, *space = a.shape
    out = [s // kk for s, kk in zip(space, k)]
    if not all(out):
        return None
    crop = a[(slice(None), slice(None)) + tuple(slice(0, o * kk) for o, kk in zip(out, k))]
    shape = [n, c]
    for o, kk in zip(out, k):
        shape += [o, kk]
    nd = len(k)
    win = crop.reshape(shape).transpose([0, 1] + [2 + 2 * i for i in range(nd)] + [3 + 2 * i for i in range(nd)])
    best = win.reshape(n, c, *out, -1).argmax(axis=-1)  # (N, C, *O): offset inside the window
    grid = np.indices(out).reshape(nd, -1)  # window origins, (nd, W)
    offs = np.array(np.unravel_index(np.arange(int(np.prod(k))), k))  # (nd, K)
    wins = _positions((n, 1, len(grid[0])), cap, seed)  # subsampled (sample, window) pairs
    sample, w = np.divmod(wins, grid.shape[1])
    off = best.reshape(n, c, -1)[sample, :, w]  # (M, C)
    coords = [grid[i][w][:, None] * k[i] + offs[i][off] for i in range(nd)]  # each (M, C)
    spatial = np.ravel_multi_index(coords, space)
    return sample[:, None] * int(np.prod(space)) + spatial


# ---------------------------------------------------------------------- fit
def fit_threshold(current: np.ndarray, analog: np.ndarray, attrs: dict[str, Any],
                  candidates: np.ndarray, debias: bool = False, refine: int = REFINE,
                  ceiling: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the candidate threshold whose T-step IF output best matches the analog activation.

    current (T, M, C): the neuron's input per step; analog (M, C); candidates (K, C), the first K-1 a
    geometric grid (the last one the percentile threshold).  Then ``refine`` bisections in log space around
    each channel's best (two candidates each, at half the previous spacing, capped at ``ceiling``): the
    resolution of a grid 2**refine times as fine for a few more simulations.
    Returns (threshold (C,), its mean squared error (C,)).  ``debias``: score the error's variance only,
    the part a bias correction after the fit cannot remove.
    """
    t = current.shape[0]
    best = candidates[0].copy()
    err = np.full(candidates.shape[1], np.inf)

    def score(th: np.ndarray) -> None:
        nonlocal best, err
        th = np.where(th > 0, th, np.float32(1.0)).astype(np.float32)
        rate = IF.count(current, th, attrs) * (th / np.float32(t))
        diff = rate - analog
        e = (diff ** 2).mean(axis=0) - (diff.mean(axis=0) ** 2 if debias else 0)
        better = e < err
        best = np.where(better, th, best)
        err = np.where(better, e, err)
        tried.append((th, e))

    tried: list[tuple[np.ndarray, np.ndarray]] = []
    for th in candidates:
        score(th)
    grid = candidates[:-1] if len(candidates) > 2 else candidates
    ratio = float(np.exp(np.median(np.log(grid[1:] / np.maximum(grid[:-1], 1e-30))))) if len(grid) > 1 else 1.0
    step = np.sqrt(ratio) if ratio > 1 else 1.0
    for _ in range(refine if step > 1 else 0):
        centre = best.copy()
        for f in (1 / step, step):
            score(np.minimum(centre * np.float32(f), np.float32(ceiling)))
        step = np.sqrt(step)
    if SPARSE_SLACK > 0 and tried:
        # among the candidates within SPARSE_SLACK of the least error, the highest threshold: fewer events
        ths, errs = np.stack([a for a, _ in tried]), np.stack([e for _, e in tried])
        ok = errs <= err[None, :] * (1 + SPARSE_SLACK) + 1e-12
        pick = np.where(ok, ths, -np.inf).argmax(axis=0)
        cols = np.arange(ths.shape[1])
        best, err = ths[pick, cols], errs[pick, cols]
    return best.astype(np.float32), err


def candidates_for(analog: np.ndarray, percentile: np.ndarray) -> np.ndarray:
    """(K, C) candidate thresholds: fractions of each channel's largest activation, and the percentile one."""
    top = analog.max(axis=0) if analog.size else np.zeros(analog.shape[1], np.float32)
    top = np.where(top > 0, top, percentile).astype(np.float32)
    return np.concatenate([GRID[:, None] * top[None, :], percentile[None, :].astype(np.float32)])


class _Calibration:
    """Calibration inputs and the analog activations at every neuron site, subsampled per site."""

    def __init__(self, graph: Graph, ctx: PassContext, names: list[str], whole: tuple[str, ...] = ()):
        """``whole``: analog values kept whole on the check's inputs (the network's outputs, for the check)."""
        from .spiking import calibration_data

        everything = calibration_data(graph, ctx)
        self.timesteps = int(ctx.option("timesteps", 64))
        n = int(ctx.option("fit_samples", 256) or 256)
        n = max(min(n, MIN_SAMPLES), min(n, SAMPLE_STEPS // self.timesteps))
        data = everything
        if len(data) > n:
            data = data[np.sort(np.random.default_rng(0).choice(len(data), n, replace=False))]
        self.x = data
        self.cache: dict[str, list] = {}
        checked = max(len(data), CHECK_SAMPLE_STEPS // self.timesteps)
        self.check_x = everything if len(everything) <= checked else everything[
            np.sort(np.random.default_rng(1).choice(len(everything), checked, replace=False))]
        self.check_cache: dict[str, list] = {}  # the prefix cache is keyed by input name: one per input array
        acts: dict[str, np.ndarray] = {}
        wanted = set(names)

        def hook(node, outs):
            for o, arr in zip(node.outputs, outs):
                if o.name in wanted:
                    acts[o.name] = np.asarray(arr, np.float32)

        analog_input = ctx.analog_graph.inputs[0].name
        run_graph(ctx.analog_graph, {analog_input: data}, hook=hook)
        self.whole: dict[str, np.ndarray] = {}
        if whole:
            wanted = set(whole)
            outs = dict(acts)
            acts.clear()
            run_graph(ctx.analog_graph, {analog_input: self.check_x}, hook=hook)
            self.whole, acts = acts, outs
        self.idx: dict[str, np.ndarray] = {}
        self.analog: dict[str, np.ndarray] = {}
        self.fit_idx: dict[str, np.ndarray] = {}
        self.fit_analog: dict[str, np.ndarray] = {}
        analog = ctx.analog_graph
        for name, a in acts.items():
            cap = max(FIT_MIN_ELEMENTS, min(FIT_ELEMENTS, FIT_BUDGET // max(1, self.timesteps * a.shape[1])))
            users = analog.consumers(analog.values[name]) if name in analog.values else []
            idx = _pooled_positions(a, users[0], cap) if len(users) == 1 and users[0].op == "MaxPool" else None
            self.idx[name] = _positions(a.shape, cap)
            self.analog[name] = by_channel(a, self.idx[name])
            self.fit_idx[name] = idx if idx is not None else self.idx[name]
            self.fit_analog[name] = by_channel(a, self.fit_idx[name])

    def spiking_rate(self, spiking: Graph, node: Node) -> np.ndarray:
        """Rate * threshold (M, C) of neuron ``node`` over the compiled steps, at the subsampled positions."""
        _, spikes = simulate_prefix(spiking, node, self.x, self.timesteps, self.cache)
        th = spiking.param(node.inputs[1]).astype(np.float32)
        return by_channel(spikes.sum(axis=0), self.idx[node.output.name]) * (th / np.float32(self.timesteps))


def _sites(graph: Graph, ctx: PassContext) -> list[str]:
    return [name for name in ctx.conversion.scales if name in graph.values]


def _summary(graph: Graph, ctx: PassContext, **extra) -> None:
    info = meta_json(graph, "thresholds")
    info.update(extra)
    info["layers"] = {name: [float(np.min(s)), float(np.max(s))] for name, s in ctx.conversion.scales.items()
                      if np.size(s)}
    graph.meta["thresholds"] = json.dumps(info, sort_keys=True)


@register_pass("fit_thresholds", needs=("conversion",))
def fit_thresholds(graph: Graph, ctx: PassContext) -> Graph:
    """Thresholds fitted layer by layer for the compiled timesteps (threshold='fitted'): per channel, or one per
    layer with per_channel=False."""
    if not _active(graph, ctx):
        return graph
    method = threshold_method(ctx)
    if method not in METHODS:
        from irc.errors import IRCError

        raise IRCError(f"unknown threshold method {method!r}", hint="threshold: " + ", ".join(METHODS))
    t = int(ctx.option("timesteps", 64))
    if method == "percentile":
        _summary(graph, ctx, method=f"percentile {float(ctx.option('percentile', 99.9)):g}")
        return graph
    names = _sites(graph, ctx)
    first = _trial(graph, ctx)  # the percentile rule's network, the check's alternative
    outputs = _output_sites(first, ctx.analog_graph) if ctx.option("output_check", True) else []
    cal = _Calibration(graph, ctx, names, whole=tuple(outputs))
    rule_error = _output_error(first, cal, outputs, t) if outputs else None
    rule_scales = {k: np.array(v, copy=True) for k, v in ctx.conversion.scales.items()}
    rule_inputs = {n.name: list(n.inputs) for n in graph.nodes}
    bias = bias_enabled(ctx)
    per_channel = bool(ctx.option("per_channel", True))
    shifts: dict[str, list[float]] = {}
    skipped: list[str] = []
    for name in names:
        old = ctx.conversion.scales[name].astype(np.float32)
        for _ in range(ROUNDS if bias else 1):
            spiking = _trial(graph, ctx)
            node = _neuron_of(spiking, name)
            if node is None or name not in cal.analog:
                break  # no neuron here (a ReLU of spikes is the identity)
            current = by_channel(simulate_prefix(spiking, node, cal.x, t, cal.cache, spikes=False)[0],
                                 cal.fit_idx[name], True)
            analog = cal.fit_analog[name]
            ceiling = np.float32(get_op(graph.values[name].producer.op).ceiling(graph.values[name].producer.attrs))
            if per_channel:
                cands = np.minimum(candidates_for(analog, old), ceiling)
                th, _ = fit_threshold(current, analog, node.attrs, cands, debias=False, ceiling=float(ceiling))
            else:  # one threshold for the layer: every channel's positions scored together
                def flat(a: np.ndarray) -> np.ndarray:
                    return a.reshape(a.shape[:-2] + (-1, 1))

                cands = np.minimum(candidates_for(flat(analog), np.atleast_1d(old)[:1]), ceiling)
                one, _ = fit_threshold(flat(current), flat(analog), node.attrs, cands, debias=False,
                                       ceiling=float(ceiling))
                th = np.full(np.shape(old), one[0], np.float32)
            ctx.conversion.scales[name] = th
            if bias:
                r = _correct_layer(graph, ctx, cal, name)
                if r is None:
                    skipped.append(name)
                else:
                    prev = shifts.get(name)
                    shifts[name] = r if prev is None else [prev[0] + r[0], prev[1] + r[1]]
    fitted_error = _output_error(_trial(graph, ctx), cal, outputs, t) if outputs else None
    if rule_error is not None and fitted_error is not None and rule_error < fitted_error:
        # the network as a whole reproduces the analog outputs better with the percentile rule: keep it
        _restore(graph, rule_inputs)
        ctx.conversion.scales.update(rule_scales)
        check = {"fitted": fitted_error, "percentile": rule_error, "kept": "percentile"}
        _summary(graph, ctx, method=f"percentile {float(ctx.option('percentile', 99.9)):g} (output check)",
                 fitted_for_timesteps=t, samples=int(len(cal.x)), output_check=check)
        return graph
    if bias:
        _record_bias(graph, ctx, shifts, skipped)
    extra = {} if rule_error is None else {
        "output_check": {"fitted": fitted_error, "percentile": rule_error, "kept": "fitted"}}
    _summary(graph, ctx, method="fitted", fitted_for_timesteps=t, samples=int(len(cal.x)),
             positions_per_channel=int(max((len(i) for i in cal.idx.values()), default=0)), **extra)
    return graph


# ------------------------------------------------------------- output check
def _output_sites(spiking: Graph, analog: Graph) -> list[str]:
    """The values the potential readouts read, where the analog graph has them too; [] when any is missing
    (a count readout, an output the conversion renamed): then there is nothing to compare and no check."""
    sites = []
    for node in spiking.nodes:
        if node.op != "Readout":
            continue
        src = node.inputs[0]
        if node.attrs.get("mode", "potential") != "potential" or src.name not in analog.values:
            return []
        sites.append(src.name)
    return sites


def _output_error(spiking: Graph, cal: "_Calibration", sites: list[str], t: int) -> float:
    """The spiking network's readout potentials against the analog values there on the calibration inputs:
    the mean squared error relative to the analog values' variance, summed over the outputs."""
    total = 0.0
    for site in sites:
        readout = next(n for n in spiking.nodes if n.op == "Readout" and n.inputs[0].name == site)
        current, _ = simulate_prefix(spiking, readout, cal.check_x, t, cal.check_cache, spikes=False)
        ref = cal.whole[site]
        total += float(((current.mean(axis=0) - ref) ** 2).mean() / max(float(ref.var()), 1e-12))
    return total


def _restore(graph: Graph, inputs: dict[str, list]) -> None:
    """Put back the inputs every node had (the biases before correction) and drop the parameters left unused."""
    for node in graph.nodes:
        old = inputs.get(node.name)
        if old is not None and list(node.inputs) != old:
            graph.set_inputs(node, old)
            graph.reinfer(node)
    graph.prune()


# --------------------------------------------------------------------- bias
def _bias_host(graph: Graph, name: str) -> Node | None:
    """The Conv/Dense/ScaleShift whose output feeds the rectifier ``name`` alone (where a shift can go)."""
    relu = graph.values[name].producer
    src = relu.inputs[0] if relu is not None else None
    p = src.producer if src is not None else None
    if p is None or graph.num_uses(src) != 1 or get_op(p.op).rate_rule != "weighted" or p.attrs.get("activation"):
        return None
    if len(p.inputs) < 2 or p.inputs[1] is None or not p.inputs[1].is_param:
        return None
    return p


def _add_bias(graph: Graph, host: Node, shift: np.ndarray) -> None:
    ins = list(host.inputs) + [None] * (3 - len(host.inputs))
    old = graph.param(ins[2]) if ins[2] is not None else np.zeros(shift.shape, np.float32)
    ins[2] = graph.add_param(host.name + ".bias_corrected", (old + shift).astype(np.float32))
    graph.set_inputs(host, ins)
    graph.reinfer(host)


def bias_enabled(ctx: PassContext) -> bool:
    opt = ctx.option("bias_correction")
    return threshold_method(ctx) == "fitted" if opt is None else bool(opt)


def _correct_layer(graph: Graph, ctx: PassContext, cal: "_Calibration", name: str) -> list[float] | None:
    """Shift the biases feeding neuron layer ``name`` until its mean rate meets the analog mean; the shift range.

    Newton-like steps: the mean rate moves by less than the bias does (clipped positions do not move at all),
    so each step divides the residual by a per-channel slope, first the analog share of positions inside
    (0, threshold), then the secant of the last step; a plain fixed point left a few % after two steps.
    """
    host = _bias_host(graph, name)
    if host is None or name not in cal.analog:
        return None
    analog = cal.analog[name]
    target = analog.mean(axis=0)
    th = ctx.conversion.scales[name].astype(np.float32)
    slope = np.clip(((analog > 0) & (analog < th)).mean(axis=0), MIN_SLOPE, 1.0)
    tol = BIAS_TOLERANCE * max(float(np.abs(target).max()), 1e-3)
    total = np.zeros_like(target)
    last_mean = last_shift = None
    for _ in range(BIAS_ITERATIONS):
        spiking = _trial(graph, ctx)
        node = _neuron_of(spiking, name)
        if node is None:
            return None
        rate = cal.spiking_rate(spiking, node)
        mean = rate.mean(axis=0)
        if last_shift is not None:
            moved = np.abs(last_shift) > 1e-6
            secant = np.divide(mean - last_mean, last_shift, out=slope.copy(), where=moved)
            slope = np.where(moved, np.clip(secant, MIN_SLOPE, 1.0), slope)
        resid = target - mean
        if float(np.abs(resid).max()) <= tol:
            break
        shift = (resid / slope).astype(np.float32)
        if ctx.option("scale_rounding", "none") == "pow2":  # keep the network exactly representable
            shift = (np.round(shift * SHIFT_GRID) / SHIFT_GRID).astype(np.float32)
        if not np.any(np.abs(shift) > 1e-7):
            break
        _add_bias(graph, host, shift)
        total += shift
        last_mean, last_shift = mean, shift
    return [float(total.min()), float(total.max())]


def _record_bias(graph: Graph, ctx: PassContext, shifts: dict, skipped: list) -> None:
    _summary(graph, ctx, bias_correction={"shifts": shifts, "not_corrected": skipped})


@register_pass("correct_bias", needs=("conversion",))
def correct_bias(graph: Graph, ctx: PassContext) -> Graph:
    """Per-channel bias shifts, layer by layer, so each layer's mean spiking rate meets its analog mean.

    With fitted thresholds ``fit_thresholds`` already interleaves it (threshold of a layer, then its bias, then
    the next layer); this pass does it for the percentile rule with ``bias_correction=True``.
    """
    done = meta_json(graph, "thresholds")  # fit_thresholds did it already, or kept the plain rule on purpose
    if not _active(graph, ctx) or not bias_enabled(ctx) or "bias_correction" in done or "output_check" in done:
        return graph
    names = _sites(graph, ctx)
    cal = _Calibration(graph, ctx, names)
    shifts: dict[str, list[float]] = {}
    skipped: list[str] = []
    for name in names:
        r = _correct_layer(graph, ctx, cal, name)
        if r is None:
            skipped.append(name)
        else:
            shifts[name] = r
    _record_bias(graph, ctx, shifts, skipped)
    return graph
