"""The op registry: each op is declared once, here and in the modules below.

An op declaration (a subclass of :class:`OpDef` registered with
:func:`register`) states

* its inputs (``"bias?"`` is optional, ``"inputs*"`` variadic) and which of
  them are parameters a frontend must provide as constants;
* its attributes, with types and defaults;
* ``infer``: output types (shape, dtype, domain) from input types;
* ``kernel`` + ``kernel_args``: the numpy function that *is* the reference
  semantics (named in :mod:`irc.ops.kernels`, or a numpy-only function object),
  and the keyword arguments it takes.  The numpy backend emits calls to the
  very same functions;
* facts that passes, backends and statistics read (flags and small methods
  below): linear in its data inputs, pure layout, a fusable activation, a
  synaptic op and its fan-out, how it behaves under rate coding, its MACs.

Passes and backends read these facts instead of keeping lists of op names; a
backend says which ops it runs in its own lowering table
(:mod:`irc.lowering`).  Adding an op therefore touches its class (and its
kernel), the frontend mapping that produces it, and, only where a target's
arithmetic differs from the generic lowering, one entry in that target's
table.  See ARCHITECTURE.md for a worked example.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

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
    kernel: ClassVar[str | Callable | None] = None
    """The reference: a function name in irc.ops.kernels, or a numpy-only function (its source is embedded in
    generated numpy programs)."""
    linear: ClassVar[bool] = False
    """Output is linear in the (non-parameter) inputs: may carry spikes/currents."""
    layout: ClassVar[bool] = False
    """Pure data movement: spike trains stay spike trains."""
    reshape_only: ClassVar[bool] = False
    """A layout op that keeps the elements in C order (Flatten, Reshape, Squeeze, Unsqueeze)."""
    activation: ClassVar[bool] = False
    """An elementwise activation that may be fused into its producer (a host: an op with an 'activation' attr)."""
    spiking: ClassVar[bool] = False
    """Defined over timesteps (stateful); see irc.ops.spiking."""
    synaptic: ClassVar[bool] = False
    """Applies weights to its first input: where a spiking network's synaptic operations happen (see fanout)."""
    channel_weights: ClassVar[bool] = False
    """Its weight (input 1) is (out_channels, in_channels/group, ...): per-channel scales fold into it."""
    preserves_argmax: ClassVar[bool] = False
    averages_positions: ClassVar[bool] = False
    """Pools that average positions: a spiking form exists only where each window's inputs share one scale."""
    """An elementwise-monotone map per sample (Softmax): a final one does not change the predicted class."""
    output_nonnegative: ClassVar[bool] = False
    """The output is >= 0 whatever the input (Sigmoid, Exp, Softmax)."""
    preserves_sign: ClassVar[bool] = False
    """The output is >= 0 whenever every input (data and constants) is (sums, products, max, pools, layout)."""
    neuron_kind: ClassVar[str | None] = None
    """Spiking ops whose output events are counted per layer: 'neuron' (IF) or 'input' (a rate encoder)."""
    inference_identity: ClassVar[bool] = False
    """The identity at inference (Dropout, Identity): the simplify pass drops it."""
    rate_rule: ClassVar[str | None] = None
    """How the op acts on rate-coded values, for the spike conversion (irc.passes.spiking), unless
    :meth:`rectifies` says it is ReLU-like (then it becomes a neuron): 'weighted' (spike scales fold into its
    weights), 'maximum' (a gated max-pool),
    'sum' (branch scales must agree), 'product' (one data operand times a constant), 'positional' (scale maps
    move with the data), 'bilinear' (operands in real units); None: no spiking equivalent."""
    doc: ClassVar[str] = ""

    @property
    def kernel_name(self) -> str | None:
        """The kernel's function name (what generated code calls)."""
        return self.kernel if isinstance(self.kernel, str) or self.kernel is None else self.kernel.__name__

    @property
    def hosts_activation(self) -> bool:
        """Whether an activation can be fused into this op (it has the 'activation' attribute)."""
        return "activation" in self.attrs

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
        fn = getattr(kernels, self.kernel) if isinstance(self.kernel, str) else type(self).kernel  # unbound
        out = fn(*ins, **self.kernel_args(in_types, out_types, a))
        return list(out) if isinstance(out, tuple) else [out]

    def macs(self, ins: list[TensorType | None], outs: list[TensorType], a: dict[str, Any]) -> int:
        """Multiply-accumulates per sample (0 for ops that do none)."""
        return 0

    # ------------------------------------------------------------- op facts
    def fanout(self, node, param: Callable) -> np.ndarray:
        """Synaptic ops: how many weights each element of one input sample is multiplied by (its shape)."""
        raise NotImplementedError(f"{self.name} is not a synaptic op")

    def rectifies(self, attrs: dict[str, Any]) -> bool:
        """Whether this activation is ReLU-like (0 below 0, identity or clipped above): a neuron replaces it."""
        return False

    def ceiling(self, attrs: dict[str, Any]) -> float:
        """ReLU-like activations: the largest value they pass (inf for ReLU, 6 for ReLU6)."""
        return math.inf

    def nonnegative(self, node, inputs_nonnegative: Sequence[bool]) -> bool:
        """Sign analysis: whether the node's output is provably >= 0, given which of its inputs are."""
        if self.output_nonnegative:
            return True
        fused = node.attrs.get("activation")
        if fused:
            act = get_op(fused)
            params = dict(zip(getattr(act, "fused_params", ()), node.attrs.get("activation_params", [])))
            if act.output_nonnegative or act.rectifies(params):
                return True
        return self.preserves_sign and all(inputs_nonnegative)

    def channel_affine(self, node, param: Callable) -> "tuple[Any, np.ndarray, np.ndarray | None] | None":
        """(data value, scale, shift) if the node is ``x * scale[c] + shift[c]`` along axis 1, else None."""
        return None

    def with_fill(self, attrs: dict[str, Any], value: float) -> dict[str, Any]:
        """Layout ops: the attributes with the value that fills new positions (Pad) replaced by ``value``."""
        return attrs

    def permutation(self, node) -> list[int] | None:
        """Transposes: the permutation of the axes (output axis i is input axis perm[i]); None for other ops."""
        return None

    def flattens_to_features(self, node) -> bool:
        """Whether the node turns (N, ...) into (N, features) reading its input in C order."""
        return False

    def tiling_window(self, node) -> list[int] | None:
        """Average pools: the window when it tiles the input exactly (kernel == stride, no padding), else None."""
        return None

    def example(self, rng: np.random.Generator) -> "OpExample | None":
        """A small valid instance for registry-driven tests (None: the op has no generic example)."""
        return None

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


