"""Elementwise ops: arithmetic with broadcasting, activations, Softmax, Dropout, Identity."""
from __future__ import annotations

import math

import numpy as np

from ..errors import IRCError
from ..types import Domain, TensorType
from . import Attr, OpDef, OpExample, feature_axis, register
from .nn import ACTIVATION_ATTRS, broadcast_shapes, check_activation, fused_activation_args, per_channel_vector


class _Binary(OpDef):
    """Broadcasting arithmetic of two operands of one dtype."""

    inputs = ("a", "b")
    linear = True
    preserves_sign = True
    time_varying_operands: int = 2
    """How many operands may vary per timestep (Mul/Div: one; the other is a constant factor)."""
    varying_second_operand: bool = True
    """Whether operand b may vary per timestep (not for Div: dividing by a signal is not linear)."""
    commutes: bool = True

    def infer(self, ins, a):
        x, y = ins
        if x.dtype != y.dtype:
            raise IRCError(f"{self.name}: operand types {x.dtype} and {y.dtype} differ")
        varying = [t for t in ins if t.domain != Domain.ANALOG]
        if len(varying) > self.time_varying_operands or (not self.varying_second_operand and y.domain != Domain.ANALOG):
            raise IRCError(f"{self.name} by a time-varying operand is not linear")
        shape = broadcast_shapes(x.shape, y.shape)
        return [TensorType(shape, x.dtype, self.data_domain(ins))]

    def kernel_args(self, ins, outs, a):
        return fused_activation_args(a) if "activation" in a else {}

    def channel_affine(self, node, param):
        """``x (op) c`` with a per-channel constant c as a scale and shift (None if it is not one)."""
        if node.attrs.get("activation"):
            return None
        a, b = node.inputs
        if b.is_param and not a.is_param:
            x, c = a, b
        elif a.is_param and not b.is_param and self.commutes:
            x, c = b, a
        else:
            return None
        if x.type.shape != node.output.type.shape:
            return None  # the constant broadcasts the data: not per-channel
        vec = per_channel_vector(param(c), x.type)
        if vec is None:
            return None
        return self.affine_of(x, vec)

    def affine_of(self, x, vec: np.ndarray):
        raise NotImplementedError

    def example(self, rng):
        x = rng.standard_normal((2, 3, 4)).astype(np.float32)
        y = rng.uniform(0.5, 2.0, (2, 3, 1)).astype(np.float32)
        return OpExample([x, y], {})


@register
class Add(_Binary):
    name = "Add"
    kernel = "add"
    rate_rule = "sum"
    attrs = dict(ACTIVATION_ATTRS)

    def infer(self, ins, a):
        check_activation(a)
        return super().infer(ins, a)

    def affine_of(self, x, vec):
        return x, np.ones(len(vec), np.float32), vec


@register
class Sub(_Binary):
    name = "Sub"
    kernel = "sub"
    rate_rule = "sum"
    commutes = False
    preserves_sign = False

    def affine_of(self, x, vec):
        return x, np.ones(len(vec), np.float32), -vec


@register
class Mul(_Binary):
    name = "Mul"
    kernel = "mul"
    rate_rule = "product"
    time_varying_operands = 1

    def affine_of(self, x, vec):
        return x, vec, None


@register
class Div(_Binary):
    name = "Div"
    kernel = "div"
    rate_rule = "product"
    time_varying_operands = 1
    varying_second_operand = False
    commutes = False

    def affine_of(self, x, vec):
        if (vec == 0).any():
            return None
        return x, (1.0 / vec.astype(np.float64)).astype(np.float32), None


class Activation(OpDef):
    """An elementwise activation that may be fused into its producer."""

    activation = True
    preserves_sign = True
    fused_params: tuple[str, ...] = ()

    def nonnegative(self, node, inputs_nonnegative):
        return self.rectifies(node.attrs) or super().nonnegative(node, inputs_nonnegative)

    def infer(self, ins, a):
        self.require_analog(ins)
        return [ins[0]]

    def fused(self, a: dict) -> list[float]:
        """The ``activation_params`` list that stands for these attributes."""
        return [float(a[k]) for k in self.fused_params]

    def example(self, rng):
        return OpExample([rng.standard_normal((2, 3, 4)).astype(np.float32) * 3], {})


@register
class Relu(Activation):
    name = "Relu"
    kernel = "relu"

    def rectifies(self, attrs):
        return True


@register
class LeakyRelu(Activation):
    name = "LeakyRelu"
    kernel = "leaky_relu"
    attrs = {"alpha": Attr("float", 0.01)}
    fused_params = ("alpha",)


@register
class Elu(Activation):
    name = "Elu"
    kernel = "elu"
    attrs = {"alpha": Attr("float", 1.0)}
    fused_params = ("alpha",)


