"""Real-world-style models against their own runtime: irc's numpy target must give what onnxruntime or Keras's
``predict`` gave on the same inputs (stored beside each file), within 1e-4.

The fixtures (tests/fixtures/realworld, made by make_realworld_fixtures.py) are small blocks of the networks
people deploy: MobileNetV3 (hard-swish, hard-sigmoid squeeze-excite), EfficientNet (SiLU), ConvNeXt (depthwise
7x7, LayerNorm, GELU, layer scale), a CRNN OCR head (bidirectional LSTM/GRU), an FCN (Resize, ConvTranspose),
models with symbolic H and W, LRN, hand-written Pow/Sqrt normalisations, Sum and shape-driven If; in ONNX at
the opsets where exporters write them differently and, where Keras has the layers, as .keras and .h5.
"""
import json
import os
import zipfile

import h5py
import numpy as np
import onnx
import pytest

import irc
from conftest import FIXTURES

REALWORLD = os.path.join(FIXTURES, "realworld")
with open(os.path.join(REALWORLD, "fixtures.json")) as _f:
    ENTRIES = json.load(_f)

# Not yet supported (issue 13), by what stops each file.  Strict: a file that starts passing fails here until
# its line is removed, so this list can only shrink and never hides a regression.
KNOWN_GAPS: dict[str, str] = {}


def marked(entry: dict):
    gap = KNOWN_GAPS.get(entry["file"])
    marks = [pytest.mark.xfail(strict=True, reason=f"not supported yet: {gap}")] if gap else []
    return pytest.param(entry, id=entry["file"], marks=marks)


def reference_sets(entry: dict) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
    """(inputs, outputs) at each stored input size: x0.., y0.. and, for symbolic H/W models, b_x0.., b_y0.."""
    data = np.load(os.path.join(REALWORLD, entry["reference"]))
    sets = []
    for prefix in ("", "b_"):
        xs = [data[f"{prefix}x{i}"] for i in range(sum(1 for k in data.files if k.startswith(prefix + "x")))]
        ys = [data[f"{prefix}y{i}"] for i in range(sum(1 for k in data.files if k.startswith(prefix + "y")))]
        if xs:
            sets.append((xs, ys))
    return sets


@pytest.mark.parametrize("entry", [marked(e) for e in ENTRIES])
def test_matches_the_models_own_runtime(entry):
    prog = irc.compile(irc.load(os.path.join(REALWORLD, entry["file"])), target="numpy")
    for xs, ys in reference_sets(entry):
        got = prog.run(*xs)
        got = got if isinstance(got, list) else [got]
        assert len(got) == len(ys)
        for g, y in zip(got, ys):
            assert g.shape == y.shape, f"input {[x.shape for x in xs]}"
            np.testing.assert_allclose(g, y, rtol=1e-4, atol=1e-4, err_msg=f"input {[x.shape for x in xs]}")


def onnx_op_types(graph: onnx.GraphProto) -> set[str]:
    found = set()
    for n in graph.node:
        found.add(n.op_type)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                found |= onnx_op_types(a.g)
    return found


def keras_names(path: str) -> set[str]:
    """Layer classes and activation names in a .keras or .h5 model config."""
    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
    else:
        with h5py.File(path, "r") as f:
            raw = f.attrs["model_config"]
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    names: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if "class_name" in node:
                names.add(node["class_name"])
            act = node.get("activation")
            if isinstance(act, str):
                names.add(act)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(config)
    return names


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_fixture_holds_what_it_claims(entry):
    path = os.path.join(REALWORLD, entry["file"])
    present = onnx_op_types(onnx.load(path).graph) if path.endswith(".onnx") else keras_names(path)
    assert set(entry["claims"]) <= present, set(entry["claims"]) - present
    sets = reference_sets(entry)
    assert [list(xs[0].shape) for xs, _ in sets] == entry["input_shapes"]


def test_fixtures_stay_small():
    total = sum(os.path.getsize(os.path.join(REALWORLD, n)) for n in os.listdir(REALWORLD))
    assert total < 3_000_000
