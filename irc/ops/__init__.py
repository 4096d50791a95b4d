"""The op registry: each op is declared once, here and in the modules below.

An op declaration (a subclass of :class:`OpDef` registered with
:func:`register`) states

* its inputs (``"bias?"`` is optional, ``"inputs*"`` variadic) and which of
  them are parameters a frontend must provide as constants;
* its attributes, with types and defaults;
* ``infer``: output types (shape, dtype, domain) from input types;
* ``kernel`` + ``kernel_args``: the numpy function in :mod:`irc.ops.kernels`
  that *is* the reference semantics, and the keyword arguments it takes.  The
  numpy backend emits calls to the very same functions;
* facts that passes and statistics read: whether the op is linear in its data
  inputs, pure layout (moves data without arithmetic), and how many MACs it
  costs per sample.

Adding an op touches one place: its class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from ..errors import IRCError, UnsupportedError
from ..types import BATCH, Domain, TensorType
from . import kernels

REQUIRED = object()


@dataclass(frozen=True)
class Attr:
    """An attribute's type (int, float, str, bool, ints, floats) and default."""

    kind: str
    default: Any = REQUIRED
    doc: str = ""

    def normalize(self, name: str, value: Any) -> Any:
        try:
            if self.kind == "int":
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                return int(value)
            if self.kind == "float":
                return float(value)
            if self.kind == "bool":
                return bool(int(value)) if not isinstance(value, str) else value.lower() in ("1", "true")
            if self.kind == "str":
                if not isinstance(value, str):
                    raise ValueError
                return value
            if self.kind == "ints":
                return [int(v) for v in value]
            if self.kind == "floats":
                return [float(v) for v in value]
        except (TypeError, ValueError):
            pass
        raise IRCError(f"attribute {name!r} must be {self.kind}, got {value!r}")


