"""Data sets that need not fit in memory: read by sample range, one batch at a time.

A :class:`Source` is the model's inputs (one column per graph input) and
optionally the labels, each column a list of segments laid end to end: rows
of a ``.npy`` file (memory-mapped), of an ``.npz`` member (memory-mapped
when stored uncompressed, as ``np.savez`` writes it; read as a stream when
compressed), or of an array already in memory.  ``open_source`` accepts a
``.npy``, an ``.npz``, a folder of ``.npy``/``.npz`` shards (taken in natural
name order: ``part2`` before ``part10``), an array or a dict of arrays, and
checks every shard's header (shapes, row counts, labels length) before
anything runs.  Any other iterable of ``(x, y)`` batches becomes an
:class:`IterableSource`, checked batch by batch.

Batches are global sample ranges ``[k*B, (k+1)*B)`` whatever the shards, so a
run gives the same batches, and so bit-for-bit the same results, however the
data is split into files or spread over machines.  A source sliced to a range
(``Source.slice``) is small and picklable: it is what a Dask task carries.
"""
from __future__ import annotations

import os
import re
import struct
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .data import INPUT_KEYS, LABEL_KEYS
from .errors import IRCError, warn
from .graph import Value

Batch = tuple[int, list[np.ndarray], "np.ndarray | None"]
"""(index of the first sample, one array per model input, labels or None)."""


# ------------------------------------------------------------------ segments
@dataclass(frozen=True)
class FileArray:
    """One array stored in a .npy file or an .npz member, read by rows without loading it whole."""

    path: str
    member: str | None          # the .npz member ("x.npy"), None for a .npy file
    shape: tuple[int, ...]
    dtype: str
    data_offset: int | None     # where the raw data starts in the file (None: compressed member)

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def name(self) -> str:
        return self.path if self.member is None else f"{self.path}[{self.member[:-4]}]"

    def read(self, start: int, stop: int) -> np.ndarray:
        dtype = np.dtype(self.dtype)
        if self.data_offset is not None:
            mm = np.memmap(self.path, dtype=dtype, mode="r", offset=self.data_offset, shape=self.shape)
            return np.array(mm[start:stop])
        return _STREAMS.read(self, start, stop)


@dataclass(frozen=True)
class InMemory:
    """Rows of an array the caller already holds (or a batch shipped to a worker)."""

    array: np.ndarray
    name: str = "array"

    @property
    def rows(self) -> int:
        return int(self.array.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def path(self) -> None:
        return None

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.array[start:stop])


Segment = FileArray | InMemory


@dataclass(frozen=True)
class Column:
    """One input (or the labels) over the whole data set: segments laid end to end from ``first``."""

    segments: tuple[Segment, ...]
    first: int = 0    # global index of the first row of the first segment

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.segments)

    def read(self, start: int, stop: int) -> np.ndarray:
        parts = []
        base = self.first
        for seg in self.segments:
            lo, hi = max(start, base), min(stop, base + seg.rows)
            if lo < hi:
                parts.append(seg.read(lo - base, hi - base))
            base += seg.rows
        if not parts:
            raise IndexError(f"rows {start}:{stop} are outside this column")
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def slice(self, start: int, stop: int) -> "Column":
        """The segments that hold rows [start, stop) (global indices keep their meaning)."""
        kept, base, first = [], self.first, None
        for seg in self.segments:
            if base < stop and base + seg.rows > start:
                kept.append(seg)
                first = base if first is None else first
            base += seg.rows
        return Column(tuple(kept), first if first is not None else start)

    def materialized(self, start: int, stop: int) -> "Column":
        """Rows [start, stop) read now, as one in-memory segment (to ship to a machine without the files)."""
        return Column((InMemory(self.read(start, stop)),), start)

    def paths(self) -> set[str]:
        return {s.path for s in self.segments if s.path is not None}


