"""ONNX's own node conformance cases for the ops irc claims, run through irc.

``onnx.backend.test.loader.load_model_tests(kind="node")`` generates each case
in memory: a one-node model, its inputs, and the outputs onnx's reference
implementation computed.  irc compiles the model for the numpy target and must
match them within the case's own tolerances.

irc compiles a network for its data input: weights, shapes, pads and clip
bounds are constants of the network.  The cases feed those as graph inputs,
so every input but the first is baked into the model as an initializer.
"""
import re
import warnings

import numpy as np
import onnx
import pytest

import irc
from irc.frontends.onnx import from_model

CLAIMED = re.compile(
    r"^test_((basic_)?conv_|maxpool_|averagepool_|globalaveragepool|globalmaxpool|gemm_|matmul_|add|sub|mul|div"
    r"|relu|leakyrelu|clip|sigmoid|tanh|softmax_|logsoftmax_|batchnorm_|dropout_|identity|flatten_|reshape_"
    r"|transpose_|concat_|constant_pad|squeeze|unsqueeze"
    r"|exp(_example)?$|log(_example)?$|less|greater|equal|or|and|where|max_|min_|reduce_(max|min|sum|mean)_(?!square)"
    r"|pow(_|$)|sqrt(_example)?$|sum_|hardsigmoid|hardswish|erf$|gelu_|lrn)")
# Cases of claimed ops that test something outside inference semantics, each with its reason:
EXCLUDED = {
    r"_training_|^test_training_": "BatchNorm/Dropout in training mode",
    r"maxpool_with_argmax": "MaxPool's second output (Indices)",
    r"^test_identity_(opt|sequence)": "optional and sequence types",
    r"_string": "string tensors",
}


def _cases():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.loader import load_model_tests

        cases = load_model_tests(kind="node")
    selected = [c for c in cases if CLAIMED.search(c.name)]
    return [c for c in selected if not any(re.search(p, c.name) for p in EXCLUDED)], selected


CASES, SELECTED = _cases()


def bake_constants(model: onnx.ModelProto, values: dict) -> onnx.ModelProto:
    baked = onnx.ModelProto()
    baked.CopyFrom(model)
    # before IR version 4 every initializer must also be listed as a graph input
    keep = [vi for vi in baked.graph.input if vi.name not in values or model.ir_version < 4]
    del baked.graph.input[:]
    baked.graph.input.extend(keep)
    for name, arr in values.items():
        baked.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(arr), name))
    return baked


def _load_pb(data):
    from onnx import numpy_helper

    return [numpy_helper.to_array(t) if isinstance(t, onnx.TensorProto) else np.asarray(t) for t in data]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_node_case(case):
    model = case.model
    init = {t.name for t in model.graph.initializer}
    names = [vi.name for vi in model.graph.input if vi.name not in init]
    for inputs, expected in case.data_sets:
        inputs = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
        feeds = dict(zip(names, inputs))
        consts = {k: v for k, v in feeds.items() if k != names[0]}
        prog = irc.compile(from_model(bake_constants(model, consts)), target="numpy", verify=True)
        got = prog.run(feeds[names[0]])
        got = got if isinstance(got, list) else [got]
        expected = list(expected.values()) if isinstance(expected, dict) else list(expected)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            e = np.asarray(e)
            assert g.shape == e.shape and g.dtype == e.dtype
            np.testing.assert_allclose(g, e, rtol=case.rtol, atol=case.atol)


def test_selection_is_what_we_claim():
    """Guard against the regex silently selecting nothing (and report the numbers)."""
    excluded = len(SELECTED) - len(CASES)
    print(f"\nONNX node conformance: {len(CASES)} cases run, {excluded} excluded of {len(SELECTED)} selected")
    assert len(CASES) >= 380 and len(CASES) >= 0.95 * len(SELECTED)
