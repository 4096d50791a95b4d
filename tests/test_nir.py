"""NIR in and out, against the nir package, a hand-written NIR integrator, snnTorch and Norse.

Exactness: where every weight, input and threshold is a short binary fraction
(dyadic), every synaptic sum is exact in float32 whatever its order, so irc,
snnTorch and Norse must give the same spikes bit for bit; that is what the
peer tests assert.  On the trained digits network the sums are rounded in
each tool's own order, so there the scores are compared within float
tolerance and the predictions exactly (test_digits_in_norse, slow).
"""
import os
import sys

import numpy as np
import pytest

import irc
from irc.nirsupport import NIRLossyWarning, fires_above, fires_at_or_above
from irc.text import parse_graph
from conftest import SAMPLES

nir = pytest.importorskip("nir")

DIGITS = os.path.join(SAMPLES, "digits")
EXACT = dict(reset="zero", neuron_init=0.0, negative="none")  # the conversion NIR can say exactly
T = 16


def dyadic(rng, shape, scale=1.0, bits=3):
    """Random multiples of 2^-bits: sums of a few hundred of them are exact in float32."""
    return (np.round(rng.standard_normal(shape) * scale * 2 ** bits) / 2 ** bits).astype(np.float32)


SMALL_CNN = """graph "small" {
  input %x : f32[N,1,6,6]
  param %w1 : f32[4,1,3,3]
  param %b1 : f32[4]
  param %w2 : f32[5,36]
  param %b2 : f32[5]
  %c : f32[N,4,6,6] = Conv(%x, %w1, %b1) {pads=[1, 1, 1, 1]}
  %r : f32[N,4,6,6] = Relu(%c)
  %p : f32[N,4,3,3] = AvgPool(%r) {kernel=[2, 2], strides=[2, 2]}
  %f : f32[N,36] = Flatten(%p)
  %y : f32[N,5] = Dense(%f, %w2, %b2)
  output %y
}
"""


def small_cnn(seed=0):
    """A small analog CNN with dyadic weights, its calibration data and test inputs (multiples of 1/4)."""
    rng = np.random.default_rng(seed)
    g = parse_graph(SMALL_CNN, {"w1": dyadic(rng, (4, 1, 3, 3), 0.5), "b1": dyadic(rng, 4, 0.25),
                                "w2": dyadic(rng, (5, 36), 0.5), "b2": dyadic(rng, 5, 0.25)})
    x = (rng.integers(0, 9, size=(64, 1, 6, 6)) / 4).astype(np.float32)
    return g, x[:32], x[32:]


def exact_program(target="spike-numpy", **extra):
    g, cal, x = small_cnn()
    prog = irc.compile(g, target=target, calibration=cal, timesteps=T, scale_rounding="pow2", **EXACT, **extra)
    return prog, x


@pytest.fixture(scope="module")
def digits_exact(tmp_path_factory):
    data = np.load(os.path.join(DIGITS, "test.npz"))
    cal = np.load(os.path.join(DIGITS, "calibration.npz"))["x"][:100]
    prog = irc.compile(os.path.join(DIGITS, "digits_cnn.onnx"), target="spike-numpy", calibration=cal, timesteps=T,
                       **EXACT)
    path = str(tmp_path_factory.mktemp("nir") / "digits.nir")
    prog.to_nir(path)
    return prog, path, data["x"], data["y"]


# ------------------------------------------------------------ round trip
def test_round_trip_gives_the_same_spikes_bit_for_bit(digits_exact):
    prog, path, x, _ = digits_exact
    again = irc.compile(irc.load(path), target="spike-numpy", timesteps=T)
    assert again.graph.find("Encode") and not again.graph.find("Relu")  # read as a spiking graph, not converted
    np.testing.assert_array_equal(again.run(x[:20]), prog.run(x[:20]))
    before, after = prog.trace(x[:4]), again.trace(x[:4])
    assert sorted(before) == sorted(after)  # the irc node names travel in the nodes' metadata
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def test_round_trip_on_spike_llvm(digits_exact):
    prog, path, x, _ = digits_exact
    llvm_first = irc.compile(os.path.join(DIGITS, "digits_cnn.onnx"), target="spike-llvm",
                             calibration=np.load(os.path.join(DIGITS, "calibration.npz"))["x"][:100], timesteps=T,
                             **EXACT)
    llvm_again = irc.compile(irc.load(path), target="spike-llvm", timesteps=T)
    np.testing.assert_array_equal(llvm_again.run(x[:60]), llvm_first.run(x[:60]))


