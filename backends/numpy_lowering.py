"""How the numpy target runs each node: formulation, layout and packed weights, chosen at compile time.

One lowering per op kind (the ``LOWER`` table) turns a node into one line
of the generated module.  Every op has the reference lowering: its kernel
from kernels.py on channels-first arrays, exactly the IR's semantics.  The
fast ones keep 4-d activations channels-last (kernels_nhwc.py) and pick a
convolution's formulation from its shape; the choice is written into the
generated source, so it can be read there.

``kernels`` (the numpy target's option of that name):

* ``llvm`` (default): channels-last numpy formulations, and JIT-compiled
  llvmlite kernels (irc.backends.llvm.conv_kernels) where numpy cannot keep up
  (depthwise and grouped convolutions, small-channel dense ones); the generated
  module falls back to the numpy formulations when irc is not importable;
* ``numpy``: the channels-last numpy formulations only;
* ``reference``: one kernels.py call per node, channels-first.

Each formulation was kept because it measured faster than the ones it
replaced on this project's benchmark networks (benchmarks/ann_vs_onnxruntime.py).
"""
from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from irc.errors import IRCError
from irc.graph import Graph, Node, Value
from irc.interp import Interpreter
from irc.lowering import LoweringTable
from irc.naming import Namer, sanitize
from irc.ops import get_op
from irc.ops.nn import fused_activation_args

KERNEL_MODES = ("llvm", "numpy", "reference")
NCHW, NHWC = "nchw", "nhwc"

# kernel name -> the JIT kernel's numpy stand-in (same arguments, same packed weights)
JIT_KERNELS = {"jit_depthwise": "conv_depthwise", "jit_conv": "conv_direct", "jit_few_outputs": "conv_few_outputs",
               "jit_max_pool": "max_pool_nhwc", "jit_avg_pool": "avg_pool_nhwc"}


def check_mode(mode: Any) -> str:
    if mode not in KERNEL_MODES:
        raise IRCError(f"option kernels={mode!r} is not one of {', '.join(KERNEL_MODES)}",
                       hint="-O kernels=numpy keeps the pure-numpy formulations")
    return mode


