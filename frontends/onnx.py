"""ONNX frontend: an ``onnx.ModelProto`` lowered into irc's IR.

One function per ONNX op, named after it and registered in ``HANDLERS``.
Values known at compile time (initializers, ``Constant``, and anything
computed only from them, including the ``Shape -> Gather -> Unsqueeze ->
Concat`` chains exporters put in front of ``Reshape``) are folded while
loading, so the IR only holds the real network.  The batch axis stays
symbolic; inside folded shape arithmetic it is carried as a sentinel value.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable

import numpy as np

from irc.errors import IRCError, UnsupportedError
from irc.graph import Graph, Value
from irc.limits import MAX_NODES, MAX_STRING, check_shape, element_count
from irc.ops import get_op, same_pads
from irc.shapes import bind_shapes, is_free, stub_graph, symbol_name, unspecialised
from irc.types import BATCH, TensorType, dtype_name

SYM_BATCH = np.int64(-(2**40) - 7)
"""Stands for the batch size inside folded shape arithmetic."""

MIN_OPSET = 6

_BATCH_SAFE = ("Reshape", "Transpose", "Concat", "Squeeze", "Unsqueeze", "Identity", "Flatten")


def load(path: str, **options: Any) -> Graph:
    """Read an ONNX file into a Graph."""
    import onnx

    if not os.path.exists(path):
        raise IRCError("file not found", file=path)
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise IRCError(f"not a readable ONNX model ({type(e).__name__}: {e})", file=path,
                       hint="the file may be truncated or not an .onnx file") from None
    if not model.graph.node and not model.graph.output:
        raise IRCError("the file holds no ONNX graph (empty or truncated)", file=path)
    try:
        return from_model(model, name=os.path.splitext(os.path.basename(path))[0], **options)
    except IRCError as e:
        raise e.with_file(path)


def from_model(model, name: str | None = None, **options: Any) -> Graph:
    """Lower an in-memory ``onnx.ModelProto``."""
    import onnx

    opset = _opset(model)
    if opset > onnx.defs.onnx_opset_version():
        raise IRCError(f"the model uses opset {opset}, newer than this onnx package knows "
                       f"({onnx.defs.onnx_opset_version()})", hint="upgrade the onnx package")
    if opset < MIN_OPSET:
        raise IRCError(f"opset {opset} is older than irc supports ({MIN_OPSET})",
                       hint="re-export the model, or convert it with onnx.version_converter")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise IRCError(f"the ONNX model is invalid: {str(e).splitlines()[0]}") from None
    _check_names(model.graph)
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:
        pass  # irc infers its own types; onnx's are only a cross-check
    graph = _Lowering(model, opset, name or model.graph.name or "model", dict(options)).run()
    if unspecialised(graph):  # driver.load replaces this with the file's recipe
        graph.origin["recipe"] = {"model": model, "name": name, "options": {k: v for k, v in options.items()
                                                                          if k != "input_shapes"}}
    return graph


def _check_names(g) -> None:
    """Every name in the graph is text of a sane length (protobuf hands invalid UTF-8 back as bytes)."""
    names = [g.name] + [n.name for n in g.node] + [x for n in g.node for x in (*n.input, *n.output)] + \
        [v.name for v in (*g.input, *g.output, *g.initializer)]
    for name in names:
        if not isinstance(name, str):
            raise IRCError(f"the graph has a name that is not UTF-8 text ({bytes(name)[:60]!r})",
                           hint="the file is damaged; export the model again")
        MAX_STRING.check(len(name), f"the name {name[:40]!r}...")


def _opset(model) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    if any(imp.domain == "ai.onnx.ml" for imp in model.opset_import):
        raise UnsupportedError("model uses only the ai.onnx.ml domain, which irc does not support",
                               hint="export the network with standard ai.onnx operators")
    return 1


class _Lowering:
    def __init__(self, model, opset: int, name: str, options: dict):
        self.model = model
        self.opset = opset
        self.graph = Graph(_safe_graph_name(name))
        self.consts: dict[str, np.ndarray] = {}
        self.env: dict[str, Value] = {}
        self.options = options
        self.node = None
        self.batch_axes: dict[str, int] = {}
        """ONNX names whose batch axis is not the first, and where it is (frontends/onnx_timemajor.py)."""

    # ------------------------------------------------------------- driver
    def run(self) -> Graph:
        g = self.model.graph
        MAX_NODES.check(len(g.node), "the graph")
        for init in g.initializer:
            self.consts[init.name] = tensor_array(init, f"initializer {init.name!r}")
        types = {vi.name: self._input_type(vi) for vi in g.input if vi.name not in self.consts}
        declared = [(name, t.shape) for name, t in types.items()]
        bound = bind_shapes(declared, self.options.pop("input_shapes", None))
        unsupported = [f"{n.op_type} (node {n.name or n.output[0]!r})" for n in g.node
                       if n.domain not in ("", "ai.onnx") or n.op_type not in HANDLERS]
        if unsupported:
            raise UnsupportedError(
                f"{len(unsupported)} unsupported op(s): " + "; ".join(unsupported),
                hint="irc supports: " + ", ".join(sorted(HANDLERS)))
        if any(is_free(dims) for dims in bound.values()):  # sizes not known yet: lowered once they are
            stub = stub_graph(self.graph.name, list(bound.items()), {k: t.dtype for k, t in types.items()}, "onnx")
            stub.meta["opset"] = self.opset
            stub.origin["declared_inputs"] = declared
            return stub
        for name, t in types.items():
            self.env[name] = self.graph.add_input(name, t.with_(shape=bound[name]))
        for n in g.node:
            self.node = n
            label = n.name or (n.output[0] if n.output else n.op_type)
            try:
                results = self.lower(n)
            except IRCError as e:
                if e.node is None:
                    e.node = label
                    e.args = (e.format(),)
                raise
            except INCONSISTENT as e:
                raise IRCError(f"{n.op_type} cannot be lowered: its inputs, constants or attributes are "
                               f"inconsistent ({type(e).__name__}: {e})", node=label,
                               hint="the model is invalid or damaged; check it with onnx.checker and "
                               "onnx.shape_inference, or export it again") from e
            for out_name, res in zip(n.output, results):
                if not out_name:
                    continue
                if isinstance(res, (np.ndarray, np.generic)):
                    self.consts[out_name] = np.asarray(res)
                else:
                    self.env[out_name] = res
            for extra in n.output[len(results):]:
                if extra and self._used(extra):
                    raise UnsupportedError(f"{n.op_type} output {extra!r} is not supported", node=label)
        for vi in g.output:
            self.graph.outputs.append(self.value(vi.name))
        if not self.graph.outputs:
            raise IRCError("the graph declares no outputs, so there is nothing to compute",
                           hint="export the model with its output tensors listed in graph.output")
        if any(vi.name in self.batch_axes for vi in g.output):  # time-major outputs: Program.run moves them back
            self.graph.meta["output_batch_axes"] = [self.batch_axes.get(vi.name, 0) for vi in g.output]
        self.graph.prune()
        self.graph.meta["source_format"] = "onnx"
        self.graph.meta["opset"] = self.opset
        self.graph.origin["declared_inputs"] = declared
        return self.graph

    def lower(self, n) -> list:
        """The handler's results for node ``n`` (frontends/onnx_timemajor.py's when an input is time-major)."""
        if any(i in self.batch_axes for i in n.input):
            from .onnx_timemajor import lower

            return lower(self, n)
        return HANDLERS[n.op_type](self, n)

    def _used(self, name: str) -> bool:
        g = self.model.graph
        return any(name in n.input for n in g.node) or any(o.name == name for o in g.output)

    def _input_type(self, vi) -> TensorType:
        from onnx import helper

        tt = vi.type.tensor_type
        try:
            dt = dtype_name(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except Exception:
            raise UnsupportedError(f"input {vi.name!r} has an unsupported element type") from None
        dims: list[int | str] = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                if d.dim_value < 0:  # 0 is a legal empty axis (ONNX's empty-set cases); -1 is not a size
                    raise IRCError(
                        f"input {vi.name!r} declares dimension {i} as {d.dim_value}",
                        hint="give that axis a non-negative size, or leave it symbolic (dim_param)")
                dims.append(int(d.dim_value))
            elif i == 0:
                dims.append(BATCH)
            else:  # bound by input_shapes, or at run time (irc/shapes.py)
                dims.append(symbol_name(d.dim_param, i))
        return TensorType(tuple(dims), dt)

    # ------------------------------------------------------------ helpers
    def has(self, n, i: int) -> bool:
        return i < len(n.input) and bool(n.input[i])

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def const(self, n, i: int, what: str = "") -> np.ndarray:
        name = n.input[i]
        if name not in self.consts:
            raise UnsupportedError(f"{n.op_type} needs {what or f'input {i}'} to be a constant; "
                                   f"{name!r} is computed at run time")
        return self.consts[name]

    def value(self, name: str) -> Value:
        """The IR value for an ONNX name (constants become parameters on first use)."""
        if name in self.env:
            return self.env[name]
        if name in self.consts:
            arr = self.consts[name]
            if arr.dtype == np.int64 and (arr == SYM_BATCH).any():
                raise UnsupportedError(f"{name!r} depends on the batch size at run time")
            v = self.graph.add_param(name, arr)
            self.env[name] = v
            return v
        raise IRCError(f"value {name!r} is not defined")

    def input(self, n, i: int) -> Value | None:
        return self.value(n.input[i]) if self.has(n, i) else None

    def type_of(self, name: str) -> TensorType:
        if name in self.consts:
            a = self.consts[name]
            return TensorType(tuple(a.shape), dtype_name(a.dtype))
        return self.value(name).type

    def emit(self, op: str, inputs: list[Value | np.ndarray | None], attrs: dict | None = None) -> Value | np.ndarray:
        """Create an IR node, or fold it when every input is a constant."""
        if all(x is None or isinstance(x, np.ndarray) or x.is_param for x in inputs):
            arrays = [x if isinstance(x, np.ndarray) or x is None else self.graph.param(x) for x in inputs]
            if op not in _BATCH_SAFE and any(
                    a is not None and a.dtype == np.int64 and (a == SYM_BATCH).any() for a in arrays):
                raise UnsupportedError(f"{op} computes with the batch size at run time")
            opdef = get_op(op)
            return opdef.reference(arrays, opdef.normalize_attrs(attrs or {}))[0]
        name = self.node.name if self.node is not None and self.node.name else None
        out = self.node.output[0] if self.node is not None and len(self.node.output) else None
        slots = get_op(op).inputs
        vals = [self._param_for(x, f"{name or out or op}.{slots[min(i, len(slots) - 1)].rstrip('?*')}")
                if isinstance(x, np.ndarray) else x for i, x in enumerate(inputs)]
        node = self.graph.add_node(op, vals, attrs, name=name or out, output_names=[out] if out else None)
        return node.output

    def _param_for(self, array: np.ndarray, fallback: str) -> Value:
        """A parameter for ``array``, named after its ONNX constant when it is one."""
        for cname, carr in self.consts.items():
            if carr is array:
                return self.value(cname)
        return self.graph.add_param(fallback, array)

    def arg(self, n, i: int) -> Value | np.ndarray | None:
        """Input i as a constant array when known, else its IR value."""
        if not self.has(n, i):
            return None
        name = n.input[i]
        return self.consts[name] if name in self.consts else self.value(name)


INCONSISTENT = (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, OverflowError, ArithmeticError)
"""What numpy raises when a handler or a constant fold meets operands no valid model has (np.AxisError is an
IndexError and a ValueError); turned into one IRCError naming the node."""


def tensor_array(t, what: str) -> np.ndarray:
    """A TensorProto as an array, its declared dims and data checked (irc.limits) before anything is built."""
    from onnx import helper, numpy_helper

    if t.data_location == t.EXTERNAL or t.external_data:
        raise UnsupportedError(f"{what} keeps its data in an external file, which irc does not read",
                               hint="save the model with its weights inside: onnx.save(model, path, "
                               "save_as_external_data=False)")
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
    except (KeyError, TypeError, ValueError):
        raise IRCError(f"{what} has an unknown element type ({t.data_type})") from None
    dims = check_shape(t.dims, what, itemsize=max(dtype.itemsize, 1))
    count = element_count(dims)
    if t.data_type != t.STRING:
        if t.raw_data:
            have, need = len(t.raw_data), count * dtype.itemsize
        else:
            have = len(getattr(t, helper.tensor_dtype_to_field(t.data_type)))
            need = count * (2 if dtype.kind == "c" else 1)
        if t.data_type in (t.INT4, t.UINT4):  # two per byte
            need = (count + 1) // 2
        if have != need:
            raise IRCError(f"{what} declares dims {list(dims)} ({count:,} elements) but holds data for "
                           f"{have:,} {'bytes' if t.raw_data else 'values'}",
                           hint="the model is damaged or was edited; export it again")
    try:
        return numpy_helper.to_array(t)
    except INCONSISTENT as e:
        raise IRCError(f"{what} cannot be read ({type(e).__name__}: {e})") from None


def _safe_graph_name(name: str) -> str:
    return name.replace("\n", " ")[:200]


# ------------------------------------------------------------- attributes
def attrs_of(n) -> dict[str, Any]:
    from onnx import helper

    out: dict[str, Any] = {}
    for a in n.attribute:
        if a.type == a.TENSOR:
            out[a.name] = tensor_array(a.t, f"attribute {a.name!r} of {n.op_type} {n.name or n.op_type!r}")
        else:
            v = helper.get_attribute_value(a)
            out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _spatial_pads(n, a: dict, in_shape: tuple, kernel: list[int], strides: list[int], dilations: list[int],
                  ceil_mode: bool = False) -> list[int]:
    nd = len(kernel)
    auto_pad = a.get("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", ""):
        pads = list(a.get("pads", [0] * (2 * nd)))
        if len(pads) != 2 * nd:
            raise IRCError(f"pads {pads} do not match {nd} spatial axes")
        return pads
    if auto_pad == "VALID":
        return [0] * (2 * nd)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return same_pads(in_shape[2:2 + nd], kernel, strides, dilations, upper=auto_pad == "SAME_UPPER")
    raise IRCError(f"unknown auto_pad {auto_pad!r}")


# ---------------------------------------------------------------- handlers
Handler = Callable[[_Lowering, Any], list]
HANDLERS: dict[str, Handler] = {}


def handler(*names: str):
    def deco(fn: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = fn
        return fn
    return deco


@handler("Conv")
def Conv(L: _Lowering, n) -> list:
    a = attrs_of(n)
    x = L.value(n.input[0])
    if not L.is_const(n.input[1]):
        raise UnsupportedError("Conv with a weight computed at run time is not supported")
    w = L.consts[n.input[1]]
    nd = w.ndim - 2
    kernel = list(a.get("kernel_shape", w.shape[2:]))
    strides = list(a.get("strides", [1] * nd))
    dil = list(a.get("dilations", [1] * nd))
    pads = _spatial_pads(n, a, x.type.shape, kernel, strides, dil)
    b = L.arg(n, 2)
    return [L.emit("Conv", [x, w, b], {"strides": strides, "pads": pads, "dilations": dil, "group": a.get("group", 1)})]


def _pool(L: _Lowering, n, op: str) -> list:
    a = attrs_of(n)
    x = L.value(n.input[0])
    kernel = list(a["kernel_shape"])
    nd = len(kernel)
    strides = list(a.get("strides", [1] * nd))
    dil = list(a.get("dilations", [1] * nd))
    ceil = bool(a.get("ceil_mode", 0))
    pads = _spatial_pads(n, a, x.type.shape, kernel, strides, dil, ceil)
    attrs = {"kernel": kernel, "strides": strides, "pads": pads, "dilations": dil, "ceil_mode": ceil}
    if op == "AvgPool":
        attrs["count_include_pad"] = bool(a.get("count_include_pad", 0))
    if a.get("storage_order", 0):
        raise UnsupportedError("MaxPool storage_order=1 is not supported")
    return [L.emit(op, [x], attrs)]


@handler("MaxPool")
def MaxPool(L, n):
    return _pool(L, n, "MaxPool")


@handler("AveragePool")
def AveragePool(L, n):
    return _pool(L, n, "AvgPool")


@handler("GlobalAveragePool")
def GlobalAveragePool(L, n):
    return [L.emit("GlobalAvgPool", [L.value(n.input[0])])]


@handler("GlobalMaxPool")
def GlobalMaxPool(L, n):
    return [L.emit("GlobalMaxPool", [L.value(n.input[0])])]


@handler("Gemm")
def Gemm(L, n):
    a = attrs_of(n)
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    trans_a, trans_b = int(a.get("transA", 0)), int(a.get("transB", 0))
    A = L.arg(n, 0)
    B = L.arg(n, 1)
    C = L.arg(n, 2)
    if isinstance(A, np.ndarray) and isinstance(B, np.ndarray) and (C is None or isinstance(C, np.ndarray)):
        y = alpha * ((A.T if trans_a else A) @ (B.T if trans_b else B))
        return [(y + beta * C).astype(A.dtype) if C is not None else y.astype(A.dtype)]
    if trans_a:
        A = L.emit("Transpose", [A], {"perm": [1, 0]})
    if isinstance(B, np.ndarray) and not isinstance(A, np.ndarray):
        w = B if trans_b else B.T
        if alpha != 1.0:
            w = w * np.asarray(alpha, B.dtype)
        out_features = w.shape[0]
        bias = None
        if C is not None and isinstance(C, np.ndarray):
            c = np.asarray(C) * np.asarray(beta, C.dtype)
            if c.size == 1 or c.shape in ((out_features,), (1, out_features)):
                bias = np.broadcast_to(c.reshape(-1), (out_features,)).astype(w.dtype).copy()
                C = None
        y = L.emit("Dense", [A, np.ascontiguousarray(w, dtype=B.dtype), bias])
    else:
        if trans_b:
            B = L.emit("Transpose", [B], {"perm": [1, 0]})
        y = L.emit("MatMul", [A, B])
        if alpha != 1.0:
            y = L.emit("Mul", [y, np.asarray(alpha, dtype=L.type_of(n.input[0]).np_dtype)])
    if C is not None:
        c = C if not isinstance(C, np.ndarray) else C * np.asarray(beta, C.dtype)
        if beta != 1.0 and not isinstance(C, np.ndarray):
            c = L.emit("Mul", [C, np.asarray(beta, C.type.np_dtype)])
        y = L.emit("Add", [y, c])
    return [y]


@handler("MatMul")
def MatMul(L, n):
    A, B = L.arg(n, 0), L.arg(n, 1)
    if isinstance(B, np.ndarray) and not isinstance(A, np.ndarray) and B.ndim == 2 and A.type.rank == 2:
        return [L.emit("Dense", [A, np.ascontiguousarray(B.T)])]
    return [L.emit("MatMul", [A, B])]


def _elementwise(op: str):
    """An ONNX op whose IR op has the same name and operands (broadcasting arithmetic, comparisons)."""
    def fn(L, n):
        return [L.emit(op, [L.arg(n, i) for i in range(len(n.input))])]
    return fn


for _op in ("Add", "Sub", "Mul", "Div", "Exp", "Log", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Equal",
            "Or", "And", "Where", "Max", "Min"):
    HANDLERS[_op] = _elementwise(_op)


@handler("Relu")
def Relu(L, n):
    return [L.emit("Relu", [L.arg(n, 0)])]


@handler("Sigmoid")
def Sigmoid(L, n):
    return [L.emit("Sigmoid", [L.arg(n, 0)])]


@handler("Tanh")
def Tanh(L, n):
    return [L.emit("Tanh", [L.arg(n, 0)])]


@handler("LeakyRelu")
def LeakyRelu(L, n):
    return [L.emit("LeakyRelu", [L.arg(n, 0)], {"alpha": attrs_of(n).get("alpha", 0.01)})]


@handler("Elu")
def Elu(L, n):
    return [L.emit("Elu", [L.arg(n, 0)], {"alpha": attrs_of(n).get("alpha", 1.0)})]


@handler("HardSigmoid")
def HardSigmoid(L, n):
    a = attrs_of(n)
    return [L.emit("HardSigmoid", [L.arg(n, 0)], {"alpha": a.get("alpha", 0.2), "beta": a.get("beta", 0.5)})]


@handler("HardSwish")
def HardSwish(L, n):
    return [L.emit("HardSwish", [L.arg(n, 0)])]


@handler("Erf")
def Erf(L, n):
    return [L.emit("Erf", [L.arg(n, 0)])]


@handler("Gelu")
def Gelu(L, n):
    return [L.emit("Gelu", [L.arg(n, 0)], {"approximate": attrs_of(n).get("approximate", "none")})]


@handler("Sqrt")
def Sqrt(L, n):
    return [L.emit("Sqrt", [L.arg(n, 0)])]


@handler("Pow")
def Pow(L, n):
    return [L.emit("Pow", [L.arg(n, 0), L.arg(n, 1)])]


@handler("Sum")
def Sum(L, n):
    return [L.emit("Sum", [L.arg(n, i) for i in range(len(n.input)) if L.has(n, i)])]


@handler("LayerNormalization")
def LayerNormalization(L, n):
    """Y only: the Mean and InvStdDev outputs are refused where used (training exports)."""
    a = attrs_of(n)
    if int(a.get("stash_type", 1)) != 1:
        raise UnsupportedError(f"LayerNormalization stash_type={a['stash_type']} is not supported "
                               f"(only 1: statistics in float32)")
    scale = L.const(n, 1, "Scale")
    bias = L.const(n, 2, "B") if L.has(n, 2) else None
    return [L.emit("LayerNormalization", [L.arg(n, 0), scale, bias],
                   {"axis": a.get("axis", -1), "epsilon": a.get("epsilon", 1e-5)})]


@handler("LRN")
def LRN(L, n):
    a = attrs_of(n)
    return [L.emit("LRN", [L.arg(n, 0)], {"size": a["size"], "alpha": a.get("alpha", 1e-4),
                                          "beta": a.get("beta", 0.75), "bias": a.get("bias", 1.0)})]


@handler("If")
def If(L, n):
    """An If whose condition is known at compile time (TorchScript shape checks): the chosen branch is lowered
    inline, seeing the outer scope's names; its outputs are the node's."""
    if not L.is_const(n.input[0]):
        raise UnsupportedError(
            f"If with a condition computed at run time ({n.input[0]!r}) is not supported",
            hint="export with torch.onnx.export tracing (not scripting) or fixed input sizes, so the branch is "
                 "chosen at export time")
    cond = L.consts[n.input[0]]
    if cond.dtype == np.int64 and (cond == SYM_BATCH).any():
        raise UnsupportedError("If on the batch size is not supported", hint="export with a fixed batch size")
    branches = {a.name: a.g for a in n.attribute if a.name in ("then_branch", "else_branch")}
    g = branches["then_branch" if bool(np.asarray(cond).reshape(-1)[0]) else "else_branch"]
    return _lower_subgraph(L, g)


def _lower_subgraph(L: _Lowering, g) -> list:
    """Lower the nodes of a subgraph into L's graph and return its outputs (constants or IR values)."""
    outer = L.node
    for init in g.initializer:
        L.consts[init.name] = tensor_array(init, f"initializer {init.name!r} of a subgraph")
    used = {name for m in g.node for name in m.input} | {o.name for o in g.output}
    try:
        for m in g.node:
            label = m.name or (m.output[0] if m.output else m.op_type)
            if m.domain not in ("", "ai.onnx") or m.op_type not in HANDLERS:
                raise UnsupportedError(f"unsupported op {m.op_type} (node {label!r}) inside a branch",
                                       hint="irc supports: " + ", ".join(sorted(HANDLERS)))
            L.node = m
            try:
                results = L.lower(m)
            except IRCError as e:
                if e.node is None:
                    e.node = f"{outer.name or outer.output[0]}/{label}"
                    e.args = (e.format(),)
                raise
            for out_name, res in zip(m.output, results):
                if not out_name:
                    continue
                if isinstance(res, (np.ndarray, np.generic)):
                    L.consts[out_name] = np.asarray(res)
                else:
                    L.env[out_name] = res
            for extra in m.output[len(results):]:
                if extra and (extra in used or L._used(extra)):
                    raise UnsupportedError(f"{m.op_type} output {extra!r} is not supported", node=label)
    finally:
        L.node = outer
    return [L.consts[o.name] if o.name in L.consts else L.value(o.name) for o in g.output]