def test_export_is_typed_with_per_neuron_thresholds(digits_exact):
    prog, path, _, _ = digits_exact
    graph = nir.read(path)  # nir's own type check must pass
    for name, node in graph.nodes.items():
        assert all(t is not None for t in list(node.input_type.values()) + list(node.output_type.values())), name
    kinds = sorted(type(n).__name__ for n in graph.nodes.values())
    assert kinds == ["Affine", "Affine", "Conv2d", "Conv2d", "Conv2d", "Flatten", "IF", "IF", "IF", "IF", "Input",
                     "Output"]
    for node in prog.graph.find("IF"):
        nir_node = next(n for n in graph.nodes.values() if n.metadata.get("irc_node") == node.name)
        th = prog.graph.param(node.inputs[1])
        shape = node.output.type.sample_shape
        assert nir_node.v_threshold.shape == shape  # per neuron, in the neurons' own shape
        expected = np.broadcast_to(th.reshape((-1,) + (1,) * (len(shape) - 1)), shape)
        # fires at v > t' exactly when irc fires at v >= t: t' is the float32 just below t
        np.testing.assert_array_equal(np.nextafter(nir_node.v_threshold, np.float32(np.inf)), expected)
        assert np.all(nir_node.v_threshold < expected)
        np.testing.assert_array_equal(nir_node.v_reset, 0)
        np.testing.assert_array_equal(nir_node.r, 1)
    conv = next(n for n in prog.graph.find("Conv"))
    nir_conv = next(n for n in graph.nodes.values() if n.metadata.get("irc_node") == conv.name)
    np.testing.assert_array_equal(nir_conv.bias, prog.graph.param(conv.inputs[2]))  # the per-step bias current
    assert float(graph.metadata["irc_dt"]) == 1e-4 and "mean of the output" in str(graph.metadata["irc_readout"])


def test_one_ulp_rule_is_exact_in_float32():
    rng = np.random.default_rng(3)
    t = rng.standard_normal(2000).astype(np.float32)
    v = np.concatenate([t, np.nextafter(t, np.float32(np.inf)), np.nextafter(t, np.float32(-np.inf)),
                        rng.standard_normal(2000).astype(np.float32)])
    tt = np.tile(t, 4)
    np.testing.assert_array_equal(v >= tt, v > fires_above(tt))
    np.testing.assert_array_equal(v > tt, v >= fires_at_or_above(tt))


# ------------------------------------------------- what NIR cannot say
def test_default_conversion_is_refused_with_the_options_that_fix_it():
    g, cal, _ = small_cnn()
    prog = irc.compile(g, target="spike-numpy", calibration=cal, timesteps=T)
    with pytest.raises(irc.IRCError) as e:
        prog.to_nir()
    text = str(e.value)
    for option in ("reset='zero'", "neuron_init=0", "negative='none'"):
        assert option in text
    assert "node 'r'" in text and "lossy" in text


@pytest.mark.parametrize("option, expected", [
    ({"encoding": "poisson"}, "encoding='current'"),
    ({"terminate_delta": 2.0}, "terminate_delta=0"),
])
def test_other_inexact_features_are_refused(option, expected):
    g, cal, _ = small_cnn()
    prog = irc.compile(g, target="spike-numpy", calibration=cal, timesteps=T, **EXACT, **option)
    with pytest.raises(irc.IRCError, match=expected.replace("(", r"\(")):
        prog.to_nir()