@dataclass
class OpExample:
    """One instance of an op for tests: its inputs (arrays; those in ``params`` are constants) and attributes.

    Axis 0 of every data input is the batch (tests give it the symbolic batch axis)."""

    inputs: list[np.ndarray | None]
    attrs: dict[str, Any]
    params: tuple[int, ...] = ()
    domains: tuple[str, ...] = ()
    """Optional per-data-input domain for spiking examples ('current' or 'spike')."""


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


def activations() -> dict[str, OpDef]:
    """Every fusable activation op by name (what a host's 'activation' attribute may name)."""
    return {name: op for name, op in _REGISTRY.items() if op.activation}


def has_op(name: str) -> bool:
    return name in _REGISTRY


def all_ops() -> dict[str, OpDef]:
    return dict(_REGISTRY)


# ---------------------------------------------------------------- shape math
def feature_axis(op: str, x: "TensorType", axis: int, hint: str | None = None) -> int:
    """``axis`` of ``x`` counted from 0, checked: in range, and not a symbolic batch axis (every sample is
    computed on its own, so an op along the batch has no per-sample form)."""
    if not -x.rank <= axis < x.rank:
        raise IRCError(f"{op} axis {axis} out of range for rank {x.rank}")
    axis %= x.rank
    if axis == 0 and x.has_batch:
        raise IRCError(f"{op} over the batch axis is not supported", hint=hint)
    return axis


def conv_out_dim(size: int, k: int, stride: int, pad_begin: int, pad_end: int, dilation: int = 1,
                 ceil_mode: bool = False) -> int:
    """Output length of a sliding window (ONNX Conv/Pool rules, ceil_mode included).

    Window sizes, strides and dilations must be >= 1 and pads >= 0: a damaged file's 0 or -7 is refused here,
    where every window op infers its shape, instead of failing when the program runs."""
    from ..limits import MAX_DIM

    for what, v, lowest in (("kernel size", k, 1), ("stride", stride, 1), ("dilation", dilation, 1),
                            ("padding", pad_begin, 0), ("padding", pad_end, 0)):
        if v < lowest or v > MAX_DIM.value:
            raise IRCError(f"{what} {v} is out of range (from {lowest} to {MAX_DIM.value:,})",
                           hint="the model's window attributes are damaged or invalid")
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


def prod(dims: Sequence[int]) -> int:
    return int(math.prod(dims))


from . import nn, pool, elementwise, reduce, shape, spiking, norm  # noqa: E402,F401  (registration)
from . import resize, recurrent  # noqa: E402,F401  (structured ops)

__all__ = ["Attr", "OpDef", "OpExample", "register", "get_op", "has_op", "all_ops", "activations", "BATCH",
           "conv_out_dim", "same_pads"]