@register
class HardSigmoid(Activation):
    name = "HardSigmoid"
    kernel = "hard_sigmoid"
    attrs = {"alpha": Attr("float", 0.2), "beta": Attr("float", 0.5)}
    fused_params = ("alpha", "beta")
    output_nonnegative = True
    doc = "max(0, min(1, alpha * x + beta)) (ONNX HardSigmoid; Keras hard_sigmoid is alpha=1/6, beta=0.5)."


@register
class HardSwish(Activation):
    name = "HardSwish"
    kernel = "hard_swish"
    doc = "x * HardSigmoid(x; alpha=1/6, beta=0.5) (MobileNetV3's h-swish, Keras hard_silu)."


@register
class Erf(Activation):
    name = "Erf"
    kernel = "erf"
    doc = "The Gauss error function (exported GELU: x * 0.5 * (1 + erf(x / sqrt 2)))."


GELU_APPROXIMATIONS = ("none", "tanh")


@register
class Gelu(Activation):
    """GELU, exact (``approximate='none'``) or its tanh form; fused, the choice travels as one parameter
    (0.0: none, 1.0: tanh) since a host's activation parameters are floats."""

    name = "Gelu"
    kernel = "gelu"
    attrs = {"approximate": Attr("str", "none", "'none' (erf) or 'tanh'")}
    fused_params = ("approximate",)

    def normalize_attrs(self, attrs):
        a = dict(attrs)
        if isinstance(a.get("approximate"), (int, float)):  # unfused from a host's float parameter
            a["approximate"] = GELU_APPROXIMATIONS[int(a["approximate"])]
        out = super().normalize_attrs(a)
        if out["approximate"] not in GELU_APPROXIMATIONS:
            raise IRCError(f"Gelu approximate must be one of {list(GELU_APPROXIMATIONS)}, got {out['approximate']!r}")
        return out

    def fused(self, a):
        return [float(GELU_APPROXIMATIONS.index(a["approximate"]))]

    def example(self, rng):
        return OpExample([rng.standard_normal((2, 3, 4)).astype(np.float32) * 3],
                         {"approximate": str(rng.choice(GELU_APPROXIMATIONS))})


@register
class Clip(Activation):
    name = "Clip"
    kernel = "clip"
    attrs = {"min": Attr("float", -math.inf), "max": Attr("float", math.inf)}
    fused_params = ("min", "max")

    def rectifies(self, attrs):
        """ReLU6 and friends: Clip(0, hi) with hi > 0."""
        return attrs["min"] == 0.0 and attrs["max"] > 0.0

    def ceiling(self, attrs):
        return float(attrs["max"])

    def nonnegative(self, node, inputs_nonnegative):
        return node.attrs["min"] >= 0 or super().nonnegative(node, inputs_nonnegative)

    def example(self, rng):
        return OpExample([rng.standard_normal((2, 3, 4)).astype(np.float32) * 3], {"min": 0.0, "max": 2.0})


@register
class Sigmoid(Activation):
    name = "Sigmoid"
    kernel = "sigmoid"
    output_nonnegative = True


@register
class Tanh(Activation):
    name = "Tanh"
    kernel = "tanh"


@register
class Neg(Activation):
    name = "Neg"
    kernel = "negative"
    preserves_sign = False
    doc = "-x.  Not a rate-coded op: a negative rate has no spiking equivalent (refused by the conversion)."


@register
class Abs(Activation):
    name = "Abs"
    kernel = "absolute"
    output_nonnegative = True


@register
class Reciprocal(Activation):
    name = "Reciprocal"
    kernel = "reciprocal"
    preserves_sign = False  # 1 / -0.0 is -inf


@register
class Sign(Activation):
    name = "Sign"
    kernel = "sign"


@register
class Floor(Activation):
    name = "Floor"
    kernel = "floor"


@register
class Ceil(Activation):
    name = "Ceil"
    kernel = "ceil"


@register
class Round(Activation):
    name = "Round"
    kernel = "round_even"
    doc = "Round half to even (ONNX Round)."


@register
class Softplus(Activation):
    name = "Softplus"
    kernel = "softplus"
    output_nonnegative = True
    doc = "log(1 + exp(x)), computed without overflow."


@register
class Softsign(Activation):
    name = "Softsign"
    kernel = "softsign"
    doc = "x / (1 + |x|)."


@register
class Selu(Activation):
    name = "Selu"
    kernel = "selu"
    attrs = {"alpha": Attr("float", 1.67326319217681884765625), "gamma": Attr("float", 1.05070102214813232421875)}
    fused_params = ("alpha", "gamma")
    preserves_sign = False  # a model may set gamma < 0


