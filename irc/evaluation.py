"""Evaluate a program on a whole data set, streamed from disk, locally or on a Dask cluster.

    result = irc.evaluate(prog, "data/", labels="y.npy", timesteps=[8, 16, 32])
    result.accuracy                 # at the largest T (a fraction; None without labels)
    result.at(8).accuracy           # any requested T
    result.stats                    # the same dict as prog.stats after prog.run, over all samples
    result.at(8).stats

The data is read one batch at a time (see :mod:`irc.stream` for what it can
be), so memory holds a few batches, the per-sample predictions (4 bytes per
sample and T) and nothing else.  Every batch is a global sample range and is
run at its global offset, so the per-sample seeds of random encodings give
the same spikes as one run over the whole data set.  What a batch adds to the
result is integer counts (:class:`Counts`: samples, correct answers, spikes,
synaptic operations, timesteps used), so the totals, and every statistic
derived from them, equal those of a single run over the concatenated data
exactly, whether the batches ran here or on a cluster (``client=``, a
``dask.distributed.Client``; see :mod:`irc.distributed`).
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .errors import IRCError
from .options import MAX_TIMESTEPS
from .stream import InMemory, IterableSource, Source, Column, open_source

IO_BATCH_BYTES = 64 << 20    # at most this much input per batch
MAX_BATCH = 1024             # and at most this many samples, so progress and work sharing stay fine-grained
ANALOG_BATCH_BYTES = 1 << 30  # analog programs: the largest activation of a batch stays under ~1/4 of this


# ------------------------------------------------------------------ results
@dataclass
class Counts:
    """What some samples add to an evaluation: integers only, so merging is exact.

    ``correct``/``agree`` hold one count per checkpoint (``None`` without labels /
    without the analog comparison), ``tallies`` one SpikeTally per checkpoint
    (spiking programs).  ``seconds`` is compute time (summed, not exact).
    """

    samples: int = 0
    correct: list[int] | None = None
    agree: list[int] | None = None
    analog_correct: int | None = None
    tallies: list[Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.samples + other.samples, _add(self.correct, other.correct), _add(self.agree, other.agree),
                      _add(self.analog_correct, other.analog_correct), _add(self.tallies, other.tallies),
                      {k: self.seconds.get(k, 0.0) + other.seconds.get(k, 0.0)
                       for k in {**self.seconds, **other.seconds}})


def _add(a, b):
    if a is None or b is None:
        return a if b is None else b
    if isinstance(a, list):
        return [x + y for x, y in zip(a, b)]
    return a + b


@dataclass
class BatchResult:
    """One batch's counts and per-sample outputs, as a worker sends them back."""

    start: int
    rows: int
    counts: Counts
    predictions: np.ndarray | None = None         # (checkpoints, rows) int32
    analog_predictions: np.ndarray | None = None  # (rows,) int32
    scores: np.ndarray | None = None              # at the last checkpoint, when asked for
    worker: str | None = None


@dataclass
class EvalPoint:
    """The result at one number of timesteps (``timesteps`` is None for an analog program)."""

    timesteps: int | None
    accuracy: float | None
    correct: int | None
    agreement: float | None   # fraction of samples classified as the analog network does
    stats: dict[str, Any]


@dataclass
class Rerun:
    """Samples whose task was run again because a worker died while it held them."""

    start: int
    stop: int
    times: int


