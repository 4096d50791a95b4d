"""The N2D2 INI dialect, read the way N2D2's ``IniParser`` reads it (``src/utils/IniParser.cpp``).

Lines, in N2D2's order: a UTF-8 BOM is dropped from any line; a raw line ending
in ``\\`` is joined to the next with nothing inserted (so ``\\`` followed by a
space, a comment or a CR does not continue); ``;`` and ``#`` start a comment
anywhere outside double quotes (an unclosed quote is an error); the line is
trimmed.  ``[name] base1 base2`` (or ``[name]base``) opens a section that copies
its bases' properties (the first base wins, its own lines override); the bases
must already exist and a section cannot be defined twice.  ``[name@file.ini.tpl]``
includes a template, rendered at the next section header with the section's
resolved properties.  ``key=value`` splits at the first ``=``; a value wrapped in
double quotes loses them; a repeated key is a warning and the last one wins.
Properties before any header belong to the global section ``""``; keys starting
with ``$`` are variables.

Values are resolved each time they are read, in N2D2's order: ``[section]prop``
references (left alone when no such section exists), ``${NAME}`` variables
(``${SECTION_NAME}``, ``${PREV_SECTION_NAME}``, ``$NAME`` of the section being
read, then of the global section, else left alone), then ``$(expr)`` arithmetic,
evaluated by :mod:`.expr` -- never by Python's ``eval``.  Environment variables
``${VAR}`` are expanded only in paths (:meth:`IniDocument.get_path`), as N2D2
does for its path-like keys.

Every read marks the key read, so the next layer can apply N2D2's unknown-key
rules through :meth:`IniDocument.unread`.  Every error is an
:class:`~irc.errors.IRCError` naming the file and line it comes from.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

from irc.errors import IRCError
from irc.limits import MAX_TEXT_BYTES

from .expr import evaluate
from .template import SourceLine, render_template

T = TypeVar("T")

PARENT_KEY = "$PARENT_SECTION_NAME"
_CPP_SPACE = " \t\n\v\f\r"                      # what C's isspace() accepts
_CPP_SPACE_RE = re.compile(r"[ \t\n\v\f\r]")
_DIGITS = r"(?:\d{1,3}(?:,\d{3})+|\d+)"          # ',' groups thousands, as in N2D2's stream locale
_INT_RE = re.compile(rf"[+-]?{_DIGITS}")
_FLOAT_RE = re.compile(rf"[+-]?(?:{_DIGITS}(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_SPREAD_RE = re.compile(rf"({_FLOAT_RE.pattern})(%?)")
_ENV_RE = re.compile(r"\$\{([^}]*)\}")
_COMMENT_OR_QUOTE_RE = re.compile(r'["#;]')
_MAX_SUBSTITUTIONS = 10_000
_MAX_CHAIN = 100                 # properties referring to properties referring to ... in one value
_MAX_RESOLUTIONS = 100_000       # property resolutions in one read, nested ones included
_MAX_VALUE_CHARS = 1_000_000     # a resolved value's length
_MAX_TEMPLATE_DEPTH = 16
_LIST_HINT = "N2D2 separates list items with spaces; ',' is its thousands separator (1,000,000)"


class _Required:
    """The default of getters whose key must be present."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class IniWarning(UserWarning):
    """Something N2D2 only warns about (a key set twice, a template found by a fallback)."""


@dataclass(frozen=True)
class Property:
    """A property as written: its raw (unresolved) text and where it was written.

    Properties that N2D2 computes (:meth:`IniDocument.set`) have no file or line.
    """

    raw: str
    file: str | None = None
    line: int | None = None


@dataclass
class Section:
    """One ``[name]`` section; ``properties`` holds inherited ones too, in N2D2's copy order."""

    name: str
    bases: list[str] = field(default_factory=list)
    file: str | None = None
    line: int | None = None
    properties: dict[str, Property] = field(default_factory=dict)
    template: str | None = None      # the .ini.tpl this section was generated from
    parent: str | None = None        # for a generated section: the section that included the template
    includes: str | None = None      # for [name@file.ini.tpl]: the template it includes, as written


