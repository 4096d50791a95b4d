"""Registry-driven tests: every op, on every target that claims it, against the reference interpreter.

Each op declares a small valid instance (``OpDef.example``).  For every target,
an op it claims (an entry in its lowering table that accepts the node) must
run and match the reference; an op it does not claim must be refused with an
IRCError when the program is built, never fail at run time.  Spiking ops and
the per-step ops run on spike-numpy (the reference), spike-llvm and (through
the C++ emulation) spike-cuda, inside a small spiking graph.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import irc
from irc.interp import run_graph
from irc.ops import all_ops, get_op
from irc.registry import backend_for
from irc.types import BATCH, Domain, TensorType
from cuda_emulation import compiler, emulate

ANALOG_OPS = sorted(n for n, op in all_ops().items() if not op.spiking)
SPIKING_OPS = sorted(n for n, op in all_ops().items() if op.spiking)
needs_cxx = pytest.mark.skipif(compiler() is None, reason="no C++ compiler for the CUDA emulation")


def test_every_op_has_an_example():
    missing = [n for n, op in all_ops().items() if op.example(np.random.default_rng(0)) is None]
    assert not missing, f"ops without OpDef.example: {missing}"


def single_node_graph(op: str, seed: int):
    """A graph holding one node of ``op`` (its example), with the example's data inputs as graph inputs
    (axis 0 the symbolic batch, as in exported models)."""
    ex = get_op(op).example(np.random.default_rng(seed))
    g = irc.Graph(f"one_{op}")
    ins, feeds = [], {}
    for i, arr in enumerate(ex.inputs):
        if arr is None:
            ins.append(None)
        elif i in ex.params:
            ins.append(g.add_param(f"p{i}", arr))
        else:
            name = f"x{i}"
            ins.append(g.add_input(name, TensorType((BATCH,) + arr.shape[1:], irc.types.dtype_name(arr.dtype))))
            feeds[name] = arr
    g.outputs.append(g.add_node(op, ins, ex.attrs, name="node").outputs[0])
    return g, feeds


def claims(target: str, graph: irc.Graph) -> bool:
    """Whether the target's table takes every node of the graph as the target's own pipeline lowers it."""
    from irc.passes import run_pipeline

    backend = backend_for(target)()
    lowered = run_pipeline(graph, backend.pipeline(backend.check_options({}), graph))
    return not backend.lowering_table().problems(lowered.nodes)


def _compare(target: str, op: str, seed: int, prepare=None) -> None:
    g, feeds = single_node_graph(op, seed)
    expected = run_graph(g, feeds)[0]
    if not claims(target, g):
        with pytest.raises(irc.IRCError, match="cannot run|does not run"):
            prog = irc.compile(g, target=target)
            if prepare:
                prepare(prog)
        return
    prog = irc.compile(g, target=target)
    if prepare:
        prepare(prog)
    got = prog.run(feeds)
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("op", ANALOG_OPS)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16))
def test_numpy_target_runs_every_op_it_claims(op, seed):
    _compare("numpy", op, seed)


@needs_cxx
@pytest.mark.slow
@pytest.mark.parametrize("op", ANALOG_OPS)
def test_cuda_target_runs_what_it_claims_and_refuses_the_rest(op):
    _compare("cuda", op, 0, prepare=emulate)


def test_a_target_refuses_an_op_it_lacks_when_the_program_is_built():
    g, _ = single_node_graph("ReduceMax", 0)
    assert not claims("cuda", g)
    with pytest.raises(irc.UnsupportedError, match=r"target 'cuda' cannot run: ReduceMax \(node 'node'\)"):
        irc.compile(g, target="cuda")


# ------------------------------------------------------------------ spiking
def spiking_graph(op: str, seed: int):
    """Encode -> (op) -> Readout around one node of ``op``: a spiking network to run as it is."""
    opdef = get_op(op)
    ex = opdef.example(np.random.default_rng(seed))
    g = irc.Graph(f"spiking_{op}")
    data = ex.inputs[0]
    x = g.add_input("x", TensorType((BATCH,) + data.shape[1:]))
    if op == "Encode":
        out = g.add_node("Encode", [x], ex.attrs, name="node").output
    else:
        spikes = ex.domains and ex.domains[0] == "spike"
        enc = {"mode": "poisson", "gain": 1.0, "seed": seed} if spikes else {"mode": "current"}
        value = g.add_node("Encode", [x], enc, name="encode").output
        if op == "Readout":
            g.outputs.append(g.add_node("Readout", [value], ex.attrs, name="node").output)
            return g, data
        ins = [value] + [g.add_param(f"p{i}", a) for i, a in enumerate(ex.inputs[1:], 1) if i in ex.params]
        out = g.add_node(op, ins, ex.attrs, name="node").output
    mode = "count" if out.type.domain == Domain.SPIKE else "potential"
    g.outputs.append(g.add_node("Readout", [out], {"mode": mode}, name="readout").output)
    if op == "GatedMaxPool" or (op == "Encode" and ex.attrs["mode"] != "current"):
        data = np.abs(data) / max(np.abs(data).max(), 1e-6)
    return g, data.astype(np.float32)


def per_step_ops() -> list[str]:
    """Analog ops that also run per timestep on a current (linear and layout ops)."""
    out = []
    for op in ANALOG_OPS:
        try:
            spiking_graph(op, 0)
        except irc.IRCError:
            continue
        out.append(op)
    return out


@pytest.mark.parametrize("op", SPIKING_OPS + per_step_ops())
@pytest.mark.parametrize("target", ["spike-llvm", pytest.param("spike-cuda", marks=[pytest.mark.slow, needs_cxx])])
def test_spiking_targets_match_spike_numpy(op, target):
    g, x = spiking_graph(op, 3)
    ref = irc.compile(g, target="spike-numpy", timesteps=6)
    expected = ref.run(x)
    table = backend_for(target).lowering_table()
    compiled = ref.graph
    if table.problems(compiled.nodes):
        with pytest.raises(irc.IRCError, match="cannot run"):
            prog = irc.compile(g, target=target, timesteps=6)
            if target == "spike-cuda":
                emulate(prog)
        return
    prog = irc.compile(g, target=target, timesteps=6)
    if target == "spike-cuda":
        emulate(prog)
    got = prog.run(x)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert prog.stats["spikes"] == ref.stats["spikes"]
    assert prog.stats["synaptic_ops"] == ref.stats["synaptic_ops"]


def test_an_already_spiking_graph_is_run_as_it_is():
    g, x = spiking_graph("IF", 0)
    prog = irc.compile(g, target="spike-numpy", timesteps=4)
    assert [n.op for n in prog.graph.nodes] == ["Encode", "IF", "Readout"]
    assert prog.run(x).shape == (2, 3, 4)