def literal(v: Any) -> str:
    """A Python literal for an attribute value (numbers, strings, lists and dicts of those only)."""
    import math

    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return "np.nan"
        if math.isinf(v):
            return "np.inf" if v > 0 else "-np.inf"
        return repr(v)
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(literal(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{literal(str(k))}: {literal(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no literal for {type(v).__name__}")


def kernel_name(opdef) -> str:
    """The name the op's kernel has in the generated module."""
    return opdef.kernel_name


@dataclass
class Lowered:
    """The generated module's body and what it needs: weights by key, JIT kernels used."""

    lines: list[str]
    weights: dict[str, np.ndarray]
    returns: list[str]
    inputs: list[str]
    jit: set[str] = field(default_factory=set)


class Lowering(Interpreter):
    """Interprets the graph symbolically (values are names), a line per node, tracking each value's layout."""

    def __init__(self, graph: Graph, mode: str):
        super().__init__(graph)
        self.graph, self.mode = graph, check_mode(mode)
        self.values = Namer("v_", reserved=set(dir(builtins)))
        self.keys = Namer()
        self.weights: dict[str, np.ndarray] = {}
        self.param_keys: dict[str, str] = {}
        self.layout: dict[int, str] = {}
        self.converted: dict[tuple[int, str], str] = {}
        self.flat_order: dict[int, np.ndarray] = {}
        """Flattened channels-last values: for each feature of the IR's order, where it sits."""
        self.owned: set[int] = set()
        """Values whose array no other name shares (a kernel's fresh output): safe to overwrite when dead."""
        self.lines: list[str] = []
        self.jit: set[str] = set()
        self.position = {id(n): i for i, n in enumerate(graph.nodes)}
        self.dying = [{id(v) for v in dead} for dead in self.dead_after]

    # ------------------------------------------------------------- names
    def param(self, v: Value) -> str:
        if v.name not in self.param_keys:
            key = self.keys(v.name)
            self.param_keys[v.name] = key
            self.weights[key] = self.graph.param(v)
        return f'W["{self.param_keys[v.name]}"]'

    def packed(self, hint: str, array: np.ndarray) -> str:
        """A weight array in the layout and dtype a kernel reads, stored under a new key."""
        key = self.keys(hint)
        self.weights[key] = np.ascontiguousarray(array)
        return f'W["{key}"]'

    def name(self, v: Value) -> str:
        return self.values(v.name)

    def get(self, v: Value | None, layout: str | None = None) -> str:
        """v's expression, converted to ``layout`` (once per value) when it is held otherwise."""
        if v is None:
            return "None"
        if v.is_param:
            return self.param(v)
        have = self.layout.get(id(v), NCHW)
        if layout is None or layout == have or v.type.rank != 4:
            return self.name(v)
        key = (id(v), layout)
        if key not in self.converted:
            conv = self.values(v.name + "_" + layout)
            self.lines.append(f"    {conv} = to_{layout}({self.name(v)})")
            self.converted[key] = conv
        return self.converted[key]

    def layout_of(self, v: Value) -> str:
        return self.layout.get(id(v), NCHW)

    # -------------------------------------------------------------- emit
    def call(self, node: Node, kernel: str, args: list[str], kwargs: dict[str, Any], layout: str = NCHW,
             note: str = "", owned: bool = True) -> None:
        while args and args[-1] == "None":
            args.pop()
        if kwargs.get("activation") == "":
            kwargs.pop("activation")
            kwargs.pop("activation_params", None)
        call_args = ", ".join(args + [f"{k}={literal(v)}" for k, v in kwargs.items()])
        outs = ", ".join(self.name(o) for o in node.outputs)
        shape = " ".join(str(o.type) for o in node.outputs)
        where = f" [{layout}]" if layout == NHWC else ""
        self.lines.append(f"    # {node.op} {sanitize(node.name)}: {shape}{where}{' - ' + note if note else ''}")
        self.lines.append(f"    {outs} = {kernel}({call_args})")
        if kernel in JIT_KERNELS:
            self.jit.add(kernel)
        for o in node.outputs:
            self.layout[id(o)] = layout
            if owned:
                self.owned.add(id(o))

    def alias(self, node: Node, source: str, layout: str, note: str) -> None:
        """The output is the input's array seen another way (no copy)."""
        out = node.outputs[0]
        self.lines.append(f"    # {node.op} {sanitize(node.name)}: {out.type} [{layout}] - {note}")
        self.lines.append(f"    {self.name(out)} = {source}")
        self.layout[id(out)] = layout

    def reference(self, node: Node) -> None:
        """The op's kernels.py kernel on channels-first arrays: the IR's semantics, always available."""
        opdef = get_op(node.op)
        kwargs = opdef.kernel_args(node.input_types(), [o.type for o in node.outputs], node.attrs)
        self.call(node, kernel_name(opdef), [self.get(v, NCHW) for v in node.inputs], kwargs, owned=False)
        for v in node.inputs:  # a reference kernel may return a view of its input (reshape, identity)
            self.owned.discard(id(v))

    # ------------------------------------------------------- interpreter
    def initial_env(self, feeds) -> dict[int, str]:
        """Inputs by name; parameters are read (and packed) by the lowerings themselves (see param)."""
        env = {id(v): self.name(v) for v in self.graph.inputs}
        env.update({id(self.graph.values[p]): "" for p in self.graph.params})
        return env

    def run_node(self, node: Node, args: list) -> list[str]:
        lower = LOWER.lower(node) if self.mode != "reference" else reference_lowering
        if not lower(self, node):
            self.reference(node)
        return [self.name(o) for o in node.outputs]

    def free(self, value: Value, data: Any) -> None:
        if value.producer is not None:
            names = [self.name(value)] + [name for (vid, _), name in self.converted.items() if vid == id(value)]
            self.lines.append(f"    del {', '.join(names)}")

    def lower(self) -> Lowered:
        LOWER.check(self.graph)
        inputs = [self.name(v) for v in self.graph.inputs]
        self.run({v.name: None for v in self.graph.inputs})
        returns = [self.get(v, NCHW) if self.layout_of(v) == NHWC else self.get(v) for v in self.graph.outputs]
        return Lowered(self.lines, self.weights, returns, inputs, self.jit)

    # ----------------------------------------------------------- helpers
    def dtype(self, v: Value) -> np.dtype:
        return v.type.np_dtype

    def dies_here(self, v: Value, node: Node) -> bool:
        """v is an intermediate whose array only this node reads from now on, and nobody else holds it."""
        return (id(v) in self.owned and id(v) in self.dying[self.position[id(node)]] and v.producer is not None
                and sum(1 for u in node.inputs if u is v) == 1)


# ------------------------------------------------------------------ lowerings
Lower = Callable[[Lowering, Node], bool]
"""Emits the node's line and returns True, or returns False to leave it to the reference lowering."""

LOWER: LoweringTable[Lower] = LoweringTable("numpy")


def lowering(*ops: str) -> Callable[[Lower], Lower]:
    """Register a fast lowering (it may decline a node; the reference kernel call then runs it)."""
    return LOWER.register(*ops)


@LOWER.register_trait("has a numpy kernel", lambda op: op.kernel is not None and not op.spiking)
def reference_lowering(L: Lowering, node: Node) -> bool:
    """The op's kernels.py kernel on channels-first arrays: every op with a kernel runs this way."""
    L.reference(node)
    return True


def _float(v: Value) -> bool:
    return v.type.dtype in ("f32", "f64")


@lowering("Conv")
def lower_conv(L: Lowering, node: Node) -> bool:
    from .numpy_conv import choose_conv

    x, w = node.inputs[0], node.inputs[1]
    if w.type.rank != 4 or not _float(x) or not w.is_param:
        return False
    plan = choose_conv(L, node)
    L.call(node, plan.kernel, [L.get(x, plan.layout), plan.weight, plan.bias], plan.kwargs, plan.layout, plan.note)
    return True


def _spatial(node: Node) -> bool:
    return node.inputs[0].type.rank == 4 and _float(node.inputs[0])


def _few_channels_first(L: Lowering, x: Value) -> bool:
    """A value held channels-first because it has few channels (see numpy_conv.FEW_CHANNELS) stays so."""
    from .numpy_conv import FEW_CHANNELS

    return L.layout_of(x) == NCHW and x.type.shape[1] < FEW_CHANNELS


def _pooling_matrix(kernel, width: int, out_width: int, dtype) -> np.ndarray:
    """(KH*W, OW): row a*W + col of a window row holds 1/(KH*KW) in the column of the window it falls in."""
    kh, kw = kernel
    p = np.zeros((kh, width, out_width), dtype)
    for j in range(out_width):
        p[:, j * kw:(j + 1) * kw, j] = 1.0 / (kh * kw)
    return p.reshape(kh * width, out_width)


@lowering("MaxPool", "AvgPool")
def lower_pool(L: Lowering, node: Node) -> bool:
    if not _spatial(node) or len(node.attrs["kernel"]) != 2:
        return False
    opdef = get_op(node.op)
    kwargs = opdef.kernel_args(node.input_types(), [o.type for o in node.outputs], node.attrs)
    x = node.inputs[0]
    if _few_channels_first(L, x):
        h, w = x.type.shape[2:]
        oh, ow = kwargs["out_dims"]
        kernel = kwargs["kernel"]
        if (node.op != "AvgPool" or kwargs["strides"] != kernel or any(kwargs["pads"]) or kwargs["dilations"] != [1, 1]
                or oh * kernel[0] > h or ow * kernel[1] > w):
            return False  # the reference kernel, channels-first
        pool = L.packed(node.name + ".pooling", _pooling_matrix(kernel, w, ow, L.dtype(x)))
        L.call(node, "avg_pool_gemm", [L.get(x, NCHW), pool], {"kernel": kernel, "out_dims": [oh, ow]}, NCHW,
               "non-overlapping windows, channels-first: one GEMM with a pooling matrix")
        return True
    if L.mode == "llvm" and node.inputs[0].type.dtype == "f32":
        L.call(node, "jit_" + kernel_name(opdef), [L.get(node.inputs[0], NHWC)], kwargs, NHWC,
               "JIT: taps inside the input, vectorised over channels")
    else:
        L.call(node, kernel_name(opdef) + "_nhwc", [L.get(node.inputs[0], NHWC)], kwargs, NHWC)
    return True


@lowering("GlobalAvgPool", "GlobalMaxPool")
def lower_global_pool(L: Lowering, node: Node) -> bool:
    if not _spatial(node):
        return False
    kernel = kernel_name(get_op(node.op)) + "_nhwc"
    L.call(node, kernel, [L.get(node.inputs[0], NHWC)], {}, NHWC, "a product with a ones vector"
           if node.op == "GlobalAvgPool" else "")
    return True


def _channel_vector(L: Lowering, node: Node, v: Value | None, hint: str, dtype) -> str:
    return "None" if v is None else L.packed(hint, L.graph.param(v).astype(dtype))


@lowering("ScaleShift")
def lower_scale_shift(L: Lowering, node: Node) -> bool:
    x = node.inputs[0]
    if not _spatial(node) or not all(v is None or v.is_param for v in node.inputs[1:]):
        return False
    dt = L.dtype(x)
    scale = _channel_vector(L, node, node.inputs[1], node.name + ".scale", dt)
    shift = _channel_vector(L, node, node.inputs[2] if len(node.inputs) > 2 else None, node.name + ".shift", dt)
    kwargs = fused_activation_args(node.attrs)
    L.call(node, "scale_shift_nhwc", [L.get(x, NHWC), scale, shift], kwargs, NHWC)
    return True


@lowering("BatchNorm")
def lower_batch_norm(L: Lowering, node: Node) -> bool:
    """An unfused BatchNorm as one multiply-add per value, its factors computed at compile time."""
    x = node.inputs[0]
    if not _spatial(node) or not all(v.is_param for v in node.inputs[1:]):
        return False
    scale, bias, mean, var = (L.graph.param(v).astype(np.float64) for v in node.inputs[1:])
    k = scale / np.sqrt(var + node.attrs["epsilon"])
    dt = L.dtype(x)
    L.call(node, "scale_shift_nhwc", [L.get(x, NHWC), L.packed(node.name + ".scale", k.astype(dt)),
                                      L.packed(node.name + ".shift", (bias - mean * k).astype(dt))], {}, NHWC,
           "its factors folded at compile time")
    return True


def _same_shape_data(node: Node) -> bool:
    ins = [v for v in node.inputs if v is not None]
    return all(not v.is_param and v.type.shape == node.outputs[0].type.shape and v.type.dtype == ins[0].type.dtype
               for v in ins)


def _held_nhwc(L: Lowering, node: Node) -> bool:
    return any(L.layout_of(v) == NHWC for v in node.inputs if v is not None)


@lowering("Add")
def lower_add(L: Lowering, node: Node) -> bool:
    a, b = node.inputs
    if a.type.rank != 4 or not _same_shape_data(node) or not _held_nhwc(L, node):
        return False
    kwargs = fused_activation_args(node.attrs)
    if L.dies_here(b, node) and not L.dies_here(a, node):
        a, b = b, a
    if L.dies_here(a, node):
        L.call(node, "add_into", [L.get(a, NHWC), L.get(b, NHWC)], kwargs, NHWC, "into its dead first operand")
    else:
        L.call(node, "add", [L.get(a, NHWC), L.get(b, NHWC)], kwargs, NHWC)
    return True


@lowering("Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "Exp", "Log", "Identity", "Dropout", "Sub", "Mul",
          "Max", "Min")
def lower_elementwise(L: Lowering, node: Node) -> bool:
    """Elementwise ops on same-shaped operands run in whatever layout those are held in."""
    x = node.inputs[0]
    if x.type.rank != 4 or not _same_shape_data(node) or not _held_nhwc(L, node):
        return False
    opdef = get_op(node.op)
    kwargs = opdef.kernel_args(node.input_types(), [o.type for o in node.outputs], node.attrs)
    L.call(node, kernel_name(opdef), [L.get(v, NHWC) for v in node.inputs], kwargs, NHWC,
           owned=node.op not in ("Identity", "Dropout"))
    if node.op in ("Identity", "Dropout"):
        L.owned.discard(id(x))  # its output is the same array
    return True


@lowering("Concat")
def lower_concat(L: Lowering, node: Node) -> bool:
    out = node.outputs[0]
    if out.type.rank != 4 or node.attrs["axis"] % 4 != 1 or not _held_nhwc(L, node):
        return False
    L.call(node, "concat", [L.get(v, NHWC) for v in node.inputs], {"axis": 3}, NHWC)
    return True


# permutation taking a value's physical axes to its IR axes, per layout
_TO_IR = {NCHW: [0, 1, 2, 3], NHWC: [0, 3, 1, 2]}


@lowering("Transpose")
def lower_transpose(L: Lowering, node: Node) -> bool:
    """A 4-d Transpose that only undoes how its input is held is no copy at all (Keras's NHWC input)."""
    x = node.inputs[0]
    if x.type.rank != 4 or x.is_param:
        return False
    perm = node.attrs["perm"] or [3, 2, 1, 0]
    src = _TO_IR[L.layout_of(x)]
    for layout in (NHWC, NCHW):
        # out_ir = in_ir.transpose(perm); out_phys = out_ir.transpose(inverse(_TO_IR[layout]))
        phys = [src[perm[p]] for p in np.argsort(_TO_IR[layout])]
        if phys == [0, 1, 2, 3]:
            L.alias(node, L.name(x), layout, "the input as it is held")
            L.owned.discard(id(x))
            return True
    return False


@lowering("Flatten", "Reshape")
def lower_flatten(L: Lowering, node: Node) -> bool:
    """Flattening a channels-last value for Dense layers: a view, the Dense columns permuted to match."""
    from irc.passes import layout

    x, out = node.inputs[0], node.outputs[0]
    opdef = get_op(node.op)
    flattens = opdef.flattens_to_features(node)
    if x.type.rank != 4 or L.layout_of(x) != NHWC or not flattens:
        return False
    users = L.graph.users(out)
    c, h, w = x.type.shape[1:]
    same_order = h * w == 1
    if not same_order and (out in L.graph.outputs or not users or
                           any(u.op != "Dense" or i != 0 for u, i in users)):
        return False
    L.alias(node, f"{L.name(x)}.reshape({L.name(x)}.shape[0], {c * h * w})", NCHW,  # not -1: a batch of 0
            "channels-last order, Dense columns permuted" if not same_order else "a view")
    L.owned.discard(id(x))
    if not same_order:
        L.flat_order[id(out)] = layout.source_positions((c, h, w), [0, 2, 3, 1])
    return True


@lowering("Dense")
def lower_dense(L: Lowering, node: Node) -> bool:
    x, w = node.inputs[0], node.inputs[1]
    b = node.inputs[2] if len(node.inputs) > 2 else None
    if not w.is_param or not _float(x) or (b is not None and not b.is_param):
        return False
    dt = L.dtype(x)
    weight = L.graph.param(w).astype(dt)
    note = ""
    if id(x) in L.flat_order:
        # feature j of the channels-last flattening is feature flat_order[j] of the IR's
        weight, note = weight[:, L.flat_order[id(x)]], "columns in channels-last order"
    kwargs = fused_activation_args(node.attrs)
    L.call(node, "dense", [L.get(x), L.packed(w.name + ".packed", weight),
                           _channel_vector(L, node, b, node.name + ".bias", dt)], kwargs, NCHW, note)
    return True