# -------------------------------------------------------------------- source
@dataclass(frozen=True)
class Source:
    """A data set of known size: the model's inputs and maybe labels, read by global sample range."""

    inputs: tuple[Column, ...]
    labels: Column | None
    samples: int
    start: int = 0
    description: str = ""

    @property
    def stop(self) -> int:
        return self.start + self.samples

    def read(self, start: int, stop: int) -> tuple[list[np.ndarray], np.ndarray | None]:
        xs = [c.read(start, stop) for c in self.inputs]
        return xs, (self.labels.read(start, stop) if self.labels is not None else None)

    def batches(self, batch_size: int) -> Iterator[Batch]:
        for start in range(self.start, self.stop, batch_size):
            xs, y = self.read(start, min(start + batch_size, self.stop))
            yield start, xs, y

    def ranges(self, batch_size: int) -> list[tuple[int, int]]:
        return [(s, min(s + batch_size, self.stop)) for s in range(self.start, self.stop, batch_size)]

    def slice(self, start: int, stop: int) -> "Source":
        return Source(tuple(c.slice(start, stop) for c in self.inputs),
                      self.labels.slice(start, stop) if self.labels is not None else None, stop - start, start)

    def materialized(self, start: int, stop: int) -> "Source":
        return Source(tuple(c.materialized(start, stop) for c in self.inputs),
                      self.labels.materialized(start, stop) if self.labels is not None else None, stop - start, start)

    def paths(self) -> set[str]:
        out: set[str] = set()
        for c in self.inputs + ((self.labels,) if self.labels is not None else ()):
            out |= c.paths()
        return out


@dataclass
class IterableSource:
    """Any iterable of ``(x, y)`` batches (``x`` an array, a sequence or a dict of arrays; ``y`` may be
    None), cut again into batches of the requested size; its length is known only at the end."""

    iterable: Iterable[Any]
    input_values: Sequence[Value]
    labels: Column | None = None
    samples: int | None = None
    description: str = "an iterable of batches"
    _sample_shapes: list[tuple[int, ...]] | None = field(default=None, repr=False)

    def batches(self, batch_size: int) -> Iterator[Batch]:
        pending: list[tuple[list[np.ndarray], np.ndarray | None]] = []
        held = 0
        start = 0
        have_labels: bool | None = None
        for index, item in enumerate(self.iterable):
            xs, y = self._split(item, index)
            if self.labels is not None:
                y = None  # labels given separately win
            elif have_labels is None:
                have_labels = y is not None
            elif have_labels != (y is not None):
                raise IRCError(f"batch {index} of the iterable {'lacks' if have_labels else 'has'} labels, "
                               f"earlier batches {'had' if have_labels else 'had none'}")
            pending.append((xs, y))
            held += len(xs[0])
            while held >= batch_size:
                xs_out, y_out, pending = _take(pending, batch_size)
                held -= batch_size
                yield start, xs_out, self._labels_for(start, batch_size, y_out)
                start += batch_size
        if held:
            xs_out, y_out, _ = _take(pending, held)
            yield start, xs_out, self._labels_for(start, held, y_out)
            start += held
        self.samples = start
        if self.labels is not None and self.labels.rows != start:
            raise IRCError(f"{self.labels.rows} labels for {start} samples", file=_label_file(self.labels))

    def _labels_for(self, start: int, rows: int, y: np.ndarray | None) -> np.ndarray | None:
        if self.labels is None:
            return y
        if start + rows > self.labels.rows:
            raise IRCError(f"{self.labels.rows} labels for more samples than that (the iterable gave "
                           f"{start + rows} so far)", file=_label_file(self.labels))
        return self.labels.read(start, start + rows)

    def _split(self, item: Any, index: int) -> tuple[list[np.ndarray], np.ndarray | None]:
        if isinstance(item, tuple) and len(item) == 2:
            x, y = item
        else:
            x, y = item, None
        if isinstance(x, Mapping):
            missing = [v.name for v in self.input_values if v.name not in x]
            if missing:
                raise IRCError(f"batch {index} of the iterable lacks input(s) {missing}")
            xs = [np.asarray(x[v.name]) for v in self.input_values]
        elif isinstance(x, (list, tuple)) and len(self.input_values) > 1:
            xs = [np.asarray(a) for a in x]
        else:
            xs = [np.asarray(x)]
        if len(xs) != len(self.input_values):
            raise IRCError(f"batch {index} of the iterable has {len(xs)} input array(s); the model takes "
                           f"{len(self.input_values)}")
        for v, a in zip(self.input_values, xs):
            check_input(v, a.shape, a.dtype, f"batch {index} of the iterable")
        shapes = [tuple(a.shape[1:]) for a in xs]
        if self._sample_shapes is None:
            self._sample_shapes = shapes
        elif shapes != self._sample_shapes:
            raise IRCError(f"batch {index} of the iterable has samples of shape {[list(s) for s in shapes]}, "
                           f"earlier batches {[list(s) for s in self._sample_shapes]}")
        rows = {len(a) for a in xs}
        if y is not None:
            y = np.asarray(y)
            rows.add(len(y))
        if len(rows) != 1:
            raise IRCError(f"batch {index} of the iterable: inputs and labels have different lengths {sorted(rows)}")
        return xs, y