def test_gated_max_pool_is_refused_and_avg_pool_is_written():
    cal = np.load(os.path.join(DIGITS, "calibration.npz"))["x"][:50]
    model = os.path.join(DIGITS, "digits_bn_maxpool.onnx")
    gated = irc.compile(model, target="spike-numpy", calibration=cal, timesteps=T, **EXACT)
    with pytest.raises(irc.IRCError, match="maxpool='avg'"):
        gated.to_nir()
    averaged = irc.compile(model, target="spike-numpy", calibration=cal, timesteps=T, maxpool="avg", **EXACT)
    assert averaged.to_nir() is not None


def test_export_needs_a_spiking_program_and_a_writable_path(tmp_path):
    g, _, _ = small_cnn()
    with pytest.raises(irc.IRCError, match="needs a spiking program"):
        irc.export_nir(irc.compile(g, target="numpy"))
    prog, _ = exact_program()
    with pytest.raises(irc.IRCError, match="cannot write the NIR file"):
        prog.to_nir(str(tmp_path / "no" / "such" / "dir.nir"))


def test_an_imported_graph_saves_as_a_program(tmp_path):
    prog, x = exact_program()
    prog.to_nir(str(tmp_path / "a.nir"))
    imported = irc.compile(irc.load(str(tmp_path / "a.nir")), target="spike-llvm", timesteps=T)
    imported.save(str(tmp_path / "a.ircp"))
    np.testing.assert_array_equal(irc.load_program(str(tmp_path / "a.ircp")).run(x), imported.run(x))


def test_lossy_export_warns_with_what_changed(tmp_path):
    g, cal, _ = small_cnn()
    prog = irc.compile(g, target="spike-numpy", calibration=cal, timesteps=T)
    with pytest.warns(NIRLossyWarning, match="reset by subtraction") as record:
        graph = irc.export_nir(prog, tmp_path / "lossy.nir", lossy=True)
    message = str(record[0].message)
    assert "membrane starting at 0.5" in message and "corrective negative events" in message
    assert "reset by subtraction" in str(graph.metadata["irc_lossy"])
    assert nir.read(str(tmp_path / "lossy.nir")) is not None


# -------------------------------------------- import semantics by hand
def nir_reference(graph: "nir.NIRGraph", x: np.ndarray, steps: int, dt: float) -> np.ndarray:
    """An independent forward-Euler integration of a sequential NIR graph (the ODEs in nir.ir.neuron)."""
    order = ["input"]
    while order[-1] != "output":
        order.append(next(b for a, b in graph.edges if a == order[-1]))
    state = {k: 0.0 for k in order}
    total = 0.0
    for _ in range(steps):
        s = x.astype(np.float64)
        for k in order[1:-1]:
            n = graph.nodes[k]
            kind = type(n).__name__
            if kind == "Affine":
                s = s @ n.weight.T + n.bias
            elif kind == "Scale":
                s = s * n.scale
            elif kind == "IF":
                v = state[k] + n.r * s
                z = v > n.v_threshold
                state[k] = np.where(z, n.v_reset, v)
                s = z.astype(np.float64)
            elif kind == "LIF":
                v = state[k] + dt / n.tau * (n.v_leak - state[k] + n.r * s)
                z = v > n.v_threshold
                state[k] = np.where(z, n.v_reset, v)
                s = z.astype(np.float64)
            elif kind == "I":
                state[k] = state[k] + n.r * s
                s = state[k]
        total = total + s
    last = type(graph.nodes[order[-2]]).__name__
    return state[order[-2]] / steps if last == "I" else total


