"""Every formulation the numpy target picks for a convolution, against onnxruntime.

The numpy target chooses per layer, from its shape, how a Conv runs
(backends/numpy_conv.py): the JIT depthwise and direct kernels
(``kernels=llvm``), numpy depthwise taps, one pointwise GEMM, im2col over
channels-last rows, channels-first GEMMs for few output channels, block-diagonal
grouped weights (``kernels=numpy``), or the
reference kernel (``kernels=reference``).  Each is checked against
onnxruntime on the same one-node model, over shapes drawn by hypothesis; the
test also checks that the formulation it means to test is the one the
generated source calls.
"""
from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import irc
from conftest import ort_run

MODES = ("llvm", "numpy", "reference")
FAST = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def conv_model(path: str, *, c: int, m: int, group: int, kernel, strides, pads, dilations, bias: bool,
               activation: str, h: int, w: int, seed: int = 0) -> None:
    """A one-Conv ONNX model (plus its activation node), random weights."""
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((m, c // group, *kernel)) / np.sqrt(c // group * np.prod(kernel))).astype(np.float32)
    inits = [numpy_helper.from_array(weight, "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(m).astype(np.float32), "b"))
        inputs.append("b")
    nodes = [helper.make_node("Conv", inputs, ["y0" if activation else "y"], kernel_shape=list(kernel),
                              strides=list(strides), pads=list(pads), dilations=list(dilations), group=group)]
    if activation == "Clip":
        inits += [numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
                  numpy_helper.from_array(np.array(0.5, np.float32), "hi")]
        nodes.append(helper.make_node("Clip", ["y0", "lo", "hi"], ["y"]))
    elif activation:
        nodes.append(helper.make_node(activation, ["y0"], ["y"]))
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", m, "H", "W"])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def check_against_onnxruntime(path: str, c: int, h: int, w: int, batch: int, expect: dict[str, str]) -> None:
    x = np.random.default_rng(7).standard_normal((batch, c, h, w)).astype(np.float32)
    ref = ort_run(path, {"x": x})[0]
    graph = irc.load(path)
    for mode in MODES:
        prog = irc.compile(graph, target="numpy", kernels=mode)
        if mode in expect:
            assert expect[mode] + "(" in prog.source, (mode, expect[mode])
        got = prog.run(x)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5, err_msg=f"kernels={mode}")


def fits(h: int, w: int, kernel, strides, pads, dilations) -> bool:
    """The kernel's window fits in the padded input (onnxruntime refuses an empty output)."""
    return all(size + pads[i] + pads[2 + i] >= dilations[i] * (kernel[i] - 1) + 1
               for i, size in enumerate((h, w)))


activations = st.sampled_from(["", "Relu", "Clip", "Tanh", "LeakyRelu", "Sigmoid"])
odd_pads = st.lists(st.integers(0, 2), min_size=4, max_size=4)


@FAST
@given(c=st.sampled_from([3, 8, 19]), multiplier=st.sampled_from([1, 2]), k=st.sampled_from([(3, 3), (5, 3), (1, 1)]),
       stride=st.sampled_from([1, 2]), dilation=st.sampled_from([1, 2]), pads=odd_pads, act=activations,
       bias=st.booleans(), batch=st.sampled_from([1, 3]))
def test_depthwise(tmp_path, c, multiplier, k, stride, dilation, pads, act, bias, batch):
    """group == channels, with and without a channel multiplier: JIT kernel and numpy taps."""
    path = str(tmp_path / "dw.onnx")
    h, w = 11, 9
    assume(fits(h, w, k, (stride, stride), pads, (dilation, dilation)))
    conv_model(path, c=c, m=c * multiplier, group=c, kernel=k, strides=(stride, stride), pads=pads,
               dilations=(dilation, dilation), bias=bias, activation=act, h=h, w=w)
    check_against_onnxruntime(path, c, h, w, batch, {"llvm": "jit_depthwise", "numpy": "conv_depthwise"})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(c=st.sampled_from([1, 4, 9]), multiplier=st.sampled_from([1, 2]),
       k=st.sampled_from([(3, 3), (5, 3), (1, 1), (2, 4)]),
       strides=st.sampled_from([(1, 1), (2, 2), (1, 2), (3, 2)]), dilations=st.sampled_from([(1, 1), (2, 1), (1, 2)]),
       pads=odd_pads, h=st.integers(3, 9), w=st.integers(3, 9), bias=st.booleans(),
       act=st.sampled_from(["", "relu", "clip"]))
def test_depthwise_flat_shifts(tmp_path, c, multiplier, k, strides, dilations, pads, h, w, bias, act):
    """The numpy depthwise formulation over flat shifts of the unpadded input (one einsum per stride phase,
    row edges masked in the weights), on every shape where it applies, against onnxruntime."""
    from irc.ops import kernels_nhwc as kn
    from irc.ops.nn import conv_out_dim

    assume(fits(h, w, k, strides, pads, dilations))
    out_dims = [conv_out_dim((h, w)[i], k[i], strides[i], pads[i], pads[2 + i], dilations[i]) for i in range(2)]
    path = str(tmp_path / "dw.onnx")
    m = c * multiplier
    conv_model(path, c=c, m=m, group=c, kernel=k, strides=strides, pads=pads, dilations=dilations, bias=bias,
               activation={"": "", "relu": "Relu", "clip": "Clip"}[act], h=h, w=w)
    x = np.random.default_rng(3).standard_normal((3, c, h, w)).astype(np.float32)
    model = onnx.load(path)
    weight = numpy_helper.to_array(model.graph.initializer[0])
    b = numpy_helper.to_array(model.graph.initializer[1]) if bias else None
    params = {"min": 0.0, "max": 0.5} if act == "clip" else {}
    got = kn._depthwise_flat(np.repeat(x.transpose(0, 2, 3, 1), multiplier, axis=3),
                             np.ascontiguousarray(weight[:, 0].transpose(1, 2, 0)), b, k, list(strides), pads,
                             list(dilations), out_dims, act, params)
    assume(got is not None)
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), ort_run(path, {"x": x})[0], rtol=1e-5, atol=1e-5)


@FAST
@given(groups=st.sampled_from([2, 4]), cg=st.sampled_from([2, 3]), mg=st.sampled_from([1, 4, 9]),
       k=st.sampled_from([(3, 3), (1, 1), (2, 3)]), stride=st.sampled_from([1, 2]), pads=odd_pads, act=activations)
def test_grouped(tmp_path, groups, cg, mg, k, stride, pads, act):
    """Grouped (not depthwise): block-diagonal weights through the direct kernel, im2col or one GEMM."""
    path = str(tmp_path / "grouped.onnx")
    c, h, w = groups * cg, 8, 10
    conv_model(path, c=c, m=groups * mg, group=groups, kernel=k, strides=(stride, stride), pads=pads,
               dilations=(1, 1), bias=True, activation=act, h=h, w=w)
    pointwise = k == (1, 1) and not any(pads)
    check_against_onnxruntime(path, c, h, w, 2, {"llvm": "jit_conv",
                                                  "numpy": "conv_pointwise" if pointwise else "conv_im2col"})


@FAST
@given(c=st.sampled_from([1, 2, 3, 6, 16]), m=st.sampled_from([1, 6, 16, 21]),
       k=st.sampled_from([(5, 5), (3, 3), (10, 4), (1, 1), (1, 3)]), strides=st.sampled_from([(1, 1), (2, 2), (3, 1)]),
       dilations=st.sampled_from([(1, 1), (2, 1), (1, 2)]), pads=odd_pads, act=activations, bias=st.booleans(),
       batch=st.sampled_from([1, 2, 17]))
def test_dense(tmp_path, c, m, k, strides, dilations, pads, act, bias, batch):
    """Dense convolutions: few channels, strided, dilated, asymmetric padding, 1x1, fused activations."""
    path = str(tmp_path / "dense.onnx")
    h, w = 14, 13
    assume(fits(h, w, k, strides, pads, dilations))
    conv_model(path, c=c, m=m, group=1, kernel=k, strides=strides, pads=pads, dilations=dilations, bias=bias,
               activation=act, h=h, w=w)
    from irc.ops.nn import conv_out_dim

    pointwise = k == (1, 1) and not any(pads)
    numpy = "conv_few_outputs" if m < 8 else "conv_pointwise" if pointwise else "conv_im2col"
    ow = conv_out_dim(w, k[1], strides[1], pads[1], pads[3], dilations[1])
    llvm = "jit_few_outputs" if m < 8 and strides[1] == 1 and ow >= 8 else "jit_conv"
    check_against_onnxruntime(path, c, h, w, batch, {"llvm": llvm, "numpy": numpy})


@settings(max_examples=25, deadline=None)
@given(c=st.sampled_from([1, 2, 5]), m=st.integers(1, 19), k=st.sampled_from([(5, 5), (3, 3), (1, 4), (2, 1)]),
       sh=st.sampled_from([1, 2]), dilations=st.sampled_from([(1, 1), (2, 1), (1, 3)]), pads=odd_pads,
       width=st.integers(8, 40), act=st.sampled_from(["", "relu", "tanh", "sigmoid", "leaky_relu", "clip"]),
       bias=st.booleans())
def test_jit_few_outputs_kernel_equals_its_numpy_stand_in(c, m, k, sh, dilations, pads, width, act, bias):
    """The pixel-vectorised JIT kernel (every channel count, block tails, overlapping last pixel block, blocks of
    8 and 16 pixels) against the numpy channels-first GEMM it stands in for, on the same packed weight."""
    from irc.backends.llvm import conv_kernels as ck
    from irc.ops import kernels_nhwc as kn
    from irc.ops.nn import conv_out_dim

    rng = np.random.default_rng(m * 31 + c)
    h = 9
    assume(fits(h, width, k, (sh, 1), pads, dilations))
    out_dims = [conv_out_dim(h, k[0], sh, pads[0], pads[2], dilations[0]),
                conv_out_dim(width, k[1], 1, pads[1], pads[3], dilations[1])]
    assume(out_dims[0] >= 1 and out_dims[1] >= 8)
    x = rng.standard_normal((3, c, h, width)).astype(np.float32)
    w = rng.standard_normal((m, c * k[0] * k[1])).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    params = {"clip": {"min": -0.5, "max": 0.5}, "leaky_relu": {"alpha": 0.1}}.get(act, {})
    geometry = dict(kernel=list(k), strides=[sh, 1], pads=pads, dilations=list(dilations), out_dims=out_dims,
                    activation=act, activation_params=params)
    np.testing.assert_allclose(ck.few_outputs_conv2d(x, w, b, **geometry), kn.conv_few_outputs(x, w, b, **geometry),
                               rtol=1e-5, atol=1e-5)


def packed_case(rng, *, c, m, k, group):
    from irc.backends.llvm.conv_kernels import packed_direct_weight

    x = rng.standard_normal((4, 10, 9, c)).astype(np.float32)
    w = rng.standard_normal((m, c // group, *k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    return x, w, b, packed_direct_weight


@pytest.mark.parametrize("stride, dilation, pads, act", [
    ((1, 1), (1, 1), [1, 1, 1, 1], ("relu", {})),
    ((2, 2), (1, 1), [0, 1, 2, 0], ("clip", {"min": 0.0, "max": 6.0})),
    ((1, 2), (2, 1), [2, 0, 1, 1], ("tanh", {})),
])
def test_jit_kernels_equal_their_numpy_stand_ins(rng, stride, dilation, pads, act):
    """The JIT kernels and the numpy formulations a generated module falls back to agree on the same packed arrays."""
    from irc.backends.llvm import conv_kernels as ck
    from irc.ops import kernels_nhwc as kn
    from irc.ops.nn import conv_out_dim

    x, w, b, pack = packed_case(rng, c=12, m=12, k=(3, 3), group=12)
    out_dims = [conv_out_dim(x.shape[1 + i], 3, stride[i], pads[i], pads[2 + i], dilation[i]) for i in range(2)]
    geometry = dict(kernel=[3, 3], strides=list(stride), pads=pads, dilations=list(dilation), out_dims=out_dims,
                    activation=act[0], activation_params=act[1])
    hwm = np.ascontiguousarray(w[:, 0].transpose(1, 2, 0))
    np.testing.assert_allclose(ck.depthwise_conv2d(x, hwm, b, **geometry), kn.conv_depthwise(x, hwm, b, **geometry),
                               rtol=1e-6, atol=1e-6)
    x, w, b, pack = packed_case(rng, c=5, m=11, k=(3, 3), group=1)
    packed, padded = pack(w), np.zeros(16, np.float32)
    padded[:11] = b
    np.testing.assert_allclose(ck.direct_conv2d(x, packed, padded, channels=11, **geometry),
                               kn.conv_direct(x, packed, padded, channels=11, **geometry), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m, size, stride, dilation, pads", [
    (16, (9, 5), (1, 1), (1, 1), [1, 1, 1, 1]),
    (8, (11, 7), (2, 2), (1, 1), [0, 0, 1, 1]),
    (24, (6, 9), (1, 2), (2, 1), [2, 0, 1, 2]),
    (8, (5, 4), (1, 1), (1, 2), [0, 2, 0, 2]),
    (16, (7, 23), (1, 1), (1, 1), [1, 1, 1, 1]),
    (8, (9, 26), (2, 2), (1, 1), [0, 0, 1, 1]),
])
@pytest.mark.parametrize("act", [("relu", {}), ("clip", {"min": 0.0, "max": 6.0}), ("", {})])
def test_unrolled_depthwise_kernel_equals_the_numpy_formulation(m, size, stride, dilation, pads, act):
    """The 3x3 depthwise kernel with its taps unrolled (narrow rows or a small input, channels a multiple of 8):
    edges, interior blocks, strides, dilations, asymmetric padding, every pixel-block tail, against the numpy
    formulation."""
    from irc.backends.llvm import conv_kernels as ck
    from irc.ops import kernels_nhwc as kn
    from irc.ops.nn import conv_out_dim

    rng = np.random.default_rng(m)
    x = rng.standard_normal((3, *size, m)).astype(np.float32)
    w = rng.standard_normal((3, 3, m)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    out_dims = [conv_out_dim(size[i], 3, stride[i], pads[i], pads[2 + i], dilation[i]) for i in range(2)]
    assert out_dims[1] <= ck.DEPTHWISE_UNROLLED_WIDTH or x.nbytes <= ck.DEPTHWISE_UNROLLED_BYTES
    geometry = dict(kernel=[3, 3], strides=list(stride), pads=pads, dilations=list(dilation), out_dims=out_dims,
                    activation=act[0], activation_params=act[1])
    np.testing.assert_allclose(ck.depthwise_conv2d(x, w, b, **geometry), kn.conv_depthwise(x, w, b, **geometry),
                               rtol=1e-5, atol=1e-5)


def test_generated_module_runs_without_irc(tmp_path, monkeypatch):
    """Where irc (and so the JIT kernels) cannot be imported, the generated module's numpy stand-ins run."""
    path = str(tmp_path / "dw.onnx")
    conv_model(path, c=8, m=8, group=8, kernel=(3, 3), strides=(2, 2), pads=[1, 1, 1, 1], dilations=(1, 1),
               bias=True, activation="Relu", h=9, w=9)
    prog = irc.compile(irc.load(path), target="numpy")
    assert "jit_depthwise(" in prog.source
    monkeypatch.setitem(sys.modules, "irc.backends.llvm.conv_kernels", None)  # import now raises ImportError
    namespace: dict = {"__name__": "standalone"}
    exec(compile(prog.source, "standalone", "exec"), namespace)
    assert namespace["jit_depthwise"] is namespace["conv_depthwise"]
    x = np.random.default_rng(0).standard_normal((2, 8, 9, 9)).astype(np.float32)
    got = namespace["run"](prog._weights, x)[0]
    np.testing.assert_allclose(got, ort_run(path, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_float64_weights_keep_a_float32_network_float32(rng):
    """A float64 weight or bias is packed in the activations' dtype: float32 out, and the same numbers."""
    from irc.types import TensorType

    g = irc.Graph("f64")
    x = g.add_input("x", TensorType(("N", 4, 6, 6)))
    w = g.add_param("w", rng.standard_normal((8, 4, 3, 3)))  # float64
    b = g.add_param("b", rng.standard_normal(8))
    g.outputs = [g.add_node("Conv", [x, w, b], {"pads": [1, 1, 1, 1]}).outputs[0]]
    data = rng.standard_normal((3, 4, 6, 6)).astype(np.float32)
    ref = irc.compile(g, target="numpy", kernels="reference").run(data)
    for mode in MODES:
        got = irc.compile(g, target="numpy", kernels=mode).run(data)
        assert got.dtype == np.float32, mode
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_unknown_kernels_option_is_one_clear_error():
    from irc.types import TensorType

    g = irc.Graph("g")
    x = g.add_input("x", TensorType(("N", 3)))
    g.outputs = [g.add_node("Relu", [x]).outputs[0]]
    with pytest.raises(irc.IRCError, match="option 'kernels' must be one of llvm, numpy, reference, got 'fast'"):
        irc.compile(g, target="numpy", kernels="fast")


@pytest.mark.parametrize("name", ["lenet5_tanh", "vgg_bn_dropout", "resnet_tiny", "separable", "multibranch_concat",
                                  "pools_ceil_padded", "dilated_strided"])
def test_networks_in_every_kernel_mode(name):
    """Channels-last between layers: pooling (ceil mode, padding, count_include_pad), Concat, residual Adds,
    Flatten into Dense with permuted columns, Pad folded into Conv, against onnxruntime in every mode."""
    from conftest import onnx_fixture, random_feeds

    path = onnx_fixture(name)
    graph = irc.load(path)
    feeds = random_feeds(graph, 5)
    ref = ort_run(path, feeds)
    for mode in MODES:
        got = irc.compile(graph, target="numpy", kernels=mode).run(**feeds)
        got = got if isinstance(got, list) else [got]
        for g_, r_ in zip(got, ref):
            np.testing.assert_allclose(g_, r_, rtol=1e-5, atol=1e-5, err_msg=f"{name} kernels={mode}")


def test_unfused_batchnorm_after_a_residual_add(tmp_path):
    """A BatchNorm no Conv can absorb (after an Add) runs as one channels-last multiply-add."""
    rng = np.random.default_rng(2)
    c = 6
    w = numpy_helper.from_array((rng.standard_normal((c, c, 3, 3)) * 0.2).astype(np.float32), "w")
    bn = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in
          ((rng.uniform(0.5, 1.5, c), "s"), (rng.uniform(-.2, .2, c), "bb"), (rng.uniform(-.5, .5, c), "mu"),
           (rng.uniform(0.5, 2, c), "var"))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "x"], ["a"]),
             helper.make_node("BatchNormalization", ["a", "s", "bb", "mu", "var"], ["y"])]
    graph = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, 7, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", c, 7, 7])], [w] + bn)
    path = str(tmp_path / "bn.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    check_against_onnxruntime(path, c, 7, 7, 3, {"numpy": "scale_shift_nhwc", "llvm": "scale_shift_nhwc"})


@pytest.mark.parametrize("m", [1, 2, 3, 5, 6, 8, 11, 17, 24, 28, 64, 70])
@pytest.mark.parametrize("ow", [4, 5, 6, 7, 3])
def test_direct_kernel_writes_nothing_past_its_output(m, ow):
    """Whole-vector stores that overhang into the next pixel never leave the output array, whatever the tiles
    (4 pixels, a 1- to 3-pixel tail; 1 to 8 channel vectors), and every value is the convolution's."""
    from irc.backends.llvm import conv_kernels as ck

    rng = np.random.default_rng(m)
    x = rng.standard_normal((2, 6, ow + 2, 3)).astype(np.float32)
    weight = rng.standard_normal((m, 3, 3, 3)).astype(np.float32)
    w = ck.packed_direct_weight(weight)
    b = np.zeros(w.shape[-1], np.float32)
    out = np.full(2 * 4 * ow * m + 64, 12345.0, np.float32)
    y = out[:2 * 4 * ow * m].reshape(2, 4, ow, m)
    geom = (6, ow + 2, 3, 4, ow, m, 3, 1, 1, 1, 1, 1, 0, 0, 9, m, 0)
    ck.run_rows("direct", x, w, b, y, geom, -np.inf, np.inf)
    assert np.all(out[y.size:] == 12345.0)
    # exact arithmetic in float64: y[n, h, w, m] = sum over i, j, c of x[n, h + i, w + j, c] * weight[m, c, i, j]
    windows = np.stack([np.stack([x[:, i:i + 4, j:j + ow] for j in range(3)], axis=-1) for i in range(3)], axis=-2)
    want = np.einsum("nhwcij,mcij->nhwm", windows.astype(np.float64), weight.astype(np.float64))
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)


def test_bad_threads_option_is_one_clear_error():
    from irc.types import TensorType

    g = irc.Graph("g")
    x = g.add_input("x", TensorType(("N", 3)))
    g.outputs = [g.add_node("Relu", [x]).outputs[0]]
    with pytest.raises(irc.IRCError, match="option .threads. is 0, out of range"):
        irc.compile(g, target="numpy", threads=0)
    out = irc.compile(g, target="numpy", threads=1).run(np.array([[-1.0, 2.0, -3.0]], np.float32))
    np.testing.assert_array_equal(out, [[0.0, 2.0, 0.0]])


def test_kernels_split_over_threads_compute_the_same(rng, monkeypatch):
    """Large layers split their output rows over threads; the parts join up to the one-thread result."""
    from irc.backends.llvm import conv_kernels as ck

    x = rng.standard_normal((3, 12, 11, 16)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    packed, b = ck.packed_direct_weight(w), np.zeros(16, np.float32)
    geometry = dict(kernel=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], out_dims=[12, 11])
    pool = dict(kernel=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1], dilations=[1, 1], out_dims=[6, 6])
    one = (ck.direct_conv2d(x, packed, b, channels=16, **geometry), ck.max_pool2d(x, **pool),
           ck.depthwise_conv2d(x, np.ascontiguousarray(w[:, 0].transpose(1, 2, 0)), b, **geometry))
    monkeypatch.setattr(ck, "SPLIT_MACS", 0)
    split = (ck.direct_conv2d(x, packed, b, channels=16, **geometry), ck.max_pool2d(x, **pool),
             ck.depthwise_conv2d(x, np.ascontiguousarray(w[:, 0].transpose(1, 2, 0)), b, **geometry))
    for a, c in zip(one, split):
        np.testing.assert_array_equal(a, c)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.sampled_from([(2, 2), (3, 2), (2, 3), (1, 4)]), h=st.integers(9, 13), w=st.integers(9, 14),
       m=st.sampled_from([1, 5]), batch=st.sampled_from([1, 4]))
