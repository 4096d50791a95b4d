"""N2D2's template language, for ``[name@file.ini.tpl]`` includes (src/utils/TemplateParser.cpp).

``{{VAR}}`` (undefined: an error), ``{% if V ==|!=|exists|not_exists [value] %}
... {% else %} ... {% endif %}``, ``{% for V in range([start,] stop) %}...
{% endfor %}``, ``{% block ARR %}...{% endblock %}`` over ``ARR=n`` with
``ARR[i].P`` visible as ``{{.P}}`` and the index as ``{{#}}``,
``{% include file %}`` and ``{% set V %}...{% endset %}``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from irc.errors import IRCError

_CONTROL = re.compile(r"\{%\s*(.*?)\s*%\}", re.S)


@dataclass
class _Node:
    kind: str                      # text | if | for | block | set | include
    text: str = ""
    args: list[str] = field(default_factory=list)
    body: list["_Node"] = field(default_factory=list)
    orelse: list["_Node"] = field(default_factory=list)
    line: int = 1


class Template:
    def __init__(self, source: str, path: str):
        self.path = path
        self.source = source
        self.nodes, end, closing = self._parse(0, ())
        if closing:
            raise self._error(f"unexpected {{% {closing} %}}", end)

    def _error(self, message: str, pos: int) -> IRCError:
        return IRCError(message, file=self.path, line=self.source.count("\n", 0, pos) + 1)

    def _parse(self, pos: int, closers: tuple[str, ...]) -> tuple[list[_Node], int, str | None]:
        nodes: list[_Node] = []
        while True:
            m = _CONTROL.search(self.source, pos)
            if m is None:
                if closers:
                    raise self._error(f"missing {{% {closers[0]} %}}", len(self.source))
                nodes.append(_Node("text", self.source[pos:]))
                return nodes, len(self.source), None
            nodes.append(_Node("text", self.source[pos:m.start()]))
            words = m.group(1).split()
            if not words:
                raise self._error("empty {% %}", m.start())
            head, pos = words[0], m.end()
            line = self.source.count("\n", 0, m.start()) + 1
            if head in closers or head == "else" and "endif" in closers:
                return nodes, pos, head
            if head in ("endif", "endfor", "endblock", "endset", "else"):
                raise self._error(f"unexpected {{% {head} %}}", m.start())
            if head == "if":
                if len(words) < 3:
                    raise self._error("if needs a variable and an operator", m.start())
                body, pos, closer = self._parse(pos, ("endif",))
                orelse: list[_Node] = []
                if closer == "else":
                    orelse, pos, _ = self._parse(pos, ("endif",))
                nodes.append(_Node("if", args=words[1:], body=body, orelse=orelse, line=line))
            elif head == "for":
                rng = re.fullmatch(r"for\s+(\S+)\s+in\s+range\(\s*([^,)\s]+)\s*(?:,\s*([^)\s]+)\s*)?\)",
                                   m.group(1).strip())
                if rng is None:
                    raise self._error("expected {% for V in range([start,] stop) %}", m.start())
                body, pos, _ = self._parse(pos, ("endfor",))
                nodes.append(_Node("for", args=[rng.group(1), rng.group(2), rng.group(3) or ""], body=body, line=line))
            elif head in ("block", "set"):
                if len(words) != 2:
                    raise self._error(f"{head} needs one variable name", m.start())
                body, pos, _ = self._parse(pos, ("end" + head,))
                nodes.append(_Node(head, args=[words[1]], body=body, line=line))
            elif head == "include":
                if len(words) != 2:
                    raise self._error("include needs one file name", m.start())
                nodes.append(_Node("include", args=[words[1]], line=line))
            else:
                raise self._error(f"unknown template statement {head!r}", m.start())

    # ------------------------------------------------------------ render
    def render(self, params: dict[str, str]) -> str:
        out: list[str] = []
        self._render(self.nodes, dict(params), out)
        return "".join(out)

    def _render(self, nodes: list[_Node], params: dict[str, str], out: list[str]) -> None:
        for n in nodes:
            if n.kind == "text":
                out.append(self._substitute(n.text, params))
            elif n.kind == "if":
                self._render(n.body if self._predicate(n, params) else n.orelse, params, out)
            elif n.kind == "for":
                var, start, stop = n.args
                if var in params:
                    raise IRCError(f"loop variable {var} already exists", file=self.path, line=n.line)
                lo, hi = self._number(params.get(start, start), n), None
                if stop:
                    hi = self._number(params.get(stop, stop), n)
                else:
                    lo, hi = 0.0, lo
                i = lo
                while i < hi:
                    params[var] = _cpp_number(i)
                    self._render(n.body, params, out)
                    i += 1
                params.pop(var, None)
            elif n.kind == "block":
                var = n.args[0]
                if var not in params:
                    raise IRCError(f"undefined block variable {var}", file=self.path, line=n.line)
                size = int(self._number(params[var], n))
                for i in range(size):
                    prefix = f"{var}[{i}]"
                    inner = dict(params)
                    inner["#"] = str(i)
                    for key, value in params.items():
                        if key.startswith(prefix):
                            inner[key[len(prefix):]] = value
                    self._render(n.body, inner, out)
            elif n.kind == "set":
                buf: list[str] = []
                self._render(n.body, params, buf)
                params[n.args[0]] = "".join(buf)
            elif n.kind == "include":
                path = os.path.join(os.path.dirname(self.path), self._substitute(n.args[0], params))
                out.append(load_template(path).render(params))

    def _predicate(self, n: _Node, params: dict[str, str]) -> bool:
        var, op = n.args[0], n.args[1]
        if op == "exists":
            return var in params
        if op == "not_exists":
            return var not in params
        if var not in params:
            raise IRCError(f"undefined variable {var} in an if statement", file=self.path, line=n.line)
        value = " ".join(n.args[2:])
        if op == "==":
            return params[var] == value
        if op == "!=":
            return params[var] != value
        raise IRCError(f"unknown operator {op!r} in an if statement", file=self.path, line=n.line)

    def _number(self, text: str, n: _Node) -> float:
        try:
            return float(text)
        except ValueError:
            raise IRCError(f"unreadable number {text!r}", file=self.path, line=n.line) from None

    def _substitute(self, text: str, params: dict[str, str]) -> str:
        out, pos = [], 0
        while True:
            start = text.find("{{", pos)
            if start < 0:
                out.append(text[pos:])
                return "".join(out)
            end = text.find("}}", start + 2)
            if end < 0:
                raise IRCError("missing closing braces }}", file=self.path)
            name = text[start + 2:end]
            if name not in params:
                raise IRCError(f"undefined template variable {{{{{name}}}}}", file=self.path)
            out.append(text[pos:start])
            out.append(params[name])
            pos = end + 2


def _cpp_number(value: float) -> str:
    """How a C++ stream prints the loop counter (1, not 1.0)."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def load_template(path: str) -> Template:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return Template(f.read(), path)
    except OSError:
        raise IRCError("cannot open the template file", file=path) from None
