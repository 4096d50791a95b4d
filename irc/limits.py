"""Named limits on what a model file or artifact may declare, checked before anything is allocated.

A model file states sizes (an initializer's dims, an HDF5 dataset's shape, an N2D2 mapping matrix, an
array in a saved program) and a reader would allocate them as told.  A damaged or hostile file can
declare terabytes, so every reader checks the declared size against these limits *before* it reads
or allocates, and refuses with one :class:`~irc.errors.IRCError` that names the limit and the
environment variable that raises it.  The defaults are far above any network irc is meant for;
raise one (``IRC_MAX_TENSOR_ELEMENTS=...``) for a model that really is that large.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

from .errors import IRCError


@dataclass(frozen=True)
class Limit:
    """One bound: its name, the environment variable that overrides it, its default, what it bounds."""

    name: str
    env: str
    default: int
    what: str

    @property
    def value(self) -> int:
        """The bound in force (the environment variable's value when set; read at each check)."""
        raw = os.environ.get(self.env, "").strip()
        if not raw:
            return self.default
        try:
            value = int(float(raw)) if "e" in raw.lower() else int(raw)
        except ValueError:
            raise IRCError(f"{self.env}={raw!r} is not an integer",
                           hint=f"set it to the largest {self.what} irc should accept") from None
        if value < 0:
            raise IRCError(f"{self.env}={raw!r} must not be negative")
        return value

    def check(self, amount: int, subject: str, *, file: str | None = None, node: str | None = None) -> int:
        """``amount`` if it is within the limit, else an IRCError naming ``subject``, the limit and its env var."""
        bound = self.value
        if amount > bound:
            raise IRCError(f"{subject} declares {amount:,} {self.what}, more than the limit {self.name} "
                           f"({bound:,})", file=file, node=node,
                           hint=f"if the model really is this large, raise it: {self.env}={amount}")
        return amount


MAX_TENSOR_ELEMENTS = Limit("max_tensor_elements", "IRC_MAX_TENSOR_ELEMENTS", 1 << 28, "elements")
"""Elements of one tensor (weights, constants, a declared input): 2^28, 1 GiB of float32."""

MAX_WEIGHT_BYTES = Limit("max_weight_bytes", "IRC_MAX_WEIGHT_BYTES", 4 << 30, "bytes of weights")
"""All parameters of one model together."""

MAX_RANK = Limit("max_rank", "IRC_MAX_RANK", 16, "axes")
"""Axes of one tensor."""

MAX_DIM = Limit("max_dim", "IRC_MAX_DIM", (1 << 31) - 1, "elements along one axis")
"""Size of one axis (also kernel sizes, strides, dilations, pads and other per-axis numbers)."""

MAX_WINDOW = Limit("max_window", "IRC_MAX_WINDOW", 1 << 20, "elements in one pooling window")
"""Elements of one pooling window (the product of its kernel sizes): a kernel of 2^31 with padding to match
is valid shape arithmetic but a run of years."""

MAX_NODES = Limit("max_nodes", "IRC_MAX_NODES", 1_000_000, "nodes/layers")
"""Nodes of one graph (layers of a Keras model, cells of an INI network)."""

MAX_WORK = Limit("max_work", "IRC_MAX_WORK", 1 << 40, "neuron updates (timesteps x batch x neurons)")
"""Work of one spiking simulation; a tampered ``timesteps`` or a typo cannot start a run of years."""

MAX_STRING = Limit("max_string", "IRC_MAX_STRING", 1 << 16, "characters")
"""One name, attribute string or option string."""

MAX_TEXT_BYTES = Limit("max_text_bytes", "IRC_MAX_TEXT_BYTES", 1 << 28, "bytes")
"""One text document read whole (a Keras config, an INI file, a saved program's IR, a weight text file)."""

LIMITS = (MAX_TENSOR_ELEMENTS, MAX_WEIGHT_BYTES, MAX_RANK, MAX_DIM, MAX_WINDOW, MAX_NODES, MAX_WORK, MAX_STRING,
          MAX_TEXT_BYTES)


def check_shape(shape: Iterable, subject: str, *, itemsize: int = 4, file: str | None = None,
                node: str | None = None) -> tuple[int, ...]:
    """A declared shape as a tuple of ints, each >= 0, checked against rank, axis and element limits.

    Called with the *declared* shape before the array is read, so nothing huge is ever allocated.
    """
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError, OverflowError):
        raise IRCError(f"{subject} has a shape that is not a list of integers ({list(shape)!r})",
                       file=file, node=node) from None
    MAX_RANK.check(len(dims), subject, file=file, node=node)
    for d in dims:
        if d < 0:
            raise IRCError(f"{subject} has a negative dimension in its shape {list(dims)}", file=file, node=node,
                           hint="the file is damaged or was not written by a supported exporter")
        MAX_DIM.check(d, subject, file=file, node=node)
    count = 1
    for d in dims:
        count *= d
    MAX_TENSOR_ELEMENTS.check(count, subject, file=file, node=node)
    MAX_WEIGHT_BYTES.check(count * itemsize, subject, file=file, node=node)
    return dims


def element_count(shape: Iterable[int]) -> int:
    """The exact product of a shape (Python ints: no overflow)."""
    count = 1
    for d in shape:
        count *= int(d)
    return count


class WeightBudget:
    """Running total of the parameter bytes one reader has read, against MAX_WEIGHT_BYTES."""

    def __init__(self, subject: str, file: str | None = None):
        self.subject, self.file, self.total = subject, file, 0

    def add(self, nbytes: int, node: str | None = None) -> None:
        self.total += int(nbytes)
        MAX_WEIGHT_BYTES.check(self.total, self.subject, file=self.file, node=node)