class _Unreadable(ValueError):
    """A value does not parse as the requested type."""


@dataclass(frozen=True)
class _Origin:
    """Where a value being resolved was written, for its error messages."""

    file: str
    line: int | None
    section: str
    parent: str | None       # the including section, when the section came from a template

    def error(self, message: str, hint: str | None = None) -> IRCError:
        return IRCError(message + self.note(), file=self.file, line=self.line, hint=hint)

    def note(self) -> str:
        """One template line serves every block it is included for: say which one."""
        if self.parent is None:
            return ""
        return f" (in [{self.section}], from the template included by [{self.parent}])"


class _DocumentPath(str):
    """The INI file name, which can also be called: ``doc.path(section, key)`` is :meth:`IniDocument.get_path`.

    The API names both the file (``doc.path``) and the path getter
    (``doc.path(section, key)``); a str that is also callable serves both.
    """

    def __new__(cls, file: str, document: "IniDocument | None" = None) -> "_DocumentPath":
        self = super().__new__(cls, file)
        self._document = document
        return self

    def __call__(self, section: str, key: str, default: Any = REQUIRED) -> str:
        if self._document is None:
            raise TypeError("this path is not attached to an INI document")
        return self._document.get_path(section, key, default)

    def __reduce__(self):
        return (str, (str(self),))


