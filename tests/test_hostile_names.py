"""Names a model file chooses never break or inject into generated source, on any target.

Every graph, node, input, output and initializer name of an ONNX MLP is replaced by a string built to
escape a Python string or comment, an LLVM quoted identifier or a C comment, each carrying a command that
creates a marker file.  Each target then compiles, its source is executed (numpy, the emitted module run
in a fresh interpreter; spike-llvm, JIT-run; cuda/spike-cuda, compiled with nvcc and run by the CPU
emulation) and compared with onnxruntime or spike-numpy; the marker must never appear.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import irc
from cuda_emulation import compiler, emulate
from test_cuda import NVCC, nvcc_ptx

ESCAPES = [
    '"); __import__("os").system("touch {m}"); ("',     # Python double-quoted string
    "'); __import__('os').system('touch {m}'); ('",     # Python single-quoted string
    '"""\nimport os; os.system("touch {m}")\n"""',     # Python triple quotes, newline
    "x\nimport os\nos.system('touch {m}')\n#",           # a bare newline into Python code
    '*/ system("touch {m}"); /*',                       # a C comment
    '" = external global i8\n; call @system "',         # an LLVM quoted identifier and a newline
    "%0 @main $(touch {m}) `touch {m}` \\\\ \\n",      # sigils, shell syntax, backslashes
    "n" * 10_000,                                      # very long
]


def _hostile_mlp(path: str, marker: str) -> list[str]:
    """Gemm-Relu-Gemm whose every name is one of ESCAPES (made distinct by a suffix)."""
    names = [e.format(m=marker) + f"#{i}" for i, e in enumerate(ESCAPES)]
    x, w1, b1, h, r, w2, b2, y = (names[i % len(names)] + ("" if i < len(names) else f"~{i}") for i in range(8))
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (6, 5)).astype(np.float32), w1),
             numpy_helper.from_array(rng.normal(0, 0.1, 6).astype(np.float32), b1),
             numpy_helper.from_array(rng.normal(0, 0.5, (3, 6)).astype(np.float32), w2),
             numpy_helper.from_array(rng.normal(0, 0.1, 3).astype(np.float32), b2)]
    nodes = [helper.make_node("Gemm", [x, w1, b1], [h], name=names[5], transB=1),
             helper.make_node("Relu", [h], [r], name=names[6]),
             helper.make_node("Gemm", [r, w2, b2], [y], name=names[4], transB=1)]
    graph = helper.make_graph(nodes, names[2], [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", 5])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return names


@pytest.fixture
def hostile(tmp_path):
    marker = tmp_path / "pwned"
    path = str(tmp_path / "hostile.onnx")
    _hostile_mlp(path, str(marker))
    x = np.abs(np.random.default_rng(1).normal(0, 1, (16, 5))).astype(np.float32)
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    yield path, x, ref, marker
    assert not marker.exists(), "a name in the model ran as code"


def test_numpy_source_executes_with_hostile_names(hostile, tmp_path):
    path, x, ref, marker = hostile
    prog = irc.compile(irc.load(path), target="numpy")
    np.testing.assert_allclose(prog.run(x), ref, rtol=1e-5, atol=1e-5)
    written = prog.write_source(str(tmp_path / "net_gen.py"))
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np; sys.path.insert(0, '.'); import net_gen; "
            "np.save('y.npy', net_gen.run(net_gen.load_weights(), np.load('x.npy'))[0])")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ref, rtol=1e-5, atol=1e-5)
    assert any(p.endswith(".npz") for p in written)


def test_spike_llvm_runs_with_hostile_names(hostile, tmp_path):
    path, x, ref, marker = hostile
    graph = irc.load(path)
    common = dict(calibration=x, timesteps=16)
    want = irc.compile(graph, target="spike-numpy", **common).run(x)
    prog = irc.compile(graph, target="spike-llvm", **common)
    np.testing.assert_allclose(np.asarray(prog.run(x)), np.asarray(want), rtol=1e-6, atol=1e-6)
    import llvmlite.binding as llvm

    llvm.parse_assembly(prog.source).verify()   # the source as written parses on its own


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
@pytest.mark.parametrize("target", ["cuda", "spike-cuda"])
def test_cuda_sources_compile_with_hostile_names(hostile, tmp_path, target):
    path, x, ref, marker = hostile
    options = dict(calibration=x, timesteps=16) if target == "spike-cuda" else {}
    prog = irc.compile(irc.load(path), target=target, **options)
    nvcc_ptx(prog.source, tmp_path)
    if compiler() is not None:
        emulate(prog)
        got = prog.run(x)
        if target == "cuda":
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
        else:
            want = irc.compile(irc.load(path), target="spike-numpy", **options).run(x)
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