@dataclass
class Evaluation:
    """The outcome of :func:`evaluate`."""

    target: str
    samples: int
    points: list[EvalPoint]
    predictions: dict[int | None, np.ndarray] | None
    analog_accuracy: float | None
    analog_predictions: np.ndarray | None
    seconds: dict[str, float]
    elapsed_s: float
    batch_size: int
    workers: int = 0
    reruns: list[Rerun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float | None:
        return self.points[-1].accuracy

    @property
    def stats(self) -> dict[str, Any]:
        return self.points[-1].stats

    def at(self, timesteps: int | None) -> EvalPoint:
        for p in self.points:
            if p.timesteps == timesteps:
                return p
        raise IRCError(f"no result at T={timesteps}; evaluated at {[p.timesteps for p in self.points]}")


# ------------------------------------------------------------- the batch step
@dataclass(frozen=True)
class Plan:
    """What each batch does: the same on this machine and on every worker."""

    timesteps: tuple[int, ...] | None   # None: an analog program
    batch_size: int
    compare_analog: bool = False
    keep_predictions: bool = True
    keep_scores: bool = False


def evaluate_batch(prog, xs: list[np.ndarray], y: np.ndarray | None, start: int, plan: Plan) -> BatchResult:
    """Run one batch (samples ``start`` ... of the data set) and count what it scores."""
    from .data import as_class_labels

    rows = len(xs[0])
    labels = as_class_labels(y, rows, "labels") if y is not None else None
    seconds: dict[str, float] = {}
    tallies = None
    if plan.timesteps is None:
        t0 = time.perf_counter()
        out = prog.run(*xs, batch_size=rows)
        seconds["run"] = time.perf_counter() - t0
        scores_all = [_first(out)]
    else:
        t0 = time.perf_counter()
        points = prog.sweep(*xs, timesteps=list(plan.timesteps), batch_size=rows, offset=start)
        seconds["spiking"] = time.perf_counter() - t0
        scores_all = [_first(p.scores) for p in points]
        tallies = [p.tally for p in points]
    preds = np.stack([_classes(s, rows) for s in scores_all])
    analog_pred = None
    if plan.compare_analog:
        t0 = time.perf_counter()
        analog_pred = _classes(_first(prog.analog().run(*xs, batch_size=rows)), rows)
        seconds["analog"] = time.perf_counter() - t0
    counts = Counts(
        samples=rows,
        correct=[int((p == labels).sum()) for p in preds] if labels is not None else None,
        agree=[int((p == analog_pred).sum()) for p in preds] if analog_pred is not None else None,
        analog_correct=int((analog_pred == labels).sum()) if analog_pred is not None and labels is not None else None,
        tallies=tallies, seconds=seconds)
    return BatchResult(start, rows, counts, preds if plan.keep_predictions else None,
                       analog_pred if plan.keep_predictions else None,
                       np.asarray(scores_all[-1]) if plan.keep_scores else None)


def _first(out):
    return out[0] if isinstance(out, list) else out


def _classes(scores, rows: int) -> np.ndarray:
    return np.asarray(scores).reshape(rows, -1).argmax(axis=1).astype(np.int32)


# --------------------------------------------------------------- collecting
class Collector:
    """Adds batch results up as they arrive (in any order) and places their per-sample outputs."""

    def __init__(self, plan: Plan, samples: int | None, scores_path: str | None):
        self.plan = plan
        self.samples = samples
        self.scores_path = scores_path
        self.total = Counts()
        self.predictions: dict[int, np.ndarray] = {}
        self.analog: dict[int, np.ndarray] = {}
        self._scores = None

    def add(self, r: BatchResult) -> None:
        self.total = self.total + r.counts
        if r.predictions is not None:
            self.predictions[r.start] = r.predictions
        if r.analog_predictions is not None:
            self.analog[r.start] = r.analog_predictions
        if r.scores is not None:
            if self._scores is None:
                self._scores = np.lib.format.open_memmap(self.scores_path, mode="w+", dtype=r.scores.dtype,
                                                         shape=(self.samples,) + r.scores.shape[1:])
            self._scores[r.start:r.start + r.rows] = r.scores

    def finish(self, prog, elapsed: float, batch_size: int) -> Evaluation:
        if self._scores is not None:
            self._scores.flush()
            del self._scores
        t = self.total
        n = t.samples
        checkpoints = list(self.plan.timesteps) if self.plan.timesteps is not None else [None]
        points = []
        for k, tk in enumerate(checkpoints):
            if tk is None:
                from .analysis import macs_per_sample

                stats: dict[str, Any] = {"samples": n, "macs": macs_per_sample(prog.graph) * n}
            else:
                stats = prog.stats_of(tk, t.tallies[k])
            correct = t.correct[k] if t.correct is not None else None
            points.append(EvalPoint(tk, correct / n if correct is not None and n else None, correct,
                                    t.agree[k] / n if t.agree is not None and n else None, stats))
        preds = None
        if self.predictions:
            order = sorted(self.predictions)
            stacked = np.concatenate([self.predictions[s] for s in order], axis=1)
            preds = {tk: stacked[k] for k, tk in enumerate(checkpoints)}
        analog = np.concatenate([self.analog[s] for s in sorted(self.analog)]) if self.analog else None
        if self.plan.timesteps is not None:
            prog.stats = points[-1].stats
        return Evaluation(prog.target, n, points, preds,
                          t.analog_correct / n if t.analog_correct is not None and n else None, analog,
                          dict(t.seconds), elapsed, batch_size)


# ------------------------------------------------------------------ the API
def evaluate(program, data, labels=None, *, timesteps: int | Sequence[int] | None = None,
             batch_size: int | None = None, client=None, compare_analog: bool = False,
             keep_predictions: bool = True, scores_path: str | None = None, progress: bool = True,
             label: str = "evaluating") -> Evaluation:
    """Run ``program`` (a Program, or the path of a saved ``.ircp``) over a whole data set.

    ``data``: a ``.npy`` (memory-mapped), an ``.npz``, a folder of ``.npy``/``.npz`` shards, an array,
    a dict of arrays, or any iterable of ``(x, y)`` batches.  ``labels``: class labels (a path or an
    array; one-hot is fine), else those found in the data ('y').  ``timesteps``: the T (or list of T) to
    read a spiking program out at, default its compiled T.  ``batch_size``: samples per batch (default:
    the program's ``batch_size`` option, else what keeps a batch under 64 MiB of input and 1,024
    samples).  ``client``: a ``dask.distributed.Client`` to spread the batches over its workers.
    ``compare_analog``: also run the analog network a spiking program was converted from, per batch.
    ``scores_path``: write the output scores (at the largest T) to this ``.npy``, batch by batch.
    ``progress``: one bar over samples on stderr (a line every few seconds when stderr is not a terminal).
    """
    from .progress import Progress
    from .program import Program, load_program

    artifact = None
    if isinstance(program, (str, os.PathLike)):
        artifact = os.fspath(program)
        prog = load_program(artifact)
    elif isinstance(program, Program):
        prog = program
    else:
        raise IRCError(f"evaluate takes a Program or the path of an .ircp artifact, not a {type(program).__name__}")
    checkpoints = _checkpoints(prog, timesteps)
    if isinstance(data, (Source, IterableSource)):
        if labels is not None:
            raise IRCError("give the labels when opening the source, not to evaluate")
        source = data
    else:
        source = open_source(data, prog.graph.inputs, labels)
    if hasattr(prog, "specialised"):  # input sizes the model leaves open: those of the data (irc/shapes.py)
        if not isinstance(source, Source):
            raise IRCError("a program whose input sizes are not known yet cannot evaluate an iterable of batches",
                           hint="compile it with input_shapes={...} (--input-shape)")
        first, _ = source.read(source.start, source.start + 1)
        prog = prog.specialised({v.name: x for v, x in zip(prog.graph.inputs, first)})
    if compare_analog:
        prog.analog()  # a clear error now if the program has no analog network
    batch = _batch_size(prog, source, batch_size, checkpoints)
    if scores_path is not None:
        _check_output(scores_path)
        if source.samples is None:
            raise IRCError("scores_path needs a data set of known size (a file, a folder or an array)")
    plan = Plan(tuple(checkpoints) if checkpoints else None, batch, compare_analog, keep_predictions,
                scores_path is not None)
    collector = Collector(plan, source.samples, scores_path)
    start = time.perf_counter()
    workers, reruns, notes = 0, [], []
    with Progress(label, total=source.samples, enabled=progress) as bar:
        if client is None:
            for first, xs, y in source.batches(batch):
                collector.add(evaluate_batch(prog, xs, y, first, plan))
                bar.update(len(xs[0]))
        else:
            from .distributed import run_on_cluster

            info = run_on_cluster(client, _artifact_bytes(prog, artifact), source, plan, collector.add, bar)
            workers, reruns, notes = info.workers, info.reruns, info.notes
    if collector.total.samples == 0:
        raise IRCError(f"the data set ({source.description}) has no samples")
    result = collector.finish(prog, time.perf_counter() - start, batch)
    result.workers, result.reruns, result.notes = workers, reruns, notes
    return result


def _checkpoints(prog, timesteps) -> list[int] | None:
    if not getattr(prog, "spiking", False):
        if timesteps is not None:
            raise IRCError(f"timesteps apply to spiking programs; this one is a {prog.target} program")
        return None
    if timesteps is None:
        return [int(prog.options["timesteps"])]
    values = [timesteps] if isinstance(timesteps, (int, np.integer)) else list(timesteps)
    try:
        out = sorted({int(t) for t in values})
    except (TypeError, ValueError):
        raise IRCError(f"timesteps must be positive integers, got {timesteps!r}") from None
    if not out or out[0] < 1 or out[-1] > MAX_TIMESTEPS:
        raise IRCError(f"timesteps must be integers from 1 to {MAX_TIMESTEPS:,}, got {timesteps!r}")
    return out


def _batch_size(prog, source, requested: int | None, checkpoints) -> int:
    """Samples per batch: the request, the program's option, else sized to bound memory."""
    inputs = prog.graph.inputs
    fixed = next((v.type.shape[0] for v in inputs if not v.type.has_batch and v.type.shape), None)
    if fixed is not None:  # a model exported with a fixed batch axis takes exactly that many rows
        if requested not in (None, fixed):
            raise IRCError(f"the model takes batches of exactly {fixed} samples (its batch axis is fixed); "
                           f"--batch-size {requested} cannot be used", hint="re-export it with a dynamic batch axis")
        if source.samples is not None and source.samples % fixed:
            raise IRCError(f"the model takes batches of exactly {fixed} samples and the data has {source.samples}",
                           hint="re-export it with a dynamic batch axis")
        return int(fixed)
    if requested is not None:
        if int(requested) < 1:
            raise IRCError(f"--batch-size must be at least 1, got {requested}")
        return int(requested)
    if prog.options.get("batch_size"):
        return int(prog.options["batch_size"])
    per_sample = sum(v.type.static_size() * v.type.np_dtype.itemsize for v in inputs) or 1
    largest = max([v.type.static_size() for n in prog.graph.nodes for v in n.outputs] + [1])
    compute = (prog.auto_chunk(checkpoints[-1]) if checkpoints else
               ANALOG_BATCH_BYTES // (largest * 4 * 4))
    return int(max(1, min(MAX_BATCH, IO_BATCH_BYTES // per_sample, compute)))


def _check_output(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise IRCError("the folder to write it in does not exist", file=path)
    if not os.access(folder, os.W_OK):
        raise IRCError("the folder to write it in is not writable", file=path)


def _artifact_bytes(prog, path: str | None) -> bytes:
    """The saved program, as workers load it (never machine code: each worker compiles or uses its cache)."""
    if path is not None:
        with open(path, "rb") as f:
            return f.read()
    with tempfile.TemporaryDirectory() as d:
        tmp = os.path.join(d, "program.ircp")
        prog.save(tmp)
        with open(tmp, "rb") as f:
            return f.read()


def batch_source(start: int, xs: list[np.ndarray], y: np.ndarray | None) -> Source:
    """One batch held in memory, as a source of its own (to ship it to a worker)."""
    return Source(tuple(Column((InMemory(x),), start) for x in xs),
                  Column((InMemory(y),), start) if y is not None else None, len(xs[0]), start)


Collect = Callable[[BatchResult], None]
