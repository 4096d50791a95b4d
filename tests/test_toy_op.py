"""Adding an op touches one place: a toy op declared in this file alone runs on numpy, spike-numpy and spike-llvm.

The op (its class, its numpy kernel, its ONNX mapping) lives only here; no
file of irc changes.  Being a layout op, it inherits every layout lowering
(remap tables for spike-llvm, the generic kernel call for numpy, the scale-map
rule of the spike conversion).
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import irc
from irc.errors import IRCError
from irc.ops import Attr, OpDef, OpExample
from irc.types import TensorType


def toy_space_to_depth(x, *, blocksize):
    """ONNX SpaceToDepth (numpy only: generated programs embed this function's source)."""
    n, c, h, w = x.shape
    b = blocksize
    y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return np.ascontiguousarray(y.reshape(n, c * b * b, h // b, w // b))


class ToySpaceToDepth(OpDef):
    name = "ToySpaceToDepth"
    layout = True
    preserves_sign = True
    rate_rule = "positional"
    kernel = toy_space_to_depth
    attrs = {"blocksize": Attr("int")}

    def infer(self, ins, a):
        x, b = ins[0], a["blocksize"]
        if x.rank != 4 or x.shape[2] % b or x.shape[3] % b:
            raise IRCError(f"SpaceToDepth({b}) needs a rank-4 input divisible by {b}, got {list(x.shape)}")
        n, c, h, w = x.shape
        return [TensorType((n, c * b * b, h // b, w // b), x.dtype, self.data_domain(ins))]

    def example(self, rng):
        return OpExample([rng.standard_normal((2, 2, 4, 6)).astype(np.float32)], {"blocksize": 2})


def space_to_depth_handler(L, n):
    from irc.frontends.onnx import attrs_of

    return [L.emit("ToySpaceToDepth", [L.arg(n, 0)], {"blocksize": attrs_of(n)["blocksize"]})]


@pytest.fixture
def toy_op(monkeypatch):
    """Declare the op and its ONNX mapping for one test (and take them away after)."""
    from irc.frontends import onnx as onnx_frontend
    from irc.ops import _REGISTRY

    monkeypatch.setitem(_REGISTRY, "ToySpaceToDepth", ToySpaceToDepth())
    monkeypatch.setitem(onnx_frontend.HANDLERS, "SpaceToDepth", space_to_depth_handler)


def toy_model(path) -> str:
    rng = np.random.default_rng(0)
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [4, 1, 3, 3], (rng.standard_normal(36) * 0.5).tolist())
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [16 * 16, 5], (rng.standard_normal(16 * 16 * 5) * 0.2).tolist())
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("SpaceToDepth", ["r"], ["s"], blocksize=2),
             helper.make_node("Flatten", ["s"], ["f"]),
             helper.make_node("MatMul", ["f", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    out = str(path / "toy.onnx")
    with open(out, "wb") as f:
        f.write(model.SerializeToString())
    return out


def test_a_toy_op_declared_in_one_file_runs_on_numpy_against_onnxruntime(toy_op, tmp_path):
    from conftest import ort_run

    path = toy_model(tmp_path)
    x = np.random.default_rng(1).uniform(0, 1, (6, 1, 8, 8)).astype(np.float32)
    prog = irc.compile(path, target="numpy")
    assert "toy_space_to_depth(" in prog.source        # the kernel is embedded in the generated program
    np.testing.assert_allclose(prog.run(x), ort_run(path, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_the_toy_op_converts_to_spikes_and_runs_on_both_spiking_targets(toy_op, tmp_path):
    path = toy_model(tmp_path)
    rng = np.random.default_rng(2)
    cal = rng.uniform(0, 1, (64, 1, 8, 8)).astype(np.float32)
    x = rng.uniform(0, 1, (8, 1, 8, 8)).astype(np.float32)
    snn = irc.compile(path, target="spike-numpy", calibration=cal, timesteps=256)
    assert "ToySpaceToDepth" in [n.op for n in snn.graph.nodes]
    analog = snn.analog().run(x)
    spikes = snn.run(x)
    assert np.corrcoef(analog.ravel(), spikes.ravel())[0, 1] > 0.99  # rate coding follows the analog network
    # thresholds are fitted for the compiled T, so the backends are compared on programs compiled for the same T
    ref = irc.compile(path, target="spike-numpy", calibration=cal, timesteps=32)
    llvm = irc.compile(path, target="spike-llvm", calibration=cal, timesteps=32)
    np.testing.assert_allclose(llvm.run(x), ref.run(x), rtol=1e-5, atol=1e-5)
