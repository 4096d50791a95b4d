"""Spiking semantics and conversion, checked against hand computations and the analog network."""
import os

import numpy as np
import pytest

import irc
from irc.ops.spiking import IF, Encode, GatedMaxPool, spike_hash
from irc.text import parse_graph
from conftest import SAMPLES

DIGITS = os.path.join(SAMPLES, "digits")


def digits(name="digits_cnn"):
    data = np.load(os.path.join(DIGITS, "test.npz"))
    cal = np.load(os.path.join(DIGITS, "calibration.npz"))["x"]
    return os.path.join(DIGITS, name + ".onnx"), data["x"], data["y"], cal


def accuracy(scores, labels):
    return 100.0 * float((np.asarray(scores).argmax(axis=1) == labels).mean())


# ----------------------------------------------------------- by hand
HAND = """graph "hand" {
  input %x : f32[N,2]
  param %w1 : f32[2,2]
  param %th : f32[2]
  param %w2 : f32[2,2]
  %c : current f32[N,2] = Encode(%x)
  %i1 : current f32[N,2] = Dense(%c, %w1)
  %s1 : spike f32[N,2] = IF(%i1, %th)
  %i2 : current f32[N,2] = Dense(%s1, %w2)
  %y : f32[N,2] = Readout(%i2)
  output %y
}
"""


def hand_program(**attrs):
    params = {"w1": np.array([[0.5, 0.25], [0.25, -0.5]], np.float32), "th": np.ones(2, np.float32),
              "w2": np.array([[1.0, 0.0], [0.5, 1.0]], np.float32)}
    g = parse_graph(HAND, params)
    from irc.backends.spike_numpy import SpikeNumpyProgram

    return SpikeNumpyProgram(g, {"timesteps": 4})


def test_a_network_small_enough_to_compute_by_hand():
    # x = (1, 0.5): neuron 0 gets 0.5 + 0.125 = 0.625 per step, neuron 1 gets 0.25 - 0.25 = 0.
    # Neuron 0 from v = 0.5: 1.125 fire (0.125), 0.75, 1.375 fire (0.375), 1.0 fire (0): spikes 1 0 1 1.
    # Neuron 1 stays at 0.5 and never fires.  Output current per step = w2 @ s: (1, .5), 0, (1, .5), (1, .5).
    prog = hand_program()
    x = np.array([[1.0, 0.5]], np.float32)
    trace = prog.trace(x, timesteps=4)
    np.testing.assert_array_equal(trace["s1"][:, 0, 0], [1, 0, 1, 1])
    np.testing.assert_array_equal(trace["s1"][:, 0, 1], [0, 0, 0, 0])
    np.testing.assert_array_equal(prog.run(x, timesteps=4), [[0.75, 0.375]])
    # statistics: 3 events, each with a fan-out of 2 -> 6 synaptic accumulates; the input layer's
    # two constant currents reach 2 outputs each, computed once for the 4 steps -> 4 multiply-accumulates
    # (its result is then added each step, like a bias).
    s = prog.stats
    assert s["spikes"] == 3
    assert s["synaptic_ops_ac"] == 6 and s["synaptic_ops_mac"] == 4


def test_neuron_modes_by_hand():
    current = np.array([1.0, -1.0, 0.0, 0.0, -2.5, 0.0], np.float32).reshape(6, 1, 1)
    th = np.ones(1, np.float32)
    base = {"reset": "subtract", "init": 0.5, "decay": 1.0}
    # v: 1.5 -> fire (0.5), -0.5, -0.5, -0.5, -3.0, -3.0
    np.testing.assert_array_equal(IF.simulate(current, th, {**base, "negative": "none"})[:, 0, 0], [1, 0, 0, 0, 0, 0])
    # corrective: the -1 at step 1 takes the spike back (net count 0), then no more negatives
    np.testing.assert_array_equal(IF.simulate(current, th, {**base, "negative": "corrective"})[:, 0, 0],
                                  [1, -1, 0, 0, 0, 0])
    # bipolar: -0.5 stays above -1; -3.0 fires -1 (-> -2.0), then -2.0 fires -1 (-> -1.0)
    np.testing.assert_array_equal(IF.simulate(current, th, {**base, "negative": "bipolar"})[:, 0, 0],
                                  [1, 0, 0, 0, -1, -1])
    # reset to zero; leak 0.5 applied before the input
    np.testing.assert_array_equal(
        IF.simulate(np.full((4, 1, 1), 0.75, np.float32), th, {**base, "negative": "none", "reset": "zero",
                                                               "decay": 0.5})[:, 0, 0],
        [1, 0, 1, 0])  # v: .25+.75=1.0 fire ->0; .75; .375+.75=1.125 fire ->0; .75