@handler("Clip")
def Clip(L, n):
    a = attrs_of(n)
    if L.opset < 11:
        lo, hi = a.get("min", -math.inf), a.get("max", math.inf)
    else:
        lo = float(L.const(n, 1, "min")) if L.has(n, 1) else -math.inf
        hi = float(L.const(n, 2, "max")) if L.has(n, 2) else math.inf
    x = L.arg(n, 0)
    dt = x.dtype if isinstance(x, np.ndarray) else x.type.np_dtype
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        lo, hi = max(lo, info.min), min(hi, info.max)
    return [L.emit("Clip", [x], {"min": lo, "max": hi})]


def _softmax(op: str):
    def fn(L, n):
        a = attrs_of(n)
        x = L.arg(n, 0)
        t = L.type_of(n.input[0])
        if L.opset >= 13:
            return [L.emit(op, [x], {"axis": a.get("axis", -1)})]
        axis = a.get("axis", 1) % t.rank
        if axis == t.rank - 1:
            return [L.emit(op, [x], {"axis": -1})]
        # opset < 13: softmax over all axes from `axis` on, flattened
        flat = L.emit("Flatten", [x], {"axis": axis})
        y = L.emit(op, [flat], {"axis": 1})
        return [L.emit("Reshape", [y], {"shape": [0 if d == BATCH else d for d in t.shape]})]
    return fn