def test_import_follows_the_nir_equations(tmp_path):
    rng = np.random.default_rng(7)
    dt, tau = 1e-3, 5e-3
    graph = nir.NIRGraph.from_list(
        nir.Affine(weight=dyadic(rng, (6, 4), 1.0), bias=dyadic(rng, 6, 0.25)),
        nir.IF(r=np.full(6, 0.5, np.float32), v_threshold=np.full(6, 0.75, np.float32)),
        nir.Scale(scale=np.array([1, 2, 0.5, 1, 1, 4], np.float32)),
        nir.Affine(weight=dyadic(rng, (5, 6), 1.0), bias=np.zeros(5, np.float32)),
        nir.LIF(tau=np.full(5, tau), r=np.full(5, 2.0), v_leak=np.full(5, 0.25), v_threshold=np.full(5, 0.5)),
        nir.Affine(weight=dyadic(rng, (3, 5), 1.0), bias=dyadic(rng, 3, 0.5)),
        nir.I(r=np.full(3, 1.0, np.float32)))
    nir.write(str(tmp_path / "hand.nir"), graph)
    x = (rng.integers(-4, 9, size=(50, 4)) / 4).astype(np.float32)
    ref = nir_reference(graph, x, 24, dt)
    g = irc.load(str(tmp_path / "hand.nir"), dt=dt)
    for target in ("spike-numpy", "spike-llvm"):
        out = irc.compile(g, target=target, timesteps=24).run(x)
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert ref.std() > 0.1  # the neurons did fire


def test_spike_cuda_runs_a_nir_graph_like_spike_numpy(tmp_path):
    from cuda_emulation import compiler, emulate

    if compiler() is None:
        pytest.skip("no C++ compiler for the CUDA emulation")
    rng = np.random.default_rng(2)
    graph = nir.NIRGraph.from_list(
        nir.Affine(weight=dyadic(rng, (8, 6), 1.0), bias=dyadic(rng, 8, 0.25)),
        nir.LIF(tau=np.full(8, 4e-4, np.float32), r=np.full(8, 4.0, np.float32), v_leak=np.zeros(8, np.float32),
                v_threshold=np.full(8, 0.5, np.float32)),
        nir.Affine(weight=dyadic(rng, (4, 8), 1.0), bias=np.zeros(4, np.float32)),
        nir.IF(r=np.ones(4, np.float32), v_threshold=np.full(4, 1.0, np.float32)))
    nir.write(str(tmp_path / "net.nir"), graph)
    g = irc.load(str(tmp_path / "net.nir"))
    x = (rng.integers(-2, 9, size=(30, 6)) / 4).astype(np.float32)
    ref = irc.compile(g, target="spike-numpy", timesteps=20).run(x)
    prog = irc.compile(g, target="spike-cuda", timesteps=20)
    emulate(prog)
    np.testing.assert_array_equal(prog.run(x), ref)
    assert ref.sum() > 0


def test_sum_pool_and_fan_in(tmp_path):
    rng = np.random.default_rng(11)
    conv = nir.Conv2d(input_shape=(4, 4), weight=dyadic(rng, (2, 1, 3, 3)), stride=1, padding=1, dilation=1, groups=1,
                      bias=dyadic(rng, 2, 0.5))
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    nodes = {"input": nir.Input(np.array([1, 4, 4])), "conv": conv,
             "if": nir.IF(r=np.ones((2, 4, 4)), v_threshold=np.full((2, 4, 4), 0.5)), "pool": pool,
             "skip": nir.Conv2d(input_shape=(4, 4), weight=np.full((2, 1, 2, 2), 0.25, np.float32), stride=2,
                                padding=0, dilation=1, groups=1, bias=np.zeros(2, np.float32)),
             "flat": nir.Flatten(input_type=np.array([2, 2, 2]), start_dim=0), "output": nir.Output(np.array([8]))}
    edges = [("input", "conv"), ("conv", "if"), ("if", "pool"), ("input", "skip"), ("pool", "flat"),
             ("skip", "flat"), ("flat", "output")]
    nir.write(str(tmp_path / "pool.nir"), nir.NIRGraph(nodes, edges))
    x = (rng.integers(0, 8, size=(20, 1, 4, 4)) / 4).astype(np.float32)
    prog = irc.compile(irc.load(str(tmp_path / "pool.nir")), target="spike-numpy", timesteps=6)
    # by hand: conv current is constant; IF spikes with reset to 0; sum-pool counts; the skip is a 2x2 mean
    from numpy.lib.stride_tricks import sliding_window_view

    xp = np.pad(x[:, 0], ((0, 0), (1, 1), (1, 1)))
    cur = np.einsum("nhwij,cij->nchw", sliding_window_view(xp, (3, 3), axis=(1, 2)), conv.weight[:, 0]) + \
        conv.bias[None, :, None, None]
    v, spikes = np.zeros_like(cur), []
    for _ in range(6):
        v = v + cur
        z = v > 0.5
        v = np.where(z, 0, v)
        spikes.append(z)
    pooled = np.stack(spikes).reshape(6, 20, 2, 2, 2, 2, 2).sum(axis=(4, 6))
    skip = x[:, 0].reshape(20, 2, 2, 2, 2).mean(axis=(2, 4))[:, None]
    expected = (pooled + skip[None]).reshape(6, 20, 8).mean(axis=0)
    np.testing.assert_allclose(prog.run(x), expected, rtol=1e-6, atol=1e-6)


