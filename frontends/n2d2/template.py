"""N2D2's template language, for ``[name@file.ini.tpl]`` includes (``src/utils/TemplateParser.cpp``).

A template is INI text with

* ``{{VAR}}`` -- the parameter's value; an undefined name is an error (names are
  exact: ``{{ VAR }}`` looks up `` VAR ``);
* ``{% if VAR ==|!=|exists|not_exists [value] %} ... {% else %} ... {% endif %}``;
* ``{% for V in range([start,] stop) %} ... {% endfor %}`` (bounds are numbers or
  parameter names; ``V`` is printed the way a C++ stream prints a double);
* ``{% block ARR %} ... {% endblock %}`` -- repeated ``ARR`` times, with the
  parameters ``ARR[i].P`` visible as ``{{.P}}`` and the index as ``{{#}}``;
* ``{% set V %} ... {% endset %}`` -- ``V`` becomes the rendered body;
* ``{% include file %}`` -- another template's text, parsed in place.

Control words are split on spaces, parentheses and commas, as N2D2 does.  The
output keeps, for every line, the template file and line it came from, so that
an error in the generated INI text points into the template.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping, Union

from irc.errors import IRCError
from irc.limits import MAX_TEXT_BYTES

_CONTROL_DELIMITERS = re.compile(r"[ (),]+")
_CPP_DOUBLE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_CPP_INT = re.compile(r"[+-]?\d+")
_CPP_SPACE = " \t\n\v\f\r"
_CLOSING_WORDS = ("else", "endif", "endfor", "endblock", "endset")
_INVERSE_OP = {"==": "!=", "!=": "==", "exists": "not_exists", "not_exists": "exists"}
_MAX_LOOP = 100_000
_MAX_INCLUDE_DEPTH = 16
_MAX_STEPS = 1_000_000          # loop and block iterations in one rendering, nested ones included
_MAX_CHARS = 2_000_000          # text one rendering may produce ({% set %} bodies included)


@dataclass(frozen=True)
class SourceLine:
    """One physical line of INI text and where it was written."""

    text: str
    file: str
    line: int


# ------------------------------------------------------------------ the tree
@dataclass
class _Text:
    text: str
    file: str
    line: int


@dataclass
class _Tag:
    words: list[str]
    file: str
    line: int


@dataclass
class _If:
    var: str
    op: str
    value: str
    then: list
    orelse: list | None
    file: str
    line: int


@dataclass
class _For:
    var: str
    start: str
    stop: str
    body: list
    file: str
    line: int


@dataclass
class _Block:
    var: str
    body: list
    file: str
    line: int


@dataclass
class _Set:
    var: str
    body: list
    file: str
    line: int


_Node = Union[_Text, _If, _For, _Block, _Set]


def _error(message: str, where: _Text | _Tag | _If | _For | _Block | _Set, hint: str | None = None) -> IRCError:
    return IRCError(message, file=where.file, line=where.line, hint=hint)


# ------------------------------------------------------------------ parsing
def read_template(path: str) -> str:
    """The template's text, line endings untouched (N2D2 reads bytes; a CR stays in the line)."""
    try:
        MAX_TEXT_BYTES.check(os.path.getsize(path), "the template file", file=path)
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            return f.read()
    except OSError as e:
        raise IRCError(f"cannot open the template file ({e.strerror})", file=path) from None


def _tokenize(source: str, path: str) -> list[_Text | _Tag]:
    """Split template text into literal text and ``{% ... %}`` controls, each with its line."""
    tokens: list[_Text | _Tag] = []
    pos, line = 0, 1
    while True:
        start = source.find("{%", pos)
        if start < 0:
            tokens.append(_Text(source[pos:], path, line))
            return tokens
        tokens.append(_Text(source[pos:start], path, line))
        line += source.count("\n", pos, start)
        end = source.find("%}", start + 2)
        if end < 0:
            raise IRCError("a {% control is never closed by %}", file=path, line=line)
        words = [w for w in _CONTROL_DELIMITERS.split(source[start + 2:end]) if w]
        if not words:
            raise IRCError("empty {% %} control", file=path, line=line)
        tokens.append(_Tag(words, path, line))
        line += source.count("\n", start, end + 2)
        pos = end + 2


