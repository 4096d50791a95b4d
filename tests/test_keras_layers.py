"""Keras layer variants the real-world fixtures do not cover, in tiny functional models written by hand (config.json
and model.weights.h5 as Keras 3 saves them), each against the exact numpy formula of Keras's documented semantics."""
import io
import json
import math
import zipfile

import h5py
import numpy as np
import pytest

import irc

RNG = np.random.default_rng(0)


def tensor(layer: str, shape: list) -> dict:
    return {"class_name": "__keras_tensor__", "config": {"shape": [None, *shape], "dtype": "float32",
                                                         "keras_history": [layer, 0, 0]}}


def layer(cls: str, name: str, config: dict, args: list, module: str = "keras.layers") -> dict:
    return {"module": module, "class_name": cls, "config": {"name": name, "dtype": "float32", **config},
            "registered_name": None, "name": name, "inbound_nodes": [{"args": args, "kwargs": {}}]}


def write_model(path, shape: list, layers: list[dict], weights: dict[str, list[np.ndarray]] | None = None,
                version: str = "3.15.1") -> str:
    """A .keras archive: input 'x' of ``shape`` (no batch), then ``layers`` in order; the last is the output.
    ``weights``: archive group name -> arrays (vars/0, vars/1, ...)."""
    inp = {"module": "keras.layers", "class_name": "InputLayer", "name": "x", "inbound_nodes": [],
           "config": {"name": "x", "batch_shape": [None, *shape], "dtype": "float32"}}
    config = {"module": "keras", "class_name": "Functional", "registered_name": "Functional",
              "config": {"name": "m", "layers": [inp, *layers], "input_layers": [["x", 0, 0]],
                         "output_layers": [[layers[-1]["name"], 0, 0]]}}
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        group = f.create_group("layers")
        for key, arrays in (weights or {}).items():
            v = group.create_group(key).create_group("vars")
            for i, a in enumerate(arrays):
                v.create_dataset(str(i), data=np.asarray(a, np.float32))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("metadata.json", json.dumps({"keras_version": version}))
        z.writestr("model.weights.h5", buf.getvalue())
    return str(path)


def run(path: str, x: np.ndarray) -> np.ndarray:
    return irc.compile(irc.load(path), target="numpy").run(x)


X = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32) * 3


def ops_layer(cls: str, name: str, args: list) -> dict:
    return layer(cls, name, {}, args, module="keras.src.ops.numpy")


@pytest.mark.parametrize("cls, args, want", [
    ("Add", lambda t: [2.5, t], lambda x: 2.5 + x),
    ("Subtract", lambda t: [t, 1.5], lambda x: x - 1.5),
    ("Multiply", lambda t: [-0.5, t], lambda x: -0.5 * x),
    ("TrueDivide", lambda t: [3.0, t], lambda x: 3.0 / x),
    ("Divide", lambda t: [t, 3.0], lambda x: x / 3.0),
])
def test_a_number_on_either_side_of_an_op(tmp_path, cls, args, want):
    path = write_model(tmp_path / "m.keras", [3, 4, 5], [ops_layer(cls, "op", args(tensor("x", [3, 4, 5])))])
    np.testing.assert_allclose(run(path, X), want(X.astype(np.float64)), rtol=1e-6, atol=1e-6)


def test_a_number_after_a_conv_is_applied_in_the_conv_arrangement(tmp_path):
    """The constant meets a tensor the Conv left channels-first; a per-channel numpy array broadcasts on Keras's
    last axis all the same."""
    k = RNG.standard_normal((1, 1, 5, 2)).astype(np.float32)
    shift = np.array([1.0, -2.0], np.float32)
    layers = [layer("Conv2D", "conv", {"filters": 2, "kernel_size": [1, 1], "padding": "valid",
                                       "use_bias": False, "activation": "linear"}, [tensor("x", [3, 4, 5])]),
              ops_layer("Subtract", "sub", [{"class_name": "__numpy__", "config": {"value": shift.tolist(),
                                                                                    "dtype": "float32"}},
                                            tensor("conv", [3, 4, 2])])]
    path = write_model(tmp_path / "m.keras", [3, 4, 5], layers, {"conv2d": [k]})
    want = shift - np.einsum("nhwc,co->nhwo", X.astype(np.float64), k[0, 0].astype(np.float64))
    np.testing.assert_allclose(run(path, X), want, rtol=1e-5, atol=1e-5)


def test_a_constant_on_a_layer_that_does_not_take_one_is_refused(tmp_path):
    path = write_model(tmp_path / "m.keras", [3, 4, 5],
                       [layer("Concatenate", "cat", {"axis": -1}, [[tensor("x", [3, 4, 5]), 1.0]])])
    with pytest.raises(irc.UnsupportedError, match=r"'cat'.*Concatenate is called with the constant operand 1.0"):
        irc.load(path)


def erf(x):
    return np.vectorize(math.erf)(x)


def hard_sigmoid3(x):
    return np.minimum(np.maximum(x + 3.0, 0.0), 6.0) / 6.0