# -------------------------------------------------------------- bad files
def _write_small(path):
    nir.write(str(path), nir.NIRGraph.from_list(nir.Affine(weight=np.ones((3, 4), np.float32),
                                                           bias=np.zeros(3, np.float32)),
                                                nir.IF(r=np.ones(3), v_threshold=np.ones(3))))


def test_truncated_and_foreign_files_give_one_error(tmp_path):
    good = tmp_path / "good.nir"
    _write_small(good)
    data = good.read_bytes()
    (tmp_path / "cut.nir").write_bytes(data[:len(data) // 2])
    (tmp_path / "text.nir").write_text("not hdf5")
    for name in ("cut.nir", "text.nir"):
        with pytest.raises(irc.IRCError, match=f"{name}: not a readable NIR"):
            irc.load(str(tmp_path / name))


def test_unknown_node_type_gives_one_error(tmp_path):
    import h5py

    path = tmp_path / "odd.nir"
    _write_small(path)
    with h5py.File(path, "r+") as f:
        del f["node/nodes/if/type"]
        f["node/nodes/if"].create_dataset("type", data="QuantumNeuron", dtype=h5py.string_dtype())
    with pytest.raises(irc.IRCError, match=r"unknown NIR node type\(s\): QuantumNeuron \(node 'if'\)"):
        irc.load(str(path))


def test_mismatched_shapes_give_one_error(tmp_path):
    nodes = {"input": nir.Input(np.array([4])), "a": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
             "b": nir.Affine(weight=np.ones((2, 5)), bias=np.zeros(2)), "output": nir.Output(np.array([2]))}
    nir.write(str(tmp_path / "bad.nir"), nir.NIRGraph(nodes, [("input", "a"), ("a", "b"), ("b", "output")],
                                                      type_check=False))
    with pytest.raises(irc.IRCError, match=r"bad.nir, node 'b': Dense: input \['N', 3\] does not match"):
        irc.load(str(tmp_path / "bad.nir"))
    conv = nir.Conv2d(input_shape=(5, 5), weight=np.ones((2, 1, 3, 3)), stride=1, padding=0, dilation=1, groups=1,
                      bias=np.zeros(2))
    nir.write(str(tmp_path / "conv.nir"), nir.NIRGraph({"input": nir.Input(np.array([1, 4, 4])), "c": conv,
                                                        "output": nir.Output(np.array([2, 3, 3]))},
                                                       [("input", "c"), ("c", "output")], type_check=False))
    with pytest.raises(irc.IRCError, match=r"node 'c': input_shape \[5, 5\] does not match"):
        irc.load(str(tmp_path / "conv.nir"))


def test_unsupported_nodes_are_listed_in_one_error(tmp_path):
    n = 3
    nodes = {"input": nir.Input(np.array([n])), "aff": nir.Affine(weight=np.eye(n), bias=np.zeros(n)),
             "cuba": nir.CubaLIF(tau_syn=np.ones(n), tau_mem=np.ones(n), r=np.ones(n), v_leak=np.zeros(n),
                                 v_threshold=np.ones(n)),
             "delay": nir.Delay(delay=np.ones(n)), "rec": nir.Linear(weight=np.eye(n)),
             "lif": nir.LIF(tau=np.ones(n), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n),
                            v_reset=np.full(n, -1.0)),
             "output": nir.Output(np.array([n]))}
    edges = [("input", "aff"), ("aff", "cuba"), ("cuba", "delay"), ("delay", "lif"), ("lif", "rec"), ("rec", "lif"),
             ("lif", "output")]
    nir.write(str(tmp_path / "rnn.nir"), nir.NIRGraph(nodes, edges, type_check=False))
    with pytest.raises(irc.IRCError) as e:
        irc.load(str(tmp_path / "rnn.nir"))
    text = str(e.value)
    for part in ("CubaLIF (node 'cuba')", "Delay (node 'delay')", "recurrent edges", "v_reset != 0"):
        assert part in text, part


def test_without_the_nir_package_both_directions_say_how_to_install(monkeypatch, tmp_path):
    path = tmp_path / "small.nir"
    _write_small(path)
    prog, _ = exact_program()
    monkeypatch.setitem(sys.modules, "nir", None)
    for action in (lambda: irc.load(str(path)), lambda: prog.to_nir()):
        with pytest.raises(irc.IRCError, match=r"irc-compiler\[nir\]"):
            action()


def test_cli_emit_nir_and_run_nir(tmp_path, capsys):
    from irc.cli import main

    onnx_path = os.path.join(DIGITS, "digits_cnn.onnx")
    np.save(tmp_path / "dcal.npy", np.load(os.path.join(DIGITS, "calibration.npz"))["x"][:50])
    out = str(tmp_path / "net.nir")
    assert main(["compile", onnx_path, "--target", "spike-numpy", "--calibration", str(tmp_path / "dcal.npy"),
                 "--emit", "nir", "-o", out]) == 2
    assert "reset='zero'" in capsys.readouterr().err
    assert main(["compile", onnx_path, "--target", "spike-numpy", "--calibration", str(tmp_path / "dcal.npy"),
                 "--emit", "nir", "-o", out, "-O", "reset=zero", "-O", "neuron_init=0", "-O", "negative=none"]) == 0
    digits = np.load(os.path.join(DIGITS, "test.npz"))
    np.save(tmp_path / "dx.npy", digits["x"][:30])
    assert main(["run", out, "--target", "spike-llvm", "--input", str(tmp_path / "dx.npy"), "--timesteps", "8",
                 "--output", str(tmp_path / "scores.npy")]) == 0
    assert "spike-llvm" in capsys.readouterr().out
    prog = irc.compile(irc.load(out), target="spike-llvm", timesteps=8)
    np.testing.assert_array_equal(np.load(tmp_path / "scores.npy"), prog.run(digits["x"][:30]))


# ------------------------------------------------------------ the peers
torch = None


def peers():
    global torch
    torch = pytest.importorskip("torch")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return torch


def per_sample_flatten(module):
    """snnTorch and Norse turn NIR's per-sample Flatten(start_dim=0) into torch's Flatten(0), which also
    flattens the batch; start it after the batch axis so a batch runs (a peer's bug, not a change of semantics)."""
    for m in module.modules():
        if isinstance(m, torch.nn.Flatten) and m.start_dim == 0:
            m.start_dim = 1
    return module


def dyadic_(module, rng, scale):
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.copy_(torch.from_numpy(dyadic(rng, tuple(m.weight.shape), scale)))
                m.bias.copy_(torch.from_numpy(dyadic(rng, tuple(m.bias.shape), scale / 4)))
    return module


def test_snntorch_network_runs_in_irc_bit_for_bit(tmp_path):
    peers()
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir
    import snntorch.utils

    def leaky(shape, beta):  # per-neuron parameters: snnTorch's export leaves scalar ones untyped
        return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.ones(shape), init_hidden=True,
                         reset_mechanism="zero", reset_delay=False)

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 3, padding=1), leaky((6, 8, 8), 0.75), torch.nn.AvgPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(6 * 16, 10), leaky((10,), 0.5))
    rng = np.random.default_rng(5)
    dyadic_(net, rng, 1.0)
    x = torch.from_numpy((rng.integers(0, 9, size=(48, 1, 8, 8)) / 4).astype(np.float32))
    path = str(tmp_path / "snntorch.nir")
    nir.write(path, export_to_nir(net, x[:1], ignore_dims=[0]))
    snntorch.utils.reset(net)
    with torch.no_grad():
        counts = sum(net(x) for _ in range(T)).numpy()
    assert 0.05 < counts.mean() / T < 0.95  # a network that spikes, but not always
    graph = irc.load(path)
    assert [n.op for n in graph.nodes] == ["Encode", "Conv", "IF", "AvgPool", "Flatten", "Dense", "IF", "Readout"]
    for target in ("spike-numpy", "spike-llvm"):
        np.testing.assert_array_equal(irc.compile(graph, target=target, timesteps=T).run(x.numpy()), counts,
                                      err_msg=target)