# =================================================================== the document
class IniDocument:
    """A parsed INI file: sections in file order (templates expanded in place), lazily resolved values."""

    def __init__(self, path: str, env: Mapping[str, str] | None = None):
        self.path = _DocumentPath(path, self)
        self.env: dict[str, str] = dict(os.environ if env is None else env)
        self.sections: dict[str, Section] = {"": Section("", file=str(path))}
        self.warnings: list[str] = []
        self._read: dict[str, set[str]] = {}
        self._memo: dict[tuple[str, str, str], str] | None = None   # resolutions within one read
        self._resolutions = 0

    # ------------------------------------------------------------- structure
    def has(self, section: str) -> bool:
        return section in self.sections

    def keys(self, section: str, variables: bool = False) -> list[str]:
        """Own and inherited keys in order; ``$VARIABLES`` only when asked for."""
        return [k for k in self._section(section).properties if variables or not k.startswith("$")]

    def has_key(self, section: str, key: str) -> bool:
        return section in self.sections and key in self.sections[section].properties

    def keys_matching(self, section: str, pattern: str) -> list[str]:
        """Keys matching an N2D2 wildcard (``*``, ``?``), e.g. ``Mapping.*`` (``IniParser::isProperty``)."""
        matches = wildcard(pattern)
        return [k for k in self.keys(section, variables=True) if matches(k)]

    def where(self, section: str, key: str) -> tuple[str, int | None]:
        """(file, line) of a property -- or of its section's header when it was computed or is absent."""
        sec = self._section(section)
        prop = sec.properties.get(key)
        if prop is not None and prop.file is not None:
            return prop.file, prop.line
        return (sec.file or str(self.path)), sec.line

    def sections_matching(self, pattern: str) -> list[str]:
        """Named sections matching an N2D2 wildcard (``*``, ``?``), in file order."""
        matches = wildcard(pattern)
        return [name for name in self.sections if name and matches(name)]

    def unread(self, section: str) -> list[str]:
        """Keys never read (``$VARIABLES`` and computed ones count as read), in order."""
        read = self._read.get(section, set())
        return [k for k in self.keys(section) if k not in read]

    def mark_read(self, section: str, pattern: str = "*") -> None:
        """Mark keys read without reading them (N2D2's ``ignoreProperty``, or ``getSection``'s side effect)."""
        self._read.setdefault(section, set()).update(self.keys_matching(section, pattern))

    # ------------------------------------------------------------- writing
    def set(self, section: str, key: str, value: Any) -> None:
        """A property N2D2 computes while building (``_NbOutputs``, ``_EpochSize``...), visible to references.

        Numbers are written as N2D2's ``setProperty`` writes them (``std::showpoint``:
        ``64``, ``0.500000``); a missing section is created, as ``currentSection`` does.
        """
        if section not in self.sections:
            self.sections[section] = Section(section, file=str(self.path))
        self.sections[section].properties[key] = Property(_cpp_showpoint(value))
        self._read.setdefault(section, set()).add(key)

    # ------------------------------------------------------------- reading
    def value(self, section: str, key: str, default: Any = REQUIRED) -> str:
        """The fully resolved text of a property (references, variables, arithmetic)."""
        if not self.has_key(section, key):
            return self._absent(section, key, default)
        self._read.setdefault(section, set()).add(key)
        if self._memo is not None:                       # a nested read (a typed getter inside a resolution)
            return self._resolve_property(section, section, key, ())
        self._memo, self._resolutions = {}, 0
        try:
            return self._resolve_property(section, section, key, ())
        finally:
            self._memo = None

    def items(self, section: str) -> dict[str, str]:
        """Every property resolved, all marked read (N2D2's ``getSection``, used for ConfigSection)."""
        resolved = {k: self.value(section, k) for k in self.keys(section)}
        self.mark_read(section)
        return resolved

    def get_str(self, section: str, key: str, default: Any = REQUIRED) -> str:
        return self.value(section, key, default)

    def get_int(self, section: str, key: str, default: Any = REQUIRED) -> int:
        return self._typed(section, key, default, parse_int, "an integer")

    def get_uint(self, section: str, key: str, default: Any = REQUIRED) -> int:
        return self._typed(section, key, default, parse_uint, "a non-negative integer")

    def get_float(self, section: str, key: str, default: Any = REQUIRED) -> float:
        return self._typed(section, key, default, parse_float, "a number")

    def get_bool(self, section: str, key: str, default: Any = REQUIRED) -> bool:
        return self._typed(section, key, default, parse_bool, "0 or 1")

    def get_ints(self, section: str, key: str, default: Any = REQUIRED) -> list[int]:
        return self._typed(section, key, default, lambda t: parse_list(t, parse_int),
                           "integers separated by spaces")

    def get_floats(self, section: str, key: str, default: Any = REQUIRED) -> list[float]:
        return self._typed(section, key, default, lambda t: parse_list(t, parse_float),
                           "numbers separated by spaces")

    def get_spread(self, section: str, key: str, default: Any = REQUIRED) -> tuple[float, float, bool]:
        """A ``ParameterWithSpread``: ``value`` or ``"value; spread"`` (spread may end in ``%``)."""
        return self._typed(section, key, default, parse_spread, 'a value or "value; spread[%]"')

    def get_list(self, section: str, key: str, default: Any = REQUIRED, separator: str = ",") -> list[str]:
        """A name list such as ``Input=a,b`` or ``ConfigSection=a,b``: split, not trimmed (``Utils::split``)."""
        if not self.has_key(section, key):
            return self._absent(section, key, default)
        return self.value(section, key).split(separator)

    def get_path(self, section: str, key: str, default: Any = REQUIRED) -> str:
        """A path-like property: ``${VAR}`` from the environment (unset: empty), relative to the INI's folder."""
        if not self.has_key(section, key):
            return self._absent(section, key, default)
        text = self.expand_env(self.value(section, key))
        if not text or os.path.isabs(text):
            return text
        return os.path.join(os.path.dirname(str(self.path)), text)

    def expand_env(self, text: str) -> str:
        """N2D2's ``Utils::expandEnvVars``: ``${VAR}`` becomes the variable's value, or nothing."""
        return _ENV_RE.sub(lambda m: self.env.get(m.group(1), ""), text)

    # ------------------------------------------------------------- helpers
    def _section(self, section: str) -> Section:
        if section not in self.sections:
            raise IRCError(f"no section [{section}]", file=str(self.path),
                           hint=f"sections: {', '.join(n for n in self.sections if n) or '(none)'}")
        return self.sections[section]

    def _absent(self, section: str, key: str, default: Any) -> Any:
        if default is not REQUIRED:
            return default
        sec = self._section(section)
        raise IRCError(f"[{section}] has no {key}", file=sec.file or str(self.path), line=sec.line,
                       hint=f"add {key}=... to [{section}]")

    def _typed(self, section: str, key: str, default: Any, parse: Callable[[str], T], expected: str) -> T:
        if not self.has_key(section, key):
            return self._absent(section, key, default)
        text = self.value(section, key)
        try:
            return parse(text)
        except _Unreadable as e:
            reason = f" ({e})" if str(e) else ""
            raise self._origin(section, key).error(f"[{section}] {key}: expected {expected}, got {text!r}{reason}",
                                                   _typed_hint(text)) from None

    # ------------------------------------------------------------- resolution
    def _origin(self, owner: str, key: str) -> _Origin:
        file, line = self.where(owner, key)
        return _Origin(file, line, owner, self.sections[owner].parent)

    def _resolve_property(self, context: str, owner: str, key: str, chain: tuple[tuple[str, str], ...]) -> str:
        """Resolve ``[owner] key`` as read from section ``context`` (N2D2 resolves in the reader's context)."""
        link = (owner, key)
        origin = self._origin(owner, key)
        if link in chain:
            cycle = " -> ".join(f"[{s}]{k}" for s, k in chain + (link,))
            raise origin.error(f"circular reference: {cycle}")
        if len(chain) >= _MAX_CHAIN:
            raise origin.error(f"references are nested more than {_MAX_CHAIN} deep")
        memo_key = (context, owner, key)
        if self._memo is not None and memo_key in self._memo:    # the same property, read again in one value
            return self._memo[memo_key]
        self._resolutions += 1
        if self._resolutions > _MAX_RESOLUTIONS:
            raise origin.error(f"reading this value resolves more than {_MAX_RESOLUTIONS:,} properties")
        raw = self.sections[owner].properties[key].raw
        text = self._resolve(raw, context, origin, chain + (link,))
        if self._memo is not None:
            self._memo[memo_key] = text
        return text

    def _resolve(self, text: str, context: str, origin: _Origin,
                 chain: tuple[tuple[str, str], ...]) -> str:
        text = self._substitute_references(text, context, origin, chain)
        text, complete = self._substitute_variables(text, context, origin, chain)
        if not complete:                 # N2D2 stops at a `${` with no `}`: no arithmetic either
            return text
        return _substitute_expressions(text, origin)

    def _substitute_references(self, text: str, context: str, origin: _Origin,
                               chain: tuple[tuple[str, str], ...]) -> str:
        """``[section]prop`` -> that property's value; text in brackets that is no section stays."""
        pos = 0
        for _ in range(_MAX_SUBSTITUTIONS):
            start = text.find("[", pos)
            close = text.find("]", start + 1) if start >= 0 else -1
            if close < 0:
                return text
            name = text[start + 1:close]
            if name not in self.sections:
                pos = start + 1
                continue
            space = _CPP_SPACE_RE.search(text, close + 1)
            end = space.start() if space else len(text)
            key = text[close + 1:end]
            if key not in self.sections[name].properties:
                raise origin.error(f"[{name}]{key}: section [{name}] has no property {key!r}",
                                   _reference_hint(name, key))
            text = text[:start] + self._resolve_property(context, name, key, chain) + text[end:]
            _check_length(text, origin)
        raise origin.error("too many [section]property substitutions")

    def _substitute_variables(self, text: str, context: str, origin: _Origin,
                              chain: tuple[tuple[str, str], ...]) -> tuple[str, bool]:
        """``${NAME}`` -> its value; unknown names stay.  False when a ``${`` is never closed."""
        pos = 0
        for _ in range(_MAX_SUBSTITUTIONS):
            start = text.find("${", pos)
            if start < 0:
                return text, True
            end = text.find("}", start + 2)
            if end < 0:
                return text, False
            found = self._variable(text[start + 2:end], context, chain)
            if found is None:
                pos = end + 1
                continue
            text = text[:start] + found + text[end + 1:]
            _check_length(text, origin)
        raise origin.error("too many ${variable} substitutions")

    def _variable(self, name: str, context: str, chain: tuple[tuple[str, str], ...]) -> str | None:
        if name == "SECTION_NAME":
            return context
        if name == "PREV_SECTION_NAME":
            return self._previous_section(context)
        for owner in (context, ""):
            if "$" + name in self.sections[owner].properties:
                return self._resolve_property(context, owner, "$" + name, chain)
        return None

    def _previous_section(self, context: str) -> str:
        """The section before ``context``, skipping the including section of a generated one."""
        names = list(self.sections)
        index = names.index(context)
        if index == 0:
            return ""
        parent = self.sections[context].properties.get(PARENT_KEY)
        if parent is not None and parent.raw == names[index - 1] and index >= 2:
            return names[index - 2]
        return names[index - 1]

    # ------------------------------------------------------------- warnings
    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        warnings.warn(message, IniWarning, stacklevel=4)