@register
class Celu(Activation):
    name = "Celu"
    kernel = "celu"
    attrs = {"alpha": Attr("float", 1.0)}
    fused_params = ("alpha",)
    doc = "max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."

    def normalize_attrs(self, attrs):
        out = super().normalize_attrs(attrs)
        if out["alpha"] == 0:
            raise IRCError("Celu alpha must not be 0")
        return out


@register
class Mish(Activation):
    name = "Mish"
    kernel = "mish"
    doc = "x * tanh(softplus(x))."


@register
class ThresholdedRelu(Activation):
    name = "ThresholdedRelu"
    kernel = "thresholded_relu"
    attrs = {"alpha": Attr("float", 1.0)}
    fused_params = ("alpha",)
    doc = "x where x > alpha, else 0."


@register
class Shrink(Activation):
    name = "Shrink"
    kernel = "shrink"
    attrs = {"bias": Attr("float", 0.0), "lambd": Attr("float", 0.5)}
    fused_params = ("bias", "lambd")
    preserves_sign = False
    doc = "x + bias where x < -lambd, x - bias where x > lambd, else 0."


@register
class PRelu(OpDef):
    """max(0, x) + slope * min(0, x) with a constant slope broadcast to x (per channel: (C, 1, 1)).

    A scalar slope is LeakyRelu (frontends emit that, which fuses); this op holds per-element slopes, so it is not
    fused and has no spiking equivalent (a negative slope makes a signed signal)."""

    name = "PRelu"
    inputs = ("x", "slope")
    params = ("slope",)
    kernel = "prelu"
    preserves_sign = True

    def infer(self, ins, a):
        self.require_analog(ins)
        x, slope = ins
        try:
            fits = broadcast_shapes(x.shape, slope.shape) == tuple(x.shape)
        except IRCError:
            fits = False
        if not fits:
            raise IRCError(f"PRelu slope of shape {list(slope.shape)} does not broadcast to the input "
                           f"{list(x.shape)}", hint="give one slope per channel, shaped (C, 1, 1) for images")
        return [x]

    def example(self, rng):
        x = rng.standard_normal((2, 3, 4)).astype(np.float32) * 3
        return OpExample([x, rng.uniform(-0.5, 0.5, (3, 1)).astype(np.float32)], {}, params=(1,))


class _SoftmaxLike(OpDef):
    attrs = {"axis": Attr("int", -1)}
    preserves_argmax = True

    def infer(self, ins, a):
        self.require_analog(ins)
        x = ins[0]
        feature_axis(self.name, x, a["axis"])
        return [x]

    def example(self, rng):
        return OpExample([rng.standard_normal((2, 3, 4)).astype(np.float32)], {"axis": int(rng.choice([1, -1]))})


@register
class Softmax(_SoftmaxLike):
    name = "Softmax"
    kernel = "softmax"
    output_nonnegative = True


@register
class LogSoftmax(_SoftmaxLike):
    name = "LogSoftmax"
    kernel = "log_softmax"


class _PassThrough(OpDef):
    layout = True
    preserves_sign = True
    inference_identity = True
    rate_rule = "positional"
    kernel = "identity"

    def infer(self, ins, a):
        return [ins[0]]

    def kernel_args(self, ins, outs, a):
        return {}

    def example(self, rng):
        return OpExample([rng.standard_normal((2, 3)).astype(np.float32)], {})


@register
class Identity(_PassThrough):
    name = "Identity"


@register
class Dropout(_PassThrough):
    name = "Dropout"
    attrs = {"ratio": Attr("float", 0.5)}
    doc = "Identity at inference; kept in the IR until the simplify pass drops it."


class _Unary(OpDef):
    """An elementwise function of analog values that is not fused into its producer."""

    def infer(self, ins, a):
        self.require_analog(ins)
        return [ins[0]]

    def example(self, rng):
        return OpExample([rng.uniform(0.1, 3.0, (2, 3, 4)).astype(np.float32)], {})


@register
class Exp(_Unary):
    name = "Exp"
    kernel = "exp"
    output_nonnegative = True


@register
class Log(_Unary):
    name = "Log"
    kernel = "log"


@register
class Sqrt(_Unary):
    name = "Sqrt"
    kernel = "sqrt"
    output_nonnegative = True


@register
class Pow(OpDef):
    """``a ** b`` with broadcasting; the exponent may have another dtype (ONNX), the result has a's."""

    name = "Pow"
    inputs = ("a", "b")
    kernel = "power"
    preserves_sign = True

    def infer(self, ins, a):
        self.require_analog(ins)
        x, y = ins
        return [TensorType(broadcast_shapes(x.shape, y.shape), x.dtype)]

    def example(self, rng):
        x = rng.uniform(0.1, 3.0, (2, 3, 4)).astype(np.float32)
        return OpExample([x, np.asarray(float(rng.choice([2.0, 0.5, 3.0])), np.float32).reshape(1, 1, 1)], {},
                         params=(1,))


