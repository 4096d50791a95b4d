"""Target options: a schema per target, checked before any work starts.

Each target declares its options as :class:`Option` entries (type, default,
choices or range, help).  :func:`check_options` validates what a user gave
(API keywords, or ``-O key=value`` strings from the CLI) against the schema
and returns the full option dict with defaults filled in, so a typo, a string
where a number belongs or a value out of range is one clear
:class:`~irc.errors.IRCError` naming the option, before any calibration or
compilation runs.  ``irc targets`` prints the schema.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .errors import IRCError

KINDS = ("int", "float", "str", "bool", "array", "any")

MAX_TIMESTEPS = 100_000
"""Longest run a spiking program accepts (a guard against a typo or a tampered artifact, not a limit of the
semantics)."""


def parse_timesteps(text: str, flag: str = "--timesteps") -> list[int]:
    """A comma-separated list of timesteps (``2,4,8``): positive integers up to MAX_TIMESTEPS, no empty items."""
    items = [v.strip() for v in str(text).split(",")]
    try:
        values = [int(v) for v in items]
    except ValueError:
        raise IRCError(f"{flag} takes positive integers separated by commas, got {text!r}") from None
    if not values or min(values) < 1 or max(values) > MAX_TIMESTEPS:
        raise IRCError(f"{flag} takes integers from 1 to {MAX_TIMESTEPS:,} separated by commas, got {text!r}")
    return values


@dataclass(frozen=True)
class Option:
    """One target option: what it takes, its default, and what it does."""

    kind: str
    default: Any
    help: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = True
    """Whether None is accepted (meaning: use the default / decide automatically)."""

    def describe(self) -> str:
        """One line for ``irc targets``: type, default, choices or range."""
        what = "|".join(str(c) for c in self.choices) if self.choices else self.kind
        if self.minimum is not None or self.maximum is not None:
            lo = "" if self.minimum is None else f"{_number(self.minimum)} <= "
            hi = "" if self.maximum is None else f" <= {_number(self.maximum)}"
            what = f"{lo}{self.kind}{hi}"
        return f"{what} (default {self.default!r})"

    def parse(self, name: str, value: Any) -> Any:
        """The value converted to this option's kind and checked, or one IRCError naming the option."""
        if value is None:
            if self.nullable:
                return None
            raise IRCError(f"option {name!r} needs a value", hint=f"{name}: {self.describe()}")
        converted = self._convert(name, value)
        if self.choices and converted not in self.choices:
            raise IRCError(f"option {name!r} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        if isinstance(converted, (int, float)) and not isinstance(converted, bool):
            if (self.minimum is not None and converted < self.minimum) or \
                    (self.maximum is not None and converted > self.maximum):
                raise IRCError(f"option {name!r} is {value!r}, out of range", hint=f"{name}: {self.describe()}")
        return converted

    def _convert(self, name: str, value: Any) -> Any:
        bad = IRCError(f"option {name!r} must be {_article(self.kind)}, got {value!r}",
                       hint=f"{name}: {self.describe()}")
        if self.kind == "any":
            return value
        if self.kind == "array":
            if isinstance(value, str):
                raise bad
            return value
        if self.kind == "bool":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, (int, np.integer)) and value in (0, 1):
                return bool(value)
            raise bad
        if self.kind == "str":
            if not isinstance(value, str):
                raise bad
            return value
        if isinstance(value, (bool, np.bool_)):
            raise bad
        try:
            number = float(value) if self.kind == "float" else _as_int(value)
        except (TypeError, ValueError, OverflowError):
            raise bad from None
        if self.kind == "float" and not math.isfinite(number):
            raise bad
        return number


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _as_int(value: Any) -> int:
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not float(value).is_integer():
            raise ValueError(value)
        return int(value)
    text = str(value).strip()
    return int(text)


def _article(kind: str) -> str:
    return {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
            "array": "an array"}.get(kind, kind)


def check_options(target: str, schema: Mapping[str, Option], given: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``given`` against ``schema``; returns every option (defaults filled in)."""
    unknown = sorted(set(given) - set(schema))
    if unknown:
        raise IRCError(f"target {target!r} has no option(s) {unknown}",
                       hint="its options: " + ", ".join(sorted(schema)) + " (irc targets lists them)")
    out = {k: opt.default for k, opt in schema.items()}
    for key, value in given.items():
        parsed = schema[key].parse(key, value)
        if parsed is not None:
            out[key] = parsed
    return out
