"""N2D2 channel mappings: which (input channel, output) pairs a Conv or Pool connects.

Resolved exactly as N2D2's MappingGenerator does, per input layer (the
stimuli provider is always called ``env``): ``Mapping.NbGroups`` or
``Mapping.ChannelsPerGroup`` (contiguous blocks); else an explicit
``Mapping(<parent>)=`` 0/1 matrix (rows = input channels, columns = outputs);
else a pattern (``Mapping.Size``, ``.Stride``, ``.Offset``, ``.NbIterations``
and their X/Y forms, per parent as ``Mapping(<parent>).*``; X runs over outputs,
Y over channels, wrapping modulo); else every pair.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from irc.errors import IRCError
from irc.limits import MAX_TENSOR_ELEMENTS


@dataclass
class Pattern:
    size_x: int = 1
    size_y: int = 1
    stride_x: int = 1
    stride_y: int = 1
    offset_x: int = 0
    offset_y: int = 0
    iterations: int = 0


def _pattern(doc, section: str, prefix: str, default: Pattern) -> Pattern:
    def get(key: str, fallback: int) -> int:
        return doc.get_uint(section, f"{prefix}.{key}") if doc.has_key(section, f"{prefix}.{key}") else fallback

    p = Pattern()
    if doc.has_key(section, prefix + ".Size"):
        p.size_x = p.size_y = doc.get_uint(section, prefix + ".Size")
    else:
        p.size_x, p.size_y = get("SizeX", default.size_x), get("SizeY", default.size_y)
    if doc.has_key(section, prefix + ".Stride"):
        p.stride_x = p.stride_y = doc.get_uint(section, prefix + ".Stride")
    else:
        p.stride_x, p.stride_y = get("StrideX", default.stride_x), get("StrideY", default.stride_y)
    if doc.has_key(section, prefix + ".Offset"):
        p.offset_x = p.offset_y = doc.get_uint(section, prefix + ".Offset")
    else:
        p.offset_x, p.offset_y = get("OffsetX", default.offset_x), get("OffsetY", default.offset_y)
    p.iterations = get("NbIterations", default.iterations)
    return p


def _has_prefix(doc, section: str, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in doc.keys(section))


def mapping_matrix(doc, section: str, parent: str, channels: int, outputs: int) -> np.ndarray:
    """Boolean (channels, outputs) connectivity of ``section`` to input layer ``parent``."""
    file, line = _where(doc, section)
    MAX_TENSOR_ELEMENTS.check(channels * outputs, f"the channel mapping of [{section}] ({channels} x {outputs})",
                              file=file)  # before the matrix is allocated
    groups_key, per_group_key = "Mapping.NbGroups", "Mapping.ChannelsPerGroup"
    if doc.has_key(section, groups_key) and doc.has_key(section, per_group_key):
        raise IRCError(f"{groups_key} and {per_group_key} are mutually exclusive in [{section}]", file=file, line=line)
    if doc.has_key(section, groups_key) or doc.has_key(section, per_group_key):
        if doc.has_key(section, groups_key):
            groups = doc.get_uint(section, groups_key)
            per_group = channels // groups if groups else 0
        else:
            per_group = doc.get_uint(section, per_group_key)
            groups = channels // per_group if per_group else 0
        if groups == 0 or channels % groups:
            raise IRCError(f"[{section}]: {channels} input channels cannot be split into {groups} groups",
                           file=file, line=line)
        m = np.zeros((channels, outputs), bool)
        out_offset = 0
        for g in range(groups):
            size = (outputs - out_offset) // (groups - g)
            m[g * per_group:(g + 1) * per_group, out_offset:out_offset + size] = True
            out_offset += size
        return m
    matrix_key = f"Mapping({parent})"
    if doc.has_key(section, matrix_key):
        text = doc.value(section, matrix_key).split()
        if len(text) != channels * outputs or any(t not in ("0", "1") for t in text):
            mfile, mline = doc.where(section, matrix_key)
            raise IRCError(f"{matrix_key} of [{section}] needs {channels} x {outputs} values of 0 or 1 "
                           f"({channels} channels of {parent}, {outputs} outputs), got {len(text)}",
                           file=mfile, line=mline)
        return np.array([t == "1" for t in text]).reshape(channels, outputs)
    layer_default = _pattern(doc, section, "Mapping", Pattern())
    is_function = _has_prefix(doc, section, "Mapping.") or _has_prefix(doc, section, matrix_key + ".")
    if not is_function:
        return np.ones((channels, outputs), bool)
    p = _pattern(doc, section, matrix_key, layer_default)
    # the offsets wrap around, so a window wider than the matrix, or more iterations than it has
    # (offset x, offset y) positions, set nothing more: clamping keeps huge counts cheap and exact
    iterations = min(p.iterations or max(outputs, channels), channels * outputs)
    size_y = min(p.size_y or channels, channels)
    size_x = min(p.size_x or outputs, outputs)
    m = np.zeros((channels, outputs), bool)
    x, y = p.offset_x, p.offset_y
    for _ in range(iterations):
        m[np.ix_((y + np.arange(size_y)) % channels, (x + np.arange(size_x)) % outputs)] = True
        x += p.stride_x
        y += p.stride_y
    return m


def _where(doc, section: str) -> tuple[str, int | None]:
    s = doc.sections[section]
    return s.file, s.line
