"""The IR's text form: a printer and a parser that reads it back.

Example::

    graph "lenet" {
      meta source = "lenet.onnx"
      input %x : f32[N,1,32,32]
      param %conv1.weight : f32[6,1,5,5]
      %conv1 : f32[N,6,28,28] = Conv(%x, %conv1.weight, _) {pads=[0,0,0,0], strides=[1,1]}
      %s1 : spike f32[N,6,28,28] = IF(%conv1, %theta1) {init=0.5}
      output %conv1
    }

Attributes equal to their declared default are not printed.  ``_`` stands for
an absent optional input.  Parameter data is not part of the text: the parser
takes it as a mapping from name to array (from an artifact's ``.npz``), or
fills zeros of the declared type when none is given (useful in tests that only
check structure).
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import IRCError
from .graph import Graph, Node, Value
from .ops import REQUIRED, get_op
from .types import BATCH, DTYPES, Domain, TensorType

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.:/\-]+$")


def _name(name: str) -> str:
    return name if _PLAIN_NAME.match(name) and name != "_" else json.dumps(name)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot print attribute value {v!r}")


def print_node(node: Node) -> str:
    outs = ", ".join(f"%{_name(o.name)} : {o.type}" for o in node.outputs)
    args = ", ".join("_" if v is None else f"%{_name(v.name)}" for v in node.inputs)
    spec = get_op(node.op).attrs
    shown = {k: v for k, v in node.attrs.items() if spec[k].default is REQUIRED or v != spec[k].default}
    attrs = " {" + ", ".join(f"{k}={_value(v)}" for k, v in sorted(shown.items())) + "}" if shown else ""
    alias = "" if node.outputs and node.outputs[0].name == node.name else f" as {_name(node.name)}"
    return f"{outs} = {node.op}({args}){attrs}{alias}"


def print_graph(graph: Graph) -> str:
    lines = [f"graph {json.dumps(graph.name)} {{"]
    for k, v in sorted(graph.meta.items()):
        lines.append(f"  meta {_name(k)} = {_value(v)}")
    for v in graph.inputs:
        lines.append(f"  input %{_name(v.name)} : {v.type}")
    for p in graph.params:
        lines.append(f"  param %{_name(p)} : {graph.values[p].type}")
    for n in graph.nodes:
        lines.append("  " + print_node(n))
    for v in graph.outputs:
        lines.append(f"  output %{_name(v.name)}")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------- parser
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<number>[-+]?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\.\d+(?:[eE][-+]?\d+)?|inf|nan|\d+)(?![A-Za-z0-9_.:/\-]))
      | (?P<word>[A-Za-z0-9_.:/\-]+)
      | (?P<punct>[%{}()\[\],=:_])
    )""",
    re.VERBOSE,
)


class _Lexer:
    def __init__(self, text: str, lineno: int):
        self.tokens: list[tuple[str, str]] = []
        self.lineno = lineno
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise IRCError(f"cannot read the IR text near {text[pos:pos + 20]!r}", line=lineno)
            kind = m.lastgroup
            tok = m.group(kind)  # type: ignore[arg-type]
            if kind == "word" and tok == "_":
                kind = "punct"
            self.tokens.append((kind, tok))  # type: ignore[arg-type]
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise IRCError("unexpected end of line in the IR text", line=self.lineno)
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        kind, tok = self.next()
        if tok != text:
            raise IRCError(f"expected {text!r}, found {tok!r}", line=self.lineno)

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[1] == text:
            self.i += 1
            return True
        return False

    def done(self) -> bool:
        return self.i >= len(self.tokens)

    def string(self, tok: str) -> str:
        """A quoted token's text (JSON escapes); a damaged one is an IRCError naming the line."""
        try:
            return json.loads(tok)
        except ValueError as e:
            raise IRCError(f"bad quoted string {tok[:40]!r}: {e}", line=self.lineno) from None

    def name(self) -> str:
        kind, tok = self.next()
        if kind == "string":
            return self.string(tok)
        if kind in ("word", "number"):
            return tok
        raise IRCError(f"expected a name, found {tok!r}", line=self.lineno)

    def ref(self) -> str:
        self.expect("%")
        return self.name()

    def type(self) -> TensorType:
        domain = Domain.ANALOG
        kind, tok = self.next()
        if tok in (Domain.SPIKE.value, Domain.CURRENT.value, Domain.ANALOG.value):
            domain = Domain(tok)
            kind, tok = self.next()
        if tok not in DTYPES:
            raise IRCError(f"unknown element type {tok!r}", line=self.lineno)
        self.expect("[")
        dims: list[int | str] = []
        while not self.accept("]"):
            k, d = self.next()
            if k != "number" and (d != BATCH or dims):
                raise IRCError(f"dimension {d!r}: only axis 0 may be symbolic in IR text (the batch, {BATCH})",
                               line=self.lineno)
            dims.append(int(d) if k == "number" else d)
            self.accept(",")
        return TensorType(tuple(dims), tok, domain)

    def literal(self) -> Any:
        kind, tok = self.next()
        if kind == "string":
            return self.string(tok)
        if kind == "number":
            if re.fullmatch(r"[-+]?\d+", tok):
                return int(tok)
            return float(tok)
        if tok in ("true", "false"):
            return tok == "true"
        if tok == "[":
            items = []
            while not self.accept("]"):
                items.append(self.literal())
                self.accept(",")
            return items
        if tok in ("-inf", "+inf"):
            return float(tok)
        raise IRCError(f"cannot read attribute value {tok!r}", line=self.lineno)


