"""Turning names taken from model files into safe identifiers for generated source.

Model files name their layers and tensors freely ("/conv1/Conv_output_0",
"onnx::Gemm_12", anything).  Nothing from them reaches generated code except
through :class:`Namer`, which keeps only ASCII letters, digits and underscores.
"""
from __future__ import annotations

import hashlib
import keyword
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def sanitize(name: str, max_len: int = 48) -> str:
    s = _UNSAFE.sub("_", name).strip("_") or "v"
    if s[0].isdigit():
        s = "_" + s
    if len(s) > max_len:
        s = s[: max_len - 9] + "_" + hashlib.sha1(name.encode()).hexdigest()[:8]
    if keyword.iskeyword(s):
        s += "_"
    return s


class Namer:
    """Hands out unique, sanitised identifiers, stable for the same input name."""

    def __init__(self, prefix: str = "", reserved: set[str] | None = None):
        self.prefix = prefix
        self.taken: set[str] = set(reserved or ())
        self.names: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if name in self.names:
            return self.names[name]
        base = self.prefix + sanitize(name)
        ident, i = base, 1
        while ident in self.taken:
            ident = f"{base}_{i}"
            i += 1
        self.taken.add(ident)
        self.names[name] = ident
        return ident