def test_norse_networks_run_in_irc_bit_for_bit(tmp_path):
    peers()
    norse = pytest.importorskip("norse.torch")
    from irc.frontends.nir_import import from_nir

    def iaf(shape):
        return norse.IAFCell(norse.IAFParameters(v_th=torch.full(shape, 1.0)))

    def simulate(net, x):
        with torch.no_grad():
            state, total = None, 0
            for _ in range(T):
                out, state = net(x, state)
                total = total + out
        return total.numpy()

    rng = np.random.default_rng(9)
    mlp = dyadic_(norse.SequentialState(torch.nn.Linear(64, 32), iaf((32,)), torch.nn.Linear(32, 10), iaf((10,))),
                  rng, 1.0)
    x = torch.from_numpy((rng.integers(0, 9, size=(48, 64)) / 4).astype(np.float32))
    path = str(tmp_path / "norse.nir")
    nir.write(path, norse.to_nir(mlp, x[:1]))
    counts = simulate(mlp, x)
    assert counts.sum() > 0
    for target in ("spike-numpy", "spike-llvm"):
        np.testing.assert_array_equal(irc.compile(irc.load(path), target=target, timesteps=T).run(x.numpy()), counts)
    # Norse 1.1 writes Conv2d without input_shape, which nir.write cannot store: read the graph in memory
    conv = dyadic_(norse.SequentialState(torch.nn.Conv2d(1, 6, 3, padding=1), iaf((6, 8, 8)),
                                         torch.nn.Conv2d(6, 8, 2, stride=2), iaf((8, 4, 4)),
                                         torch.nn.Conv2d(8, 10, 4), iaf((10, 1, 1))), rng, 1.0)
    xc = torch.from_numpy((rng.integers(0, 9, size=(48, 1, 8, 8)) / 4).astype(np.float32))
    counts = simulate(conv, xc)
    assert counts.sum() > 0
    graph = from_nir(norse.to_nir(conv, xc[:1]))
    for target in ("spike-numpy", "spike-llvm"):
        np.testing.assert_array_equal(irc.compile(graph, target=target, timesteps=T).run(xc.numpy()), counts)


