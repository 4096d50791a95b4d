"""The verifier: the invariants every pass must keep.

Checked: each node's op exists, its attributes are valid and its output types
are what inference gives; every input is defined before use (no dangling values,
no cycles); names are unique; parameters match their declared types; op inputs
declared as parameters are constants (parameters, or computed from them
only); graph outputs are defined.
"""
from __future__ import annotations

from .errors import IRCError, VerifyError
from .graph import Graph
from .ops import get_op
from .types import type_of_array


def verify(graph: Graph) -> None:
    """Raise :class:`VerifyError` naming the first broken invariant."""
    defined: set[int] = set()
    names: set[str] = set()
    for v in graph.inputs:
        if v.name in names:
            raise VerifyError(f"duplicate value name {v.name!r}")
        names.add(v.name)
        defined.add(id(v))
    for pname, arr in graph.params.items():
        v = graph.values.get(pname)
        if v is None or not v.is_param:
            raise VerifyError(f"parameter {pname!r} has no value")
        if v.type != type_of_array(arr):
            raise VerifyError(f"parameter {pname!r} is declared {v.type} but holds {type_of_array(arr)}")
        if pname in names:
            raise VerifyError(f"duplicate value name {pname!r}")
        names.add(pname)
        defined.add(id(v))
    node_names: set[str] = set()
    constant: set[int] = {id(graph.values[p]) for p in graph.params}
    for node in graph.nodes:
        if node.name in node_names:
            raise VerifyError(f"duplicate node name {node.name!r}")
        node_names.add(node.name)
        try:
            opdef = get_op(node.op)
        except IRCError as e:
            raise VerifyError(e.message, node=node.name) from None
        for i, v in enumerate(node.inputs):
            if v is None:
                continue
            if id(v) not in defined:
                what = "a cycle or a dangling value" if v.producer is not None else "a dangling value"
                raise VerifyError(f"input %{v.name} is used before it is defined ({what})", node=node.name)
            slot = opdef.inputs[i].rstrip("?*") if i < len(opdef.inputs) else opdef.inputs[-1].rstrip("*")
            if slot in opdef.params and id(v) not in constant:
                raise VerifyError(f"input {slot!r} of {node.op} must be a constant, got %{v.name}", node=node.name)
        try:
            opdef.check_arity(node.inputs)
            attrs = opdef.normalize_attrs(node.attrs)
            if attrs != node.attrs:
                raise VerifyError("attributes are not normalised", node=node.name)
            types = opdef.infer(node.input_types(), node.attrs)
        except VerifyError:
            raise
        except IRCError as e:
            raise VerifyError(e.message, node=node.name, hint=e.hint) from None
        if len(types) != len(node.outputs):
            raise VerifyError(f"{node.op} gives {len(types)} outputs, node has {len(node.outputs)}", node=node.name)
        for out, t in zip(node.outputs, types):
            if out.type != t:
                raise VerifyError(f"%{out.name} is typed {out.type} but {node.op} gives {t}", node=node.name)
            if out.producer is not node:
                raise VerifyError(f"%{out.name} does not point back to its producer", node=node.name)
            if out.name in names:
                raise VerifyError(f"duplicate value name {out.name!r}", node=node.name)
            names.add(out.name)
            defined.add(id(out))
        if not opdef.spiking and all(v is None or id(v) in constant for v in node.inputs) and node.inputs:
            constant.update(id(o) for o in node.outputs)
    for v in graph.outputs:
        if id(v) not in defined:
            raise VerifyError(f"graph output %{v.name} is not defined")
    if not graph.outputs:
        raise VerifyError("graph has no outputs")
