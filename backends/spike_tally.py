"""Integer totals behind a spiking run's statistics, mergeable across batches and machines.

``prog.stats`` is computed from one :class:`SpikeTally` per checkpoint: the
samples, the timesteps they used, and every layer's spikes and synaptic
operations, all as Python integers.  Tallies of disjoint sets of samples add
up to the tally of their union exactly (integer addition is associative), so
statistics merged from batches streamed from disk, or computed on the workers
of a Dask cluster, equal those of one run over the concatenated data, to the
last bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Protocol

import numpy as np


class _PerSample(Protocol):
    steps: np.ndarray
    spikes: dict[str, np.ndarray]
    synops: dict[str, np.ndarray]


def _total(per_sample: np.ndarray) -> int:
    """Sum of per-sample counts (event counts may come as integral floats) as an exact integer."""
    a = np.asarray(per_sample)
    if a.dtype.kind == "f":
        a = np.rint(a).astype(np.int64)
    return int(a.sum(dtype=np.int64))


@dataclass
class SpikeTally:
    """Totals of one checkpoint over some samples."""

    samples: int = 0
    steps: int = 0
    spikes: dict[str, int] = field(default_factory=dict)
    synops: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, counters: Iterable[_PerSample]) -> "SpikeTally":
        """The tally of a simulator's per-sample counters (one checkpoint, any number of chunks)."""
        out = cls()
        for c in counters:
            out = out + cls(len(c.steps), _total(c.steps), {k: _total(v) for k, v in c.spikes.items()},
                            {k: _total(v) for k, v in c.synops.items()})
        return out

    def __add__(self, other: "SpikeTally") -> "SpikeTally":
        return SpikeTally(self.samples + other.samples, self.steps + other.steps,
                          _add(self.spikes, other.spikes), _add(self.synops, other.synops))


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out