def test_norse_lif_network_runs_in_irc(tmp_path):
    """Norse 1.1 writes an LIF's tau as dt / tau_mem_inv (dt * tau): irc reads it with dt = (Norse's dt)^2."""
    peers()
    norse = pytest.importorskip("norse.torch")

    def lif(shape):
        return norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.full(shape, 100.0),
                                                       v_th=torch.full(shape, 0.25), v_leak=torch.zeros(shape)))

    rng = np.random.default_rng(4)
    net = dyadic_(norse.SequentialState(torch.nn.Linear(64, 32), lif((32,)), torch.nn.Linear(32, 10), lif((10,))),
                  rng, 1.0)
    x = torch.from_numpy((rng.integers(0, 9, size=(48, 64)) / 4).astype(np.float32))
    path = str(tmp_path / "lif.nir")
    nir.write(path, norse.to_nir(net, x[:1]))
    with torch.no_grad():
        state, counts = None, 0
        for _ in range(T):
            out, state = net(x, state)
            counts = counts + out
    counts = counts.numpy()
    assert counts.sum() > 100
    out = irc.compile(irc.load(path, dt=1e-6), target="spike-numpy", timesteps=T).run(x.numpy())
    # Norse integrates v + 0.1 (I - v), irc 0.9 v + 0.1 I: the same ODE step, rounded differently, so a membrane
    # at its threshold may fire a step apart: counts agree within a spike, and almost all exactly
    assert np.abs(out - counts).max() <= 1 and (out == counts).mean() >= 0.95


