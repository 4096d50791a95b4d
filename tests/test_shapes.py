"""Input-shape error messages of the ONNX frontend (issue 13)."""
import onnx
import pytest
from onnx import TensorProto, helper

import irc
from irc.errors import IRCError


def _relu_model(dims, opsets):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])


def test_negative_dim_value_names_input(tmp_path):
    p = tmp_path / "neg.onnx"
    onnx.save(_relu_model(["N", 3, -1], [("", 13)]), p)
    with pytest.raises(IRCError, match=r"'x'.*dimension 2.*-1"):
        irc.load(str(p))


def test_ml_domain_only_is_named(tmp_path):
    p = tmp_path / "ml.onnx"
    onnx.save(_relu_model(["N", 3], [("ai.onnx.ml", 3)]), p)
    with pytest.raises(IRCError, match="ai.onnx.ml"):
        irc.load(str(p))