@pytest.mark.parametrize("name, want", [
    ("silu", lambda x: x / (1 + np.exp(-x))),
    ("swish", lambda x: x / (1 + np.exp(-x))),
    ("hard_sigmoid", hard_sigmoid3),
    ("hard_silu", lambda x: x * hard_sigmoid3(x)),
    ("hard_swish", lambda x: x * hard_sigmoid3(x)),
    ("gelu", lambda x: 0.5 * x * (1 + erf(x / math.sqrt(2)))),
])
def test_activations_on_a_dense_and_as_a_layer(tmp_path, name, want):
    """Dense(activation=name) on a rank-4 input (it acts on the last axis), then Activation(name) again."""
    k = RNG.standard_normal((5, 6)).astype(np.float32)
    b = RNG.standard_normal(6).astype(np.float32)
    layers = [layer("Dense", "dense", {"units": 6, "activation": name, "use_bias": True}, [tensor("x", [3, 4, 5])]),
              layer("Activation", "act", {"activation": name}, [tensor("dense", [3, 4, 6])])]
    path = write_model(tmp_path / "m.keras", [3, 4, 5], layers, {"dense": [k, b]})
    x = X.astype(np.float64)
    np.testing.assert_allclose(run(path, X), want(want(x @ k + b)), rtol=1e-5, atol=1e-5)


def test_hard_sigmoid_of_a_keras_2_file_is_its_old_formula(tmp_path):
    path = write_model(tmp_path / "m.keras", [3, 4, 5], [layer("Activation", "act", {"activation": "hard_sigmoid"},
                                                               [tensor("x", [3, 4, 5])])], version="2.15.0")
    np.testing.assert_allclose(run(path, X), np.clip(0.2 * X.astype(np.float64) + 0.5, 0, 1), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("approximate", [True, False])
def test_keras_ops_gelu_both_forms(tmp_path, approximate):
    path = write_model(tmp_path / "m.keras", [3, 4, 5], [
        layer("Gelu", "gelu", {"approximate": approximate}, [tensor("x", [3, 4, 5])], module="keras.src.ops.nn")])
    x = X.astype(np.float64)
    want = (0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))) if approximate
            else 0.5 * x * (1 + erf(x / math.sqrt(2))))
    np.testing.assert_allclose(run(path, X), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axis, invert", [([-1], False), ([1, 3], False), ([-1], True)])
def test_normalization_from_its_config(tmp_path, axis, invert):
    kept = [X.shape[a % 4] for a in axis]
    mean = RNG.standard_normal(kept).astype(np.float32)
    var = RNG.uniform(0.5, 2.0, kept).astype(np.float32)
    path = write_model(tmp_path / "m.keras", [3, 4, 5], [
        layer("Normalization", "norm", {"axis": axis, "invert": invert, "mean": mean.tolist(),
                                        "variance": var.tolist()}, [tensor("x", [3, 4, 5])])])
    shape = [1, 1, 1, 1]
    for a, n in zip(axis, kept):
        shape[a % 4] = n
    m, s = mean.reshape(shape).astype(np.float64), np.sqrt(var.reshape(shape).astype(np.float64))
    x = X.astype(np.float64)
    np.testing.assert_allclose(run(path, X), m + x * s if invert else (x - m) / s, rtol=1e-5, atol=1e-5)


def test_adapted_normalization_reads_its_stored_statistics(tmp_path):
    mean, var = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([4.0, 1.0, 0.25, 9.0, 1e-20])
    path = write_model(tmp_path / "m.keras", [3, 4, 5], [
        layer("Normalization", "norm", {"axis": [-1], "invert": False, "mean": None, "variance": None},
              [tensor("x", [3, 4, 5])])], {"normalization": [mean, var, np.array(10.0)]})
    # Keras divides by max(sqrt(variance), 1e-7)
    want = (X.astype(np.float64) - mean) / np.maximum(np.sqrt(var), 1e-7)
    np.testing.assert_allclose(run(path, X), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axis, center, scale", [([-1], True, True), ([2, 3], True, False), ([1], False, True)])
def test_layer_normalization(tmp_path, axis, center, scale):
    kept = [X.shape[a % 4] for a in axis]
    gamma = RNG.standard_normal(kept).astype(np.float32)
    beta = RNG.standard_normal(kept).astype(np.float32)
    arrays = ([gamma] if scale else []) + ([beta] if center else [])
    path = write_model(tmp_path / "m.keras", [3, 4, 5], [
        layer("LayerNormalization", "ln", {"axis": axis, "epsilon": 1e-3, "center": center, "scale": scale,
                                           "rms_scaling": False}, [tensor("x", [3, 4, 5])])],
        {"layer_normalization": arrays})
    x = X.astype(np.float64)
    axes = tuple(a % 4 for a in axis)
    shape = [1, 1, 1, 1]
    for a, n in zip(axes, kept):
        shape[a] = n
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    want = (x - mean) / np.sqrt(var + 1e-3)
    want = want * (gamma.reshape(shape) if scale else 1) + (beta.reshape(shape) if center else 0)
    np.testing.assert_allclose(run(path, X), want, rtol=1e-4, atol=1e-4)


def test_rms_scaling_is_refused_by_name(tmp_path):
    path = write_model(tmp_path / "m.keras", [3, 4, 5], [
        layer("LayerNormalization", "ln", {"axis": [-1], "rms_scaling": True}, [tensor("x", [3, 4, 5])])],
        {"layer_normalization": [np.ones(5), np.zeros(5)]})
    with pytest.raises(irc.UnsupportedError, match=r"LayerNormalization 'ln' \(rms_scaling=True\)"):
        irc.load(path)