def test_norse_runs_an_irc_export_bit_for_bit(tmp_path):
    peers()
    norse = pytest.importorskip("norse.torch")
    prog, x = exact_program()
    path = str(tmp_path / "irc.nir")
    prog.to_nir(path)
    module = per_sample_flatten(norse.from_nir(nir.read(path)))
    with torch.no_grad():
        state, total = None, 0
        for _ in range(T):
            out, state = module(torch.from_numpy(x), state)
            total = total + out.double()
    scores = prog.run(x)
    assert np.unique(scores.argmax(1)).size > 1
    # every sum is exact (dyadic weights, power-of-two thresholds): the same spikes, so the same mean current
    np.testing.assert_array_equal((total / T).numpy().astype(np.float32), scores)


def test_snntorch_runs_an_irc_lif_export(tmp_path):
    peers()
    snn = pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir
    import snntorch.utils

    # snnTorch reads one threshold per layer (normalize='weights' makes them all 1) and reads NIR's IF as a
    # leaky neuron (beta 0.9), so the LIF form is the one it runs as written
    prog, x = exact_program(decay=0.75, normalize="weights")
    path = str(tmp_path / "lif.nir")
    prog.to_nir(path)
    module = per_sample_flatten(import_from_nir(nir.read(path)))
    snntorch.utils.reset(module)
    with torch.no_grad():
        total = 0
        for _ in range(T):
            out = module(torch.from_numpy(x))
            total = total + (out[0] if isinstance(out, tuple) else out).double()
    scores = prog.run(x)
    assert np.abs(scores).max() > 0
    # snnTorch's beta is 1 - dt/tau computed from the float32 tau irc wrote: 0.75 exactly, so bit for bit
    np.testing.assert_array_equal((total / T).numpy().astype(np.float32), scores)


@pytest.mark.slow
def test_digits_in_norse_give_irc_predictions(digits_exact):
    """Acceptance: the converted digits CNN, from irc's .nir, in Norse: the same predictions on every test digit."""
    peers()
    norse = pytest.importorskip("norse.torch")
    prog, path, x, y = digits_exact
    steps = 64
    module = per_sample_flatten(norse.from_nir(nir.read(path)))
    with torch.no_grad():
        state, total = None, 0
        for _ in range(steps):
            out, state = module(torch.from_numpy(x), state)
            total = total + out.double()
    theirs = (total / steps).numpy()
    ours = irc.compile(irc.load(path), target="spike-llvm", timesteps=steps).run(x)
    # the synaptic sums are rounded in torch's order and in irc's: a membrane within rounding of its threshold
    # can fire a step apart, so a few samples differ by a spike; all others agree to float tolerance
    close = np.isclose(theirs, ours, rtol=1e-5, atol=1e-4).all(axis=1)
    print(f"samples whose scores agree to float tolerance: {close.sum()}/{len(close)}")
    assert close.mean() >= 0.99
    np.testing.assert_array_equal(theirs.argmax(1), ours.argmax(1))
    print(f"digits at T={steps}: irc {100 * (ours.argmax(1) == y).mean():.2f}%, "
          f"Norse {100 * (theirs.argmax(1) == y).mean():.2f}%")
