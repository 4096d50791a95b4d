"""The command line, run as a user would: exit codes, messages, files written."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import onnx_fixture, ort_run

IRC = [sys.executable, "-m", "irc.cli"]


def irc_cli(*args, cwd=None):
    """Run the CLI of the installed package (from outside the source tree, so that
    the checkout's top-level folders cannot shadow it)."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        return subprocess.run(IRC + [str(a) for a in args], capture_output=True, text=True, cwd=cwd or scratch)


@pytest.fixture
def lenet_data(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 1, 32, 32)).astype(np.float32)
    ref = ort_run(onnx_fixture("lenet5_tanh"), {"x": x})[0]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", ref.argmax(axis=1))
    return tmp_path, x, ref


def test_run_reports_accuracy(lenet_data):
    d, x, ref = lenet_data
    r = irc_cli("run", onnx_fixture("lenet5_tanh"), "--input", d / "x.npy", "--labels", d / "y.npy")
    assert r.returncode == 0, r.stderr
    assert "accuracy: 100.00% (6/6)" in r.stdout
    assert "per sample" in r.stdout


def test_compile_artifact_then_run_it(lenet_data):
    d, x, ref = lenet_data
    art = d / "lenet.ircp"
    r = irc_cli("compile", onnx_fixture("lenet5_tanh"), "--target", "numpy", "-o", art)
    assert r.returncode == 0, r.stderr
    r = irc_cli("run", art, "--input", d / "x.npy", "--output", d / "scores.npy")
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(d / "scores.npy"), ref, rtol=1e-4, atol=1e-5)


def test_emit_source_runs_with_numpy_alone(lenet_data):
    d, x, ref = lenet_data
    r = irc_cli("compile", onnx_fixture("lenet5_tanh"), "--emit", "source", "-o", d / "lenet_gen.py")
    assert r.returncode == 0, r.stderr
    assert (d / "lenet_gen.npz").exists()
    src = (d / "lenet_gen.py").read_text()
    imports = [line for line in src.splitlines() if line.startswith(("import ", "from "))]
    assert all(line.split()[1].split(".")[0] in ("os", "sys", "threading", "numpy") for line in imports), imports
    code = (f"import sys, numpy as np; sys.path.insert(0, {str(d)!r}); import lenet_gen; "
            "print(repr(lenet_gen.run(lenet_gen.load_weights(), np.load('x.npy'))[0].tolist()))")
    # -I: isolated mode, so irc itself is not importable from the working directory
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=d)
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(np.array(eval(out.stdout)), ref, rtol=1e-4, atol=1e-5)


def test_emit_ir(lenet_data):
    d, _, _ = lenet_data
    r = irc_cli("compile", onnx_fixture("lenet5_tanh"), "--emit", "ir", "-o", d / "lenet.ir")
    assert r.returncode == 0, r.stderr
    text = (d / "lenet.ir").read_text()
    assert text.startswith('graph "lenet5_tanh"') and "Conv(" in text


def test_inspect_table():
    r = irc_cli("inspect", onnx_fixture("lenet5_tanh"))
    assert r.returncode == 0, r.stderr
    # LeNet-5 MACs: 6*28*28*25 + 16*10*10*150 + 400*120 + 120*84 + 84*10
    assert "416,520 MACs per sample" in r.stdout
    assert "61,706 parameters" in r.stdout


def test_targets_lists_numpy():
    r = irc_cli("targets")
    assert r.returncode == 0
    assert "numpy" in r.stdout and "available" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "missing.onnx", "--input", "x.npy"], "missing.onnx: file not found"),
    (["run", "truncated.onnx", "--input", "x.npy"], "truncated.onnx: not a readable ONNX model"),
    (["run", "unsupported.onnx", "--input", "x.npy"], "unsupported op(s): Sin"),
    (["run", onnx_fixture("lenet5_tanh"), "--input", "bad_shape.npy"], "input 'x' has shape [3, 28, 28]"),
    (["compile", onnx_fixture("lenet5_tanh"), "-o", "o.ircp", "--target", "nope"], "unknown target 'nope'"),
    (["compile", onnx_fixture("lenet5_tanh"), "-o", "o.ircp", "--timesteps", "8"], "has no option(s) ['timesteps']"),
])
def test_user_errors_are_one_clear_line(tmp_path, args, message):
    from onnx import TensorProto, helper
    import onnx

    data = open(onnx_fixture("lenet5_tanh"), "rb").read()
    (tmp_path / "truncated.onnx").write_bytes(data[:5000])
    g = helper.make_graph([helper.make_node("Sin", ["x"], ["y"], name="s")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "unsupported.onnx"))
    np.save(tmp_path / "x.npy", np.zeros((2, 2), np.float32))
    np.save(tmp_path / "bad_shape.npy", np.zeros((3, 28, 28), np.float32))
    r = irc_cli(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2


def test_spiking_run_prints_the_side_by_side_table(tmp_path):
    digits = os.path.join(os.path.dirname(onnx_fixture("x")), "..", "..", "..", "samples", "digits")
    r = irc_cli("run", os.path.join(digits, "digits_cnn.onnx"), "--target", "spike-llvm", "--calibration",
                os.path.join(digits, "calibration.npz"), "--input", os.path.join(digits, "test.npz"),
                "--timesteps", "4,16", "--plot", tmp_path / "p.png")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith("analog network (numpy)") and "accuracy" in line for line in lines)
    rows = [line.split() for line in lines if line.strip() and line.split()[0] in ("4", "16")]
    assert len(rows) == 2 and all(row[1].endswith("%") and row[2].endswith("pp") for row in rows)
    assert "SOPs/MAC" in r.stdout and "energy model" in r.stdout
    fit = [line for line in lines if line.startswith("thresholds: fitted, fitted for T=16")]
    assert fit and "fitted on 256 calibration samples" in fit[0]  # the bounded calibration is reported
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_emit_llvm_source(tmp_path):
    digits = os.path.join(os.path.dirname(onnx_fixture("x")), "..", "..", "..", "samples", "digits")
    out = tmp_path / "net.ll"
    r = irc_cli("compile", os.path.join(digits, "digits_cnn.onnx"), "--target", "spike-llvm", "--calibration",
                os.path.join(digits, "calibration.npz"), "--emit", "source", "-o", out)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.startswith("; net.ll: a spiking network generated by irc") and "; ModuleID" in text
