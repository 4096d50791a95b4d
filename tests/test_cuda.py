"""The CUDA targets.

Without a GPU: the generated source of every test network compiles with
``nvcc --ptx`` (when nvcc is installed), and the same kernels, run through a
C++ emulation (tests/cuda_emulation.py), match the numpy target and spike-numpy.
With a GPU (cupy reports one): the kernels run on it and must match too.
"""
import os
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import irc
from conftest import SAMPLES, onnx_fixture, random_feeds
from cuda_emulation import compiler, emulate
from test_frontend_onnx import FIXTURE_NAMES
from test_spike_llvm import networks, per_sample

DIGITS = os.path.join(SAMPLES, "digits")
NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
needs_cxx = pytest.mark.skipif(compiler() is None, reason="no C++ compiler for the CUDA emulation")


def gpu_available() -> bool:
    try:
        import cupy

        return bool(cupy.cuda.is_available())
    except Exception:
        return False


needs_gpu = pytest.mark.skipif(not gpu_available(), reason="no CUDA GPU visible to cupy")


def digits(name="digits_cnn"):
    test = np.load(os.path.join(DIGITS, "test.npz"))
    cal = np.load(os.path.join(DIGITS, "calibration.npz"))["x"]
    return os.path.join(DIGITS, name + ".onnx"), test["x"], test["y"], cal


def spiking_programs():
    path, x, y, cal = digits()
    for name in ("digits_cnn", "digits_bn_maxpool", "digits_resnet", "digits_inception"):
        yield name, irc.compile(os.path.join(DIGITS, name + ".onnx"), target="spike-cuda", calibration=cal,
                                timesteps=16)


def nvcc_ptx(source: str, tmp_path) -> None:
    cu = tmp_path / "k.cu"
    cu.write_text(source)
    r = subprocess.run([NVCC, "--ptx", "-std=c++14", str(cu), "-o", str(tmp_path / "k.ptx")], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "k.ptx").stat().st_size > 0


# ------------------------------------------------------------- no GPU
@needs_nvcc
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_cuda_source_compiles_with_nvcc(name, tmp_path):
    prog = irc.compile(irc.load(onnx_fixture(name)), target="cuda")
    assert prog.source.count("__global__") == len(prog.graph.nodes)
    nvcc_ptx(prog.source, tmp_path)


@needs_nvcc
def test_spike_cuda_sources_compile_with_nvcc(tmp_path):
    for name, prog in spiking_programs():
        nvcc_ptx(prog.source, tmp_path)


@needs_cxx
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_cuda_kernels_match_numpy(name):
    graph = irc.load(onnx_fixture(name))
    feeds = random_feeds(graph, 3)
    want = irc.compile(graph, target="numpy").run(feeds)
    prog = irc.compile(graph, target="cuda")
    emulate(prog)
    got = prog.run(feeds)
    for g, w in zip(got if isinstance(got, list) else [got], want if isinstance(want, list) else [want]):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


@needs_cxx
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_spike_cuda_kernels_equal_spike_numpy_exactly(case):
    graph, options, data = case
    common = dict(calibration=data, scale_rounding="pow2", timesteps=12, **options)
    ref = irc.compile(graph, target="spike-numpy", **common)
    prog = irc.compile(graph, target="spike-cuda", **common)
    emulate(prog)
    for w, g in zip(per_sample(ref, data, [3, 7, 12]), per_sample(prog, data, [3, 7, 12])):
        np.testing.assert_array_equal(g.steps, w.steps)
        for name in w.spikes:
            np.testing.assert_array_equal(g.spikes[name], w.spikes[name], err_msg=name)
        for name in w.synops:
            np.testing.assert_array_equal(g.synops[name], w.synops[name], err_msg=name)
        np.testing.assert_array_equal(g.scores[0], w.scores[0])


@needs_cxx
def test_spike_cuda_kernels_agree_on_the_digits_sample():
    path, x, y, cal = digits()
    x, y = x[:150], y[:150]
    ref = irc.compile(path, target="spike-numpy", calibration=cal, timesteps=32)
    prog = irc.compile(path, target="spike-cuda", calibration=cal, timesteps=32)
    emulate(prog)
    a, b = ref.run(x).argmax(1), prog.run(x).argmax(1)
    assert (a == b).mean() >= 0.995


def test_without_a_gpu_the_targets_say_so(tmp_path):
    if gpu_available():
        pytest.skip("a GPU is present")
    ok, why = irc.registry.backend_for("spike-cuda").available()
    assert not ok and why
    prog = irc.compile(onnx_fixture("mlp"), target="cuda")
    with pytest.raises(irc.IRCError, match="cannot run here"):
        prog.run(np.zeros((2, 64), np.float32))
    prog.write_source(str(tmp_path / "mlp.cu"))
    assert "extern \"C\" __global__" in (tmp_path / "mlp.cu").read_text()


# ---------------------------------------------------------------- GPU
@needs_gpu
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_cuda_on_gpu_matches_numpy(name):
    graph = irc.load(onnx_fixture(name))
    feeds = random_feeds(graph, 4)
    want = irc.compile(graph, target="numpy").run(feeds)
    got = irc.compile(graph, target="cuda").run(feeds)
    for g, w in zip(got if isinstance(got, list) else [got], want if isinstance(want, list) else [want]):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


@needs_gpu
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_spike_cuda_on_gpu_equals_spike_numpy_exactly(case):
    graph, options, data = case
    common = dict(calibration=data, scale_rounding="pow2", timesteps=12, **options)
    ref = irc.compile(graph, target="spike-numpy", **common)
    prog = irc.compile(graph, target="spike-cuda", **common)
    for w, g in zip(per_sample(ref, data, [12]), per_sample(prog, data, [12])):
        for name in w.spikes:
            np.testing.assert_array_equal(g.spikes[name], w.spikes[name], err_msg=name)
        np.testing.assert_array_equal(g.scores[0], w.scores[0])


@needs_gpu
def test_spike_cuda_on_gpu_agrees_on_the_digits_sample():
    path, x, y, cal = digits()
    ref = irc.compile(path, target="spike-numpy", calibration=cal, timesteps=32)
    prog = irc.compile(path, target="spike-cuda", calibration=cal, timesteps=32)
    assert (ref.run(x).argmax(1) == prog.run(x).argmax(1)).mean() >= 0.995
