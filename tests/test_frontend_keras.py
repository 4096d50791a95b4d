"""Keras models read without Keras: irc against Keras's own predictions, both file formats."""
import io
import json
import os
import shutil
import zipfile

import h5py
import numpy as np
import pytest

import irc
from irc.passes import run_pass
from irc.text import parse_graph, print_graph
from conftest import FIXTURES, SAMPLES

KERAS = os.path.join(FIXTURES, "keras")
NAMES = sorted(f.split(".")[0] for f in os.listdir(KERAS) if f.endswith(".expected.npz"))
FORMATS = [".keras", ".h5"]


def expected(name):
    data = np.load(os.path.join(KERAS, name + ".expected.npz"))
    xs = [data[k] for k in sorted(k for k in data.files if k.startswith("x"))]
    ys = [data[k] for k in sorted(k for k in data.files if k.startswith("y"))]
    return xs, ys


def test_fixtures_cover_the_claimed_layers():
    classes = set()
    for name in NAMES:
        with zipfile.ZipFile(os.path.join(KERAS, name + ".keras")) as z:
            config = json.loads(z.read("config.json"))

        def walk(cfg):
            for layer in cfg["config"]["layers"]:
                classes.add(layer["class_name"])
                if layer["class_name"] in ("Sequential", "Functional"):
                    walk(layer)
        walk(config)
    claimed = {"InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv1D", "Dense", "MaxPooling2D",
               "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "BatchNormalization", "Activation",
               "ReLU", "LeakyReLU", "Softmax", "Dropout", "Flatten", "Reshape", "ZeroPadding2D", "Add", "Concatenate",
               "Rescaling", "Sequential", "Functional", "Conv2DTranspose", "Conv1DTranspose", "UpSampling2D",
               "UpSampling1D", "Permute", "LSTM", "GRU", "Bidirectional", "CustomScaleLayer", "LayerScale"}
    assert claimed <= classes, claimed - classes


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("name", NAMES)
def test_matches_keras_predict(name, suffix):
    xs, ys = expected(name)
    graph = irc.load(os.path.join(KERAS, name + suffix))
    got = irc.compile(graph, target="numpy").run(*xs)
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(ys)
    for g, y in zip(got, ys):
        assert g.shape == y.shape
        np.testing.assert_allclose(g, y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_ir_round_trip(name):
    graph = irc.load(os.path.join(KERAS, name + ".keras"))
    text = print_graph(graph)
    assert print_graph(parse_graph(text, graph.params)) == text


def test_flatten_after_channels_last_folds_into_the_dense():
    graph = irc.load(os.path.join(KERAS, "seq_cnn.keras"))
    flat = graph.find("Flatten")[0]
    assert flat.inputs[0].producer.op == "Transpose"
    folded = run_pass(graph, "fold_transposes")
    flat = folded.find("Flatten")[0]
    assert flat.inputs[0].producer.op != "Transpose"
    assert len(folded.find("Transpose")) == len(graph.find("Transpose")) - 1
    xs, ys = expected("seq_cnn")
    np.testing.assert_allclose(irc.compile(folded).run(*xs), ys[0], rtol=1e-4, atol=1e-4)


def test_a_merge_takes_the_arrangement_that_needs_fewest_transposes():
    """Add(input, Conv(input)) -> Conv: the input once to channels-first, the output once back."""
    graph = irc.compile(irc.load(os.path.join(KERAS, "merge_layout.keras"))).graph
    assert len(graph.find("Transpose")) == 2


def test_nhwc_inputs_as_keras_takes_them():
    graph = irc.load(os.path.join(KERAS, "seq_cnn.h5"))
    assert graph.inputs[0].type.shape == ("N", 16, 16, 3)


def _rewrite_keras(src: str, dst: str, config=None, weights=None) -> None:
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    if config is not None:
        members["config.json"] = json.dumps(config(json.loads(members["config.json"]))).encode()
    if weights is not None:
        buf = io.BytesIO(members["model.weights.h5"])
        with h5py.File(buf, "r+") as f:
            weights(f)
        members["model.weights.h5"] = buf.getvalue()
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


def test_corrupt_archive(tmp_path):
    data = open(os.path.join(KERAS, "seq_cnn.keras"), "rb").read()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(irc.IRCError, match="cut.keras: not a readable .keras archive"):
        irc.load(str(tmp_path / "cut.keras"))
    (tmp_path / "cut.h5").write_bytes(open(os.path.join(KERAS, "seq_cnn.h5"), "rb").read()[:4000])
    with pytest.raises(irc.IRCError, match="cut.h5"):
        irc.load(str(tmp_path / "cut.h5"))


def test_missing_weight(tmp_path):
    def drop(f):
        del f["layers/dense/vars/1"]
    _rewrite_keras(os.path.join(KERAS, "seq_cnn.keras"), str(tmp_path / "m.keras"), weights=drop)
    with pytest.raises(irc.IRCError, match=r"m.keras.*'dense': Dense needs 2 weight array\(s\) \(kernel, bias\).*the file has vars/0"):
        irc.load(str(tmp_path / "m.keras"))
    shutil.copy(os.path.join(KERAS, "seq_cnn.h5"), tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r+") as f:
        group = f["model_weights"]["dense"]
        name = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]][0]
        del group[name]
    with pytest.raises(irc.IRCError, match=r"m.h5.*missing"):
        irc.load(str(tmp_path / "m.h5"))


