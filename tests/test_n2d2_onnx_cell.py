"""N2D2 INI ``Type=ONNX`` cells: an ONNX graph imported into an INI network, checked against onnxruntime on the
same ONNX file, and the INI cells after it by exact numpy."""
import os
import textwrap

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import irc
from conftest import ort_run

RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 2, 3, 3)).astype(np.float32)
B = RNG.standard_normal(4).astype(np.float32)


def write_onnx(path: str) -> None:
    """x (N, 2, 6, 6) -> Conv 3x3 (4 outputs) -> Relu -> "feat" -> MaxPool 2x2 -> "pooled" (the graph's output)."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["conv_out"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv_out"], ["feat"]),
             helper.make_node("MaxPool", ["feat"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2])]
    graph = helper.make_graph(nodes, "cell", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
                              [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["N", 4, 3, 3])],
                              [numpy_helper.from_array(W, "w"), numpy_helper.from_array(B, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, path)


def write_ini(folder, text: str) -> str:
    path = os.path.join(folder, "net.ini")
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return path


HEAD = """
    [sp]
    SizeX=6
    SizeY=6
    NbChannels=2
    [onnx]
    Input=sp
    Type=ONNX
    File={file}
    """


def x_batch() -> np.ndarray:
    return RNG.standard_normal((3, 2, 6, 6)).astype(np.float32)


def test_onnx_cell_alone_matches_onnxruntime(tmp_path):
    write_onnx(str(tmp_path / "model.onnx"))
    ini = write_ini(tmp_path, HEAD.format(file="model.onnx") + "[onnx.Target]\n")
    x = x_batch()
    got = irc.compile(irc.load(ini), target="numpy").run(x)
    want = ort_run(str(tmp_path / "model.onnx"), {"x": x})[0]
    assert got.shape == (3, 4, 3, 3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fc_and_softmax_after_the_onnx_cell(tmp_path):
    """Input=onnx takes the ONNX graph's output; the Fc (Linear, weights filled) and Softmax by numpy."""
    write_onnx(str(tmp_path / "model.onnx"))
    ini = write_ini(tmp_path, HEAD.format(file="model.onnx") + """
        [fc]
        Input=onnx
        Type=Fc
        NbOutputs=5
        ActivationFunction=Linear
        [soft]
        Input=fc
        Type=Softmax
        NbOutputs=5
        [soft.Target]
        """)
    g = irc.load(ini)
    weight = next(g.params[v.name] for n in g.find("Dense") for v in n.inputs[1:2])
    bias = next(g.params[v.name] for n in g.find("Dense") for v in n.inputs[2:3])
    x = x_batch()
    got = irc.compile(g, target="numpy").run(x)
    pooled = ort_run(str(tmp_path / "model.onnx"), {"x": x})[0].reshape(3, -1).astype(np.float64)
    logits = pooled @ weight.T.astype(np.float64) + bias
    want = np.exp(logits - logits.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_cell_takes_a_tensor_inside_the_onnx_graph_and_a_target_names_one(tmp_path):
    """Input=onnx,feat reads the ONNX tensor 'feat' (before the pooling); [pooled.Target] makes that one an output."""
    write_onnx(str(tmp_path / "model.onnx"))
    ini = write_ini(tmp_path, HEAD.format(file="model.onnx") + """
        [pool]
        Input=onnx,feat
        Type=Pool
        PoolDims=6 6
        Pooling=Average
        NbOutputs=4
        Mapping.ChannelsPerGroup=1
        [pool.Target]
        [pooled.Target]
        """)
    x = x_batch()
    outs = irc.compile(irc.load(ini), target="numpy").run(x)
    sess_feat = ort_run(str(tmp_path / "model.onnx"), {"x": x})[0]
    feat = np.maximum(conv_numpy(x), 0)
    np.testing.assert_allclose(outs[0].reshape(3, 4), feat.mean(axis=(2, 3)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outs[1], sess_feat, rtol=1e-5, atol=1e-5)


def conv_numpy(x: np.ndarray) -> np.ndarray:
    """The ONNX graph's Conv (3x3, pad 1) in float64."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((x.shape[0], 4, 6, 6))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + 6, j:j + 6], W[:, :, i, j].astype(np.float64))
    return out + B[None, :, None, None]


def test_file_from_an_environment_variable(tmp_path, monkeypatch):
    os.makedirs(tmp_path / "models" / "ONNX")
    write_onnx(str(tmp_path / "models" / "ONNX" / "m.onnx"))
    monkeypatch.setenv("IRC_TEST_MODELS", str(tmp_path / "models"))
    ini = write_ini(tmp_path, HEAD.format(file="${IRC_TEST_MODELS}/ONNX/m.onnx") + "[onnx.Target]\n")
    x = x_batch()
    got = irc.compile(irc.load(ini), target="numpy").run(x)
    np.testing.assert_allclose(got, ort_run(str(tmp_path / "models" / "ONNX" / "m.onnx"), {"x": x})[0],
                               rtol=1e-5, atol=1e-5)
    ini = write_ini(tmp_path, HEAD.format(file="$IRC_TEST_MODELS/ONNX/m.onnx") + "[onnx.Target]\n")
    assert irc.load(ini).outputs[0].type.shape[1:] == (4, 3, 3)


def test_unset_variable_is_named_with_its_line(tmp_path, monkeypatch):
    monkeypatch.delenv("IRC_TEST_UNSET", raising=False)
    ini = write_ini(tmp_path, HEAD.format(file="${IRC_TEST_UNSET}/m.onnx") + "[onnx.Target]\n")
    with pytest.raises(irc.IRCError, match=r"IRC_TEST_UNSET.*not set") as e:
        irc.load(ini)
    assert "net.ini:9" in str(e.value)


def test_missing_file_names_the_resolved_path_and_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("IRC_TEST_MODELS", str(tmp_path / "nowhere"))
    ini = write_ini(tmp_path, HEAD.format(file="${IRC_TEST_MODELS}/ONNX/m.onnx") + "[onnx.Target]\n")
    with pytest.raises(irc.IRCError, match="ONNX file not found") as e:
        irc.load(ini)
    assert os.path.join(str(tmp_path / "nowhere"), "ONNX", "m.onnx") in str(e.value)
    assert "IRC_TEST_MODELS" in str(e.value)


def test_ignore_skips_a_node(tmp_path):
    """Ignore=feat: the Relu is skipped, the pooling reads the Conv's output."""
    write_onnx(str(tmp_path / "model.onnx"))
    ini = write_ini(tmp_path, HEAD.format(file="model.onnx") + "Ignore=feat\n[onnx.Target]\n")
    x = x_batch()
    got = irc.compile(irc.load(ini), target="numpy").run(x)
    want = conv_numpy(x).reshape(3, 4, 3, 2, 3, 2).max(axis=(3, 5))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_n2d2s_own_mnist_onnx_ini_runs_over_a_model_of_that_shape(tmp_path):
    """The corpus's mnist_ONNX.ini (File=model.onnx beside it, [Times418_Output_0.Target] on an ONNX tensor),
    over a generated MNIST-shaped model whose output has that name."""
    corpus = os.path.join(os.path.dirname(__file__), "fixtures", "n2d2_corpus", "mnist_ONNX.ini")
    with open(corpus) as f:
        text = f.read()
    with open(tmp_path / "mnist_ONNX.ini", "w") as f:
        f.write(text)
    w = RNG.standard_normal((784, 10)).astype(np.float32) * 0.05
    nodes = [helper.make_node("Flatten", ["Input3"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["Times418_Output_0"])]
    graph = helper.make_graph(nodes, "mnist",
                              [helper.make_tensor_value_info("Input3", TensorProto.FLOAT, [1, 1, 28, 28])],
                              [helper.make_tensor_value_info("Times418_Output_0", TensorProto.FLOAT, [1, 10])],
                              [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "model.onnx"))
    x = RNG.uniform(0, 1, (1, 1, 28, 28)).astype(np.float32)
    got = irc.compile(irc.load(str(tmp_path / "mnist_ONNX.ini")), target="numpy").run(x)
    np.testing.assert_allclose(got, ort_run(str(tmp_path / "model.onnx"), {"Input3": x})[0], rtol=1e-5, atol=1e-5)


def test_corpus_onnx_inis_name_the_missing_file_or_variable(monkeypatch, tmp_path):
    """N2D2's 27 model files with a Type=ONNX cell point at models not shipped with them: each is refused naming
    the unset variable or, once it is set, the resolved path and the variable."""
    import glob
    import warnings

    corpus = os.path.join(os.path.dirname(__file__), "fixtures", "n2d2_corpus")
    files = [p for p in sorted(glob.glob(os.path.join(corpus, "**", "*.ini"), recursive=True))
             if "Type=ONNX" in open(p).read()]
    assert len(files) == 27
    for models in (None, str(tmp_path / "models")):
        if models is None:
            monkeypatch.delenv("N2D2_MODELS", raising=False)
        else:
            monkeypatch.setenv("N2D2_MODELS", models)
        for path in files:
            uses_var = "${N2D2_MODELS}" in open(path).read()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with pytest.raises(irc.IRCError) as e:
                    irc.load(path)
            message = str(e.value)
            assert "[onnx]" in message and os.path.basename(path) in message, message
            if uses_var and models is None:
                assert "${N2D2_MODELS}" in message and "not set" in message, message
            else:
                assert "ONNX file not found" in message, message
                assert (models in message and "N2D2_MODELS" in message) if uses_var else corpus in message, message