@register
class Sum(OpDef):
    """The elementwise sum of one or more operands, broadcast together (ONNX Sum)."""

    name = "Sum"
    inputs = ("inputs*",)
    kernel = "add_n"
    preserves_sign = True
    linear = True
    rate_rule = "sum"

    def infer(self, ins, a):
        if not ins:
            raise IRCError("Sum needs at least one input")
        shape = ins[0].shape
        for t in ins[1:]:
            if t.dtype != ins[0].dtype:
                raise IRCError(f"Sum: operand types {ins[0].dtype} and {t.dtype} differ")
            shape = broadcast_shapes(shape, t.shape)
        return [TensorType(shape, ins[0].dtype, self.data_domain(ins))]

    def example(self, rng):
        shapes = [(2, 3, 4), (2, 1, 4), (4,)]
        k = int(rng.integers(1, 4))
        return OpExample([rng.standard_normal((2, 3, 4)).astype(np.float32)]
                         + [rng.standard_normal(shapes[i]).astype(np.float32) for i in range(1, k)],
                         {}, params=(2,) if k == 3 else ())


class _Compare(OpDef):
    """An elementwise comparison with broadcasting: a boolean mask (analog only)."""

    inputs = ("a", "b")

    def infer(self, ins, a):
        self.require_analog(ins)
        x, y = ins
        if x.dtype != y.dtype:
            raise IRCError(f"{self.name}: operand types {x.dtype} and {y.dtype} differ")
        return [TensorType(broadcast_shapes(x.shape, y.shape), "bool")]

    def example(self, rng):
        x = rng.integers(-2, 3, (2, 3, 4)).astype(np.float32)
        return OpExample([x, rng.integers(-2, 3, (2, 3, 1)).astype(np.float32)], {})


@register
class Less(_Compare):
    name = "Less"
    kernel = "less"


@register
class Greater(_Compare):
    name = "Greater"
    kernel = "greater"


@register
class Equal(_Compare):
    name = "Equal"
    kernel = "equal"


@register
class LessOrEqual(_Compare):
    name = "LessOrEqual"
    kernel = "less_or_equal"


@register
class GreaterOrEqual(_Compare):
    name = "GreaterOrEqual"
    kernel = "greater_or_equal"


class _Logical(_Compare):
    """An elementwise logical operation of two boolean masks, with broadcasting."""

    def infer(self, ins, a):
        if any(t.dtype != "bool" for t in ins):
            raise IRCError(f"{self.name} takes bool operands, got {[t.dtype for t in ins]}")
        return super().infer(ins, a)

    def example(self, rng):
        return OpExample([rng.integers(0, 2, (2, 3)).astype(bool), rng.integers(0, 2, (2, 1)).astype(bool)], {})


@register
class Or(_Logical):
    name = "Or"
    kernel = "logical_or"


@register
class And(_Logical):
    name = "And"
    kernel = "logical_and"


@register
class Where(OpDef):
    """``condition ? a : b`` elementwise, the three operands broadcast together."""

    name = "Where"
    inputs = ("condition", "a", "b")
    kernel = "where"

    def infer(self, ins, a):
        self.require_analog(ins)
        cond, x, y = ins
        if cond.dtype != "bool":
            raise IRCError(f"Where: the condition must be bool, got {cond.dtype}")
        if x.dtype != y.dtype:
            raise IRCError(f"Where: operand types {x.dtype} and {y.dtype} differ")
        return [TensorType(broadcast_shapes(cond.shape, broadcast_shapes(x.shape, y.shape)), x.dtype)]

    def example(self, rng):
        return OpExample([rng.integers(0, 2, (2, 3)).astype(bool), rng.standard_normal((2, 3)).astype(np.float32),
                          rng.standard_normal((2, 1)).astype(np.float32)], {})


class _Extremum(OpDef):
    """The elementwise maximum or minimum of any number of operands, broadcast together."""

    inputs = ("inputs*",)
    preserves_sign = True

    def infer(self, ins, a):
        self.require_analog(ins)
        if not ins:
            raise IRCError(f"{self.name} needs at least one input")
        shape = ins[0].shape
        for t in ins[1:]:
            if t.dtype != ins[0].dtype:
                raise IRCError(f"{self.name}: operand types {ins[0].dtype} and {t.dtype} differ")
            shape = broadcast_shapes(shape, t.shape)
        return [TensorType(shape, ins[0].dtype)]

    def example(self, rng):
        return OpExample([rng.standard_normal((2, 3)).astype(np.float32) for _ in range(int(rng.integers(1, 4)))], {})


@register
class Max(_Extremum):
    name = "Max"
    kernel = "maximum"


@register
class Min(_Extremum):
    name = "Min"
    kernel = "minimum"