def test_unknown_layers_are_all_listed(tmp_path):
    def rename(cfg):
        cfg["config"]["layers"][2]["class_name"] = "LSTM"
        cfg["config"]["layers"][4]["class_name"] = "Conv3D"
        return cfg
    _rewrite_keras(os.path.join(KERAS, "seq_cnn.keras"), str(tmp_path / "u.keras"), config=rename)
    with pytest.raises(irc.UnsupportedError) as e:
        irc.load(str(tmp_path / "u.keras"))
    assert "u.keras" in str(e.value) and "LSTM" in str(e.value) and "Conv3D" in str(e.value)


def test_keras_digits_network_converts_to_spikes():
    digits = os.path.join(SAMPLES, "digits")
    test = np.load(os.path.join(digits, "test.npz"))
    x, y = test["x"].transpose(0, 2, 3, 1), test["y"]
    cal = np.load(os.path.join(digits, "calibration.npz"))["x"].transpose(0, 2, 3, 1)
    graph = irc.load(os.path.join(digits, "digits_keras.keras"))
    analog = 100 * float((irc.compile(graph).run(x).argmax(1) == y).mean())
    spiking = 100 * float((irc.compile(graph, target="spike-numpy", calibration=cal, timesteps=32)
                           .run(x).argmax(1) == y).mean())
    assert analog > 95
    assert analog - spiking <= 1.0, (analog, spiking)


def _layer(cfg, class_name):
    return next(layer for layer in cfg["config"]["layers"] if layer["class_name"] == class_name)


@pytest.mark.parametrize("damage", [
    lambda cfg: cfg["config"].update(layers=5),
    lambda cfg: cfg["config"].update(layers=["x"]),
    lambda cfg: _layer(cfg, "Conv2D").pop("class_name"),
    lambda cfg: _layer(cfg, "Conv2D").update(class_name=["Conv2D"]),
    lambda cfg: _layer(cfg, "Conv2D")["config"].pop("name"),
    lambda cfg: _layer(cfg, "Conv2D")["config"].pop("padding"),
    lambda cfg: _layer(cfg, "Conv2D")["config"].update(strides="ab"),
    lambda cfg: _layer(cfg, "Conv2D")["config"].update(strides=[0, 0]),
    lambda cfg: _layer(cfg, "MaxPooling2D")["config"].pop("pool_size"),
    lambda cfg: _layer(cfg, "BatchNormalization")["config"].update(axis="c"),
    lambda cfg: _layer(cfg, "Dropout")["config"].update(rate="x"),
    lambda cfg: cfg["config"]["layers"][0]["config"].update(batch_shape=[None, -16, 16, 3]),
], ids=["layers-int", "layers-str", "no-class", "class-list", "no-name", "no-padding", "strides-str",
        "strides-zero", "no-pool-size", "axis-str", "rate-str", "negative-size"])
def test_malformed_config_is_an_irc_error(tmp_path, damage):
    def edit(cfg):
        damage(cfg)
        return cfg
    _rewrite_keras(os.path.join(KERAS, "seq_cnn.keras"), str(tmp_path / "bad.keras"), config=edit)
    with pytest.raises(irc.IRCError, match="bad.keras"):
        irc.compile(irc.load(str(tmp_path / "bad.keras")))


def test_weights_that_are_not_arrays_are_an_irc_error(tmp_path):
    def replace(f):
        del f["layers/dense/vars/0"]
        f.create_group("layers/dense/vars/0")
    _rewrite_keras(os.path.join(KERAS, "seq_cnn.keras"), str(tmp_path / "g.keras"), weights=replace)
    with pytest.raises(irc.IRCError, match=r"g.keras.*vars/0 is not an array of numbers"):
        irc.load(str(tmp_path / "g.keras"))