HANDLERS["Softmax"] = _softmax("Softmax")
HANDLERS["LogSoftmax"] = _softmax("LogSoftmax")


@handler("BatchNormalization")
def BatchNormalization(L, n):
    a = attrs_of(n)
    if a.get("training_mode", 0):
        raise UnsupportedError("BatchNormalization in training mode is not supported; export in eval mode")
    x = L.arg(n, 0)
    params = [L.const(n, i, name) for i, name in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var"))]
    return [L.emit("BatchNorm", [x, *params], {"epsilon": a.get("epsilon", 1e-5)})]


@handler("Dropout")
def Dropout(L, n):
    a = attrs_of(n)
    ratio = a.get("ratio", 0.5)
    if L.opset >= 12:
        ratio = float(L.const(n, 1, "ratio")) if L.has(n, 1) else 0.5
        if L.has(n, 2) and bool(L.const(n, 2, "training_mode")):
            raise UnsupportedError("Dropout in training mode is not supported")
    x = L.arg(n, 0)
    if len(n.output) > 1 and n.output[1] and L._used(n.output[1]):
        # the mask of an inference-mode dropout is all true
        shape = L.type_of(n.input[0]).shape
        if BATCH in shape:
            raise UnsupportedError("Dropout mask output with a dynamic batch is not supported")
        return [x if isinstance(x, np.ndarray) else L.emit("Dropout", [x], {"ratio": ratio}), np.ones(shape, bool)]
    return [x if isinstance(x, np.ndarray) else L.emit("Dropout", [x], {"ratio": ratio})]


@handler("Identity")
def Identity(L, n):
    return [L.arg(n, 0)]


@handler("Flatten")
def Flatten(L, n):
    return [L.emit("Flatten", [L.arg(n, 0)], {"axis": attrs_of(n).get("axis", 1)})]


@handler("Reshape")
def Reshape(L, n):
    a = attrs_of(n)
    shape = list(a["shape"]) if L.opset < 5 else [int(s) for s in L.const(n, 1, "shape")]
    allowzero = bool(a.get("allowzero", 0))
    x = L.arg(n, 0)
    if any(s == SYM_BATCH for s in shape):
        if shape.index(SYM_BATCH) != 0 or shape.count(SYM_BATCH) > 1 or allowzero:
            raise UnsupportedError("Reshape uses the batch size off the first axis")
        shape[0] = 0
    return [L.emit("Reshape", [x], {"shape": shape, "allowzero": allowzero})]


@handler("Transpose")
def Transpose(L, n):
    perm = list(attrs_of(n).get("perm", []))
    if not L.is_const(n.input[0]) and L.type_of(n.input[0]).has_batch and (perm[:1] or [1]) != [0]:
        from .onnx_timemajor import transpose  # moves the batch axis (a time-major layout)

        return transpose(L, n)
    return [L.emit("Transpose", [L.arg(n, 0)], {"perm": perm})]


@handler("Concat")
def Concat(L, n):
    axis = attrs_of(n)["axis"]
    args = [L.arg(n, i) for i in range(len(n.input)) if L.has(n, i)]
    if all(isinstance(x, np.ndarray) for x in args):
        return [np.concatenate(args, axis=axis)]
    return [L.emit("Concat", args, {"axis": axis})]


@handler("Pad")
def Pad(L, n):
    a = attrs_of(n)
    x = L.arg(n, 0)
    t = L.type_of(n.input[0])
    if L.opset < 11:
        mode, pads, value = a.get("mode", "constant"), list(a["pads"]), float(a.get("value", 0.0))
    else:
        mode = a.get("mode", "constant")
        pads = [int(p) for p in L.const(n, 1, "pads")]
        value = float(L.const(n, 2, "constant_value")) if L.has(n, 2) else 0.0
        if L.has(n, 3):
            axes = [int(ax) % t.rank for ax in L.const(n, 3, "axes")]
            full = [0] * (2 * t.rank)
            for k, ax in enumerate(axes):
                full[ax], full[t.rank + ax] = pads[k], pads[len(axes) + k]
            pads = full
    if mode != "constant":
        raise UnsupportedError(f"Pad mode {mode!r} is not supported (only 'constant')")
    return [L.emit("Pad", [x], {"pads": pads, "value": value})]


def _axes(L, n, a) -> list[int] | None:
    if L.opset < 13:
        return list(a["axes"]) if "axes" in a else None
    return [int(v) for v in L.const(n, 1, "axes")] if L.has(n, 1) else None


@handler("Squeeze")
def Squeeze(L, n):
    axes = _axes(L, n, attrs_of(n))
    x = L.arg(n, 0)
    if isinstance(x, np.ndarray):
        return [np.squeeze(x, axis=tuple(axes)) if axes else np.squeeze(x)]
    return [L.emit("Squeeze", [x], {"axes": axes or []})]


@handler("Unsqueeze")
def Unsqueeze(L, n):
    axes = _axes(L, n, attrs_of(n))
    if axes is None:
        raise IRCError("Unsqueeze needs axes")
    x = L.arg(n, 0)
    if isinstance(x, np.ndarray):
        return [np.expand_dims(x, axis=tuple(a % (x.ndim + len(axes)) for a in axes))]
    return [L.emit("Unsqueeze", [x], {"axes": axes})]


# ---------------------------------------------- compile-time-only (shape noise)
@handler("Constant")
def Constant(L, n):
    a = attrs_of(n)
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in a:
            v = a[key]
            if key == "value":
                return [np.asarray(v)]
            dt = np.float32 if "float" in key else np.int64
            return [np.asarray(v, dtype=dt)]
    raise UnsupportedError("Constant with a string or sparse value is not supported")


@handler("Shape")
def Shape(L, n):
    from .onnx_timemajor import onnx_shape

    dims = np.array([SYM_BATCH if d == BATCH else d for d in onnx_shape(L, n.input[0])], dtype=np.int64)
    a = attrs_of(n)
    start, end = a.get("start", 0), a.get("end", None)
    return [dims[start:end]]


@handler("Gather")
def Gather(L, n):
    data = L.const(n, 0, "data (outside shape arithmetic)")
    idx = L.const(n, 1, "indices")
    return [np.asarray(np.take(data, idx, axis=attrs_of(n).get("axis", 0)))]


@handler("Cast")
def Cast(L, n):
    from onnx import helper

    return _cast(L, n, helper.tensor_dtype_to_np_dtype(attrs_of(n)["to"]))


@handler("CastLike")
def CastLike(L, n):
    return _cast(L, n, L.type_of(n.input[1]).np_dtype)


def _cast(L, n, to) -> list:
    """Constants are cast at compile time; run-time data only to its own type (a no-op)."""
    x = L.arg(n, 0)
    if isinstance(x, np.ndarray):
        if x.dtype == np.int64 and (x == SYM_BATCH).any() and to != np.int64:
            raise UnsupportedError("Cast of the batch size is not supported")
        return [x.astype(to)]
    if np.dtype(to) == x.type.np_dtype:
        return [x]
    raise UnsupportedError(f"Cast of run-time data to {np.dtype(to)} is not supported")


@handler("Slice")
def Slice(L, n):
    """Constant data is sliced while loading; run-time data with unit steps (a crop) becomes a Pad with
    negative pads."""
    a = attrs_of(n)
    if L.opset < 10:
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    else:
        starts, ends = L.const(n, 1, "starts"), L.const(n, 2, "ends")
        axes = L.const(n, 3, "axes") if L.has(n, 3) else None
        steps = L.const(n, 4, "steps") if L.has(n, 4) else None
    axes = list(range(len(starts))) if axes is None else list(axes)
    steps = [1] * len(starts) if steps is None else list(steps)
    if not L.is_const(n.input[0]):
        return [_crop(L, n, starts, ends, axes, steps)]
    data = L.const(n, 0, "data")
    index = [slice(None)] * data.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[int(ax)] = slice(int(s), int(e), int(st))
    return [data[tuple(index)]]


def _crop(L: _Lowering, n, starts, ends, axes, steps) -> Value:
    """A unit-step Slice of run-time data as a Pad with negative pads (the batch axis stays whole)."""
    t = L.type_of(n.input[0])
    pads = [0] * (2 * t.rank)
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = int(ax) % t.rank
        dim = t.shape[ax]
        if int(st) != 1:
            raise UnsupportedError("Slice of run-time data with a step other than 1 is not supported")
        if dim == BATCH:
            if int(s) != 0 or int(e) < 2**31 - 1:
                raise UnsupportedError("Slice along the batch axis is not supported")
            continue
        lo, hi, _ = slice(int(s), int(e)).indices(dim)
        pads[ax], pads[t.rank + ax] = -lo, -(dim - max(hi, lo))
    return L.emit("Pad", [L.arg(n, 0)], {"pads": pads, "value": 0.0})


_STATE_INPUTS = {"LSTM": (5, 6), "GRU": (5,), "RNN": (5,)}
"""Input slots of the recurrent ops that hold initial states (a batch of one broadcasts over N)."""


def _only_feeds_states(L: _Lowering, name: str) -> bool:
    """Whether ``name`` reaches nothing but recurrent initial states (through Slices of its data)."""
    users = [(m, i) for m in L.model.graph.node for i, inp in enumerate(m.input) if inp == name]
    if not users or any(o.name == name for o in L.model.graph.output):
        return False
    for m, i in users:
        if m.op_type == "Slice" and i == 0:
            if not all(_only_feeds_states(L, out) for out in m.output if out):
                return False
        elif i not in _STATE_INPUTS.get(m.op_type, ()):
            return False
    return True


@handler("ConstantOfShape")
def ConstantOfShape(L, n):
    """Zeros of the batch size are allowed only as recurrent initial states (PyTorch's ``h0 = zeros(D, N, H)``),
    kept with a batch of one."""
    shape = L.const(n, 0, "shape")
    if (shape == SYM_BATCH).any() and not _only_feeds_states(L, n.output[0]):
        raise UnsupportedError("ConstantOfShape of the batch size is not supported")
    value = attrs_of(n).get("value", np.zeros(1, np.float32))
    return [np.full(tuple(1 if s == SYM_BATCH else int(s) for s in shape), value.reshape(-1)[0], dtype=value.dtype)]


_GLOBAL_POOLS = {"ReduceMean": "GlobalAvgPool", "ReduceMax": "GlobalMaxPool"}


@handler("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum")
def Reduce(L, n):
    """A reduction; over every spatial axis of (N, C, ...) a mean or max is a global pool (x.mean(dim=(2, 3)))."""
    a = attrs_of(n)
    x = L.arg(n, 0)
    t = L.type_of(n.input[0])
    axes_are_input = L.opset >= (13 if n.op_type == "ReduceSum" else 18)
    if axes_are_input:
        axes = [int(v) for v in L.const(n, 1, "axes")] if L.has(n, 1) else []
    else:
        axes = list(a.get("axes", []))
    keepdims = bool(a.get("keepdims", 1))
    if not axes and axes_are_input and a.get("noop_with_empty_axes", 0):
        return [x]
    axes = sorted({ax % t.rank for ax in axes}) if axes else list(range(t.rank))
    pool = _GLOBAL_POOLS.get(n.op_type)
    if pool and t.rank >= 3 and axes == list(range(2, t.rank)):
        y = L.emit(pool, [x])
        return [y if keepdims else L.emit("Reshape", [y], {"shape": [0, t.shape[1]]})]
    return [L.emit(n.op_type, [x], {"axes": axes, "keepdims": keepdims})]
from . import onnx_structured  # noqa: E402,F401  (Resize, ConvTranspose, LSTM, GRU handlers)
