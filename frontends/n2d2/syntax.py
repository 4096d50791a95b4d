"""The N2D2 INI dialect, read as N2D2's IniParser reads it (src/utils/IniParser.cpp).

Lines: a UTF-8 BOM is dropped; a line whose last character is ``\\`` continues
on the next with nothing inserted; ``;`` and ``#`` start a comment anywhere
outside double quotes; ``[name] base1 base2`` opens a section inheriting its
bases' properties; ``[name@file.ini.tpl]`` includes a template rendered with
the section's properties; ``key=value`` (quotes stripped).

Values are resolved when read, in N2D2's order: ``[section]property``
references, ``${NAME}`` variables (``$NAME`` properties of the section, then of
the global section), then ``$(...)`` arithmetic (evaluated by irc, never by
Python's eval).  Environment variables are expanded only in paths.  Every
error names the file and line.
"""
from __future__ import annotations

import fnmatch
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Mapping

from irc.errors import IRCError

from .expr import evaluate
from .template import load_template

REQUIRED = object()
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?([eE][+-]?\d+)?")
_ENV = re.compile(r"\$\{([^}]*)\}")
_COMMENT = re.compile(r'["#;]')
_SPACE = re.compile(r"[ \t\n\v\f\r]")


@dataclass
class Property:
    raw: str
    file: str
    line: int


@dataclass
class Section:
    name: str
    file: str
    line: int
    bases: list[str] = field(default_factory=list)
    properties: dict[str, Property] = field(default_factory=dict)
    template: str | None = None
    parent: str | None = None


