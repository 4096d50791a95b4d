"""N2D2's ``Type=ONNX`` cell: a whole ONNX graph imported at one point of an INI network.

N2D2 (docs ``onnx_import.rst`` / ``onnx_transfer.rst``): the section's ``File=`` is read like every path-like
key, through ``Utils::expandEnvVars`` (``${N2D2_MODELS}/...``), relative paths from the INI file's folder (the rule
irc's template includes follow too; absolute paths may point anywhere).  The cells named in its ``Input=`` feed
the ONNX graph's input.  A later cell takes a tensor inside it with ``Input=<onnx section>,<onnx tensor name>``
(the section name first, for the build order: N2D2's ``DeepNetGenerator`` then drops it from the parents); a
``[<onnx tensor name>.Target]`` section makes that tensor an output, as N2D2 attaches targets to the cells the
import created.  ``Ignore=`` lists ONNX tensors whose node is not imported (N2D2 uses it to cut a classifier off).

Where irc goes further than N2D2, it says so: ``Input=<onnx section>`` alone (no cell in N2D2) takes the ONNX
graph's output; a node left out by ``Ignore=`` passes its first input on to its consumers (N2D2 leaves them
without that parent); an unset variable is an error (N2D2 expands it to nothing and fails on the odd path).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from irc.errors import IRCError, UnsupportedError
from irc.graph import Graph, Value

ENV_VAR = re.compile(r"\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
"""``${VAR}`` or ``$VAR`` in a path (``$(...)`` expressions are evaluated by the INI reader before)."""


@dataclass
class OnnxCell:
    """The spliced graph: its output values, and every ONNX tensor name by the value now holding it."""

    outputs: list[Value]
    tensors: dict[str, Value]


def resolve_file(raw: str, env: dict[str, str], ini_folder: str) -> str:
    """The ONNX file a ``File=`` names, checked to exist (the caller adds the INI file and line)."""
    unset = [m.group(1) or m.group(2) for m in ENV_VAR.finditer(raw) if not env.get(m.group(1) or m.group(2))]
    if unset:
        raise IRCError(f"File={raw!r} uses the environment variable ${{{unset[0]}}}, which is not set",
                       hint=f"set {', '.join(unset)} to the folder holding the model (N2D2 reads it from the "
                            "environment)")
    path = ENV_VAR.sub(lambda m: env[m.group(1) or m.group(2)], raw)
    if not os.path.isabs(path):
        path = os.path.join(ini_folder, path)
    if not os.path.isfile(path):
        used = [m.group(1) or m.group(2) for m in ENV_VAR.finditer(raw)]
        via = "".join(f", ${{{v}}}={env[v]!r}" for v in dict.fromkeys(used))
        raise IRCError(f"ONNX file not found: {path} (File={raw!r}{via})",
                       hint="a relative path is looked up in the INI file's folder" if not used else
                       f"check {', '.join(dict.fromkeys(used))}: the file is not under it")
    return path


def splice(graph: Graph, sub: Graph, x: Value, prefix: str, ignore: list[str]) -> OnnxCell:
    """Copy ``sub`` (one input) into ``graph`` with ``x`` as its input; node names get ``prefix/``."""
    if len(sub.inputs) != 1:
        raise UnsupportedError(f"the ONNX graph has {len(sub.inputs)} inputs; an ONNX cell feeds exactly one "
                               f"({', '.join(v.name for v in sub.inputs)})")
    missing = [n for n in ignore if n not in sub.values or sub.values[n].producer is None]
    if missing:
        raise IRCError(f"Ignore names {missing[0]!r}, which no node of the ONNX graph computes")
    skipped = {id(sub.values[n].producer) for n in ignore}
    vmap: dict[int, Value] = {id(sub.inputs[0]): x}
    for name, array in sub.params.items():
        vmap[id(sub.values[name])] = graph.add_param(f"{prefix}/{name}", array)
    for node in sub.nodes:
        if id(node) in skipped:
            if not node.inputs or node.inputs[0] is None:
                raise IRCError(f"Ignore names the output of {node.name}, which has no input to pass on")
            for o in node.outputs:
                vmap[id(o)] = vmap[id(node.inputs[0])]
            continue
        ins = [vmap[id(v)] if v is not None else None for v in node.inputs]
        new = graph.add_node(node.op, ins, dict(node.attrs), name=f"{prefix}/{node.name}")
        for o, no in zip(node.outputs, new.outputs):
            vmap[id(o)] = no
    tensors = {name: vmap[id(v)] for name, v in sub.values.items() if id(v) in vmap and not v.is_param}
    return OnnxCell([vmap[id(v)] for v in sub.outputs], tensors)