class _Parser:
    """Builds the node tree of one template file (includes are parsed in place)."""

    def __init__(self, path: str, including: tuple[str, ...] = (), parsed: dict[str, list] | None = None,
                 roots: list[str] | None = None):
        self.path = path
        self.roots = roots      # folders includes may come from (syntax.include_roots); None: this file's
        self.including = including + (os.path.abspath(path),)
        self.parsed = {} if parsed is None else parsed      # include trees by file: a diamond is parsed once
        self.tokens = _tokenize(read_template(path), path)
        self.pos = 0

    def parse(self) -> list[_Node]:
        nodes, _ = self._body((), None)
        return nodes

    def _body(self, closers: tuple[str, ...], opener: _Tag | None) -> tuple[list[_Node], _Tag | None]:
        """Nodes up to one of ``closers`` (returned too), or to the end when there are none."""
        nodes: list[_Node] = []
        while self.pos < len(self.tokens):
            token = self.tokens[self.pos]
            self.pos += 1
            if isinstance(token, _Text):
                nodes.append(token)
                continue
            keyword = token.words[0]
            if keyword in closers:
                if len(token.words) > 1:
                    raise _error(f"{{% {keyword} %}} takes no arguments", token)
                return nodes, token
            if keyword in _CLOSING_WORDS:
                raise _error(f"{{% {keyword} %}} without a matching opening statement", token)
            nodes.extend(self._statement(token))
        if opener is not None:
            raise _error(f"{{% {opener.words[0]} %}} is never closed by {{% {closers[-1]} %}}", opener)
        return nodes, None

    def _statement(self, tag: _Tag) -> list[_Node]:
        keyword = tag.words[0]
        if keyword == "if":
            return [self._if(tag)]
        if keyword == "for":
            return [self._for(tag)]
        if keyword in ("block", "set"):
            return [self._named(tag)]
        if keyword == "include":
            return self._include(tag)
        raise _error(f"unknown template control {{% {keyword} %}}", tag,
                     hint="controls: if/else/endif, for/endfor, block/endblock, set/endset, include")

    def _if(self, tag: _Tag) -> _If:
        if len(tag.words) not in (3, 4):
            raise _error("expected {% if VAR ==|!=|exists|not_exists [value] %}", tag)
        then, closer = self._body(("else", "endif"), tag)
        orelse = None
        if closer is not None and closer.words[0] == "else":
            orelse, _ = self._body(("endif",), tag)
        value = tag.words[3] if len(tag.words) == 4 else ""
        return _If(tag.words[1], tag.words[2], value, then, orelse, tag.file, tag.line)

    def _for(self, tag: _Tag) -> _For:
        words = tag.words
        if len(words) < 5 or words[2] != "in" or words[3] != "range":
            raise _error("expected {% for VAR in range([start,] stop) %}", tag)
        body, _ = self._body(("endfor",), tag)
        stop = words[5] if len(words) > 5 else ""
        return _For(words[1], words[4], stop, body, tag.file, tag.line)

    def _named(self, tag: _Tag) -> _Block | _Set:
        keyword = tag.words[0]
        if len(tag.words) != 2:
            raise _error(f"expected {{% {keyword} NAME %}}", tag)
        body, _ = self._body(("end" + keyword,), tag)
        kind = _Block if keyword == "block" else _Set
        return kind(tag.words[1], body, tag.file, tag.line)

    def _include(self, tag: _Tag) -> list[_Node]:
        if len(tag.words) < 2:
            raise _error("expected {% include FILE %}", tag)
        path = tag.words[1]
        if not os.path.isabs(path):
            path = os.path.join(os.path.dirname(self.path), path)
        if not os.path.isfile(path):
            raise _error(f"included template {tag.words[1]!r} not found ({path})", tag,
                         hint="a relative include is looked up in the including template's folder")
        from .syntax import check_include, include_roots

        roots = self.roots if self.roots is not None else include_roots(os.path.dirname(self.including[0]),
                                                                         os.environ)
        check_include(path, roots,
                      f"included template {tag.words[1]!r}", file=tag.file, line=tag.line)
        full = os.path.abspath(path)
        if full in self.including:
            raise _error(f"template {tag.words[1]!r} includes itself", tag)
        if len(self.including) > _MAX_INCLUDE_DEPTH:
            raise _error(f"templates are included more than {_MAX_INCLUDE_DEPTH} deep", tag)
        if full not in self.parsed:
            self.parsed[full] = _Parser(path, self.including, self.parsed, self.roots).parse()
        return self.parsed[full]


