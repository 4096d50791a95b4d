"""Layout ops: Flatten, Reshape, Squeeze, Unsqueeze, Transpose, Concat, Pad.

They move data without arithmetic, so spike trains pass through them unchanged
(Pad only with a zero value).  Every reshaping op runs as one kernel,
``reshape``, to the inferred output shape.
"""
from __future__ import annotations

import numpy as np

from ..errors import IRCError
from ..types import BATCH, Domain, TensorType
from . import Attr, OpDef, OpExample, prod, register


class _Reshaping(OpDef):
    layout = True
    preserves_sign = True
    reshape_only = True
    rate_rule = "positional"
    kernel = "reshape"

    def out_shape(self, x: TensorType, a: dict) -> tuple:
        raise NotImplementedError

    def infer(self, ins, a):
        x = ins[0]
        return [TensorType(self.out_shape(x, a), x.dtype, self.data_domain(ins))]

    def kernel_args(self, ins, outs, a):
        out = outs[0]
        shape = [-1 if d == BATCH else d for d in out.shape]
        if out.has_batch and not ins[0].has_batch:
            raise IRCError("cannot create a batch axis from a static input")
        return {"shape": shape}


def _example_input(rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((2, 3, 1, 4)).astype(np.float32)


@register
class Reshape(_Reshaping):
    name = "Reshape"
    attrs = {"shape": Attr("ints"), "allowzero": Attr("bool", False)}
    doc = "ONNX Reshape semantics: 0 copies the input dimension (unless allowzero), -1 is inferred."

    def out_shape(self, x, a):
        target = list(a["shape"])
        if not a["allowzero"]:
            target = [x.shape[i] if d == 0 and i < x.rank else d for i, d in enumerate(target)]
        if target.count(-1) > 1:
            raise IRCError("Reshape: more than one -1 in the target shape")
        known = prod([d for d in target if d not in (-1, BATCH)])
        total_static = x.static_size()
        if -1 in target:
            i = target.index(-1)
            if x.has_batch and BATCH not in target:
                # -1 absorbs the batch: only legal if it stands exactly for it
                if i != 0 or known != total_static:
                    raise IRCError(f"Reshape {x.shape} -> {a['shape']} mixes the batch axis with other axes",
                                   hint="keep the batch as the first axis (e.g. shape [0, -1] or [-1, features])")
                target[0] = BATCH
            else:
                if known == 0 or total_static % known:
                    raise IRCError(f"Reshape: cannot reshape {list(x.shape)} to {a['shape']}")
                target[i] = total_static // known
        elif prod([d for d in target if d != BATCH]) != total_static or (BATCH in target) != x.has_batch:
            raise IRCError(f"Reshape: cannot reshape {list(x.shape)} to {a['shape']}")
        if BATCH in target[1:]:
            raise IRCError("Reshape moves the batch axis off axis 0")
        return tuple(target)

    def example(self, rng):
        return OpExample([_example_input(rng)], {"shape": [0, 4, -1]})

    def flattens_to_features(self, node):
        out, shape = node.output.type, node.attrs["shape"]
        return (node.inputs[0].type.has_batch and out.rank == 2 and out.shape[0] == BATCH
                and shape[0] in (0, -1) and shape[1] != 0)


@register
class Flatten(_Reshaping):
    name = "Flatten"
    attrs = {"axis": Attr("int", 1)}

    def out_shape(self, x, a):
        axis = a["axis"] % x.rank if x.rank else 0
        if a["axis"] == x.rank:
            axis = x.rank
        head, tail = x.shape[:axis], x.shape[axis:]
        if x.has_batch:
            if axis == 0 or prod(head[1:]) != 1:
                raise IRCError(f"Flatten(axis={a['axis']}) would merge the batch axis of {list(x.shape)}")
            return (BATCH, prod(tail))
        return (prod(head), prod(tail))

    def example(self, rng):
        return OpExample([_example_input(rng)], {"axis": 1})

    def flattens_to_features(self, node):
        return node.attrs["axis"] == 1


@register
class Squeeze(_Reshaping):
    name = "Squeeze"
    attrs = {"axes": Attr("ints", [])}

    def out_shape(self, x, a):
        axes = [ax % x.rank for ax in a["axes"]] or [i for i, d in enumerate(x.shape) if d == 1]
        for ax in axes:
            if x.shape[ax] != 1:
                raise IRCError(f"Squeeze: axis {ax} of {list(x.shape)} is not 1")
        return tuple(d for i, d in enumerate(x.shape) if i not in axes)

    def example(self, rng):
        return OpExample([_example_input(rng)], {"axes": [2]})


@register
class Unsqueeze(_Reshaping):
    name = "Unsqueeze"
    attrs = {"axes": Attr("ints")}

    def out_shape(self, x, a):
        rank = x.rank + len(a["axes"])
        axes = sorted(ax % rank for ax in a["axes"])
        shape = list(x.shape)
        for ax in axes:
            shape.insert(ax, 1)
        if x.has_batch and shape[0] != BATCH:
            raise IRCError("Unsqueeze before the batch axis is not supported")
        return tuple(shape)

    def example(self, rng):
        return OpExample([_example_input(rng)], {"axes": [1]})


@register
class Transpose(OpDef):
    name = "Transpose"
    layout = True
    preserves_sign = True
    rate_rule = "positional"
    kernel = "transpose"
    attrs = {"perm": Attr("ints", [])}

    def infer(self, ins, a):
        x = ins[0]
        perm = a["perm"] or list(range(x.rank))[::-1]
        if sorted(perm) != list(range(x.rank)):
            raise IRCError(f"Transpose perm {perm} is not a permutation of {x.rank} axes")
        if x.has_batch and perm[0] != 0:
            raise IRCError("Transpose moves the batch axis off axis 0")
        return [TensorType(tuple(x.shape[p] for p in perm), x.dtype, self.data_domain(ins))]

    def kernel_args(self, ins, outs, a):
        return {"perm": a["perm"] or list(range(ins[0].rank))[::-1]}

    def permutation(self, node):
        """The permutation (an empty one reverses the axes, as in ONNX)."""
        return node.attrs["perm"] or list(range(node.inputs[0].type.rank))[::-1]

    def example(self, rng):
        return OpExample([_example_input(rng)], {"perm": [0, 3, 1, 2]})


@register
class Concat(OpDef):
    name = "Concat"
    inputs = ("inputs*",)
    layout = True
    preserves_sign = True
    rate_rule = "positional"
    kernel = "concat"
    attrs = {"axis": Attr("int")}

    def infer(self, ins, a):
        if not ins:
            raise IRCError("Concat needs at least one input")
        first = ins[0]
        axis = a["axis"] % first.rank
        if axis == 0 and first.has_batch:
            raise IRCError("Concat along the batch axis is not supported")
        total = 0
        for t in ins:
            if t.rank != first.rank or any(t.shape[i] != first.shape[i] for i in range(t.rank) if i != axis):
                raise IRCError(f"Concat: shapes {[list(t.shape) for t in ins]} differ off axis {axis}")
            if t.dtype != first.dtype:
                raise IRCError("Concat: operand types differ")
            total += t.shape[axis]
        shape = list(first.shape)
        shape[axis] = total
        return [TensorType(tuple(shape), first.dtype, self.data_domain(ins))]

    def kernel_args(self, ins, outs, a):
        return {"axis": a["axis"] % ins[0].rank}

    def example(self, rng):
        return OpExample([_example_input(rng), rng.standard_normal((2, 2, 1, 4)).astype(np.float32)], {"axis": 1})


@register
class Pad(OpDef):
    name = "Pad"
    layout = True
    preserves_sign = True
    rate_rule = "positional"
    kernel = "slice_pad"
    attrs = {"pads": Attr("ints"), "value": Attr("float", 0.0)}
    doc = "Constant padding; pads are begin pads then end pads for every axis (negative crops)."

    def infer(self, ins, a):
        x = ins[0]
        pads = a["pads"]
        if len(pads) != 2 * x.rank:
            raise IRCError(f"Pad needs {2 * x.rank} pads for rank {x.rank}, got {len(pads)}")
        if x.has_batch and (pads[0] or pads[x.rank]):
            raise IRCError("Pad on the batch axis is not supported")
        dom = self.data_domain(ins)
        if dom != Domain.ANALOG and a["value"] != 0:
            raise IRCError("Pad of a spiking tensor must use the value 0")
        shape = tuple(d if d == BATCH else d + pads[i] + pads[x.rank + i] for i, d in enumerate(x.shape))
        if any(d != BATCH and d < 0 for d in shape):
            raise IRCError(f"Pad crops more than the input has: {list(x.shape)} with {pads}")
        return [TensorType(shape, x.dtype, dom)]

    def kernel_args(self, ins, outs, a):
        return {"pads": a["pads"], "value": a["value"]}

    def with_fill(self, attrs, value):
        return dict(attrs, value=float(value))

    def nonnegative(self, node, inputs_nonnegative):
        return node.attrs["value"] >= 0 and super().nonnegative(node, inputs_nonnegative)

    def example(self, rng):
        return OpExample([_example_input(rng)], {"pads": [0, 1, 0, 2, 0, 0, 1, -1], "value": 0.0})
