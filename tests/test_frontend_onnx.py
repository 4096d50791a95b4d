"""PyTorch-exported networks: irc's numpy target against onnxruntime."""
import os

import numpy as np
import onnx
import pytest

import irc
from conftest import FIXTURES, ONNX_FIXTURES, onnx_fixture, ort_run, random_feeds

FIXTURE_NAMES = sorted(f[:-5] for f in os.listdir(ONNX_FIXTURES) if f.endswith(".onnx"))


def test_all_fixtures_present():
    expected = {"lenet5_tanh", "vgg_bn_dropout", "resnet_tiny", "separable", "mlp", "multibranch_concat",
                "pools_ceil_padded", "dilated_strided"}
    assert expected <= set(FIXTURE_NAMES)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
@pytest.mark.parametrize("batch", [1, 5])
def test_fixture_matches_onnxruntime(name, batch):
    path = onnx_fixture(name)
    graph = irc.load(path)
    feeds = random_feeds(graph, batch, seed=batch)
    expected = ort_run(path, feeds)
    prog = irc.compile(graph, target="numpy")
    got = prog.run(feeds)
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


def test_batchnorm_and_dropout_are_gone_after_the_analog_pipeline():
    graph = irc.load(onnx_fixture("vgg_bn_dropout"))
    ops = {n.op for n in graph.nodes}
    assert {"BatchNorm", "Dropout"} <= ops  # exported without constant folding
    prog = irc.compile(graph, target="numpy")
    lowered = {n.op for n in prog.graph.nodes}
    assert not lowered & {"BatchNorm", "Dropout", "ScaleShift", "Relu"}


def test_exporter_shape_chains_are_folded():
    path = onnx_fixture("view_reshape")  # x.view(x.size(0), -1), exported without constant folding
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"Shape", "Gather", "Unsqueeze", "Concat"} <= ops
    graph = irc.load(path)
    assert [n.op for n in graph.nodes] == ["Reshape", "Relu"]
    x = np.random.default_rng(0).standard_normal((6, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(irc.compile(graph).run(x), ort_run(path, {"x": x})[0], rtol=1e-6)


def test_unsupported_ops_are_all_listed(tmp_path):
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["a"], name="ok"),
             helper.make_node("Sin", ["a"], ["b"], name="trig"),
             helper.make_node("Cos", ["b"], ["y"], name="cosine")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    path = str(tmp_path / "bad.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    with pytest.raises(irc.UnsupportedError) as e:
        irc.load(path)
    msg = str(e.value)
    assert "bad.onnx" in msg and "Sin (node 'trig')" in msg and "Cos (node 'cosine')" in msg


def test_truncated_file_is_a_clear_error(tmp_path):
    data = open(onnx_fixture("resnet_tiny"), "rb").read()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(irc.IRCError) as e:
        irc.load(str(path))
    assert "cut.onnx" in str(e.value)


def test_missing_file():
    with pytest.raises(irc.IRCError, match="file not found"):
        irc.load("no/such/model.onnx")


def test_wrong_input_shape_names_the_input():
    prog = irc.compile(irc.load(onnx_fixture("lenet5_tanh")))
    with pytest.raises(irc.IRCError, match=r"input 'x' has shape \[2, 1, 28, 28\].*\[N, 1, 32, 32\]"):
        prog.run(np.zeros((2, 1, 28, 28), np.float32))


def test_softmax_before_opset_13_flattens_trailing_axes(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("Softmax", ["x"], ["y"], axis=1)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 4])])
    path = str(tmp_path / "sm11.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)]), path)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    got = irc.compile(irc.load(path)).run(x)
    np.testing.assert_allclose(got, ort_run(path, {"x": x})[0], rtol=1e-5, atol=1e-6)
    assert abs(got[0].sum() - 1) < 1e-5  # normalised over both trailing axes together


@pytest.mark.parametrize("kernel, pads, dilations, channels", [
    ((3, 3), [1, 1, 1, 1], [1, 1], 16),
    ((3, 5), [0, 2, 1, 0], [2, 1], 24),      # asymmetric pads, a dilated axis, an odd kernel
    ((2, 2), [0, 0, 0, 0], [1, 1], 16),
    ((3, 3), [1, 1, 1, 1], [1, 1], 8),       # few channels: the im2col path
])
def test_unit_stride_conv_paths_match_onnxruntime(tmp_path, kernel, pads, dilations, channels):
    """A single wide Conv (the reference kernel's shifted-GEMM path) against onnxruntime."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w = rng.standard_normal((12, channels, *kernel)).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=list(kernel), pads=pads,
                            dilations=dilations)
    model = helper.make_model(helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, 9, 11])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 12, "H", "W"])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]),
        opset_imports=[helper.make_opsetid("", 17)])
    path = str(tmp_path / "conv.onnx")
    onnx.save(model, path)
    x = rng.standard_normal((3, channels, 9, 11)).astype(np.float32)
    got = irc.compile(irc.load(path), target="numpy", kernels="reference").run(x)
    np.testing.assert_allclose(got, ort_run(path, {"x": x})[0], rtol=1e-4, atol=1e-4)