# =================================================================== resolution helpers
def _check_length(text: str, origin: _Origin) -> None:
    if len(text) > _MAX_VALUE_CHARS:
        raise origin.error(f"the value grows longer than {_MAX_VALUE_CHARS:,} characters")


def _substitute_expressions(text: str, origin: _Origin) -> str:
    """``$(expr)`` -> its value, parentheses matched the way N2D2 matches them."""
    pos = 0
    for _ in range(_MAX_SUBSTITUTIONS):
        start = text.find("$(", pos)
        if start < 0:
            return text
        end = _closing_parenthesis(text, start)
        if end < 0:
            return text
        result = _evaluate_at(text[start + 2:end], origin)
        text = text[:start] + result + text[end + 1:]
        pos = start
    raise origin.error("too many $(...) substitutions")


def _evaluate_at(expression: str, origin: _Origin) -> str:
    """The printed value of ``$(expression)`` (trimmed, as N2D2 trims the interpreter's output)."""
    try:
        return evaluate(expression, file=origin.file, line=origin.line).strip(_CPP_SPACE)
    except IRCError as e:
        e.message += origin.note()
        e.args = (e.format(),)
        raise


def _closing_parenthesis(text: str, start: int) -> int:
    """The ``)`` that closes ``$(`` at ``start``: each ``(`` before a ``)`` pushes it one further."""
    next_open = text.find("(", start + 2)
    close = text.find(")", start + 2)
    while next_open >= 0 and close >= 0 and next_open < close:
        next_open = text.find("(", next_open + 1)
        close = text.find(")", close + 1)
    return close


