"""The graph metadata irc itself reads back (``graph.meta``), and its check when a saved program is loaded.

Passes record facts in ``graph.meta`` (the threshold fit as JSON, the analog MAC count, the batch axis of each
output, ...); the runtime and the reports read them again.  An artifact carries them in its IR text, so a
damaged or edited file must not reach those readers with a value of the wrong shape: :func:`check_meta`
validates every key irc reads, once, at load time (one IRCError naming the key), and :func:`meta_json` is the
one way to read a JSON-valued key.
"""
from __future__ import annotations

import json
from typing import Any

from .errors import IRCError

JSON_KEYS: dict[str, type] = {"thresholds": dict, "n2d2_spiking": dict, "input_transformations": list}
"""Keys whose value is a JSON document, and the kind of document."""

COUNT_KEYS = ("analog_macs", "virtual_synapses")
"""Keys holding a non-negative integer count."""

THRESHOLD_FIELDS: dict[str, tuple[type, ...]] = {
    "method": (str,), "fitted_for_timesteps": (int, type(None)), "samples": (int,),
    "positions_per_channel": (int,), "bias_correction": (dict,), "layers": (dict,), "output_check": (dict,)}
"""The fields of ``meta["thresholds"]`` the reports read, and their types."""

DAMAGED = "the program file is damaged or was edited; compile the model again"


def meta_json(graph: Any, key: str) -> Any:
    """``graph.meta[key]`` parsed (an empty document of the key's kind when absent)."""
    kind = JSON_KEYS[key]
    raw = graph.meta.get(key)
    if raw in (None, ""):
        return kind()
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as e:
        raise IRCError(f"graph metadata {key!r} is not valid JSON ({e})", hint=DAMAGED) from None
    if not isinstance(value, kind):
        raise IRCError(f"graph metadata {key!r} should be a JSON {kind.__name__}, not {type(value).__name__}",
                       hint=DAMAGED)
    return value


def check_meta(graph: Any) -> None:
    """Refuse metadata of the wrong shape before anything reads it (a loaded artifact)."""
    def bad(key: str, why: str) -> IRCError:
        return IRCError(f"graph metadata {key!r} {why}", hint=DAMAGED)

    docs = {key: meta_json(graph, key) for key in JSON_KEYS}  # each parsed once, its kind checked
    for key in COUNT_KEYS:
        value = graph.meta.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(key, f"should be a count, not {value!r}")
    info = docs["thresholds"]
    for field, types in THRESHOLD_FIELDS.items():
        if field in info and (not isinstance(info[field], types) or isinstance(info[field], bool)):
            raise bad("thresholds", f"has {field}={info[field]!r} of the wrong type")
    for name, bounds in info.get("layers", {}).items():
        if (not isinstance(bounds, list) or len(bounds) != 2
                or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)):
            raise bad("thresholds", f"has a layer range {name!r}: {bounds!r}, not [low, high]")
    check = info.get("output_check", {})
    if not all(isinstance(check.get(k, 0.0), (int, float)) and not isinstance(check.get(k), bool)
               for k in ("fitted", "percentile")):
        raise bad("thresholds", f"has an output_check with errors that are not numbers: {check!r}")
    shifts = info.get("bias_correction", {}).get("shifts", {})
    if not isinstance(shifts, dict):
        raise bad("thresholds", "has bias_correction.shifts that is not a mapping")
    axes = graph.meta.get("output_batch_axes")
    if axes is not None:
        ok = isinstance(axes, list) and len(axes) == len(graph.outputs) and all(
            isinstance(a, int) and not isinstance(a, bool) and 0 <= a < max(len(v.type.shape), 1)
            for a, v in zip(axes, graph.outputs))
        if not ok:
            raise bad("output_batch_axes", f"= {axes!r} does not give one axis per output")