def test_gated_max_pool_passes_the_leader_by_hand():
    # inputs a, b, c, d of one 2x2 window over 6 steps
    a = [1, 0, 0, 1, 0, 0]
    b = [0, 1, 1, 0, 0, 0]
    c = [0, 0, 0, 0, 1, 1]
    d = [0, 0, 0, 0, 0, 0]
    spikes = np.array([a, b, c, d], np.float32).T.reshape(6, 1, 1, 2, 2)
    out = GatedMaxPool.simulate(spikes, {"kernel": [2, 2], "strides": [2, 2], "pads": [], "dilations": [],
                                         "ceil_mode": False})
    # counts a:1,1,1,2,2,2 b:0,1,2,2,2,2 c:0,0,0,0,1,2 -> leader count 1,1,2,2,2,2:
    # a passes at t0; b ties at t1 (a keeps the lead, a silent); b leads at t2 (passes);
    # a ties at t3 (b keeps the lead, b silent); c reaches 2 only at t5 (a tie): nothing.
    np.testing.assert_array_equal(out.reshape(6), [1, 0, 1, 0, 0, 0])


# ------------------------------------------------------------ encodings
def _reference_hash(seed, sample, step, index):
    """The documented hash, written independently with Python integers."""
    def fmix(h):
        h ^= h >> 16
        h = (h * 0x85EBCA6B) & 0xFFFFFFFF
        h ^= h >> 13
        h = (h * 0xC2B2AE35) & 0xFFFFFFFF
        return h ^ (h >> 16)
    h = fmix((seed + 0x9E3779B9) & 0xFFFFFFFF)
    h = fmix(h ^ sample)
    h = fmix(h ^ ((step * 0x85EBCA77) & 0xFFFFFFFF))
    return fmix(h ^ ((index * 0xC2B2AE3D) & 0xFFFFFFFF))


def test_hash_matches_its_documented_formula():
    rng = np.random.default_rng(0)
    for _ in range(200):
        seed, sample, step, index = (int(v) for v in rng.integers(0, 2**32 - 1, 4))
        assert int(spike_hash(seed, sample, step, index)) == _reference_hash(seed, sample, step, index)


def test_poisson_same_seed_same_spikes_and_rate_tracks_intensity():
    x = np.array([[0.0, 0.1, 0.25, 0.5, 0.9, 1.0, -0.5]], np.float32)
    a = {"mode": "poisson", "gain": 1.0, "seed": 7}
    s1 = Encode.simulate(x, a, 4000)
    s2 = Encode.simulate(x, a, 4000)
    s3 = Encode.simulate(x, dict(a, seed=8), 4000)
    np.testing.assert_array_equal(s1, s2)
    assert (s1 != s3).any()
    rates = s1.mean(axis=0)[0]
    np.testing.assert_allclose(rates, x[0], atol=0.025)
    assert rates[0] == 0 and rates[5] == 1.0 and (s1[:, 0, 6] <= 0).all()  # sign carried by the events


def test_poisson_spikes_do_not_depend_on_chunking():
    x = np.random.default_rng(1).uniform(0, 1, (6, 5)).astype(np.float32)
    a = {"mode": "poisson", "gain": 1.0, "seed": 3}
    whole = Encode.simulate(x, a, 16)
    parts = np.concatenate([Encode.simulate(x[:2], a, 16, 0), Encode.simulate(x[2:], a, 16, 2)], axis=1)
    np.testing.assert_array_equal(whole, parts)