def _take(pending, rows):
    """The first ``rows`` rows of the pending batches, and what is left of them."""
    xs_parts: list[list[np.ndarray]] = []
    y_parts: list[np.ndarray] = []
    left, rest = rows, []
    for i, (xs, y) in enumerate(pending):
        if left == 0:
            rest.extend(pending[i:])
            break
        k = min(left, len(xs[0]))
        xs_parts.append([a[:k] for a in xs])
        if y is not None:
            y_parts.append(y[:k])
        if k < len(xs[0]):
            rest.append(([a[k:] for a in xs], y[k:] if y is not None else None))
            rest.extend(pending[i + 1:])
            left = 0
            break
        left -= k
    xs_out = [np.concatenate([p[j] for p in xs_parts]) if len(xs_parts) > 1 else xs_parts[0][j]
              for j in range(len(xs_parts[0]))]
    y_out = (np.concatenate(y_parts) if len(y_parts) > 1 else y_parts[0]) if y_parts else None
    return xs_out, y_out, rest


def _label_file(col: Column) -> str | None:
    return next(iter(col.paths()), None)


# ------------------------------------------------------------------- opening
def check_input(value: Value, shape: Sequence[int], dtype: np.dtype, where: str) -> None:
    """A clear error when an array cannot feed a graph input (the batch axis aside)."""
    want = value.type.shape
    ok = len(shape) == len(want) and len(want) > 0
    if value.type.has_batch:
        ok = ok and all(isinstance(d, str) or d == a for d, a in zip(want, shape))  # N, or a size not known yet
    else:  # a fixed leading axis: the data is fed in chunks of exactly that many rows
        ok = ok and all(isinstance(d, str) or d == a for d, a in zip(want[1:], shape[1:]))
    if not ok:
        raise shape_error(value, shape, where)
    check_dtype(value, dtype, where)


def shape_error(value: Value, shape: Sequence[int], where: str | None) -> IRCError:
    """The error for an input of the wrong shape, with a hint that fits the model's batch axis."""
    want = value.type.shape
    shown = "[" + ", ".join(str(d) for d in want) + "]"
    hint = ("N is the batch size; the other axes must match (inputs use the source model's layout)"
            if value.type.has_batch else
            f"the model was exported with a fixed batch of {want[0] if want else 'none'}: irc feeds it that many "
            f"samples at a time, so give a positive multiple of {want[0] if want else 1} rows whose other axes "
            f"match {list(want[1:])}")
    return IRCError(f"input {value.name!r} has shape {list(shape)}, the model expects {shown}", file=where, hint=hint)