def parse_template(path: str, roots: list[str] | None = None) -> list[_Node]:
    """The node tree of a template file; syntax errors name the template file and line.  ``roots``: the
    folders its ``{% include %}`` files may come from (default: the template's own folder and the folders
    in $IRC_INI_INCLUDE_PATH)."""
    try:
        return _Parser(path, roots=roots).parse()
    except RecursionError:
        raise IRCError("the template nests its statements too deeply", file=path) from None


# ------------------------------------------------------------------ rendering
class _Renderer:
    """Renders nodes into text fragments that remember their template file and line."""

    def __init__(self, budget: "_Budget | None" = None) -> None:
        # (text, file, line, literal): literal text advances the line at each newline,
        # a substituted value keeps the line of its {{ }}
        self.fragments: list[tuple[str, str, int, bool]] = []
        self.budget = _Budget() if budget is None else budget

    def emit(self, text: str, file: str, line: int, literal: bool) -> None:
        self.budget.chars += len(text)
        if self.budget.chars > _MAX_CHARS:
            raise IRCError(f"the template produces more than {_MAX_CHARS:,} characters", file=file, line=line)
        self.fragments.append((text, file, line, literal))

    def text(self) -> str:
        return "".join(f[0] for f in self.fragments)

    def render(self, nodes: list[_Node], params: dict[str, str]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self._text(node, params)
            elif isinstance(node, _If):
                self._if(node, params)
            elif isinstance(node, _For):
                self._for(node, params)
            elif isinstance(node, _Block):
                self._block(node, params)
            else:
                self._set(node, params)

    def _text(self, node: _Text, params: dict[str, str]) -> None:
        text, pos, line = node.text, 0, node.line
        while True:
            start = text.find("{{", pos)
            if start < 0:
                self.emit(text[pos:], node.file, line, True)
                return
            self.emit(text[pos:start], node.file, line, True)
            line += text.count("\n", pos, start)
            end = text.find("}}", start + 2)
            if end < 0:
                raise IRCError("{{ is never closed by }}", file=node.file, line=line)
            name = text[start + 2:end]
            if name not in params:
                raise IRCError(f"undefined template variable {{{{{name}}}}}", file=node.file, line=line,
                               hint=_undefined_hint(name))
            self.emit(params[name], node.file, line, False)
            line += text.count("\n", start, end + 2)
            pos = end + 2

    def _if(self, node: _If, params: dict[str, str]) -> None:
        # N2D2 turns {% else %} into a second `if` with the inverse test, evaluated
        # after the first branch has rendered (a {% set %} there can change it)
        if _predicate(node, node.op, params):
            self.render(node.then, params)
        if node.orelse is not None and _predicate(node, _INVERSE_OP.get(node.op, ""), params):
            self.render(node.orelse, params)

    def _for(self, node: _For, params: dict[str, str]) -> None:
        if node.var in params:
            raise _error(f"loop variable {node.var} already exists in this context", node)
        start = _range_bound(node.start, params, node)
        if node.stop:
            stop = _range_bound(node.stop, params, node)
        else:
            start, stop = 0.0, start
        if stop - start > _MAX_LOOP:
            raise _error(f"range({node.start}, {node.stop}) has more than {_MAX_LOOP} steps", node)
        i = start
        while i < stop:
            self.budget.step(node)
            params[node.var] = cpp_double_text(i)
            self.render(node.body, params)
            i += 1
        params.pop(node.var, None)

    def _block(self, node: _Block, params: dict[str, str]) -> None:
        if node.var not in params:
            raise _error(f"undefined variable {node.var} in a block statement", node,
                         hint=f"the including section must set {node.var}=<count> and {node.var}[i].NAME=...")
        size_text = params[node.var]
        if not _CPP_INT.fullmatch(size_text.lstrip(_CPP_SPACE)):
            raise _error(f"block size {node.var}={size_text!r} is not an integer", node)
        size = int(size_text.lstrip(_CPP_SPACE))
        if size > _MAX_LOOP:
            raise _error(f"block size {node.var}={size} is too large", node)
        for i in range(size):
            self.budget.step(node)
            self.render(node.body, _block_params(params, node.var, i))

    def _set(self, node: _Set, params: dict[str, str]) -> None:
        inner = _Renderer(self.budget)
        inner.render(node.body, params)
        params[node.var] = inner.text()


class _Budget:
    """What one rendering has spent: nested loops multiply, so the limit is on the whole rendering."""

    def __init__(self) -> None:
        self.steps = 0
        self.chars = 0

    def step(self, node: "_For | _Block") -> None:
        self.steps += 1
        if self.steps > _MAX_STEPS:
            raise _error(f"the template runs more than {_MAX_STEPS:,} loop iterations", node)


def _undefined_hint(name: str) -> str:
    if name != name.strip():
        return "names are exact: write {{NAME}} without spaces inside the braces"
    return f"set {name}=... in the including section (the lines after [name@file.ini.tpl])"


def _predicate(node: _If, op: str, params: Mapping[str, str]) -> bool:
    if op == "exists":
        return node.var in params
    if op == "not_exists":
        return node.var not in params
    if node.var not in params:
        raise _error(f"undefined variable {node.var} in an if statement", node)
    if op == "==":
        return params[node.var] == node.value
    if op == "!=":
        return params[node.var] != node.value
    raise _error(f"unknown operator {node.op!r} in an if statement", node, hint="operators: == != exists not_exists")


def _range_bound(text: str, params: Mapping[str, str], node: _For) -> float:
    value = params.get(text, text)
    if not _CPP_DOUBLE.fullmatch(value.lstrip(_CPP_SPACE)):
        raise _error(f"unreadable loop range value {value!r}", node)
    return float(value)


def _block_params(params: Mapping[str, str], var: str, index: int) -> dict[str, str]:
    """The parameters inside one block repetition: ARR[i].P visible as .P, and # = i."""
    prefix = f"{var}[{index}]"
    inner = dict(params)
    inner["#"] = str(index)
    for name, value in params.items():
        if name.startswith(prefix):
            inner[name[len(prefix):]] = value
    return inner


def cpp_double_text(value: float) -> str:
    """How ``std::ostream << double`` prints a number by default (``%g``: 3, 0.5, 1e+06)."""
    return "%g" % value


def _fragments_to_lines(fragments: list[tuple[str, str, int, bool]], path: str) -> list[SourceLine]:
    """Split rendered text into lines, each tagged with the template line of its first character."""
    lines: list[SourceLine] = []
    parts: list[str] = []
    origin: tuple[str, int] | None = None
    last = (path, 1)
    for text, file, line, literal in fragments:
        for k, piece in enumerate(text.split("\n")):
            here = (file, line + k if literal else line)
            if k > 0:
                lines.append(SourceLine("".join(parts), *(origin or last)))
                parts, origin = [], None
            if piece:
                origin = origin or here
                parts.append(piece)
            last = here
    if parts:                                   # std::getline: no empty line after a final newline
        lines.append(SourceLine("".join(parts), *(origin or last)))
    return lines


def render_template(path: str, params: Mapping[str, str], roots: list[str] | None = None) -> list[SourceLine]:
    """Render a template file with ``params``; the INI lines it produces, with their origins.  ``roots`` as
    in :func:`parse_template` (the INI parser passes its own, built from the environment it was given)."""
    renderer = _Renderer()
    try:
        renderer.render(parse_template(path, roots), dict(params))
    except RecursionError:
        raise IRCError("the template nests its statements too deeply", file=path) from None
    return _fragments_to_lines(renderer.fragments, path)