def test_periodic_rate_is_exact_within_one_spike():
    x = np.linspace(0, 1, 11, dtype=np.float32)[None]
    s = Encode.simulate(x, {"mode": "periodic", "gain": 1.0, "seed": 1}, 64)
    counts = s.sum(axis=0)[0]
    assert np.all(np.abs(counts - x[0] * 64) <= 1.0)
    assert set(np.unique(s)) <= {0.0, 1.0}


# ----------------------------------------------------------- conversion
def test_threshold_folding_and_weight_scaling_give_identical_spikes():
    path, x, y, cal = digits()
    kw = dict(target="spike-numpy", calibration=cal, timesteps=16, scale_rounding="pow2")
    p_th = irc.compile(path, normalize="thresholds", **kw)
    p_w = irc.compile(path, normalize="weights", **kw)
    assert {float(v) for n in p_w.graph.find("IF") for v in p_w.graph.param(n.inputs[1])} == {1.0}
    assert any(float(v) != 1.0 for n in p_th.graph.find("IF") for v in p_th.graph.param(n.inputs[1]))
    t_th, t_w = p_th.trace(x[:40]), p_w.trace(x[:40])
    assert t_th.keys() == t_w.keys() and len(t_th) >= 4
    for name in t_th:
        np.testing.assert_array_equal(t_th[name], t_w[name], err_msg=name)
    np.testing.assert_array_equal(p_th.run(x[:40]), p_w.run(x[:40]))


@pytest.mark.parametrize("name", ["digits_resnet", "digits_inception", "digits_bn_maxpool"])
def test_residual_concat_and_softmax_networks_convert_close_to_analog(name):
    path, x, y, cal = digits(name)
    analog = accuracy(irc.compile(path).run(x), y)
    prog = irc.compile(path, target="spike-numpy", calibration=cal, timesteps=32)
    spiking = accuracy(prog.run(x), y)
    assert analog - spiking <= 1.0, (analog, spiking)
    ops = {n.op for n in prog.graph.nodes}
    assert "IF" in ops and not ops & {"Relu", "Softmax", "MaxPool", "BatchNorm"}


def test_gated_max_pool_is_what_the_converted_network_uses():
    path, x, y, cal = digits("digits_bn_maxpool")
    prog = irc.compile(path, target="spike-numpy", calibration=cal, timesteps=8)
    assert len(prog.graph.find("GatedMaxPool")) == 2


def test_terminate_delta_lowers_mean_timesteps_with_little_loss():
    path, x, y, cal = digits()
    full = irc.compile(path, target="spike-numpy", calibration=cal, timesteps=32)
    early = irc.compile(path, target="spike-numpy", calibration=cal, timesteps=32, terminate_delta=2.0)
    acc_full = accuracy(full.run(x), y)
    acc_early = accuracy(early.run(x), y)
    assert early.stats["mean_timesteps"] < 0.5 * full.stats["mean_timesteps"]
    assert acc_full - acc_early <= 0.5
    assert early.stats["synaptic_ops"] < full.stats["synaptic_ops"]


def test_hidden_sigmoid_is_refused_with_the_node_and_ways_out():
    text = """graph "g" {
  input %x : f32[N,4]
  param %w : f32[3,4]
  param %w2 : f32[2,3]
  %h : f32[N,3] = Dense(%x, %w)
  %s : f32[N,3] = Sigmoid(%h) as hidden_sigmoid
  %y : f32[N,2] = Dense(%s, %w2)
  output %y
}
"""
    g = parse_graph(text)
    with pytest.raises(irc.UnsupportedError) as e:
        irc.compile(g, target="spike-numpy", calibration=np.ones((4, 4), np.float32))
    assert "hidden_sigmoid" in str(e.value) and "Sigmoid has no spiking equivalent" in str(e.value)
    assert "ReLU" in str(e.value)


def test_spiking_needs_calibration():
    with pytest.raises(irc.IRCError, match="calibration"):
        irc.compile(digits()[0], target="spike-numpy")