def _reference_hint(section: str, key: str) -> str:
    if key.startswith("_"):
        return f"N2D2 writes {key} into [{section}] while it builds the network; it exists once that layer is built"
    return f"add {key}=... to [{section}], or fix the reference"


def wildcard(pattern: str) -> Callable[[str], bool]:
    """N2D2's ``Utils::match``: ``*`` any run, ``?`` one character, everything else literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    compiled = re.compile(regex, re.S)
    return lambda name: compiled.fullmatch(name) is not None


def _cpp_showpoint(value: Any) -> str:
    """``stream << std::showpoint << value`` for the types N2D2 sets; strings as they are."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "%#g" % value
    return str(value)


# =================================================================== typed parsing
def _number_body(text: str) -> str:
    """``>>`` skips leading whitespace; trailing text (even a space) is left unread, hence an error."""
    return text.lstrip(_CPP_SPACE)


def parse_int(text: str) -> int:
    """An integer as N2D2's stream reads it: optional sign, ',' thousands groups, nothing after."""
    body = _number_body(text)
    if not _INT_RE.fullmatch(body):
        raise _Unreadable()
    return int(body.replace(",", ""))


def parse_uint(text: str) -> int:
    """An unsigned integer: N2D2 refuses a leading '-' (``Utils::signChecked``)."""
    if _number_body(text).startswith("-"):
        raise _Unreadable("negative")
    return parse_int(text)