def test_few_channel_average_pool_is_one_gemm(tmp_path, k, h, w, m, batch):
    """A few-channel (channels-first) value average-pooled over non-overlapping windows: one GEMM with a pooling
    matrix, rows and columns past the last whole window dropped, against onnxruntime in every mode."""
    rng = np.random.default_rng(h * w)
    weight = numpy_helper.from_array(rng.standard_normal((m, 2, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("AveragePool", ["c"], ["y"], kernel_shape=list(k), strides=list(k))]
    graph = helper.make_graph(nodes, "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", m, "H", "W"])], [weight])
    path = str(tmp_path / "pool.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    check_against_onnxruntime(path, 2, h, w, batch, {"numpy": "avg_pool_gemm", "llvm": "avg_pool_gemm"})


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_runs_in_chunks_that_fit_in_cache(tmp_path, threads):
    """A batch larger than the program's CHUNK runs a few samples per call (in each thread), the parts joined in
    order: the same numbers as onnxruntime on the whole batch."""
    path = str(tmp_path / "big.onnx")
    conv_model(path, c=4, m=16, group=1, kernel=(3, 3), strides=(1, 1), pads=[1, 1, 1, 1], dilations=(1, 1),
               bias=True, activation="Relu", h=64, w=64)
    x = np.random.default_rng(5).standard_normal((11, 4, 64, 64)).astype(np.float32)
    ref = ort_run(path, {"x": x})[0]
    for mode in ("llvm", "numpy"):
        prog = irc.compile(irc.load(path), target="numpy", kernels=mode, threads=threads)
        assert "CHUNK = 4 " in prog.source  # 16 x 64 x 64 float32 outputs per sample: 256 kB
        np.testing.assert_allclose(prog.run(x), ref, rtol=1e-5, atol=1e-5, err_msg=f"kernels={mode}")


@pytest.mark.parametrize("m", [5, 16, 24])
def test_pointwise_direct_kernel_runs_the_batch_as_one_row(m):
    """A 1x1 convolution through the direct kernel treats all the batch's pixels as one row (5-pixel rows would
    leave one pixel in five to a tail tile): the same numbers as the numpy GEMM over pixels."""
    from irc.backends.llvm import conv_kernels as ck
    from irc.ops import kernels_nhwc as kn

    rng = np.random.default_rng(m)
    x = rng.standard_normal((3, 7, 5, 12)).astype(np.float32)
    w = rng.standard_normal((m, 12, 1, 1)).astype(np.float32)
    b = np.zeros(-(-m // 8) * 8, np.float32)
    b[:m] = rng.standard_normal(m)
    geometry = dict(kernel=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], out_dims=[7, 5])
    got = ck.direct_conv2d(x, ck.packed_direct_weight(w), b, channels=m, activation="relu", activation_params={},
                           **geometry)
    want = kn.conv_pointwise(x, np.ascontiguousarray(w[:, :, 0, 0].T), b[:m], strides=[1, 1], activation="relu",
                             activation_params={})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_direct_kernel_with_narrow_register_tiles(monkeypatch, tmp_path):
    """The tiles for CPUs with 16 vector registers (no AVX-512) compute the same convolutions (this machine may
    have 32: the kernels are built again as they would be there)."""
    from irc.backends.llvm import conv_kernels as ck

    def rebuild():
        ck._compiled.cache_clear()
        ck._FUNCTIONS.clear()
        ck._LAUNCHES.clear()
        ck._PLANS.clear()

    monkeypatch.setenv("IRC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(ck, "wide_registers", lambda: False)
    rebuild()
    try:
        rng = np.random.default_rng(1)
        for m, ow in ((28, 7), (64, 5), (11, 6)):
            x = rng.standard_normal((2, 6, ow + 2, 5)).astype(np.float32)
            weight = rng.standard_normal((m, 5, 3, 3)).astype(np.float32)
            b = np.zeros(-(-m // 8) * 8, np.float32)
            got = ck.direct_conv2d(x, ck.packed_direct_weight(weight), b, kernel=[3, 3], strides=[1, 1],
                                   pads=[0, 0, 0, 0], dilations=[1, 1], out_dims=[4, ow], channels=m)
            windows = np.stack([np.stack([x[:, i:i + 4, j:j + ow] for j in range(3)], axis=-1) for i in range(3)],
                               axis=-2)
            want = np.einsum("nhwcij,mcij->nhwm", windows.astype(np.float64), weight.astype(np.float64))
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    finally:
        monkeypatch.undo()
        rebuild()