def test_sweep_equals_separate_runs():
    path, x, y, cal = digits()
    prog = irc.compile(path, target="spike-numpy", calibration=cal, timesteps=16)
    points = prog.sweep(x[:30], timesteps=[4, 16])
    # equal up to float summation order (BLAS blocks a T*N batch differently)
    np.testing.assert_allclose(points[0].scores, prog.run(x[:30], timesteps=4), rtol=1e-4, atol=1e-5)
    assert points[0].stats["synaptic_ops"] == prog.stats["synaptic_ops"]
    np.testing.assert_allclose(points[1].scores, prog.run(x[:30], timesteps=16), rtol=1e-4, atol=1e-5)


def test_statistics_add_up():
    path, x, y, cal = digits()
    prog = irc.compile(path, target="spike-numpy", calibration=cal, timesteps=8)
    prog.run(x[:20])
    s = prog.stats
    assert s["synaptic_ops"] == s["synaptic_ops_ac"] + s["synaptic_ops_mac"] == sum(s["synaptic_ops_per_layer"].values())
    assert s["macs"] == 20 * irc.analysis.macs_per_sample(irc.compile(path).graph)
    # the constant-current input layer does the analog layer's MACs once per sample, not on each of the 8
    # steps: exactly its nonzero inputs times their fan-outs
    first = prog.graph.find("Conv")[0]
    assert first.attrs["strides"] == [1, 1] and first.attrs["pads"] == [1, 1, 1, 1]   # 3x3, 'same', 16 outputs
    m, _, k, _ = first.inputs[1].type.shape
    reach = np.zeros((8 + 2, 8 + 2))   # how many output positions read each (padded) input position
    for oy in range(8):
        for ox in range(8):
            reach[oy:oy + k, ox:ox + k] += 1
    fanout = m * reach[1:-1, 1:-1]
    want = int(sum(fanout[xi[0] != 0].sum() for xi in x[:20]))
    assert s["synaptic_ops_mac"] == s["synaptic_ops_per_layer"][first.name] == want
    assert 0 < s["sops_per_mac"] and s["energy_pj"]["snn"] > 0
    assert all(0 <= layer["rate"] <= 1 for layer in s["layers"].values())


def test_spiking_artifact_round_trip(tmp_path):
    path, x, y, cal = digits()
    prog = irc.compile(path, target="spike-numpy", calibration=cal, timesteps=8, encoding="poisson", seed=5)
    prog.save(str(tmp_path / "s.ircp"))
    back = irc.load_program(str(tmp_path / "s.ircp"))
    np.testing.assert_array_equal(prog.run(x[:10]), back.run(x[:10]))
    np.testing.assert_array_equal(back.analog().run(x[:10]), irc.compile(path).run(x[:10]))


def _depth_to_space_before_a_global_pool():
    """Conv -> ReLU -> DepthToSpace -> GlobalAveragePool -> Gemm: channels moved into positions after the
    neurons, so the pool averages spikes of different per-channel units."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 2, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((3, 2)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("DepthToSpace", ["r"], ["d"], blocksize=2),
             helper.make_node("GlobalAveragePool", ["d"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "w2"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, ["N", 2, 4, 4])],
                          [helper.make_tensor_value_info("y", 1, ["N", 3])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(w2, "w2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    return m, rng.standard_normal((64, 2, 4, 4)).astype(np.float32)


def test_an_average_over_positions_of_unequal_units_is_refused_and_its_hint_works():
    from irc.frontends.onnx import from_model

    model, x = _depth_to_space_before_a_global_pool()
    with pytest.raises(irc.IRCError, match="averages positions whose spike units differ") as e:
        irc.compile(from_model(model), target="spike-numpy", calibration=x)
    assert "node 'g'" in str(e.value) and "-O threshold=percentile -O per_channel=false" in str(e.value)
    analog = irc.compile(from_model(model), target="numpy").run(x)
    spiking = irc.compile(from_model(model), target="spike-numpy", calibration=x, threshold="percentile",
                          per_channel=False).run(x)
    assert np.corrcoef(analog.ravel(), spiking.ravel())[0, 1] > 0.99