class IniDocument:
    """A parsed INI file: sections in file order, lazily resolved values, read tracking."""

    def __init__(self, path: str, env: Mapping[str, str] | None = None):
        self.path = path
        self.env = dict(os.environ if env is None else env)
        self.sections: dict[str, Section] = {"": Section("", path, 0)}
        self._computed: dict[tuple[str, str], str] = {}
        self._read: dict[str, set[str]] = {}
        self._current = ""

    # ------------------------------------------------------------ loading
    def _load(self, text: str, file: str, parent: str | None = None, line_offset: int = 0) -> None:
        pending_template: tuple[str, str, int] | None = None
        current = ""
        buffer, buffer_line = "", None
        for lineno, raw in enumerate(text.split("\n"), 1 + line_offset):
            if raw.startswith("\ufeff"):
                raw = raw[1:]
            if raw.endswith("\\"):
                if buffer_line is None:
                    buffer_line = lineno
                buffer += raw[:-1]
                continue
            line = buffer + raw
            start = buffer_line or lineno
            buffer, buffer_line = "", None
            line = self._strip_comment(line, file, start).strip()
            if not line:
                continue
            close = line.find("]")
            if line.startswith("[") and close > 0:
                if pending_template:
                    self._include(*pending_template)
                    pending_template = None
                name = line[1:close]
                bases = line[close + 1:].split()
                template = None
                if "@" in name:
                    name, template = name.split("@", 1)
                if name in self.sections:
                    raise IRCError(f"section [{name}] is defined twice", file=file, line=start)
                section = Section(name, file, start, bases, template=template, parent=parent)
                for base in bases:
                    if base not in self.sections:
                        raise IRCError(f"inherited section [{base}] of [{name}] does not exist (yet)", file=file,
                                       line=start)
                    section.properties.update(self.sections[base].properties)
                if parent is not None:
                    section.properties["$PARENT_SECTION_NAME"] = Property(parent, file, start)
                self.sections[name] = section
                current = name
                if template is not None:
                    pending_template = (name, template, start)
                continue
            eq = line.find("=")
            if eq < 0:
                raise IRCError(f"missing value for property {line!r} (expected key=value)", file=file, line=start)
            key, value = line[:eq].rstrip(), line[eq + 1:].lstrip()
            if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                value = value[1:-1]
            props = self.sections[current].properties
            if key in props and props[key].file == file and props[key].line != start and not key.startswith("$"):
                warnings.warn(f"{file}:{start}: [{current}] {key} is set twice; the last value wins", stacklevel=4)
            props[key] = Property(value, file, start)
        # like N2D2, a continuation on the very last line is dropped
        if pending_template:
            self._include(*pending_template)

    def _strip_comment(self, line: str, file: str, lineno: int) -> str:
        pos = 0
        while True:
            m = _COMMENT.search(line, pos)
            if m is None:
                return line
            if m.group() == '"':
                end = line.find('"', m.end())
                if end < 0:
                    raise IRCError("malformed property: a quote is not closed", file=file, line=lineno)
                pos = end + 1
            else:
                return line[:m.start()]

    def _include(self, section: str, template: str, line: int) -> None:
        sec = self.sections[section]
        path = self._template_path(template, sec.file, line)
        params = {"SECTION_NAME": section, "SECTION_FILE_NAME": path}
        for key in sec.properties:
            params[key] = self.value(section, key)
        rendered = load_template(path).render(params)
        try:
            self._load(rendered, path, parent=section)
        except IRCError as e:
            if "included by" not in e.message:
                e.message += f" (in the template included by [{section}] at {os.path.basename(sec.file)}:{line})"
                e.args = (e.format(),)
            raise

    def _template_path(self, template: str, including: str, line: int) -> str:
        expanded = self.expand_env(template)
        base = os.path.dirname(including)
        path = expanded if os.path.isabs(expanded) else os.path.join(base, expanded)
        if not os.path.exists(path):
            beside = os.path.join(base, os.path.basename(expanded))
            if os.path.exists(beside):
                return beside  # ${N2D2_MODELS}/x.ini.tpl with N2D2_MODELS unset: the template next to the INI
            raise IRCError(f"template {template!r} not found ({path})", file=including, line=line,
                           hint="set the environment variable it names (e.g. N2D2_MODELS)")
        return path

    # ------------------------------------------------------------ lookups
    def has(self, section: str) -> bool:
        return section in self.sections

    def keys(self, section: str) -> list[str]:
        own = list(self._section(section).properties)
        return own + [k for (s, k) in self._computed if s == section and k not in own]

    def has_key(self, section: str, key: str) -> bool:
        return section in self.sections and (key in self.sections[section].properties
                                             or (section, key) in self._computed)

    def where(self, section: str, key: str) -> tuple[str, int | None]:
        sec = self._section(section)
        prop = sec.properties.get(key)
        return (prop.file, prop.line) if prop else (sec.file, sec.line)

    def set(self, section: str, key: str, value: str) -> None:
        self._section(section)
        self._computed[(section, key)] = str(value)

    def unread(self, section: str) -> list[str]:
        read = self._read.get(section, set())
        return [k for k in self._section(section).properties if k not in read and not k.startswith("$")]

    def sections_matching(self, pattern: str) -> list[str]:
        return [s for s in self.sections if s and fnmatch.fnmatchcase(s, pattern)]

    def _section(self, section: str) -> Section:
        if section not in self.sections:
            raise IRCError(f"no section [{section}]", file=self.path)
        return self.sections[section]

    def _raw(self, section: str, key: str) -> tuple[str, str, int]:
        sec = self._section(section)
        if key in sec.properties:
            p = sec.properties[key]
            return p.raw, p.file, p.line
        if (section, key) in self._computed:
            return self._computed[(section, key)], sec.file, sec.line
        raise IRCError(f"[{section}] needs {key}", file=sec.file, line=sec.line)

    # ---------------------------------------------------------- resolving
    def value(self, section: str, key: str, default=REQUIRED) -> str:
        if not self.has_key(section, key):
            if default is REQUIRED:
                self._raw(section, key)
            return default
        self._read.setdefault(section, set()).add(key)
        raw, file, line = self._raw(section, key)
        return self._resolve(raw, section, file, line, depth=0)

    def _resolve(self, value: str, section: str, file: str, line: int, depth: int) -> str:
        if depth > 50:
            raise IRCError("references loop back on themselves", file=file, line=line)
        # 1. [section]property references
        pos = 0
        while True:
            start = value.find("[", pos)
            if start < 0:
                break
            close = value.find("]", start + 1)
            if close < 0:
                break
            name = value[start + 1:close]
            if name not in self.sections:
                pos = start + 1
                continue
            m = _SPACE.search(value, close + 1)
            end = m.start() if m else len(value)
            prop = value[close + 1:end]
            if not self.has_key(name, prop):
                raise IRCError(f"[{name}]{prop}: section [{name}] has no property {prop}", file=file, line=line)
            raw, rfile, rline = self._raw(name, prop)
            self._read.setdefault(name, set()).add(prop)
            replacement = self._resolve(raw, name, rfile, rline, depth + 1)
            value = value[:start] + replacement + value[end:]
            pos = start + len(replacement)
        # 2. ${NAME} variables
        pos = 0
        while True:
            start = value.find("${", pos)
            if start < 0:
                break
            end = value.find("}", start + 2)
            if end < 0:
                break
            var = value[start + 2:end]
            found = self._variable(var, section, file, line, depth)
            if found is None:
                pos = end + 1
                continue
            value = value[:start] + found + value[end + 1:]
            pos = start + len(found)
        # 3. $(...) arithmetic, innermost parentheses balanced
        pos = 0
        while True:
            start = value.find("$(", pos)
            if start < 0:
                break
            depth_p, i = 0, start + 1
            while i < len(value):
                if value[i] == "(":
                    depth_p += 1
                elif value[i] == ")":
                    depth_p -= 1
                    if depth_p == 0:
                        break
                i += 1
            if depth_p:
                break
            result = evaluate(value[start + 2:i], file=file, line=line)
            value = value[:start] + result + value[i + 1:]
            pos = start + len(result)
        return value

    def _variable(self, var: str, section: str, file: str, line: int, depth: int) -> str | None:
        names = list(self.sections)
        if var == "SECTION_NAME":
            return section
        if var == "PREV_SECTION_NAME":
            i = names.index(section) if section in names else 0
            if i <= 1:
                return ""
            parent = self.sections[section].properties.get("$PARENT_SECTION_NAME")
            if parent is not None and parent.raw == names[i - 1]:
                return names[i - 2] if i >= 2 else ""
            return names[i - 1]
        for sec in (section, ""):
            props = self.sections[sec].properties
            if "$" + var in props:
                p = props["$" + var]
                return self._resolve(p.raw, sec, p.file, p.line, depth + 1)
        return None

    # ------------------------------------------------------------- typed
    def _typed(self, section: str, key: str, default, convert, what: str):
        if not self.has_key(section, key):
            if default is REQUIRED:
                self._raw(section, key)
            return default
        text = self.value(section, key).strip()
        try:
            return convert(text)
        except ValueError:
            file, line = self.where(section, key)
            raise IRCError(f"[{section}] {key}={text!r} is not {what}", file=file, line=line) from None

    def get_str(self, section: str, key: str, default=REQUIRED) -> str:
        return self._typed(section, key, default, lambda t: t, "a string")

    def get_int(self, section: str, key: str, default=REQUIRED) -> int:
        return self._typed(section, key, default, _int, "an integer")

    def get_uint(self, section: str, key: str, default=REQUIRED) -> int:
        return self._typed(section, key, default, _uint, "a non-negative integer")

    def get_float(self, section: str, key: str, default=REQUIRED) -> float:
        return self._typed(section, key, default, _float, "a number")

    def get_bool(self, section: str, key: str, default=REQUIRED) -> bool:
        return self._typed(section, key, default, _bool, "0 or 1")

    def get_ints(self, section: str, key: str, default=REQUIRED) -> list[int]:
        return self._typed(section, key, default, lambda t: [_int(v) for v in t.split()], "a list of integers")

    def get_floats(self, section: str, key: str, default=REQUIRED) -> list[float]:
        return self._typed(section, key, default, lambda t: [_float(v) for v in t.split()], "a list of numbers")

    def get_spread(self, section: str, key: str, default=REQUIRED) -> tuple[float, float, bool]:
        def parse(t: str):
            value, _, spread = t.partition(";")
            spread = spread.strip()
            percent = spread.endswith("%")
            return _float(value.strip()), _float(spread.rstrip("%").strip()) if spread else 0.0, percent
        return self._typed(section, key, default, parse, "value[; spread[%]]")

    def expand_env(self, text: str) -> str:
        return _ENV.sub(lambda m: self.env.get(m.group(1), ""), text)

    def get_path(self, section: str, key: str, default=REQUIRED) -> str:
        if not self.has_key(section, key) and default is not REQUIRED:
            return default
        p = self.expand_env(self.value(section, key))
        return p if os.path.isabs(p) else os.path.join(os.path.dirname(self.path), p)


# ------------------------------------------------------------ number parsing
def _clean(text: str) -> str:
    return text.replace(",", "") if _THOUSANDS.fullmatch(text) else text


def _int(text: str) -> int:
    text = _clean(text)
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(text)
    return int(text)


def _uint(text: str) -> int:
    if text.strip().startswith("-"):
        raise ValueError(text)
    return _int(text)


def _float(text: str) -> float:
    text = _clean(text)
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", text, re.I):
        raise ValueError(text)
    return float(text)


def _bool(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(text)
    return text == "1"


def parse_ini(path: str, env: Mapping[str, str] | None = None) -> IniDocument:
    """Read an N2D2 INI file (templates expanded in place)."""
    if not os.path.exists(path):
        raise IRCError("file not found", file=path)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise IRCError(f"cannot read it ({e.strerror})", file=path) from None
    doc = IniDocument(path, env)
    doc._load(text, path)
    return doc
