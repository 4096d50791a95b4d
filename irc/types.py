"""Value types of the IR: shape (with a symbolic batch axis), dtype and domain.

A domain says what a tensor *means* so that passes and backends can check it:

* ``analog``  - a real-valued activation, computed once per inference;
* ``current`` - a real-valued quantity that varies per timestep (the synaptic
  input of a spiking layer, or an analog input injected every step);
* ``spike``   - events: 0 or +-1 per element per timestep.

A spiking backend refuses to receive an ``analog`` tensor where it expects
``current`` or ``spike``, so a half-converted graph can never run silently.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

import numpy as np

from .errors import BadTypeError
from .limits import MAX_RANK, MAX_TENSOR_ELEMENTS

BATCH = "N"
"""The symbol used for the batch axis (axis 0) when its size is not fixed.  Any other symbol (``H``) is a
size not known yet: it appears only in the inputs of an unspecialised graph (see irc/shapes.py)."""

Dim = Union[int, str]


class Domain(str, enum.Enum):
    ANALOG = "analog"
    CURRENT = "current"
    SPIKE = "spike"

    def __str__(self) -> str:  # printed in the IR text
        return self.value


DTYPES: dict[str, np.dtype] = {
    "f32": np.dtype("float32"),
    "f64": np.dtype("float64"),
    "f16": np.dtype("float16"),
    "i8": np.dtype("int8"),
    "i16": np.dtype("int16"),
    "i32": np.dtype("int32"),
    "i64": np.dtype("int64"),
    "u8": np.dtype("uint8"),
    "u16": np.dtype("uint16"),
    "u32": np.dtype("uint32"),
    "u64": np.dtype("uint64"),
    "bool": np.dtype("bool"),
}
_DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def dtype_name(dtype: np.dtype | str) -> str:
    """Short IR name of a numpy dtype ('f32', 'i64', ...)."""
    dt = np.dtype(dtype)
    if dt not in _DTYPE_NAMES:
        raise BadTypeError(f"unsupported dtype {dt}")
    return _DTYPE_NAMES[dt]


@dataclass(frozen=True)
class TensorType:
    """Shape, element type and domain of one IR value."""

    shape: tuple[Dim, ...]
    dtype: str = "f32"
    domain: Domain = Domain.ANALOG

    def __post_init__(self) -> None:
        for i, d in enumerate(self.shape):
            if isinstance(d, str):
                # the batch symbol only on axis 0; other symbols only in the inputs of an unspecialised
                # graph (irc/shapes.py), which no op ever sees
                if (d == BATCH and i != 0) or not d.isidentifier():
                    raise BadTypeError(f"only axis 0 may be the batch symbol ({BATCH}), got shape {self.shape}")
            elif not isinstance(d, (int, np.integer)) or d < 0:
                raise BadTypeError(f"bad dimension {d!r} in shape {self.shape}",
                                   hint="a negative or non-integer size comes from a damaged model or bad attributes")
        object.__setattr__(self, "shape", tuple(d if isinstance(d, str) else int(d) for d in self.shape))
        object.__setattr__(self, "domain", Domain(self.domain))
        count = 1
        for d in self.shape:
            if not isinstance(d, str):
                count *= d
        if count > MAX_TENSOR_ELEMENTS.default or len(self.shape) > MAX_RANK.default:  # env var read only past the default
            MAX_RANK.check(len(self.shape), f"a tensor of shape {list(self.shape)}")
            MAX_TENSOR_ELEMENTS.check(count, f"a tensor of shape {list(self.shape)} (per sample)")
        if self.dtype not in DTYPES:
            raise BadTypeError(f"unknown dtype {self.dtype!r}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def np_dtype(self) -> np.dtype:
        return DTYPES[self.dtype]

    @property
    def has_batch(self) -> bool:
        return bool(self.shape) and self.shape[0] == BATCH

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample (all axes but a symbolic batch axis)."""
        return tuple(self.shape[1:]) if self.has_batch else tuple(self.shape)  # type: ignore[arg-type]

    def static_size(self) -> int:
        """Number of elements per batch entry (or in total for a static shape)."""
        return int(np.prod(self.sample_shape, dtype=np.int64))

    def concrete(self, batch: int) -> tuple[int, ...]:
        """The shape with the batch symbol replaced by ``batch``."""
        return tuple(batch if d == BATCH else d for d in self.shape)  # type: ignore[misc]

    def with_(self, **changes) -> "TensorType":
        fields = {"shape": self.shape, "dtype": self.dtype, "domain": self.domain}
        fields.update(changes)
        return TensorType(**fields)

    def __str__(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        prefix = "" if self.domain == Domain.ANALOG else f"{self.domain.value} "
        return f"{prefix}{self.dtype}[{dims}]"


def type_of_array(array: np.ndarray) -> TensorType:
    """The (static, analog) type of a constant array."""
    return TensorType(tuple(int(d) for d in array.shape), dtype_name(array.dtype))
