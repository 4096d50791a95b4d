"""The README's op table, rendered from the registries so it cannot drift from what irc really runs.

`python -m irc.optable` prints it; tests/test_readme.py checks that the README holds exactly this text
between its ``<!-- op-table -->`` markers.  Columns come from the targets' lowering tables and the spiking
conversion's rate rules; the frontend lines from the ONNX handlers, the Keras layer rules and activations,
and the N2D2 cell types.
"""
from __future__ import annotations

import textwrap

BEGIN, END = "<!-- op-table -->", "<!-- /op-table -->"
ANALOG_TARGETS = ("numpy", "cuda")


def _converts(opdef) -> str:
    """How the spiking conversion treats an analog op: what the table's spiking column says."""
    from irc.ops import OpDef
    from irc.passes.spiking import RULES

    if opdef.spiking:
        return "spiking op"
    if opdef.rate_rule in RULES:
        return "converted"
    if type(opdef).channel_affine is not OpDef.channel_affine:
        return "folded into weights"
    if type(opdef).rectifies is not OpDef.rectifies:
        return "a neuron" if opdef.name != "Clip" else "a neuron (Clip(0, hi))"
    if opdef.preserves_argmax:
        return "dropped at the output"
    return "refused"


def _wrapped(label: str, names) -> str:
    return textwrap.fill(f"{label}: " + ", ".join(sorted(names, key=str.lower)), width=110,
                         break_on_hyphens=False)


def render() -> str:
    """The op table in Markdown, plus the op names each frontend reads."""
    from irc.ops import all_ops
    from irc.registry import backend_for

    from irc.frontends.keras import ACTIVATIONS as KERAS_ACTIVATIONS
    from irc.frontends.keras import RULES as KERAS_LAYERS
    from irc.frontends.n2d2.keys import KNOWN as N2D2_CELLS
    from irc.frontends.onnx import HANDLERS as ONNX_OPS

    tables = {t: backend_for(t).lowering_table() for t in ANALOG_TARGETS}
    spike_llvm = backend_for("spike-llvm").lowering_table()
    rows = ["| IR op | numpy | cuda | spiking conversion | spike-llvm |", "|---|---|---|---|---|"]
    for name, opdef in sorted(all_ops().items(), key=lambda kv: kv[0].lower()):
        cells = ["yes" if tables[t].supports(name) else "-" for t in ANALOG_TARGETS]
        llvm = "yes" if spike_llvm.supports(name) else "-"
        rows.append(f"| `{name}` | {' | '.join(cells)} | {_converts(opdef)} | {llvm} |")
    frontends = [
        _wrapped("ONNX operators", ONNX_OPS),
        _wrapped("Keras layers", KERAS_LAYERS),
        _wrapped("Keras activations", KERAS_ACTIVATIONS),
        _wrapped("N2D2 cell types", [k for k in N2D2_CELLS if k not in ("", "env")]),
    ]
    return "\n".join(rows) + "\n\n" + "\n\n".join(frontends) + "\n"


if __name__ == "__main__":
    print(render(), end="")
