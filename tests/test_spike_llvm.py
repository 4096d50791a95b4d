"""spike-llvm against the spike-numpy reference.

Property-based: random small networks whose weights, biases, inputs and
(power-of-two) thresholds are exactly representable, so every sum is exact
and the two backends must agree bit for bit whatever their summation order:
identical per-sample, per-layer spike counts and synaptic operations,
identical steps used, identical scores.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import irc
from irc.graph import Graph
from irc.types import TensorType
from conftest import SAMPLES

Q = 64.0  # weights and inputs are multiples of 1/64


def q(rng, shape, lo, hi):
    return (np.round(rng.uniform(lo, hi, shape) * Q) / Q).astype(np.float32)


def conv_attrs(k, pad, stride):
    return {"strides": [stride, stride], "pads": [pad] * 4, "dilations": [1, 1]}


@st.composite
def networks(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    c = draw(st.integers(1, 3))
    h = draw(st.sampled_from([4, 6, 8]))
    g = Graph("random")
    x = g.add_input("x", TensorType(("N", c, h, h)))
    cur, ch = x, c
    pool = draw(st.sampled_from(["none", "max", "avg"]))
    residual = draw(st.booleans())
    n_conv = draw(st.integers(1, 2))
    for i in range(n_conv):
        k = draw(st.sampled_from([1, 3]))
        stride = draw(st.sampled_from([1, 2])) if i == 0 else 1
        m = draw(st.integers(2, 4))
        w = g.add_param(f"w{i}", q(rng, (m, ch, k, k), -1, 1))
        b = g.add_param(f"b{i}", q(rng, (m,), -0.25, 0.25))
        ins = [cur, w, b]
        if i == 1 and draw(st.booleans()):  # an N2D2-style channel mapping (connectivity mask)
            mask = rng.random((m, ch)) < 0.6
            mask[np.arange(m), np.arange(m) % ch] = True
            ins.append(g.add_param("mapping", mask.astype(np.float32)))
        cur = g.add_node("Conv", ins, conv_attrs(k, k // 2, stride), name=f"conv{i}").output
        cur = g.add_node("Relu", [cur], name=f"relu{i}").output
        ch = m
        if i == 0 and pool != "none" and cur.type.shape[2] % 2 == 0:
            op = "MaxPool" if pool == "max" else "AvgPool"
            cur = g.add_node(op, [cur], {"kernel": [2, 2], "strides": [2, 2]}, name="pool").output
        if i == n_conv - 1 and residual:
            w = g.add_param("wr", q(rng, (ch, ch, 3, 3), -0.5, 0.5))
            y = g.add_node("Conv", [cur, w], conv_attrs(3, 1, 1), name="res_conv").output
            y = g.add_node("Add", [y, cur], name="res_add").output
            cur = g.add_node("Relu", [y], name="res_relu").output
    cur = g.add_node("Flatten", [cur], {"axis": 1}, name="flat").output
    hidden = draw(st.integers(3, 6))
    w = g.add_param("wd", q(rng, (hidden, cur.type.shape[1]), -0.5, 0.5))
    cur = g.add_node("Dense", [cur, w, g.add_param("bd", q(rng, (hidden,), -0.25, 0.25))], name="dense").output
    cur = g.add_node("Relu", [cur], name="dense_relu").output
    classes = draw(st.integers(2, 4))
    w = g.add_param("wo", q(rng, (classes, hidden), -1, 1))
    out = g.add_node("Dense", [cur, w], name="out").output
    g.outputs.append(out)
    options = {
        "encoding": draw(st.sampled_from(["current", "poisson", "periodic"])),
        "reset": draw(st.sampled_from(["subtract", "zero"])),
        "negative": draw(st.sampled_from(["none", "bipolar", "corrective"])),
        "decay": draw(st.sampled_from([1.0, 0.5])),
        "maxpool": draw(st.sampled_from(["gated", "avg"])),
        "terminate_delta": draw(st.sampled_from([0.0, 0.0, 2.0])),
        "normalize": draw(st.sampled_from(["thresholds", "weights"])),
        "seed": draw(st.integers(0, 1000)),
    }
    data = q(rng, (12, c, h, h), 0, 1)
    return g, options, data


def per_sample(prog, x, timesteps):
    return prog._simulate({"x": x}, 0, timesteps)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_llvm_equals_numpy_on_exactly_representable_networks(case):
    graph, options, data = case
    common = dict(calibration=data, scale_rounding="pow2", timesteps=12, **options)
    ref = irc.compile(graph, target="spike-numpy", **common)
    llvm = irc.compile(graph, target="spike-llvm", threads=2, **common)
    checkpoints = [3, 7, 12]
    want = per_sample(ref, data, checkpoints)
    got = per_sample(llvm, data, checkpoints)
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g.steps, w.steps)
        assert set(g.spikes) == set(w.spikes) and set(g.synops) == set(w.synops)
        for name in w.spikes:
            np.testing.assert_array_equal(g.spikes[name], w.spikes[name], err_msg=f"spikes of {name}")
        for name in w.synops:
            np.testing.assert_array_equal(g.synops[name], w.synops[name], err_msg=f"synaptic ops of {name}")
        np.testing.assert_array_equal(g.scores[0], w.scores[0])


def test_gated_pool_bipolar_and_leak_are_exercised():
    """The generator above covers the semantics we claim; make sure a draw with all of them exists."""
    rng = np.random.default_rng(0)
    g = Graph("all")
    x = g.add_input("x", TensorType(("N", 1, 6, 6)))
    w = g.add_param("w", q(rng, (3, 1, 3, 3), -1, 1))
    c = g.add_node("Conv", [x, w], conv_attrs(3, 1, 1)).output
    r = g.add_node("Relu", [c]).output
    p = g.add_node("MaxPool", [r], {"kernel": [2, 2], "strides": [2, 2]}).output
    f = g.add_node("Flatten", [p], {"axis": 1}).output
    o = g.add_node("Dense", [f, g.add_param("wo", q(rng, (2, 27), -1, 1))]).output
    g.outputs.append(o)
    data = q(rng, (16, 1, 6, 6), 0, 1)
    common = dict(calibration=data, scale_rounding="pow2", timesteps=16, negative="bipolar", decay=0.5,
                  encoding="poisson", reset="subtract")
    ref = irc.compile(g, target="spike-numpy", **common)
    llvm = irc.compile(g, target="spike-llvm", **common)
    assert ref.graph.find("GatedMaxPool") and ref.graph.find("IF")[0].attrs["negative"] == "bipolar"
    w_, g_ = per_sample(ref, data, [16])[0], per_sample(llvm, data, [16])[0]
    assert sum(v.sum() for v in w_.spikes.values()) > 0
    np.testing.assert_array_equal(g_.scores[0], w_.scores[0])
    for name in w_.spikes:
        np.testing.assert_array_equal(g_.spikes[name], w_.spikes[name])


def test_digits_sample_agrees_with_spike_numpy():
    digits = os.path.join(SAMPLES, "digits")
    test = np.load(os.path.join(digits, "test.npz"))
    cal = np.load(os.path.join(digits, "calibration.npz"))["x"]
    path = os.path.join(digits, "digits_cnn.onnx")
    x, y = test["x"], test["y"]
    ref = irc.compile(path, target="spike-numpy", calibration=cal, timesteps=32)
    llvm = irc.compile(path, target="spike-llvm", calibration=cal, timesteps=32)
    a, b = ref.run(x).argmax(1), llvm.run(x).argmax(1)
    agreement = float((a == b).mean())
    acc_ref, acc_llvm = 100 * float((a == y).mean()), 100 * float((b == y).mean())
    assert agreement >= 0.995, agreement
    assert abs(acc_ref - acc_llvm) <= 0.2, (acc_ref, acc_llvm)


def test_unsupported_op_is_named_at_compile_time():
    g = Graph("mm")
    x = g.add_input("x", TensorType(("N", 4)))
    w = g.add_param("w", np.ones((4, 3), np.float32))
    y = g.add_node("MatMul", [x, w], name="matmul_layer").output
    r = g.add_node("Relu", [y]).output
    o = g.add_node("Dense", [r, g.add_param("wo", np.ones((2, 3), np.float32))]).output
    g.outputs.append(o)
    with pytest.raises(irc.UnsupportedError, match="MatMul \\(node 'matmul_layer'\\)"):
        irc.compile(g, target="spike-llvm", calibration=np.ones((4, 4), np.float32))


def test_emit_source_is_llvm_ir(tmp_path):
    digits = os.path.join(SAMPLES, "digits")
    cal = np.load(os.path.join(digits, "calibration.npz"))["x"]
    prog = irc.compile(os.path.join(digits, "digits_cnn.onnx"), target="spike-llvm", calibration=cal, timesteps=8)
    assert prog.source.startswith("; ModuleID") and "define void @\"irc_run\"" in prog.source
    prog.save(str(tmp_path / "p.ircp"))
    back = irc.load_program(str(tmp_path / "p.ircp"))
    x = np.load(os.path.join(digits, "test.npz"))["x"][:20]
    np.testing.assert_array_equal(back.run(x), prog.run(x))
