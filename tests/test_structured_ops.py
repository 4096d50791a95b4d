"""The structured ONNX ops (Resize / Upsample, ConvTranspose, LSTM, GRU), one node each, against onnxruntime.

Shapes and attribute variants are drawn by hypothesis over what exporters write (PyTorch's
``F.interpolate`` / ``nn.ConvTranspose2d`` / ``nn.LSTM`` / ``nn.GRU``, keras2onnx, tf2onnx): every
coordinate transformation and nearest rounding mode, scales and sizes, opset-10 Resize and opset-9
Upsample; ConvTranspose strides, dilations, groups, output_padding, explicit and automatic pads and
``output_shape``; recurrences forward, reverse and bidirectional, both layouts, with and without bias
and initial states.  Anything irc cannot express is refused with an error that names the node.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import irc
from irc.frontends.onnx import from_model

FEW = settings(max_examples=12, deadline=None)
TOL = dict(rtol=1e-5, atol=1e-5)
RECURRENT_TOL = dict(rtol=1e-4, atol=1e-5)


def model_of(nodes, inputs: dict, n_outputs: int = 1, *, inits: dict | None = None, opset: int = 13,
             symbolic_batch: bool = True) -> onnx.ModelProto:
    """A one-graph model; inputs declared with a symbolic axis 0 unless ``symbolic_batch`` is False."""
    def vi(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))
    ins = [vi(k, (("N",) + v.shape[1:]) if symbolic_batch else v.shape) for k, v in inputs.items()]
    names = [o for n in nodes for o in n.output if o][-n_outputs:]
    # outputs of unknown sizes: symbolic dims, rank 4 for Y of a recurrence, else the first input's rank
    rank0 = len(next(iter(inputs.values())).shape)
    ranks = {"Y": 4, "Y_h": 3, "Y_c": 3}
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, [f"{o}{i}" for i in range(ranks.get(o, rank0))])
            for o in names]
    g = helper.make_graph(nodes, "g", ins, outs,
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def agree(model: onnx.ModelProto, feeds: dict, tol: dict = TOL, reference: str = "onnxruntime") -> irc.Program:
    """irc's numpy target and the reference give the same outputs (shape, values) on ``feeds``.

    The reference is onnxruntime, or ONNX's own reference evaluator where onnxruntime does not implement
    the spec (batch-first recurrences; ConvTranspose ``auto_pad=SAME_*`` with a kernel smaller than the stride,
    where onnxruntime clamps the padding at zero instead of giving ``input * stride`` outputs).
    """
    if reference == "onnxruntime":
        expected = ort.InferenceSession(model.SerializeToString(),
                                        providers=["CPUExecutionProvider"]).run(None, feeds)
    else:
        expected = ReferenceEvaluator(model).run(None, feeds)
    prog = irc.compile(from_model(model), target="numpy", verify=True)
    got = prog.run(feeds)
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, **tol)
    return prog


def rand(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------ Resize
CTMS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
# Integer and fractional factors, up and down: what F.interpolate(scale_factor=...) exports.
SCALES = st.sampled_from([1.0, 2.0, 3.0, 0.5, 1.5, 0.75, 2.5])


@FEW
@given(hw=st.tuples(st.integers(1, 6), st.integers(1, 6)), s=st.tuples(SCALES, SCALES),
       ctm=st.sampled_from(CTMS), nearest=st.sampled_from(NEAREST), seed=st.integers(0, 2**16))
def test_resize_nearest_from_scales(hw, s, ctm, nearest, seed):
    x = rand((2, 3) + hw, seed)
    if any(int(np.floor(d * f)) < 1 for d, f in zip(hw, s)):
        return
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest",
                            coordinate_transformation_mode=ctm, nearest_mode=nearest)
    agree(model_of([node], {"x": x}, inits={"scales": np.array([1, 1, *s], np.float32)}), {"x": x})


@FEW
@given(hw=st.tuples(st.integers(2, 6), st.integers(2, 6)), s=st.tuples(SCALES, SCALES),
       ctm=st.sampled_from(CTMS), seed=st.integers(0, 2**16))
def test_resize_linear_from_scales(hw, s, ctm, seed):
    x = rand((2, 2) + hw, seed)
    if any(int(np.floor(d * f)) < 1 for d, f in zip(hw, s)):
        return
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear", coordinate_transformation_mode=ctm)
    agree(model_of([node], {"x": x}, inits={"scales": np.array([1, 1, *s], np.float32)}), {"x": x})


@FEW
@given(hw=st.tuples(st.integers(1, 6), st.integers(1, 6)), out=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       mode=st.sampled_from(["nearest", "linear"]), ctm=st.sampled_from(CTMS), seed=st.integers(0, 2**16))
def test_resize_to_sizes(hw, out, mode, ctm, seed):
    """``F.interpolate(size=...)`` exports sizes; the scale used is out/in per axis."""
    x = rand((2, 3) + hw, seed)
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode=mode, coordinate_transformation_mode=ctm)
    agree(model_of([node], {"x": x}, inits={"sizes": np.array([2, 3, *out], np.int64)}, opset=13,
                   symbolic_batch=False), {"x": x})


@pytest.mark.parametrize("rank", [3, 5])
def test_resize_nearest_on_1d_and_3d_data(rank):
    x = rand((2, 2) + (3,) * (rank - 2), rank)
    scales = np.array([1, 1] + [2.0] * (rank - 2), np.float32)
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest",
                            coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    agree(model_of([node], {"x": x}, inits={"scales": scales}), {"x": x})


def test_resize_with_roi_input_given_empty_opset11():
    """Opset 11 exports carry an (unused) roi tensor before the scales."""
    x = rand((1, 2, 3, 4), 1)
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="linear",
                            coordinate_transformation_mode="align_corners")
    agree(model_of([node], {"x": x}, inits={"roi": np.zeros(0, np.float32),
                                          "scales": np.array([1, 1, 2, 2], np.float32)}, opset=11), {"x": x})


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [(2.0, 2.0), (3.0, 1.5), (0.5, 2.0)])
def test_resize_opset10(mode, scales):
    """Opset-10 Resize: scales as input 1, asymmetric coordinates, nearest rounds down."""
    x = rand((2, 3, 4, 6), 2)
    node = helper.make_node("Resize", ["x", "scales"], ["y"], mode=mode)
    agree(model_of([node], {"x": x}, inits={"scales": np.array([1, 1, *scales], np.float32)}, opset=10), {"x": x})


@pytest.mark.parametrize("scales", [(2.0, 2.0), (1.0, 3.0)])
def test_upsample_opset9(scales):
    x = rand((2, 3, 3, 4), 3)
    node = helper.make_node("Upsample", ["x", "scales"], ["y"], mode="nearest")
    agree(model_of([node], {"x": x}, inits={"scales": np.array([1, 1, *scales], np.float32)}, opset=9), {"x": x})


@pytest.mark.parametrize("attrs,words", [
    ({"mode": "cubic"}, "cubic"),
    ({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}, "tf_crop_and_resize"),
])
def test_resize_variants_irc_cannot_express_are_refused_by_name(attrs, words):
    x = rand((1, 1, 3, 3), 4)
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up_7", **attrs)
    model = model_of([node], {"x": x}, inits={"scales": np.array([1, 1, 2, 2], np.float32)})
    with pytest.raises(irc.IRCError) as e:
        irc.compile(from_model(model), target="numpy")
    assert words in str(e.value) and "up_7" in str(e.value)


# ----------------------------------------------------------- ConvTranspose
@FEW
@given(cin=st.integers(1, 4), cout=st.integers(1, 4), group=st.sampled_from([1, 2]),
       hw=st.tuples(st.integers(1, 5), st.integers(1, 5)), k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), dil=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       pads=st.tuples(*[st.integers(0, 2)] * 4), outpad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_conv_transpose_2d_explicit_pads(cin, cout, group, hw, k, stride, dil, pads, outpad, bias, seed):
    # output_padding must be smaller than the stride (onnxruntime; the spec also allows the dilation)
    outpad = tuple(min(p, s - 1) for p, s in zip(outpad, stride))
    out = [stride[i] * (hw[i] - 1) + outpad[i] + dil[i] * (k[i] - 1) + 1 - pads[i] - pads[2 + i] for i in range(2)]
    if min(out) < 1:
        return
    x = rand((2, cin * group) + hw, seed)
    w = rand((cin * group, cout) + k, seed + 1)
    inits = {"w": w, **({"b": rand((cout * group,), seed + 2)} if bias else {})}
    node = helper.make_node("ConvTranspose", ["x", "w"] + (["b"] if bias else []), ["y"], strides=list(stride),
                            dilations=list(dil), pads=list(pads), output_padding=list(outpad), group=group)
    agree(model_of([node], {"x": x}, inits=inits), {"x": x})


@FEW
@given(hw=st.tuples(st.integers(1, 5), st.integers(1, 5)), k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       auto_pad=st.sampled_from(["SAME_UPPER", "SAME_LOWER", "VALID"]), seed=st.integers(0, 2**16))
def test_conv_transpose_auto_pad(hw, k, stride, auto_pad, seed):
    x = rand((2, 3) + hw, seed)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=list(stride), auto_pad=auto_pad)
    spec_only = auto_pad != "VALID" and any(kk < s for kk, s in zip(k, stride))
    agree(model_of([node], {"x": x}, inits={"w": rand((3, 2) + k, seed + 1)}), {"x": x},
          reference="onnx" if spec_only else "onnxruntime")


@FEW
@given(hw=st.tuples(st.integers(2, 5), st.integers(2, 5)), k=st.tuples(st.integers(2, 4), st.integers(2, 4)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), extra=st.tuples(st.integers(-1, 1), st.integers(-1, 1)),
       seed=st.integers(0, 2**16))
def test_conv_transpose_output_shape(hw, k, stride, extra, seed):
    """``output_shape`` instead of pads: the total padding is split as the spec says (more at the start)."""
    full = [stride[i] * (hw[i] - 1) + k[i] for i in range(2)]
    # a target shape a few rows from the unpadded result, reachable with pads >= 0 and output_padding < stride
    target = [f - 1 + e if e <= 0 or s > 1 else f - 1 for f, e, s in zip(full, extra, stride)]
    x = rand((2, 2) + hw, seed)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=list(stride), output_shape=target)
    agree(model_of([node], {"x": x}, inits={"w": rand((2, 3) + k, seed + 1)}), {"x": x})


@pytest.mark.parametrize("nd", [1, 3])
def test_conv_transpose_1d_and_3d(nd):
    x = rand((2, 2) + (3,) * nd, nd)
    w = rand((2, 3) + (2,) * nd, nd + 1)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2] * nd, pads=[1] * nd + [0] * nd)
    agree(model_of([node], {"x": x}, inits={"w": w, "b": rand((3,), 9)}), {"x": x})


# ------------------------------------------------------------- LSTM / GRU
def recurrent_model(op: str, *, batch: int, seq: int, inp: int, hid: int, direction: str, layout: int,
                    bias: bool, initial: bool, seed: int, linear_before_reset: int = 0):
    """One LSTM/GRU node with all its outputs, weights as initializers and (optionally) initial states."""
    gates = {"LSTM": 4, "GRU": 3}[op]
    dirs = 2 if direction == "bidirectional" else 1
    x = rand((seq, batch, inp) if layout == 0 else (batch, seq, inp), seed)
    inits = {"W": rand((dirs, gates * hid, inp), seed + 1) * 0.5, "R": rand((dirs, gates * hid, hid), seed + 2) * 0.5}
    names = ["x", "W", "R", "B" if bias else "", "", "h0" if initial else ""]
    if bias:
        inits["B"] = rand((dirs, 2 * gates * hid), seed + 3) * 0.5
    state = (dirs, batch, hid) if layout == 0 else (batch, dirs, hid)
    if initial:
        inits["h0"] = rand(state, seed + 4)
    outs = ["Y", "Y_h"]
    if op == "LSTM":
        names.append("c0" if initial else "")
        if initial:
            inits["c0"] = rand(state, seed + 5)
        outs.append("Y_c")
    while names and not names[-1]:
        names.pop()
    extra = {"linear_before_reset": linear_before_reset} if op == "GRU" else {}
    node = helper.make_node(op, names, outs, hidden_size=hid, direction=direction, layout=layout, **extra)
    return model_of([node], {"x": x}, len(outs), inits=inits, opset=14, symbolic_batch=layout == 1 and not initial), x


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
@FEW
@given(batch=st.integers(1, 3), seq=st.integers(1, 5), inp=st.integers(1, 4), hid=st.integers(1, 5),
       direction=st.sampled_from(["forward", "reverse", "bidirectional"]), layout=st.sampled_from([0, 1]),
       bias=st.booleans(), initial=st.booleans(), lbr=st.sampled_from([0, 1]), seed=st.integers(0, 2**16))
def test_recurrent(op, batch, seq, inp, hid, direction, layout, bias, initial, lbr, seed):
    model, x = recurrent_model(op, batch=batch, seq=seq, inp=inp, hid=hid, direction=direction, layout=layout,
                               bias=bias, initial=initial, seed=seed, linear_before_reset=lbr)
    # onnxruntime has no batch-first (layout=1) recurrences: ONNX's reference evaluator checks those
    agree(model, {"x": x}, RECURRENT_TOL, reference="onnxruntime" if layout == 0 else "onnx")


def _lstm_with(extra_inputs: dict, **attrs):
    model, x = recurrent_model("LSTM", batch=2, seq=3, inp=2, hid=2, direction="forward", layout=1, bias=True,
                               initial=False, seed=1)
    node = model.graph.node[0]
    node.name = "lstm_3"
    names = list(node.input) + [""] * (8 - len(node.input))
    for slot, (name, value) in extra_inputs.items():
        names[slot] = name
        model.graph.initializer.append(numpy_helper.from_array(value, name))
    del node.input[:]
    node.input.extend(names)
    node.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
    return model


@pytest.mark.parametrize("model,words", [
    (lambda: _lstm_with({7: ("P", np.ones((1, 6), np.float32))}), "peephole"),
    (lambda: _lstm_with({4: ("lens", np.array([3, 1], np.int32))}), "sequence_lens"),
    (lambda: _lstm_with({}, clip=1.0), "clip"),
    (lambda: _lstm_with({}, activations=["Relu", "Tanh", "Tanh"]), "activations"),
], ids=["peepholes", "sequence_lens", "clip", "activations"])
def test_recurrent_variants_irc_cannot_express_are_refused_by_name(model, words):
    with pytest.raises(irc.IRCError) as e:
        irc.compile(from_model(model()), target="numpy")
    assert words in str(e.value) and "lstm_3" in str(e.value)


def test_full_length_sequence_lens_and_zero_peepholes_run():
    """What exporters write when nothing is masked (all lengths full, zero peepholes) is accepted and matches."""
    model = _lstm_with({4: ("lens", np.array([3, 3], np.int32)), 7: ("P", np.zeros((1, 6), np.float32))})
    x = rand((2, 3, 2), 1)
    agree(model, {"x": x}, RECURRENT_TOL, reference="onnx")


@pytest.mark.parametrize("op", ["Resize", "ConvTranspose", "LSTM"])
def test_spiking_targets_refuse_the_structured_ops_by_name(op):
    if op == "Resize":
        x = rand((2, 1, 3, 3), 1)
        model = model_of([helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest")], {"x": x},
                         inits={"s": np.array([1, 1, 2, 2], np.float32)})
    elif op == "ConvTranspose":
        x = rand((2, 1, 3, 3), 1)
        model = model_of([helper.make_node("ConvTranspose", ["x", "w"], ["y"])], {"x": x},
                         inits={"w": rand((1, 2, 2, 2), 2)})
    else:
        model, x = recurrent_model("LSTM", batch=2, seq=3, inp=2, hid=2, direction="forward", layout=1,
                                   bias=False, initial=False, seed=1)
    with pytest.raises(irc.IRCError) as e:
        irc.compile(from_model(model), target="spike-numpy", calibration=np.abs(x))
    assert op in str(e.value)
