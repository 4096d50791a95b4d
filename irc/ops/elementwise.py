"""Elementwise ops: arithmetic with broadcasting, activations, Softmax, Dropout, Identity."""
from __future__ import annotations

import math

from ..errors import IRCError
from ..types import Domain, TensorType
from . import Attr, OpDef, register
from .nn import ACTIVATION_ATTRS, broadcast_shapes, check_activation


class _Binary(OpDef):
    inputs = ("a", "b")

    def infer(self, ins, a):
        x, y = ins
        if x.dtype != y.dtype:
            raise IRCError(f"{self.name}: operand types {x.dtype} and {y.dtype} differ")
        if self.name in ("Mul", "Div") and x.domain != Domain.ANALOG and y.domain != Domain.ANALOG:
            raise IRCError(f"{self.name} of two time-varying operands is not linear")
        if self.name == "Div" and y.domain != Domain.ANALOG:
            raise IRCError("Div by a time-varying operand is not linear")
        shape = broadcast_shapes(x.shape, y.shape)
        return [TensorType(shape, x.dtype, self.data_domain(ins))]

    def kernel_args(self, ins, outs, a):
        return dict(a)


@register
class Add(_Binary):
    name = "Add"
    kernel = "add"
    linear = True
    attrs = dict(ACTIVATION_ATTRS)

    def infer(self, ins, a):
        check_activation(a)
        return super().infer(ins, a)


@register
class Sub(_Binary):
    name = "Sub"
    kernel = "sub"
    linear = True


@register
class Mul(_Binary):
    name = "Mul"
    kernel = "mul"
    linear = True


@register
class Div(_Binary):
    name = "Div"
    kernel = "div"
    linear = True


class Activation(OpDef):
    """An elementwise activation that may be fused into its producer."""

    activation = True
    fused_params: tuple[str, ...] = ()

    def infer(self, ins, a):
        self.require_analog(ins)
        return [ins[0]]

    def fused(self, a: dict) -> list[float]:
        """The ``activation_params`` list that stands for these attributes."""
        return [float(a[k]) for k in self.fused_params]


@register
class Relu(Activation):
    name = "Relu"
    kernel = "relu"


@register
class LeakyRelu(Activation):
    name = "LeakyRelu"
    kernel = "leaky_relu"
    attrs = {"alpha": Attr("float", 0.01)}
    fused_params = ("alpha",)


@register
class Clip(Activation):
    name = "Clip"
    kernel = "clip"
    attrs = {"min": Attr("float", -math.inf), "max": Attr("float", math.inf)}
    fused_params = ("min", "max")


@register
class Sigmoid(Activation):
    name = "Sigmoid"
    kernel = "sigmoid"


@register
class Tanh(Activation):
    name = "Tanh"
    kernel = "tanh"


class _SoftmaxLike(OpDef):
    attrs = {"axis": Attr("int", -1)}

    def infer(self, ins, a):
        self.require_analog(ins)
        x = ins[0]
        axis = a["axis"]
        if not -x.rank <= axis < x.rank:
            raise IRCError(f"{self.name} axis {axis} out of range for rank {x.rank}")
        if axis % x.rank == 0 and x.has_batch:
            raise IRCError(f"{self.name} over the batch axis is not supported")
        return [x]


@register
class Softmax(_SoftmaxLike):
    name = "Softmax"
    kernel = "softmax"


@register
class LogSoftmax(_SoftmaxLike):
    name = "LogSoftmax"
    kernel = "log_softmax"


class _PassThrough(OpDef):
    layout = True
    kernel = "identity"

    def infer(self, ins, a):
        return [ins[0]]

    def kernel_args(self, ins, outs, a):
        return {}


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


@register
class Exp(_Unary):
    name = "Exp"
    kernel = "exp"


@register
class Log(_Unary):
    name = "Log"
    kernel = "log"


class _Compare(OpDef):
    """An elementwise comparison with broadcasting: a boolean mask (analog only)."""

    inputs = ("a", "b")

    def infer(self, ins, a):
        self.require_analog(ins)
        x, y = ins
        if x.dtype != y.dtype:
            raise IRCError(f"{self.name}: operand types {x.dtype} and {y.dtype} differ")
        return [TensorType(broadcast_shapes(x.shape, y.shape), "bool")]


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


class _Extremum(OpDef):
    """The elementwise maximum or minimum of any number of operands, broadcast together."""

    inputs = ("inputs*",)

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


@register
class Max(_Extremum):
    name = "Max"
    kernel = "maximum"


@register
class Min(_Extremum):
    name = "Min"
    kernel = "minimum"