class OpDef:
    """Base class of op declarations (one subclass per op)."""

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = ("x",)
    params: ClassVar[tuple[str, ...]] = ()
    """Input names that must be constants (weights, biases, thresholds)."""
    attrs: ClassVar[dict[str, Attr]] = {}
    kernel: ClassVar[str | None] = None
    linear: ClassVar[bool] = False
    """Output is linear in the (non-parameter) inputs: may carry spikes/currents."""
    layout: ClassVar[bool] = False
    """Pure data movement: spike trains stay spike trains."""
    activation: ClassVar[bool] = False
    """An elementwise activation that may be fused into its producer."""
    spiking: ClassVar[bool] = False
    """Defined over timesteps (stateful); see irc.ops.spiking."""
    doc: ClassVar[str] = ""

    # --------------------------------------------------------------- checking
    def normalize_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(attrs) - set(self.attrs)
        if unknown:
            raise IRCError(f"{self.name} has no attribute(s) {sorted(unknown)}")
        out: dict[str, Any] = {}
        for key, spec in self.attrs.items():
            if key in attrs and attrs[key] is not None:
                out[key] = spec.normalize(key, attrs[key])
            elif spec.default is REQUIRED:
                raise IRCError(f"{self.name} needs attribute {key!r}")
            else:
                out[key] = list(spec.default) if isinstance(spec.default, list) else spec.default
        return out

    def check_arity(self, inputs: Sequence[Any]) -> None:
        required = [n for n in self.inputs if not n.endswith("?") and not n.endswith("*")]
        variadic = any(n.endswith("*") for n in self.inputs)
        if len(inputs) < len(required) or (not variadic and len(inputs) > len(self.inputs)):
            raise IRCError(f"{self.name} takes inputs ({', '.join(self.inputs)}), got {len(inputs)}")
        for i, n in enumerate(self.inputs):
            if not n.endswith(("?", "*")) and i < len(inputs) and inputs[i] is None:
                raise IRCError(f"{self.name}: input {n!r} is required")

    def input_index(self, name: str) -> int:
        for i, n in enumerate(self.inputs):
            if n.rstrip("?*") == name:
                return i
        raise KeyError(name)

    # -------------------------------------------------------------- semantics
    def infer(self, ins: list[TensorType | None], a: dict[str, Any]) -> list[TensorType]:
        raise NotImplementedError

    def kernel_args(self, ins: list[TensorType | None], outs: list[TensorType], a: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments of the kernel call (plain Python literals only)."""
        return dict(a)

    def reference(self, ins: list[np.ndarray | None], a: dict[str, Any], in_types=None, out_types=None):
        """Run the op on arrays; returns a list of output arrays."""
        if self.kernel is None:
            raise NotImplementedError(f"{self.name} has no analog reference")
        if in_types is None:
            in_types = [_type_of(x) for x in ins]
        if out_types is None:
            out_types = self.infer(in_types, a)
        out = getattr(kernels, self.kernel)(*ins, **self.kernel_args(in_types, out_types, a))
        return list(out) if isinstance(out, tuple) else [out]

    def macs(self, ins: list[TensorType | None], outs: list[TensorType], a: dict[str, Any]) -> int:
        """Multiply-accumulates per sample (0 for ops that do none)."""
        return 0

    # ----------------------------------------------------------------- helpers
    def data_domain(self, ins: Sequence[TensorType | None], data: Sequence[int] | None = None) -> Domain:
        """Domain of the output of a linear or layout op from its data inputs."""
        idx = range(len(ins)) if data is None else data
        doms = [ins[i].domain for i in idx if i < len(ins) and ins[i] is not None]
        moving = [d for d in doms if d != Domain.ANALOG]
        if not moving:
            return Domain.ANALOG
        if self.layout and all(d == Domain.SPIKE for d in doms):
            return Domain.SPIKE
        if not (self.linear or self.layout):
            raise IRCError(
                f"{self.name} is not linear and cannot take a {moving[0].value} input",
                hint="run the spike conversion passes (they replace it or refuse the network)",
            )
        return Domain.CURRENT

    def require_analog(self, ins: Sequence[TensorType | None]) -> None:
        for t in ins:
            if t is not None and t.domain != Domain.ANALOG:
                raise IRCError(
                    f"{self.name} has no spiking equivalent and cannot take a {t.domain.value} input",
                    hint="the spike conversion replaces ReLU-like activations by neurons; other ones must be removed",
                )


def _type_of(x: np.ndarray | None) -> TensorType | None:
    if x is None:
        return None
    from ..types import dtype_name

    return TensorType(tuple(x.shape), dtype_name(x.dtype))


_REGISTRY: dict[str, OpDef] = {}


def register(cls: type[OpDef]) -> type[OpDef]:
    """Class decorator: declare an op."""
    if cls.name in _REGISTRY:
        raise RuntimeError(f"op {cls.name} declared twice")
    _REGISTRY[cls.name] = cls()
    return cls


def get_op(name: str) -> OpDef:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnsupportedError(f"unknown op {name!r}") from None


def has_op(name: str) -> bool:
    return name in _REGISTRY


def all_ops() -> dict[str, OpDef]:
    return dict(_REGISTRY)


# ---------------------------------------------------------------- shape math
def conv_out_dim(size: int, k: int, stride: int, pad_begin: int, pad_end: int, dilation: int = 1,
                 ceil_mode: bool = False) -> int:
    """Output length of a sliding window (ONNX Conv/Pool rules, ceil_mode included)."""
    eff = dilation * (k - 1) + 1
    span = size + pad_begin + pad_end - eff
    if span < 0:
        raise IRCError(f"window of {eff} does not fit an input of {size} (+{pad_begin}+{pad_end} padding)")
    if ceil_mode:
        out = -(-span // stride) + 1
        # the last window must start inside the input or the left padding
        if (out - 1) * stride >= size + pad_begin:
            out -= 1
    else:
        out = span // stride + 1
    return out


def same_pads(sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
              upper: bool = True) -> list[int]:
    """Begin pads then end pads that keep ceil(size / stride) outputs ('same' padding: ONNX's SAME_UPPER and
    Keras put the odd pixel at the end, SAME_LOWER at the beginning)."""
    begin, end = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begin.append(small if upper else large)
        end.append(large if upper else small)
    return begin + end


def batch_of(t: TensorType) -> Any:
    return t.shape[0]


def prod(dims: Sequence[int]) -> int:
    return int(math.prod(dims))


from . import nn, pool, elementwise, reduce, shape, spiking  # noqa: E402,F401  (registration)

__all__ = ["Attr", "OpDef", "register", "get_op", "has_op", "all_ops", "BATCH", "conv_out_dim", "same_pads"]