def check_dtype(value: Value, dtype: np.dtype, where: str | None) -> None:
    """Numeric inputs of another type are cast to the model's (with a warning); anything else is refused."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise IRCError(f"input {value.name!r} has element type {dtype}; irc reads real-valued numeric arrays",
                       file=where, hint=f"give {value.type.np_dtype} data")
    if dtype != value.type.np_dtype:
        warn(f"input {value.name!r} holds {dtype} data; irc casts it to {value.type.np_dtype}, as the model "
             f"declares (pass {value.type.np_dtype} to avoid the cast)")


def open_source(data: Any, input_values: Sequence[Value], labels: Any = None) -> "Source | IterableSource":
    """A data set for ``input_values``: a path (.npy, .npz, folder of shards), an array, a dict of arrays,
    or an iterable of ``(x, y)`` batches; ``labels`` (a path or an array) overrides labels found in it."""
    label_col = _label_column(labels) if labels is not None else None
    if isinstance(data, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(data))
        if os.path.isdir(path):
            files = sorted((f for f in os.listdir(path) if f.endswith((".npy", ".npz")) and not f.startswith(".")),
                           key=_natural)
            if not files:
                raise IRCError("the folder holds no .npy or .npz shards", file=os.fspath(data))
            shards = [os.path.join(path, f) for f in files]
            what = f"{os.fspath(data)} ({len(shards)} shards)"
        elif os.path.exists(path):
            shards = [path]
            what = os.fspath(data)
        else:
            raise IRCError("file not found", file=os.fspath(data))
        return _file_source(shards, input_values, label_col, what)
    if isinstance(data, np.ndarray) or (isinstance(data, Mapping) and all(
            isinstance(v, np.ndarray) for v in data.values())):
        arrays = {"": data} if isinstance(data, np.ndarray) else dict(data)
        columns = _pick_inputs({k: InMemory(np.asarray(a), k or "array") for k, a in arrays.items()},
                               input_values, "the input arrays")
        found = {k: InMemory(np.asarray(a), k) for k, a in arrays.items() if k in LABEL_KEYS}
        if label_col is None and found:
            label_col = Column((next(iter(found.values())),))
        return _assemble([columns], [None], input_values, label_col, "arrays in memory")
    if isinstance(data, Iterable):
        return IterableSource(data, input_values, label_col)
    raise IRCError(f"cannot read a data set from a {type(data).__name__}",
                   hint="give a .npy/.npz path, a folder of shards, an array or an iterable of (x, y) batches")


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _label_column(labels: Any) -> Column:
    if isinstance(labels, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(labels))
        if not os.path.exists(path):
            raise IRCError("file not found", file=os.fspath(labels))
        arrays = file_arrays(path)
        if "" in arrays:
            return Column((arrays[""],))
        for k in LABEL_KEYS:
            if k in arrays:
                return Column((arrays[k],))
        if len(arrays) == 1:
            return Column((next(iter(arrays.values())),))
        raise IRCError(f"no labels found (name the array 'y' or 'labels'; the file has {sorted(arrays)})",
                       file=os.fspath(labels))
    return Column((InMemory(np.asarray(labels), "labels"),))


def _file_source(shards: list[str], input_values, label_col, what: str) -> Source:
    columns, labels = [], []
    for path in shards:
        arrays = file_arrays(path)
        columns.append(_pick_inputs(arrays, input_values, path))
        labels.append(next((arrays[k] for k in LABEL_KEYS if k in arrays), None))
    return _assemble(columns, labels, input_values, label_col, what)


def _assemble(columns: list[list[Segment]], labels: list[Segment | None], input_values, label_col,
              what: str) -> Source:
    """Check the shards against each other, the model and the labels; lay them end to end."""
    first = columns[0]
    for shard, lab in zip(columns, labels):
        where = shard[0].path or shard[0].name
        for v, seg, ref in zip(input_values, shard, first):
            if tuple(seg.shape[1:]) != tuple(ref.shape[1:]):
                raise IRCError(f"samples have shape {list(seg.shape[1:])}, but {ref.name} has samples of shape "
                               f"{list(ref.shape[1:])}", file=where, hint="every shard must hold samples of one shape")
            check_input(v, seg.shape, _dtype_of(seg), where)
        rows = {seg.rows for seg in shard}
        if len(rows) != 1:
            raise IRCError(f"the inputs have different numbers of samples {sorted(rows)}", file=where)
        if label_col is None and lab is not None and lab.rows != shard[0].rows:
            raise IRCError(f"{lab.rows} labels for {shard[0].rows} samples", file=where)
    samples = sum(s[0].rows for s in columns)
    if samples == 0:
        raise IRCError("the data set has no samples", file=columns[0][0].path or what)
    if label_col is None and any(lab is not None for lab in labels):
        if not all(lab is not None for lab in labels):
            missing = next(s[0].name for s, lab in zip(columns, labels) if lab is None)
            raise IRCError("some shards hold labels and others do not", file=missing,
                           hint="give every shard its labels ('y'), or all of them with --labels")
        label_col = Column(tuple(labels))  # type: ignore[arg-type]
    if label_col is not None and label_col.rows != samples:
        raise IRCError(f"{label_col.rows} labels for {samples} samples", file=_label_file(label_col) or "labels")
    inputs = tuple(Column(tuple(shard[i] for shard in columns)) for i in range(len(input_values)))
    return Source(inputs, label_col, samples, 0, what)


def _dtype_of(seg: Segment) -> np.dtype:
    return np.dtype(seg.dtype) if isinstance(seg, FileArray) else seg.array.dtype


def _pick_inputs(arrays: Mapping[str, Segment], input_values, where: str) -> list[Segment]:
    """The arrays for the model's inputs: by input name, else the usual keys, else the only non-label array."""
    names = [v.name for v in input_values]
    if "" in arrays:
        if len(names) != 1:
            raise IRCError(f"the model has {len(names)} inputs; give .npz files with arrays named {names}", file=where)
        return [arrays[""]]
    if all(n in arrays for n in names):
        return [arrays[n] for n in names]
    if len(names) == 1:
        for k in INPUT_KEYS:
            if k in arrays:
                return [arrays[k]]
        others = [k for k in arrays if k not in LABEL_KEYS]
        if len(others) == 1:
            return [arrays[others[0]]]
    raise IRCError(f"cannot tell which arrays are the inputs (file has {sorted(arrays)}, model wants {names})",
                   file=where, hint="name the arrays after the model's inputs")


