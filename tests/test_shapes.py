"""Input shapes (issue 13): error messages of the ONNX frontend, and binding symbolic dims (irc/shapes.py)."""
import os
import re

import numpy as np
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


# ------------------------------------------------------------------ shape specialisation
def _dynamic_hw_model(path) -> str:
    """Conv -> Relu -> Conv -> Reshape to (N, 6, H*W) -> ReduceMax -> Gemm over x[N, 3, H, W]: the Reshape's
    target is computed (Shape -> Gather -> Mul -> Concat) and only folds once H and W are known."""
    from onnx import numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in
             (("w1", (4, 3, 3, 3)), ("b1", (4,)), ("w2", (6, 4, 3, 3)), ("fc", (6, 5)), ("fcb", (5,)))]
    inits += [numpy_helper.from_array(np.array([2], np.int64), "h_idx"),
              numpy_helper.from_array(np.array([3], np.int64), "w_idx"),
              numpy_helper.from_array(np.array([0, 6], np.int64), "head"),
              ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Shape", ["c2"], ["s"]),
        helper.make_node("Gather", ["s", "h_idx"], ["h"]),
        helper.make_node("Gather", ["s", "w_idx"], ["w"]),
        helper.make_node("Mul", ["h", "w"], ["area"]),
        helper.make_node("Concat", ["head", "area"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["c2", "flat_shape"], ["flat"]),  # (N, 6, H*W)
        helper.make_node("ReduceMax", ["flat"], ["pooled"], axes=[2], keepdims=0),
        helper.make_node("Gemm", ["pooled", "fc", "fcb"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])
    g = helper.make_graph(nodes, "dyn", [x], [y], initializer=inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return str(path)


def _ort(path, x):
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


HW = [(9, 13), (16, 10)]


@pytest.mark.parametrize("h,w", HW)
def test_compile_time_input_shapes_match_onnxruntime(tmp_path, h, w):
    path = _dynamic_hw_model(tmp_path / "dyn.onnx")
    x = np.random.default_rng(1).standard_normal((2, 3, h, w)).astype(np.float32)
    g = irc.load(path, input_shapes={"x": (1, 3, h, w)})
    assert g.inputs[0].type.shape == ("N", 3, h, w)  # the batch stays symbolic
    assert not {n.op for n in g.nodes} & {"Shape", "Gather", "Concat"}  # the shape arithmetic folded
    np.testing.assert_allclose(irc.compile(g).run(x), _ort(path, x), rtol=1e-4, atol=1e-4)
    # irc.compile(..., input_shapes=) on the path, and on a graph specialised for another size
    prog = irc.compile(path, input_shapes={"x": (2, 3, h, w)})
    np.testing.assert_allclose(prog.run(x), _ort(path, x), rtol=1e-4, atol=1e-4)
    other = irc.load(path, input_shapes={"x": (1, 3, 8, 8)})
    np.testing.assert_allclose(irc.compile(other, input_shapes={"x": (1, 3, h, w)}).run(x), _ort(path, x),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shapes, match", [
    ({"x": (1, 3, 8)}, "rank 3"),
    ({"x": (1, 3, 0, 8)}, "size 0.*positive"),
    ({"x": (1, 3, 8.5, 8)}, "non-integer"),
    ({"x": (1, 4, 8, 8)}, "fixes 3"),
    ({"y": (1, 3, 8, 8)}, "'y'.*not an input"),
])
def test_bad_input_shapes_are_ircerrors(tmp_path, shapes, match):
    path = _dynamic_hw_model(tmp_path / "dyn.onnx")
    with pytest.raises(IRCError, match=match):
        irc.load(path, input_shapes=shapes)


def test_run_time_specialisation_is_announced_once_and_cached(tmp_path, capsys):
    path = _dynamic_hw_model(tmp_path / "dyn.onnx")
    g = irc.load(path)
    assert g.inputs[0].type.shape == ("N", 3, "H", "W")
    prog = irc.compile(g)
    rng = np.random.default_rng(2)
    for (h, w), batch in [(HW[0], 2), (HW[0], 3), (HW[1], 1), (HW[0], 1)]:
        x = rng.standard_normal((batch, 3, h, w)).astype(np.float32)
        np.testing.assert_allclose(prog.run(x), _ort(path, x), rtol=1e-4, atol=1e-4)
    assert len(prog.specialisations) == 2  # one compile per distinct H, W; the batch size does not count
    err = capsys.readouterr().err
    assert err.count("specialised for x=Nx3x9x13; compiling") == 1
    assert err.count("specialised for") == 2
    with pytest.raises(IRCError, match="--input-shape"):
        prog.save(str(tmp_path / "p.ircp"))


def test_cli_input_shape(tmp_path, capsys):
    """One real subprocess (compile, as a user runs it); the other cases through irc.cli.main in-process."""
    from test_cli import irc_cli

    from irc.cli import main

    path = _dynamic_hw_model(tmp_path / "dyn.onnx")
    x = np.random.default_rng(3).standard_normal((2, 3, 9, 13)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    art = tmp_path / "dyn.ircp"
    r = irc_cli("compile", path, "--input-shape", "x=1x3x9x13", "-o", art)
    assert r.returncode == 0, r.stderr
    assert main(["run", str(art), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"), "-q"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), _ort(path, x), rtol=1e-4, atol=1e-4)
    # a model file run without --input-shape: compiled for the data's sizes
    assert main(["run", path, "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y2.npy"), "-q"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "y2.npy"), _ort(path, x), rtol=1e-4, atol=1e-4)
    capsys.readouterr()
    assert main(["compile", path, "-o", str(art)]) == 2  # an artifact is saved specialised only
    assert "--input-shape" in capsys.readouterr().err
    for bad, match in [("x=1x3x9", "rank 3"), ("1x3x0x13", "positive"), ("x=1x3xHx13", "integers"),
                       ("z=1x3x9x13", "'z'")]:
        assert main(["compile", path, "--input-shape", bad, "-o", str(art)]) == 2
        assert re.search(match, capsys.readouterr().err)
    assert main(["run", str(art), "--input", str(tmp_path / "x.npy"), "--input-shape", "1x3x9x13"]) == 2
    assert "cannot change a compiled program" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", ["keras", "h5"])
def test_keras_none_sizes_bound_by_input_shapes(suffix):
    """keras.Input((None, None, 3)): bound at load time, matched against Keras's own predict outputs."""
    from test_realworld import REALWORLD

    path = os.path.join(REALWORLD, f"keras_dynamic_hw.{suffix}")
    ref = np.load(os.path.join(REALWORLD, "keras_dynamic_hw.npz"))
    x, y = ref["b_x0"], ref["b_y0"]
    g = irc.load(path, input_shapes={None: x.shape})
    assert g.inputs[0].type.shape == ("N", *x.shape[1:])
    np.testing.assert_allclose(irc.compile(g).run(x), y, rtol=1e-4, atol=1e-4)
    with pytest.raises(IRCError, match="fixes 3"):
        irc.load(path, input_shapes={None: (1, 20, 28, 4)})


# ------------------------------------------------------------------ time-major recurrent layouts
def _time_major_model(path, op: str, tail: str = "LogSoftmax", forward: bool = False) -> str:
    """x[N, C, T] -> Transpose to (T, N, C) -> bidirectional op (layout 0) -> Transpose/Reshape to (T, N, 2H)
    -> MatMul + Add -> ``tail``: a CRNN head whose output stays time-major, (T, N, K).  ``forward``: one
    direction, whose (T, 1, N, H) is Squeezed and Concatenated with itself, and the output Unsqueezed to
    (T, 1, N, K)."""
    from onnx import numpy_helper

    rng = np.random.default_rng(4)
    c, hid, k, gates = 5, 4, 3, {"LSTM": 4, "GRU": 3}[op]
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("W", rng.standard_normal((2, gates * hid, c)) * 0.5), ("R", rng.standard_normal((2, gates * hid, hid)) * 0.5),
        ("B", rng.standard_normal((2, 2 * gates * hid)) * 0.1), ("fc", rng.standard_normal((2 * hid, k))),
        ("fcb", rng.standard_normal((k,))))]
    inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), "flat"))
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    if forward:
        inits = [numpy_helper.from_array(numpy_helper.to_array(t)[:1], t.name) if t.name in ("W", "R", "B") else t
                 for t in inits]
    outs = ["Y", "Yh"] + (["Yc"] if op == "LSTM" else [])
    head = [helper.make_node("Transpose", ["Y"], ["Yt"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", ["Yt", "flat"], ["seq"])]
    if forward:
        head = [helper.make_node("Squeeze", ["Y", "axis1"], ["Ys"]),
                helper.make_node("Concat", ["Ys", "Ys"], ["seq"], axis=2)]
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[2, 0, 1]),
             helper.make_node(op, ["xt", "W", "R", "B"], outs, hidden_size=hid,
                              direction="forward" if forward else "bidirectional"),
             *head,
             helper.make_node("MatMul", ["seq", "fc"], ["mm"]),
             helper.make_node("Add", ["fcb", "mm"], ["logits"]),
             helper.make_node(tail, ["logits"], ["z" if forward else "y"],
                              **({"axis": 2} if tail == "LogSoftmax" else {"axes": [0]}))]
    if forward:
        nodes.append(helper.make_node("Unsqueeze", ["z", "axis1"], ["y"]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, 7])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [7, 1, "N", 3] if forward else
                                      [7, "N", 3] if tail == "LogSoftmax" else [1, "N", 3])
    g = helper.make_graph(nodes, "tm", [x], [y], initializer=inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return str(path)


@pytest.mark.parametrize("op, forward", [("LSTM", False), ("GRU", False), ("LSTM", True), ("GRU", True)])
def test_time_major_recurrent_output_matches_onnxruntime(tmp_path, op, forward):
    path = _time_major_model(tmp_path / "tm.onnx", op, forward=forward)
    x = np.random.default_rng(5).standard_normal((5, 5, 7)).astype(np.float32)
    ref = _ort(path, x)
    assert ref.shape == ((7, 1, 5, 3) if forward else (7, 5, 3))  # time-major: the batch is not axis 0
    prog = irc.compile(path)
    np.testing.assert_allclose(prog.run(x), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(prog.run(x, batch_size=2), ref, rtol=1e-4, atol=1e-5)  # chunks join on the batch
    prog.save(str(tmp_path / "tm.ircp"))
    np.testing.assert_allclose(irc.load_program(str(tmp_path / "tm.ircp")).run(x), ref, rtol=1e-4, atol=1e-5)


def test_time_major_op_without_a_rule_is_refused_by_name(tmp_path):
    path = _time_major_model(tmp_path / "tm.onnx", "GRU", tail="ReduceMean")
    with pytest.raises(irc.UnsupportedError, match="ReduceMean.*batch axis is 1"):
        irc.load(path)


def test_spiking_target_specialises_from_the_calibration_data():
    from test_realworld import REALWORLD

    ref = np.load(os.path.join(REALWORLD, "classifier_dynamic_hw_op13.npz"))
    prog = irc.compile(os.path.join(REALWORLD, "classifier_dynamic_hw_op13.onnx"), target="spike-numpy",
                       calibration=ref["x0"], timesteps=8)
    assert prog.graph.inputs[0].type.shape == ("N", *ref["x0"].shape[1:])
    assert prog.run(ref["x0"]).shape == ref["y0"].shape
    with pytest.raises(IRCError, match="'x'"):
        prog.run(ref["b_x0"])  # compiled for the calibration's size only


def test_n2d2_onnx_cell_with_open_sizes_takes_the_ini_input_size(tmp_path):
    """An INI Type=ONNX cell over a file with symbolic H, W: bound to the INI's [sp] size."""
    from test_n2d2_onnx_cell import HEAD, write_ini

    from onnx import numpy_helper

    w = np.random.default_rng(6).standard_normal((4, 2, 3, 3)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "cell",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "H", "W"])],
                              [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "model.onnx")
    ini = write_ini(tmp_path, HEAD.format(file="model.onnx") + "[onnx.Target]\n")
    x = np.random.default_rng(7).standard_normal((2, 2, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(irc.compile(irc.load(ini)).run(x), _ort(str(tmp_path / "model.onnx"), x),
                               rtol=1e-4, atol=1e-4)


def test_ir_text_with_an_open_size_is_an_ircerror():
    """Open sizes exist only in an unspecialised graph's inputs: IR text (and so an artifact) never has them."""
    text = 'graph "g" {\n  input %x : f32[N,3,H]\n  %y : f32[N,3,H] = Relu(%x)\n  output %y\n}'
    with pytest.raises(IRCError, match="'H'.*only axis 0"):
        irc.parse_graph(text)


def test_spiking_targets_refuse_a_time_major_output(tmp_path):
    """x[N, C, T] -> Transpose -> Relu gives (T, N, C): the spiking readout (batch, classes) cannot be that."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[2, 0, 1]), helper.make_node("Relu", ["t"], ["y"])]
    g = helper.make_graph(nodes, "tm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, "N", 3])])
    path = str(tmp_path / "t.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    x = np.random.default_rng(8).standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(irc.compile(path).run(x), _ort(path, x), rtol=1e-6)
    with pytest.raises(irc.UnsupportedError, match="time-major"):
        irc.compile(path, target="spike-numpy", calibration=x)


@pytest.mark.parametrize("perm1, perm2", [([1, 0, 2], [2, 1, 0]), ([2, 0, 1], [1, 2, 0]), ([], [0, 2, 1]),
                                          ([1, 2, 3, 0], [3, 1, 0, 2]), ([2, 3, 0, 1], [2, 3, 0, 1])])
def test_transposes_that_move_the_batch_match_onnxruntime(tmp_path, perm1, perm2):
    """Transpose (batch moved) -> Mul by a broadcast constant -> Softmax(axis=-1) -> Transpose, any output layout."""
    from onnx import numpy_helper

    rank = max(len(perm1), len(perm2))
    dims = ["N", 3, 4, 5][:rank]
    mid = [dims[p] for p in (perm1 or range(rank)[::-1])]
    out = [mid[p] for p in perm2]
    scale = np.random.default_rng(9).standard_normal([1 if d == "N" else d for d in mid][1:]).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], **({"perm": perm1} if perm1 else {})),
             helper.make_node("Mul", ["t", "s"], ["m"]),
             helper.make_node("Softmax", ["m"], ["sm"], axis=-1),
             helper.make_node("Transpose", ["sm"], ["y"], perm=perm2)]
    g = helper.make_graph(nodes, "tp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
                          [numpy_helper.from_array(scale, "s")])
    path = str(tmp_path / "tp.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    x = np.random.default_rng(10).standard_normal((4, *dims[1:])).astype(np.float32)
    if mid[-1] == "N":  # a softmax over the batch axis is refused by name
        with pytest.raises(irc.UnsupportedError, match="Softmax over axis"):
            irc.load(path)
        return
    np.testing.assert_allclose(irc.compile(path).run(x), _ort(path, x), rtol=1e-5, atol=1e-6)