def parse_float(text: str) -> float:
    body = _number_body(text)
    if not _FLOAT_RE.fullmatch(body):
        raise _Unreadable()
    value = float(body.replace(",", ""))
    if value in (float("inf"), float("-inf")):
        raise _Unreadable("out of range")
    return value


def parse_bool(text: str) -> bool:
    """N2D2 reads bool without ``boolalpha``: the integers 0 and 1 only."""
    value = parse_int(text)
    if value not in (0, 1):
        raise _Unreadable()
    return bool(value)


def parse_list(text: str, item: Callable[[str], T]) -> list[T]:
    """A whitespace-separated list, every item read whole."""
    return [item(token) for token in _CPP_SPACE_RE.split(text) if token]


def parse_spread(text: str) -> tuple[float, float, bool]:
    """``value`` -> (value, 0, True); ``value; spread`` -> (value, spread, spread ended in %)."""
    parts = text.split(";")
    if len(parts) == 1:
        return parse_float(text), 0.0, True
    if len(parts) > 2:
        raise _Unreadable("the 'value; mean; spread' form is not supported")
    value = parse_float(parts[0].rstrip(_CPP_SPACE))
    match = _SPREAD_RE.fullmatch(parts[1].lstrip(_CPP_SPACE))
    if match is None:
        raise _Unreadable("bad spread")
    return value, parse_float(match.group(1)), match.group(2) == "%"


def _typed_hint(text: str) -> str | None:
    if "," in text:
        return _LIST_HINT
    if text.strip().lower() in ("true", "false", "yes", "no"):
        return "N2D2 reads booleans as 0 or 1"
    return None


# =================================================================== loading
def _read_lines(path: str) -> list[SourceLine]:
    """The file's lines as ``std::getline`` gives them: split on LF only, no empty line after the last LF."""
    try:
        MAX_TEXT_BYTES.check(os.path.getsize(path), "the INI file", file=path)
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            text = f.read()
    except OSError as e:
        raise IRCError(f"cannot read the INI file ({e.strerror})", file=path) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [SourceLine(line, path, number) for number, line in enumerate(lines, 1)]


def _logical_lines(lines: Iterable[SourceLine]) -> Iterator[SourceLine]:
    """BOM removal, ``\\`` continuation, comments and trimming; empty lines dropped."""
    pending: SourceLine | None = None
    for physical in lines:
        text = physical.text[1:] if physical.text.startswith("\ufeff") else physical.text
        if text.endswith("\\"):
            start = pending or physical
            pending = SourceLine((pending.text if pending else "") + text[:-1], start.file, start.line)
            continue
        origin = pending or physical
        if pending is not None:
            text, pending = pending.text + text, None
        text = _strip_comment(text, origin).strip(_CPP_SPACE)
        if text:
            yield SourceLine(text, origin.file, origin.line)
    # like N2D2, a continuation on the very last line is dropped


def _strip_comment(text: str, origin: SourceLine) -> str:
    """Cut at the first ``;`` or ``#`` outside a pair of double quotes."""
    pos = 0
    while True:
        match = _COMMENT_OR_QUOTE_RE.search(text, pos)
        if match is None:
            return text
        if match.group() != '"':
            return text[:match.start()]
        close = text.find('"', match.end())
        if close < 0:
            raise IRCError("malformed property: a double quote is never closed", file=origin.file, line=origin.line,
                           hint='close the quote; outside "..." a ; or # starts a comment')
        pos = close + 1


