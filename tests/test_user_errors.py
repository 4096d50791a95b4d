"""The newcomer's path: every bad flag, value or path is one clear line before any work, every hint works.

The CLI runs in this process (``irc.cli.main``): an exception other than the
handled IRCError would escape and fail the test, so "exit 2 with one
``irc: error:`` line" is exactly what a user sees.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from onnx import TensorProto, helper

import irc
from conftest import SAMPLES, ort_run
from irc.cli import main

DIGITS = os.path.join(SAMPLES, "digits")
CNN = os.path.join(DIGITS, "digits_cnn.onnx")
TEST = os.path.join(DIGITS, "test.npz")
CAL = os.path.join(DIGITS, "calibration.npz")


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def refused(capsys, *args, match: str) -> str:
    code, out, err = cli(capsys, *args)
    assert code == 2, (out, err)
    assert err.startswith("irc: error:") and match in err, err
    return out


# ---------------------------------------------------------------- models
def _model(nodes, inits, out_shape, path, in_shape=("N", 1, 8, 8)) -> str:
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return str(path)


def _weights(name, shape, rng, scale=0.5):
    return helper.make_tensor(name, TensorProto.FLOAT, list(shape), (rng.standard_normal(shape) * scale).ravel().tolist())


def two_relu_branches_then_maxpool(path) -> str:
    """Conv-ReLU and Conv-ReLU added, then MaxPool: a max over a sum of non-negative signals."""
    rng = np.random.default_rng(0)
    inits = [_weights("w1", (4, 1, 3, 3), rng), _weights("w2", (4, 1, 3, 3), rng), _weights("wd", (4 * 4 * 4, 10), rng)]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["x", "w2"], ["c2"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Add", ["r1", "r2"], ["s"]),
             helper.make_node("MaxPool", ["s"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("MatMul", ["f", "wd"], ["y"])]
    return _model(nodes, inits, ("N", 10), path)


def truly_signed_maxpool(path) -> str:
    rng = np.random.default_rng(1)
    inits = [_weights("w1", (4, 1, 3, 3), rng), _weights("wd", (4 * 4 * 4, 10), rng)]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c1"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("MatMul", ["f", "wd"], ["y"])]
    return _model(nodes, inits, ("N", 10), path)


def digits():
    d = np.load(TEST)
    return d["x"], d["y"], np.load(CAL)["x"]


# ------------------------------------------- item 3: the sign analysis and the maxpool hint
def test_a_max_pool_of_a_sum_of_relu_branches_converts_to_a_gated_pool(tmp_path):
    path = two_relu_branches_then_maxpool(tmp_path / "branches.onnx")
    x, _, cal = digits()
    snn = irc.compile(path, target="spike-numpy", calibration=cal, timesteps=128)
    ops = [n.op for n in snn.graph.nodes]
    assert "GatedMaxPool" in ops and "AvgPool" not in ops
    analog = ort_run(path, {"x": x[:64]})[0]
    spikes = snn.run(x[:64])
    assert np.corrcoef(analog.ravel(), spikes.ravel())[0, 1] > 0.98
    assert (spikes.argmax(1) == analog.argmax(1)).mean() > 0.9


def test_the_signed_max_pool_hint_resolves_the_error(tmp_path):
    path = truly_signed_maxpool(tmp_path / "signed.onnx")
    x, _, cal = digits()
    with pytest.raises(irc.UnsupportedError, match="signed, non-spiking signal") as e:
        irc.compile(path, target="spike-numpy", calibration=cal)
    assert "maxpool='avg'" in e.value.hint
    snn = irc.compile(path, target="spike-numpy", calibration=cal, maxpool="avg")   # what the hint says
    assert "AvgPool" in [n.op for n in snn.graph.nodes] and snn.run(x[:4]).shape == (4, 10)


def test_the_cli_form_of_the_maxpool_hint_works(tmp_path, capsys):
    path = truly_signed_maxpool(tmp_path / "signed.onnx")
    refused(capsys, "run", path, "--target", "spike-numpy", "--calibration", CAL, "--input", TEST,
            match="-O maxpool=avg")
    code, out, err = cli(capsys, "run", path, "--target", "spike-numpy", "--calibration", CAL, "--input", TEST,
                         "-O", "maxpool=avg", "--timesteps", "4", "--quiet", "--no-analog")
    assert code == 0, err


def test_the_calibration_hint_resolves_the_error():
    x, _, cal = digits()
    with pytest.raises(irc.IRCError, match="need calibration data") as e:
        irc.compile(CNN, target="spike-numpy")
    assert "calibration=x" in e.value.hint
    assert irc.compile(CNN, target="spike-numpy", calibration=cal, timesteps=4).run(x[:2]).shape == (2, 10)


def test_the_model_thresholds_hint_resolves_the_error():
    _, _, cal = digits()
    with pytest.raises(irc.IRCError, match="carries its own spiking thresholds") as e:
        irc.compile(CNN, target="spike-numpy", thresholds="model")
    assert "thresholds='calibrated'" in e.value.hint
    irc.compile(CNN, target="spike-numpy", thresholds="calibrated", calibration=cal)


def test_the_count_readout_hint_resolves_the_error():
    _, _, cal = digits()
    with pytest.raises(irc.IRCError, match="needs a spiking output layer") as e:
        irc.compile(CNN, target="spike-numpy", calibration=cal, readout="count")
    assert "potential readout" in e.value.hint
    irc.compile(CNN, target="spike-numpy", calibration=cal, readout="potential")


def test_what_spike_llvm_refuses_runs_on_spike_numpy_as_its_hint_says(tmp_path):
    """A 1-d convolution: spike-llvm runs 2-d ones only, and says to use spike-numpy."""
    rng = np.random.default_rng(3)
    path = _model([helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
                   helper.make_node("Flatten", ["r"], ["f"]), helper.make_node("MatMul", ["f", "wd"], ["y"])],
                  [_weights("w", (3, 2, 3), rng), _weights("wd", (3 * 6, 4), rng)], ("N", 4), tmp_path / "c1.onnx",
                  in_shape=("N", 2, 8))
    cal = rng.uniform(0, 1, (32, 2, 8)).astype(np.float32)
    with pytest.raises(irc.UnsupportedError, match="rank-3") as e:
        irc.compile(path, target="spike-llvm", calibration=cal)
    assert "spike-numpy" in e.value.hint
    assert irc.compile(path, target="spike-numpy", calibration=cal, timesteps=4).run(cal[:2]).shape == (2, 4)


# ------------------------------------------- item 4: bad values and output paths, before any work
@pytest.mark.parametrize("option,match", [
    ("percentile=abc", "option 'percentile' must be a number"),
    ("timesteps=abc", "option 'timesteps' must be an integer"),
    ("decay=abc", "option 'decay' must be a number"),
    ("maxpool=foo", "option 'maxpool' must be one of gated, avg"),
    ("neuron_init=nan", "option 'neuron_init' must be a number"),
    ("threads=-1", "option 'threads' is '-1', out of range"),
    ("percentile=0", "out of range"),
    ("bogus=1", "has no option(s) ['bogus']"),
])
def test_bad_option_values_are_one_line(capsys, option, match):
    target = "spike-llvm"
    out = refused(capsys, "run", CNN, "--target", target, "--calibration", CAL, "--input", TEST, "-O", option,
                  match=match)
    assert "model:" not in out            # refused before compiling


@pytest.mark.parametrize("flags,match", [
    (["--timesteps", "1,,2"], "--timesteps takes positive integers"),
    (["--timesteps", "1000000000000"], "integers from 1 to 100,000"),
    (["--timesteps", "0"], "integers from 1 to 100,000"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--batch-size", "-1"], "--batch-size must be at least 1"),
])
def test_bad_flag_values_are_one_line(capsys, flags, match):
    refused(capsys, "run", CNN, "--target", "spike-numpy", "--calibration", CAL, "--input", TEST, *flags, match=match)


@pytest.mark.parametrize("args", [
    ["compile", CNN, "-o", "{missing}/net.ircp"],
    ["compile", CNN, "--emit", "source", "-o", "{missing}/net.py"],
    ["compile", CNN, "--emit", "ir", "-o", "{missing}/net.ir"],
    ["run", CNN, "--input", TEST, "--output", "{missing}/scores.npy"],
    ["run", CNN, "--target", "spike-numpy", "--calibration", CAL, "--input", TEST, "--plot", "{missing}/p.png"],
])
def test_an_output_path_in_a_missing_folder_is_refused_before_any_work(tmp_path, capsys, args):
    missing = str(tmp_path / "no" / "such")
    out = refused(capsys, *[a.format(missing=missing) for a in args], match="does not exist")
    assert "model:" not in out


def test_an_output_path_that_is_a_folder_is_refused(tmp_path, capsys):
    refused(capsys, "compile", CNN, "-o", tmp_path, match="is a folder")


# ------------------------------------------- item 5: nothing silently ignored
@pytest.fixture
def artifacts(tmp_path_factory):
    d = tmp_path_factory.mktemp("art")
    _, _, cal = digits()
    irc.compile(CNN, target="spike-numpy", calibration=cal, timesteps=8).save(str(d / "snn.ircp"))
    irc.compile(CNN, target="numpy").save(str(d / "ann.ircp"))
    return d


@pytest.mark.parametrize("args,match", [
    (["snn.ircp", "--target", "spike-llvm"], "is a spike-numpy program; --target spike-llvm cannot change it"),
    (["snn.ircp", "--calibration", CAL], "--calibration cannot change a compiled program"),
    (["snn.ircp", "--encoding", "poisson"], "--encoding cannot change a compiled program"),
    (["snn.ircp", "-O", "reset=zero"], "-O cannot change a compiled program"),
    (["ann.ircp", "--timesteps", "4"], "--timesteps applies to spiking programs"),
])
def test_flags_an_artifact_cannot_honour_are_errors(artifacts, capsys, args, match):
    refused(capsys, "run", artifacts / args[0], "--input", TEST, *args[1:], match=match)


def test_an_artifact_runs_with_its_own_target_given_explicitly(artifacts, capsys):
    code, out, err = cli(capsys, "run", artifacts / "snn.ircp", "--target", "spike-numpy", "--input", TEST,
                         "--timesteps", "2,4", "--quiet", "--no-analog")
    assert code == 0, err
    assert "target: spike-numpy" in out


def test_float64_inputs_are_cast_with_a_warning(tmp_path, capsys):
    x, y, _ = digits()
    np.save(tmp_path / "x64.npy", x.astype(np.float64))
    code, out, err = cli(capsys, "run", CNN, "--input", tmp_path / "x64.npy", "--quiet")
    assert code == 0, err
    assert "irc: warning: input" in err and "float64" in err and "float32" in err
    np.save(tmp_path / "xc.npy", x.astype(np.complex64))
    refused(capsys, "run", CNN, "--input", tmp_path / "xc.npy", match="element type complex64")


def test_zero_samples_and_a_scalar_input_are_one_line(tmp_path, capsys):
    np.save(tmp_path / "empty.npy", np.zeros((0, 1, 8, 8), np.float32))
    refused(capsys, "run", CNN, "--input", tmp_path / "empty.npy", match="no samples")
    np.save(tmp_path / "scalar.npy", np.float32(1.0))
    refused(capsys, "run", CNN, "--input", tmp_path / "scalar.npy", match="is a scalar")


def test_a_fixed_batch_model_runs_many_samples_in_chunks(tmp_path, capsys):
    rng = np.random.default_rng(4)
    path = _model([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])],
                  [_weights("w", (64, 10), rng)], (1, 10), tmp_path / "fixed.onnx", in_shape=(1, 1, 8, 8))
    x, y, _ = digits()
    np.save(tmp_path / "x.npy", x[:7])
    code, out, err = cli(capsys, "run", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "s.npy", "--quiet")
    assert code == 0, err
    expected = np.concatenate([ort_run(path, {"x": x[i:i + 1]})[0] for i in range(7)])
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), expected, rtol=1e-5, atol=1e-6)


def test_a_target_that_cannot_run_here_is_refused_before_anything_runs(capsys):
    from irc.registry import backend_for

    ok, _ = backend_for("spike-cuda").available()
    if ok:
        pytest.skip("a GPU is visible: spike-cuda runs here")
    out = refused(capsys, "run", CNN, "--target", "spike-cuda", "--calibration", CAL, "--input", TEST,
                  match="target 'spike-cuda' cannot run here")
    assert "analog network" not in out and "model:" not in out


# ------------------------------------------- item 7: emitted source comes with what it needs
def test_emitted_llvm_source_builds_and_reproduces_the_program(tmp_path, capsys):
    import ctypes

    import llvmlite.binding as llvm

    from irc.backends.llvm.jit import _target_machine

    code, out, err = cli(capsys, "compile", CNN, "--target", "spike-llvm", "--calibration", CAL, "--timesteps", "8",
                         "--emit", "source", "-o", tmp_path / "net.ll")
    assert code == 0, err
    layout = json.loads((tmp_path / "net.layout.json").read_text())
    text = (tmp_path / "net.ll").read_text()
    assert text.startswith("; net.ll:") and "void irc_run(" in text
    mod = llvm.parse_assembly(text)
    mod.verify()
    engine = llvm.create_mcjit_compiler(mod, _target_machine())
    engine.finalize_object()
    P, I = ctypes.c_void_p, ctypes.c_int64
    fn = ctypes.CFUNCTYPE(None, P, P, P, I, I, I, I, P, I, P, P, P)(engine.get_function_address(layout["entry"]))

    def aligned(nbytes):
        raw = np.zeros(nbytes + 64, np.uint8)
        start = (-raw.ctypes.data) % 64
        return raw[start:start + nbytes]

    consts = aligned(layout["consts_bytes"])
    consts[:] = np.frombuffer((tmp_path / "net.consts.bin").read_bytes(), np.uint8)
    scratch = aligned(layout["scratch_bytes_per_thread"])
    x = np.ascontiguousarray(digits()[0][:5])
    cps = np.array([8], np.int64)
    scores = np.zeros((1, 5, layout["scores"]["size"]), np.float32)
    steps = np.zeros((1, 5), np.int64)
    counters = np.zeros((1, 5, len(layout["counters"])), np.int64)
    fn(consts.ctypes.data, scratch.ctypes.data, x.ctypes.data, 0, 5, 5, 0, cps.ctypes.data, 1, scores.ctypes.data,
       steps.ctypes.data, counters.ctypes.data)
    mine = scores[0][:, layout["scores"]["nchw_index_of_internal"]]
    prog = irc.compile(CNN, target="spike-llvm", calibration=digits()[2], timesteps=8)
    np.testing.assert_array_equal(mine, prog.run(x))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_emitted_cuda_source_compiles_and_comes_with_its_constants(tmp_path, capsys):
    code, out, err = cli(capsys, "compile", CNN, "--target", "cuda", "--emit", "source", "-o", tmp_path / "net.cu")
    assert code == 0, err
    text = (tmp_path / "net.cu").read_text()
    assert "nvcc --ptx net.cu" in text and "k1_conv(" in text
    consts = np.load(tmp_path / "net.consts.npz")
    assert len(consts.files) > 0
    r = subprocess.run(["nvcc", "--ptx", "-std=c++14", str(tmp_path / "net.cu"), "-o", str(tmp_path / "net.ptx")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