def parse_graph(text: str, params: Mapping[str, np.ndarray] | Sequence[np.ndarray] | None = None) -> Graph:
    """Parse the text form back into a Graph (types re-inferred and checked).

    ``params`` gives the parameter data by name, or as a list in the order of
    the ``param`` lines.
    """
    lines = text.splitlines()
    graph: Graph | None = None
    in_order = list(params) if params is not None and not isinstance(params, Mapping) else None
    count = 0
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        lex = _Lexer(line, lineno)
        head = lex.peek()
        try:
            if graph is None:
                lex.expect("graph")
                kind, tok = lex.next()
                graph = Graph(lex.string(tok) if kind == "string" else tok)
                lex.expect("{")
            elif line == "}":
                break
            elif head == ("word", "meta"):
                lex.next()
                key = lex.name()
                lex.expect("=")
                graph.meta[key] = lex.literal()
            elif head == ("word", "input"):
                lex.next()
                name = lex.ref()
                lex.expect(":")
                graph.add_input(name, lex.type())
            elif head == ("word", "param"):
                lex.next()
                name = lex.ref()
                lex.expect(":")
                t = lex.type()
                if in_order is not None:
                    if count >= len(in_order):
                        raise IRCError(f"parameter {name!r} has no data")
                    params_here = {name: in_order[count]}
                    count += 1
                else:
                    params_here = params
                if params_here is not None:
                    if name not in params_here:
                        raise IRCError(f"parameter {name!r} has no data")
                    arr = np.asarray(params_here[name])
                    if tuple(arr.shape) != t.shape or str(arr.dtype) != str(t.np_dtype):
                        raise IRCError(f"parameter {name!r} data is {arr.dtype}{list(arr.shape)}, IR says {t}")
                else:
                    arr = np.zeros(t.shape, t.np_dtype)
                v = graph.add_param(name, arr)
                if v.name != name:
                    raise IRCError(f"duplicate name {name!r}")
            elif head == ("word", "output"):
                lex.next()
                name = lex.ref()
                if name not in graph.values:
                    raise IRCError(f"output %{name} is not defined")
                graph.outputs.append(graph.values[name])
            else:
                _parse_node(graph, lex)
            if not lex.done():
                raise IRCError(f"unexpected {lex.peek()[1]!r} at the end of the line")  # type: ignore[index]
        except IRCError as e:
            if e.line is None:
                e.line = lineno
                e.args = (e.format(),)
            raise
    if graph is None:
        raise IRCError("no graph in the IR text")
    if in_order is not None and count != len(in_order):
        raise IRCError(f"{len(in_order)} parameter arrays given for {count} parameters")
    return graph


def _parse_node(graph: Graph, lex: _Lexer) -> None:
    outs: list[tuple[str, TensorType]] = []
    while True:
        name = lex.ref()
        lex.expect(":")
        outs.append((name, lex.type()))
        if not lex.accept(","):
            break
    lex.expect("=")
    op = lex.name()
    lex.expect("(")
    inputs: list[Value | None] = []
    while not lex.accept(")"):
        if lex.accept("_"):
            inputs.append(None)
        else:
            ref = lex.ref()
            if ref not in graph.values:
                raise IRCError(f"%{ref} is used before it is defined")
            inputs.append(graph.values[ref])
        lex.accept(",")
    attrs: dict[str, Any] = {}
    if lex.accept("{"):
        while not lex.accept("}"):
            key = lex.name()
            lex.expect("=")
            attrs[key] = lex.literal()
            lex.accept(",")
    node_name = outs[0][0]
    if lex.peek() == ("word", "as"):
        lex.next()
        node_name = lex.name()
    for key, val in attrs.items():
        if isinstance(val, float) and math.isnan(val):
            raise IRCError(f"attribute {key} is NaN")
    node = graph.add_node(op, inputs, attrs, name=node_name, output_names=[n for n, _ in outs])
    for v, (name, declared) in zip(node.outputs, outs):
        if v.name != name:
            raise IRCError(f"duplicate name %{name}")
        if v.type != declared:
            raise IRCError(f"%{name} is declared {declared} but {op} gives {v.type}", node=node.name)