@dataclass
class _Header:
    name: str
    bases: list[str]
    template: str | None


def _parse_header(text: str) -> _Header | None:
    """``[name] base...`` / ``[name@file.ini.tpl]``, or None when the line is not a header."""
    close = text.find("]")
    if not text.startswith("[") or close < 0:
        return None
    name = text[1:close]
    bases = [b for b in re.split(r"[ \t]", text[close + 1:]) if b]
    parts = [p for p in name.split("@") if p]
    if len(parts) == 2:
        return _Header(parts[0], bases, parts[1])
    return _Header(name, bases, None)


@dataclass
class _PendingTemplate:
    section: str
    spec: str
    header: SourceLine


class _Loader:
    """Feeds lines into a document as ``IniParser::load`` does; templates load through a nested loader."""

    def __init__(self, doc: IniDocument, depth: int = 0):
        self.doc = doc
        self.depth = depth

    def load(self, lines: Iterable[SourceLine], parent: str | None = None, template: str | None = None) -> None:
        current = ""
        pending: _PendingTemplate | None = None
        for line in _logical_lines(lines):
            header = _parse_header(line.text)
            if header is None:
                self._add_property(current, line)
                continue
            if pending is not None:
                self._expand(pending)
            current = self._open_section(header, line, parent, template)
            pending = _PendingTemplate(current, header.template, line) if header.template else None
        if pending is not None:
            self._expand(pending)

    def _open_section(self, header: _Header, line: SourceLine, parent: str | None, template: str | None) -> str:
        doc, name = self.doc, header.name
        if name in doc.sections:
            first = doc.sections[name]
            where = f" (first at {first.file}:{first.line})" if first.line is not None else ""
            raise IRCError(f"section [{name}] is defined twice{where}", file=line.file, line=line.line,
                           hint="section names must be unique (they are case-sensitive)")
        section = Section(name, list(header.bases), line.file, line.line, template=template, parent=parent,
                          includes=header.template)
        for base in header.bases:
            if base not in doc.sections:
                raise IRCError(f"[{name}] inherits from [{base}], which is not defined before it", file=line.file,
                               line=line.line, hint="a section can only inherit from sections above it")
            for key, prop in doc.sections[base].properties.items():
                section.properties.setdefault(key, prop)       # std::map::insert: the first base wins
        if parent is not None:
            section.properties[PARENT_KEY] = Property(parent, line.file, line.line)
        doc.sections[name] = section
        return name

    def _add_property(self, current: str, line: SourceLine) -> None:
        eq = line.text.find("=")
        if eq < 0:
            raise IRCError(f"missing value for property {line.text!r}", file=line.file, line=line.line,
                           hint="properties are written key=value")
        key = line.text[:eq].rstrip(_CPP_SPACE)
        value = line.text[eq + 1:].lstrip(_CPP_SPACE)
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        section = self.doc.sections[current]
        previous = section.properties.get(key)
        if previous is not None and not self._inherited(section, key, previous):
            self.doc._warn(f"{line.file}:{line.line}: [{current}] {key} is set again (was {previous.raw!r} at "
                           f"line {previous.line}); the last value wins")
        section.properties[key] = Property(value, line.file, line.line)

    def _inherited(self, section: Section, key: str, prop: Property) -> bool:
        """Whether ``prop`` is the copy of a base's property (overriding it is what inheritance is for)."""
        return any(self.doc.sections[base].properties.get(key) is prop for base in section.bases)

    # ------------------------------------------------------------- templates
    def _expand(self, pending: _PendingTemplate) -> None:
        """Render ``[name@file.ini.tpl]``'s template with the section's properties and load the result."""
        if self.depth >= _MAX_TEMPLATE_DEPTH:
            raise IRCError("templates include each other too deeply", file=pending.header.file,
                           line=pending.header.line)
        path = self._template_path(pending)
        params = self._template_parameters(pending.section, path)
        try:
            roots = include_roots(os.path.dirname(str(self.doc.path)), self.doc.env)
            lines = render_template(path, params, roots)
            _Loader(self.doc, self.depth + 1).load(lines, parent=pending.section, template=path)
        except IRCError as e:
            raise _in_template(e, pending) from None

    def _template_path(self, pending: _PendingTemplate) -> str:
        """The template file: ``${VAR}`` from the environment, relative to the INI file's folder, and inside
        the folders irc may read (check_include)."""
        expanded = self.doc.expand_env(pending.spec)
        folder = os.path.dirname(str(self.doc.path))
        path = expanded if os.path.isabs(expanded) else os.path.join(folder, expanded)
        if os.path.isfile(path):
            check_include(path, include_roots(folder, self.doc.env), f"template {pending.spec!r}",
                          file=pending.header.file, line=pending.header.line)
            return path
        unset = [v for v in _ENV_RE.findall(pending.spec) if not self.doc.env.get(v)]
        beside = os.path.join(folder, os.path.basename(expanded))
        if unset and os.path.isfile(beside):
            self.doc._warn(f"{pending.header.file}:{pending.header.line}: ${{{unset[0]}}} is not set; using the "
                           f"template next to the INI file ({beside})")
            return beside
        hint = (f"set {', '.join(unset)} (unset variables expand to nothing)" if unset
                else "a relative template path is looked up in the INI file's folder")
        raise IRCError(f"template {pending.spec!r} not found ({path})", file=pending.header.file,
                       line=pending.header.line, hint=hint)

    def _template_parameters(self, section: str, path: str) -> dict[str, str]:
        params = {"SECTION_NAME": section, "SECTION_FILE_NAME": path}
        for key in self.doc.keys(section, variables=True):
            params[key] = self.doc._resolve_property(section, section, key, ())
        return params