# ---------------------------------------------------------- .npy/.npz headers
def file_arrays(path: str) -> dict[str, FileArray]:
    """Every array of a .npy (under the key '') or .npz file, from the headers alone."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                out = {}
                for info in z.infolist():
                    if info.filename.endswith(".npy"):
                        out[info.filename[:-4]] = _member(path, z, info)
                if not out:
                    raise IRCError("the .npz holds no arrays", file=path)
                return out
        with open(path, "rb") as f:
            shape, fortran, dtype = _header(f, path)
            return {"": _file_array(path, None, shape, fortran, dtype, f.tell())}
    except IRCError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, struct.error, EOFError) as e:
        raise IRCError(f"cannot read it as .npy/.npz ({e})", file=path) from None


def _member(path: str, z: zipfile.ZipFile, info: zipfile.ZipInfo) -> FileArray:
    with z.open(info) as f:
        shape, fortran, dtype = _header(f, f"{path}[{info.filename}]")
        header_len = f.tell()
    offset = None
    if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1:
        with open(path, "rb") as raw:
            raw.seek(info.header_offset)
            local = raw.read(30)
            if local[:4] != b"PK\x03\x04":
                raise IRCError(f"member {info.filename} has a damaged local header", file=path)
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            offset = info.header_offset + 30 + name_len + extra_len + header_len
    return _file_array(path, info.filename, shape, fortran, dtype, offset)


def _header(f, where: str):
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise IRCError(f".npy format version {version} is not supported (1.0 and 2.0 are)", file=where)
    if dtype.hasobject:
        raise IRCError("the array holds Python objects; irc reads numeric arrays only", file=where)
    if len(shape) == 0:
        raise IRCError("the array is a scalar; give one sample per row", file=where)
    return tuple(int(d) for d in shape), fortran, dtype


def _file_array(path, member, shape, fortran, dtype, offset) -> FileArray:
    if fortran and len(shape) > 1:
        raise IRCError("the array is stored in Fortran order, which cannot be read by rows", file=path,
                       hint="save it again with np.save(path, np.ascontiguousarray(a))")
    return FileArray(path, member, shape, dtype.str, offset)


class _MemberStreams:
    """Open streams over compressed .npz members, read forward batch after batch (a few kept open)."""

    def __init__(self, keep: int = 4):
        self.keep = keep
        self.open: OrderedDict[tuple[str, str], list] = OrderedDict()
        self.lock = threading.Lock()

    def read(self, arr: FileArray, start: int, stop: int) -> np.ndarray:
        dtype = np.dtype(arr.dtype)
        row = int(np.prod(arr.shape[1:], dtype=np.int64)) * dtype.itemsize
        key = (arr.path, arr.member or "")
        with self.lock:
            entry = self.open.pop(key, None)
            if entry is None or entry[1] > start:
                if entry is not None:
                    entry[0].close()
                entry = [_open_member(arr), 0]
            f = entry[0]
            _skip(f, (start - entry[1]) * row)
            data = f.read((stop - start) * row)
            entry[1] = stop
            self.open[key] = entry
            while len(self.open) > self.keep:
                self.open.popitem(last=False)[1][0].close()
        if len(data) != (stop - start) * row:
            raise IRCError(f"member {arr.member} ends early: the file is truncated", file=arr.path)
        return np.frombuffer(data, dtype).reshape((stop - start,) + arr.shape[1:]).copy()


def _open_member(arr: FileArray):
    f = zipfile.ZipFile(arr.path).open(arr.member)
    _header(f, arr.name)
    return f


def _skip(f, nbytes: int) -> None:
    while nbytes > 0:
        got = f.read(min(nbytes, 1 << 22))
        if not got:
            break
        nbytes -= len(got)


_STREAMS = _MemberStreams()