INCLUDE_PATH_ENV = "IRC_INI_INCLUDE_PATH"
"""Folders (separated by os.pathsep) besides the INI file's own from which templates may be included."""


def include_roots(ini_folder: str, env: Mapping[str, str]) -> list[str]:
    """Where templates may come from: the INI file's folder, $N2D2_MODELS (N2D2's own template folder, when
    the user set it) and the folders in $IRC_INI_INCLUDE_PATH."""
    extra = [p for p in str(env.get(INCLUDE_PATH_ENV, "")).split(os.pathsep) if p]
    models = [env["N2D2_MODELS"]] if env.get("N2D2_MODELS") else []
    return [ini_folder or ".", *models, *extra]


def check_include(path: str, roots: list[str], what: str, file: str | None = None, line: int | None = None) -> None:
    """Refuse a file outside every root (symlinks resolved): a model must not make irc read /etc/passwd."""
    real = os.path.realpath(path)
    for root in roots:
        top = os.path.realpath(root)
        if os.path.commonpath([real, top]) == top:
            return
    raise IRCError(f"{what} resolves to {real}, outside the model's folder ({os.path.realpath(roots[0])}); irc "
                   "includes only files from there", file=file, line=line,
                   hint=f"if you trust the file, add its folder to {INCLUDE_PATH_ENV} (several separated by "
                   f"{os.pathsep!r})")


def _in_template(error: IRCError, pending: _PendingTemplate) -> IRCError:
    """Add which section included the template to an error raised inside it."""
    note = f"in the template included by [{pending.section}]"
    if note not in error.message:
        error.message += f" ({note} at {pending.header.file}:{pending.header.line})"
        error.args = (error.format(),)
    return error


def parse_ini(path: str, env: Mapping[str, str] | None = None) -> IniDocument:
    """Read an N2D2 INI file; ``env`` (default ``os.environ``) expands ``${VAR}`` in paths."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise IRCError("INI file not found", file=path)
    doc = IniDocument(path, env)
    _Loader(doc).load(_read_lines(path))
    return doc
