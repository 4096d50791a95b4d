"""The ONNX ops of issue 13's real networks, one node each, against onnxruntime on random shapes.

Each test builds a small model with onnx.helper (shapes drawn by hypothesis, the
attribute variants the realworld fixtures use), compiles it for the numpy target
and compares with onnxruntime within 1e-5.  Also: If folded on a constant
condition and refused on a run-time one, and the activations fused into a Conv.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import irc
from irc.frontends.onnx import from_model

FEW = settings(max_examples=15, deadline=None)
TOL = dict(rtol=1e-5, atol=1e-5)

shapes = st.lists(st.integers(1, 5), min_size=2, max_size=4).map(tuple)
"""Data shapes: axis 0 is the batch (declared symbolic in the model)."""


def _vi(name: str, shape, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, list(shape))


def build(nodes, feeds: dict, out_rank: int | list[int], *, inits: dict | None = None, opset: int = 13,
          outputs=("y",), out_elem: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """A model of ``nodes`` whose inputs are ``feeds`` (batch axis symbolic, their dtypes) and initializers
    ``inits``; its outputs have element type ``out_elem``."""
    ranks = [out_rank] * len(outputs) if isinstance(out_rank, int) else out_rank
    g = helper.make_graph(
        nodes, "g", [_vi(k, ("N",) + v.shape[1:], helper.np_dtype_to_tensor_dtype(v.dtype)) for k, v in feeds.items()],
        [_vi(o, [f"{o}_{i}" for i in range(r)], out_elem) for o, r in zip(outputs, ranks)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def compare(model: onnx.ModelProto, feeds: dict, **tol) -> irc.Program:
    """irc's numpy target and onnxruntime agree on ``feeds``; returns the program."""
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    prog = irc.compile(from_model(model), target="numpy", verify=True)
    got = prog.run(feeds)
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_allclose(g, e, **(tol or TOL))
    return prog


def data(shape, seed: int, lo: float | None = None, hi: float | None = None, scale: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if lo is not None:
        return rng.uniform(lo, hi, shape).astype(np.float32)
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def trailing(shape, seed: int) -> tuple:
    """A shape that broadcasts against ``shape``: a suffix of it with some axes set to 1."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(0, len(shape) + 1))
    return tuple(1 if rng.random() < 0.4 else d for d in shape[len(shape) - k:])


# ---------------------------------------------------------------- activations
ACTIVATIONS = [
    ("HardSigmoid", {}, 13),
    ("HardSigmoid", {"alpha": 1.0 / 6.0}, 13),  # torch's hardsigmoid (the mobilenetv3 fixtures)
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, 13),
    ("HardSwish", {}, 14),
    ("Erf", {}, 13),
    ("Gelu", {}, 20),
    ("Gelu", {"approximate": "none"}, 20),
    ("Gelu", {"approximate": "tanh"}, 20),
    ("Neg", {}, 13),
    ("Abs", {}, 13),
    ("Reciprocal", {}, 13),
    ("Sign", {}, 13),
    ("Floor", {}, 13),
    ("Ceil", {}, 13),
    ("Round", {}, 13),
    ("Softplus", {}, 13),
    ("Softsign", {}, 13),
    ("Selu", {}, 13),
    ("Selu", {"alpha": 1.5, "gamma": 0.8}, 13),
    ("Celu", {}, 13),
    ("Celu", {"alpha": 0.5}, 13),
    ("Mish", {}, 18),
    ("ThresholdedRelu", {}, 13),
    ("ThresholdedRelu", {"alpha": -0.5}, 13),
    ("Shrink", {}, 13),
    ("Shrink", {"bias": 0.3, "lambd": 1.0}, 13),
]
AFTER_A_CONV_TOL = {"Reciprocal": dict(rtol=1e-3, atol=1e-4)}
"""1/x of a Conv's output near 0 magnifies the Conv's own rounding differences (irc's GEMM against onnxruntime's)."""
NEW_ACTIVATIONS = ["Neg", "Abs", "Reciprocal", "Sign", "Floor", "Ceil", "Round", "Softplus", "Softsign", "Selu",
                   "Celu", "Mish", "ThresholdedRelu", "Shrink"]


@pytest.mark.parametrize("op,attrs,opset", ACTIVATIONS, ids=[f"{o}{a}" for o, a, _ in ACTIVATIONS])
@FEW
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_activation(op, attrs, opset, shape, seed):
    x = data(shape, seed)
    compare(build([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": x}, len(shape), opset=opset), {"x": x})


@pytest.mark.parametrize("op,attrs,opset", ACTIVATIONS, ids=[f"{o}{a}" for o, a, _ in ACTIVATIONS])
def test_activation_fused_into_conv(op, attrs, opset):
    """Conv + activation: the numpy target fuses the activation into the Conv and still matches."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w, b = rng.standard_normal((4, 3, 3, 3)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    model = build([helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
                   helper.make_node(op, ["c"], ["y"], **attrs)], {"x": x}, 4, inits={"w": w, "b": b}, opset=opset)
    prog = compare(model, {"x": x}, **AFTER_A_CONV_TOL.get(op, {}))
    assert [(n.op, n.attrs.get("activation")) for n in prog.graph.nodes] == [("Conv", op)]


def test_gelu_written_out_with_erf_matches():
    """The opset-13 export of GELU: x * 0.5 * (1 + Erf(x / sqrt 2)), Erf fused into nothing (a Div feeds it)."""
    x = data((3, 8), 5)
    nodes = [helper.make_node("Div", ["x", "r2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"]), helper.make_node("Mul", ["x", "a"], ["m"]),
             helper.make_node("Mul", ["m", "half"], ["y"])]
    inits = {"r2": np.float32(np.sqrt(2)), "one": np.float32(1), "half": np.float32(0.5)}
    compare(build(nodes, {"x": x}, 2, inits=inits), {"x": x})


@pytest.mark.parametrize("slope_shape", [(1,), (), "channels", "full", "trailing"])
@FEW
@given(c=st.integers(1, 4), hw=st.tuples(st.integers(1, 4), st.integers(1, 4)), seed=st.integers(0, 2**16))
def test_prelu(slope_shape, c, hw, seed):
    """Per-channel slopes (C, 1, 1) as exporters write them, a scalar (a LeakyRelu), and other broadcasts."""
    x = data((2, c) + hw, seed)
    shape = {"channels": (c, 1, 1), "full": (c,) + hw, "trailing": (hw[1],)}.get(slope_shape, slope_shape)
    slope = data(shape, seed + 1, -1.0, 1.0)
    prog = compare(build([helper.make_node("PRelu", ["x", "s"], ["y"])], {"x": x}, 4, inits={"s": slope}), {"x": x})
    assert [n.op for n in prog.graph.nodes] == ["LeakyRelu" if slope.size == 1 else "PRelu"]


def test_prelu_with_a_slope_that_does_not_broadcast_is_refused_by_name():
    x = data((2, 3, 4, 4), 0)
    model = build([helper.make_node("PRelu", ["x", "s"], ["y"])], {"x": x}, 4, inits={"s": data((5, 1, 1), 1)})
    with pytest.raises(irc.IRCError, match="PRelu slope of shape \\[5, 1, 1\\] does not broadcast"):
        from_model(model)


def test_prelu_after_a_conv_runs_on_cuda_and_is_refused_by_the_spike_conversion():
    from cuda_emulation import compiler, emulate

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (8, 3, 6, 6)).astype(np.float32)
    model = build([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                   helper.make_node("PRelu", ["c", "s"], ["y"])], {"x": x}, 4,
                  inits={"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                         "s": np.full((4, 1, 1), 0.25, np.float32)})
    with pytest.raises(irc.IRCError, match="PRelu"):
        irc.compile(from_model(model), target="spike-numpy", calibration=x, timesteps=8)
    if compiler() is not None:
        expected = ort.InferenceSession(model.SerializeToString(),
                                        providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        prog = irc.compile(from_model(model), target="cuda")
        emulate(prog)
        np.testing.assert_allclose(prog.run(x), expected, rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------- arithmetic
@pytest.mark.parametrize("exponent", [2.0, 0.5, 3.0, -1.0])
@FEW
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_pow_by_a_constant(exponent, shape, seed):
    x = data(shape, seed, 0.1, 4.0)
    model = build([helper.make_node("Pow", ["x", "e"], ["y"])], {"x": x}, len(shape),
                  inits={"e": np.float32(exponent)})
    compare(model, {"x": x})


@FEW
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_pow_broadcasting_two_tensors(shape, seed):
    x = data(shape, seed, 0.1, 3.0)
    e = data(trailing(shape[1:], seed), seed + 1, -2.0, 2.0)
    model = build([helper.make_node("Pow", ["x", "e"], ["y"])], {"x": x}, len(shape), inits={"e": e})
    compare(model, {"x": x})
    # the exponent as a run-time input too, broadcast from the other side
    e2 = data((shape[0],) + trailing(shape[1:], seed + 2), seed + 3, -2.0, 2.0)
    if len(e2.shape) == len(shape):
        model = build([helper.make_node("Pow", ["x", "e"], ["y"])], {"x": x, "e": e2}, len(shape))
        compare(model, {"x": x, "e": e2})


def test_pow_with_an_int64_exponent():
    x = data((2, 5), 1, -2.0, 2.0)
    compare(build([helper.make_node("Pow", ["x", "e"], ["y"])], {"x": x}, 2, inits={"e": np.int64(2)},
                  opset=15), {"x": x})


@FEW
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_sqrt(shape, seed):
    x = data(shape, seed, 0.0, 5.0)
    compare(build([helper.make_node("Sqrt", ["x"], ["y"])], {"x": x}, len(shape)), {"x": x})


@FEW
@given(shape=shapes, count=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_sum_variadic_broadcasting(shape, count, seed):
    """Sum of 1..4 operands: run-time inputs of the full shape or broadcast, and constants that broadcast."""
    feeds = {"x0": data(shape, seed)}
    inits = {}
    for i in range(1, count):
        if i % 2:
            feeds[f"x{i}"] = data((shape[0],) + tuple(1 if (seed >> (i + j)) & 1 else d
                                                      for j, d in enumerate(shape[1:])), seed + i)
        else:
            inits[f"x{i}"] = data(trailing(shape[1:], seed + i), seed + i)
    model = build([helper.make_node("Sum", [f"x{i}" for i in range(count)], ["y"])], feeds, len(shape), inits=inits)
    compare(model, feeds)


# ---------------------------------------------------------- normalisations
@FEW
@given(shape=st.lists(st.integers(1, 5), min_size=2, max_size=4).map(tuple), seed=st.integers(0, 2**16),
       bias=st.booleans(), eps=st.sampled_from([1e-5, 1e-6, 1e-3]), data_axis=st.integers(1, 3))
def test_layer_normalization(shape, seed, bias, eps, data_axis):
    axis = min(data_axis, len(shape) - 1)
    axis = axis if seed % 2 else axis - len(shape)  # as given and as a negative axis (torch exports -1)
    x = data(shape, seed, scale=2.0) + 1.0
    normalised = shape[axis:]
    inits = {"scale": data(normalised, seed + 1, 0.5, 2.0)}
    if bias:
        inits["bias"] = data(normalised, seed + 2)
    node = helper.make_node("LayerNormalization", ["x", "scale"] + (["bias"] if bias else []), ["y"],
                            axis=axis, epsilon=eps)
    compare(build([node], {"x": x}, len(shape), inits=inits, opset=17), {"x": x})


def test_layer_normalization_statistics_outputs_are_refused_when_used():
    x = data((2, 4), 0)
    node = helper.make_node("LayerNormalization", ["x", "s"], ["y", "mean"], axis=-1)
    model = build([node], {"x": x}, [2, 2], inits={"s": np.ones(4, np.float32)}, opset=17, outputs=("y", "mean"))
    with pytest.raises(irc.IRCError, match="LayerNormalization output 'mean' is not supported"):
        from_model(model)


LRN_PARAMS = st.sampled_from([{}, {"alpha": 1e-4, "beta": 0.75, "bias": 1.0},  # AlexNet (the lrn fixtures)
                              {"alpha": 2e-3, "beta": 0.5, "bias": 2.0}, {"alpha": 0.5, "beta": 1.0, "bias": 1.5}])


@FEW
@given(channels=st.integers(1, 8), hw=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       size=st.sampled_from([1, 3, 5, 7]), seed=st.integers(0, 2**16), params=LRN_PARAMS)
def test_lrn(channels, hw, size, seed, params):
    x = data((2, channels, *hw), seed)
    node = helper.make_node("LRN", ["x"], ["y"], size=size, **params)
    compare(build([node], {"x": x}, x.ndim), {"x": x})


@FEW
@given(channels=st.integers(1, 8), hw=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       size=st.sampled_from([2, 4, 6]), seed=st.integers(0, 2**16), params=LRN_PARAMS)
def test_lrn_even_sizes_match_the_spec_formula(channels, hw, size, seed, params):
    """onnxruntime's LRN takes odd sizes only (and onnx.reference's loops over the batch axis, not the channels),
    so even sizes are checked against the spec's formula, written out per channel in float64: the window is
    c - floor((size-1)/2) .. c + ceil((size-1)/2) and alpha is divided by size."""
    x = data((2, channels, *hw), seed)
    p = {"alpha": 1e-4, "beta": 0.75, "bias": 1.0, **params}
    model = build([helper.make_node("LRN", ["x"], ["y"], size=size, **params)], {"x": x}, x.ndim)
    x64 = x.astype(np.float64)
    expected = np.empty_like(x64)
    for c in range(channels):
        lo, hi = max(0, c - (size - 1) // 2), min(channels, c + -(-(size - 1) // 2) + 1)
        square_sum = (x64[:, lo:hi] ** 2).sum(axis=1)
        expected[:, c] = x64[:, c] / (p["bias"] + p["alpha"] / size * square_sum) ** p["beta"]
    got = irc.compile(from_model(model), target="numpy").run(x)
    np.testing.assert_allclose(got, expected, **TOL)


@pytest.mark.parametrize("spatial", [(), (5,), (2, 3, 2)])
def test_lrn_on_other_ranks_is_lrn_across_channels(spatial):
    """onnxruntime runs 4-d LRN only: a (N, C, *spatial) LRN is the 4-d one of (N, C, prod(spatial), 1)."""
    x = data((2, 6, *spatial), 4)
    attrs = {"size": 3, "alpha": 0.5, "beta": 0.75, "bias": 1.0}
    as4d = x.reshape(2, 6, -1, 1)
    expected = ort.InferenceSession(build([helper.make_node("LRN", ["x"], ["y"], **attrs)], {"x": as4d}, 4)
                                    .SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": as4d})[0]
    got = irc.compile(from_model(build([helper.make_node("LRN", ["x"], ["y"], **attrs)], {"x": x}, x.ndim)),
                      target="numpy").run(x)
    np.testing.assert_allclose(got, expected.reshape(x.shape), **TOL)


# ----------------------------------------------------------------------- If
def _if_model(cond_nodes, then_out, else_out, then_nodes, else_nodes, feeds, inits, out_rank):
    then_g = helper.make_graph(then_nodes, "then", [], [_vi(then_out, [f"t{i}" for i in range(out_rank)])])
    else_g = helper.make_graph(else_nodes, "else", [], [_vi(else_out, [f"e{i}" for i in range(out_rank)])])
    nodes = cond_nodes + [helper.make_node("If", ["cond"], ["z"], name="the_if", then_branch=then_g,
                                           else_branch=else_g),
                          helper.make_node("Add", ["z", "x"], ["y"])]
    return build(nodes, feeds, out_rank, inits=inits)


@pytest.mark.parametrize("taken", [True, False])
def test_if_on_a_constant_condition_lowers_the_chosen_branch(taken):
    """The condition is computed from the input's static shape (TorchScript's shape checks); the branches read
    the outer scope (a run-time tensor) and one of them computes only a constant."""
    x = data((2, 3, 4), 7)
    cond_nodes = [helper.make_node("Shape", ["x"], ["shape"]),
                  helper.make_node("Gather", ["shape", "two"], ["dim"], axis=0),
                  helper.make_node("Equal", ["dim", "four" if taken else "five"], ["cond"])]
    then_nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "k"], ["then_y"])]
    else_nodes = [helper.make_node("Constant", [], ["else_y"],
                                   value=numpy_helper.from_array(np.full((1, 3, 4), 0.25, np.float32)))]
    inits = {"two": np.int64(2), "four": np.int64(4), "five": np.int64(5), "k": np.float32(1.5)}
    model = _if_model(cond_nodes, "then_y", "else_y", then_nodes, else_nodes, {"x": x}, inits, 3)
    prog = compare(model, {"x": x})
    assert ("Relu" in [n.op for n in prog.graph.nodes]) == taken


def test_if_on_a_run_time_condition_is_refused_by_name():
    """A condition fed at run time (a flag input): the node is named, with what to do."""
    x = data((2, 3), 1)
    model = _if_model([], "a", "b", [helper.make_node("Relu", ["x"], ["a"])],
                      [helper.make_node("Sigmoid", ["x"], ["b"])], {"x": x}, {}, 2)
    model.graph.input.append(helper.make_tensor_value_info("cond", TensorProto.BOOL, []))
    with pytest.raises(irc.IRCError, match=r"(?s)the_if.*If with a condition computed at run time") as err:
        from_model(model)
    assert err.value.hint and "export" in err.value.hint


# ------------------------------------------------------------ reductions
@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum"])
@FEW
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple), keep=st.booleans(),
       seed=st.integers(0, 2**16))
def test_reduce_with_axes_as_an_input_opset18(op, shape, keep, seed):
    rng = np.random.default_rng(seed)
    axes = sorted(rng.choice(np.arange(1, len(shape)), size=int(rng.integers(1, len(shape))), replace=False))
    x = data(shape, seed)
    out_rank = len(shape) if keep else len(shape) - len(axes)
    model = build([helper.make_node(op, ["x", "axes"], ["y"], keepdims=int(keep))], {"x": x}, out_rank,
                  inits={"axes": np.array(axes, np.int64)}, opset=18)
    compare(model, {"x": x})


# ------------------------------------------------------------- data movement
def _ints(v) -> np.ndarray:
    return np.asarray(v, np.int64)


@FEW
@given(shape=st.lists(st.integers(1, 6), min_size=2, max_size=4).map(tuple), parts=st.integers(1, 4),
       seed=st.integers(0, 2**16), data_axis=st.integers(1, 3))
def test_split_sizes_as_an_input_and_num_outputs(shape, parts, seed, data_axis):
    """opset 13's 'split' input (uneven sizes, zeros allowed) and opset 18's num_outputs (the last part smaller)."""
    axis = data_axis % len(shape) or 1
    x = data(shape, seed)
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, shape[axis] + 1, parts - 1))
    sizes = np.diff(np.concatenate([[0], cuts, [shape[axis]]]))
    outs = [f"y{i}" for i in range(parts)]
    model = build([helper.make_node("Split", ["x", "s"], outs, axis=axis)], {"x": x}, len(shape),
                  inits={"s": _ints(sizes)}, outputs=outs)
    compare(model, {"x": x})
    count = min(parts, shape[axis])
    if count > 1 and -(-shape[axis] // count) * (count - 1) < shape[axis]:
        outs = outs[:count]
        model = build([helper.make_node("Split", ["x"], outs, axis=-len(shape) + axis, num_outputs=count)],
                      {"x": x}, len(shape), outputs=outs, opset=18)
        compare(model, {"x": x})


@pytest.mark.parametrize("opset", [11, 13])
def test_split_into_equal_parts_and_by_attribute(opset):
    x = data((2, 6, 3), 0)
    compare(build([helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1)], {"x": x}, 3, outputs="abc",
                  opset=opset), {"x": x})
    if opset == 11:
        compare(build([helper.make_node("Split", ["x"], ["a", "b"], axis=2, split=[1, 2])], {"x": x}, 3,
                      outputs="ab", opset=11), {"x": x})


def test_split_along_the_batch_axis_is_refused_by_name():
    x = data((2, 6), 0)
    with pytest.raises(irc.UnsupportedError, match="Split along the batch axis"):
        from_model(build([helper.make_node("Split", ["x"], ["a", "b"], axis=0)], {"x": x}, 2, outputs="ab"))


@FEW
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple), seed=st.integers(0, 2**16))
def test_tile_with_constant_repeats(shape, seed):
    x = data(shape, seed)
    reps = [1] + list(np.random.default_rng(seed).integers(0, 4, len(shape) - 1))
    model = build([helper.make_node("Tile", ["x", "r"], ["y"])], {"x": x}, len(shape), inits={"r": _ints(reps)})
    compare(model, {"x": x})


EXPANDS = [((2, 1, 4), [1, 3, 4]), ((2, 3, 1), [1, 1, 5]), ((2, 3, 1), [5]), ((2, 1, 1, 1), [2, 3, 1]),
           ((2, 4), [1, 4]), ((2, 1, 3), [3, 1])]


@pytest.mark.parametrize("shape,target", EXPANDS, ids=[f"{s}->{t}" for s, t in EXPANDS])
def test_expand_with_a_constant_shape(shape, target):
    x = data(shape, 4)
    out_rank = max(len(shape), len(target))
    compare(build([helper.make_node("Expand", ["x", "s"], ["y"])], {"x": x}, out_rank,
                  inits={"s": _ints(target)}), {"x": x})


def test_expand_to_the_batch_size_from_shape_arithmetic():
    """Expand(x, Shape(z)) where z has the batch: the batch entry stays, the other axes repeat."""
    x, z = data((2, 1, 4), 1), data((2, 3, 4), 2)
    nodes = [helper.make_node("Shape", ["z"], ["s"]), helper.make_node("Expand", ["x", "s"], ["e"]),
             helper.make_node("Add", ["e", "z"], ["y"])]
    compare(build(nodes, {"x": x, "z": z}, 3), {"x": x, "z": z})


def test_a_large_repeat_makes_few_nodes_and_an_absurd_one_is_refused_by_the_limits():
    x = data((2, 1, 3), 5)
    prog = compare(build([helper.make_node("Expand", ["x", "s"], ["y"])], {"x": x}, 3,
                         inits={"s": _ints([1, 1000, 3])}), {"x": x})
    assert len(prog.graph.nodes) <= 2 * 10  # doublings (log2 1000 < 10), not one Concat of 1000 inputs
    model = build([helper.make_node("Tile", ["x", "r"], ["y"])], {"x": x}, 3, inits={"r": _ints([1, 2**40, 1])})
    with pytest.raises(irc.IRCError, match="repeating axis 1 .* more than the limit"):
        from_model(model)


PAD_CASES = [("reflect", [0, 0, 1, 2, 0, 0, 2, 1]), ("reflect", [0, 0, 3, 0, 0, 0, 0, 3]),
             ("edge", [0, 0, 2, 1, 0, 1, 0, 3]), ("edge", [0, 1, 0, 0, 0, 0, 0, 0]),
             ("wrap", [0, 0, 1, 2, 0, 0, 2, 1]), ("reflect", [0, 0, -1, 1, 0, 0, 1, -1])]


@pytest.mark.parametrize("mode,pads", PAD_CASES, ids=[f"{m}{p}" for m, p in PAD_CASES])
def test_pad_modes(mode, pads):
    x = data((2, 3, 4, 5), 7)
    model = build([helper.make_node("Pad", ["x", "p"], ["y"], mode=mode)], {"x": x}, 4,
                  inits={"p": _ints(pads)}, opset=19 if mode == "wrap" else 13)
    compare(model, {"x": x})


def test_pad_reflect_opset_10_attribute_and_axes_input():
    x = data((2, 3, 4, 5), 8)
    compare(build([helper.make_node("Pad", ["x"], ["y"], mode="reflect", pads=[0, 0, 1, 1, 0, 0, 1, 1])],
                  {"x": x}, 4, opset=10), {"x": x})
    compare(build([helper.make_node("Pad", ["x", "p", "", "ax"], ["y"], mode="edge")], {"x": x}, 4,
                  inits={"p": _ints([2, 1, 0, 3]), "ax": _ints([-1, 2])}, opset=18), {"x": x})


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@FEW
@given(b=st.integers(1, 3), c=st.integers(1, 3), hw=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       seed=st.integers(0, 2**16))
def test_depth_to_space_and_back(mode, b, c, hw, seed):
    x = data((2, c * b * b) + hw, seed)
    compare(build([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=b, mode=mode)], {"x": x}, 4),
            {"x": x})
    z = data((2, c, hw[0] * b, hw[1] * b), seed + 1)
    compare(build([helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=b)], {"x": z}, 4), {"x": z})


@pytest.mark.parametrize("indices,axis", [(0, 1), (-1, 2), ([2, 0, 1, 1], 1), ([3, 1], -1)])
def test_gather_of_run_time_data_by_constant_indices(indices, axis):
    x = data((2, 3, 4), 3)
    idx = _ints(indices)
    compare(build([helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)], {"x": x}, 3 - 1 + idx.ndim,
                  inits={"i": idx}), {"x": x})


def test_the_data_movement_ops_run_on_cuda_and_convert_to_spikes():
    """They are written with layout ops, so the cuda target (through its C++ emulation) and the spike
    conversion run them as they run a Concat."""
    from cuda_emulation import compiler, emulate

    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (16, 16, 3, 3)).astype(np.float32)
    # DepthToSpace before the first Conv: after it, channels with their own spike scales would land on one
    # channel's positions, which a GlobalAveragePool of spikes cannot weigh (the conversion's per-channel scales)
    nodes = [helper.make_node("DepthToSpace", ["x"], ["d"], blocksize=2),
             helper.make_node("Conv", ["d", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Pad", ["r", "p"], ["q"], mode="reflect"),
             helper.make_node("Split", ["q", "s"], ["a", "b"], axis=3),
             helper.make_node("Tile", ["b", "t"], ["bt"]), helper.make_node("Concat", ["a", "bt"], ["e"], axis=3),
             helper.make_node("GlobalAveragePool", ["e"], ["y"])]
    inits = {"w": (rng.standard_normal((8, 4, 3, 3)) * 0.3).astype(np.float32), "p": _ints([0, 0, 1, 1, 0, 0, 1, 1]),
             "s": _ints([3, 5]), "t": _ints([1, 1, 1, 2])}
    model = build(nodes, {"x": x}, 4, inits=inits)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    if compiler() is not None:
        prog = irc.compile(from_model(model), target="cuda")
        emulate(prog)
        np.testing.assert_allclose(prog.run(x), expected, rtol=1e-5, atol=1e-5)
    got = irc.compile(from_model(model), target="spike-numpy", calibration=x, timesteps=64).run(x)
    assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.99


# ----------------------------------------------------- normalisation, reductions
@FEW
@given(c=st.integers(1, 4), spatial=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple),
       seed=st.integers(0, 2**16), eps=st.sampled_from([1e-5, 1e-3]))
def test_instance_normalization(c, spatial, seed, eps):
    """onnxruntime takes the variance as E[x²] - E[x]², which cancels badly where there is almost none (one
    spatial element: irc gives exactly the bias, onnxruntime bias + 3e-4); the data keep a real variance."""
    if int(np.prod(spatial)) < 2:
        spatial = spatial + (2,)
    x = data((2, c) + spatial, seed)
    inits = {"s": data((c,), seed + 1), "b": data((c,), seed + 2)}
    compare(build([helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=eps)], {"x": x},
                  x.ndim, inits=inits), {"x": x}, rtol=1e-4, atol=1e-4)


@FEW
@given(shape=shapes, count=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_mean_variadic_broadcasting(shape, count, seed):
    feeds = {"x0": data(shape, seed)}
    inits = {f"x{i}": data(trailing(shape[1:], seed + i), seed + i) for i in range(1, count)}
    model = build([helper.make_node("Mean", list(feeds) + list(inits), ["y"])], feeds, len(shape), inits=inits)
    compare(model, feeds)


ARG_CASES = [("ArgMax", {}), ("ArgMax", {"axis": 1, "keepdims": 0}), ("ArgMax", {"axis": -1, "select_last_index": 1}),
             ("ArgMin", {"axis": 2}), ("ArgMin", {"axis": -1, "keepdims": 0, "select_last_index": 1})]


@pytest.mark.parametrize("op,attrs", ARG_CASES, ids=[f"{o}{a}" for o, a in ARG_CASES])
@FEW
@given(shape=st.lists(st.integers(1, 4), min_size=3, max_size=4).map(tuple), seed=st.integers(0, 2**16))
def test_argmax_argmin_with_ties(op, attrs, shape, seed):
    """Small integers, so ties are common: the first index, or the last with select_last_index."""
    x = np.random.default_rng(seed).integers(-2, 3, shape).astype(np.float32)
    attrs = dict(attrs)
    attrs.setdefault("axis", 1)
    out_rank = len(shape) - (attrs.get("keepdims", 1) == 0)
    compare(build([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": x}, out_rank, out_elem=TensorProto.INT64),
            {"x": x})


def test_argmax_over_the_batch_axis_is_refused_by_name():
    x = data((2, 3), 0)
    with pytest.raises(irc.IRCError, match="ArgMax over the batch axis"):
        from_model(build([helper.make_node("ArgMax", ["x"], ["y"], axis=0)], {"x": x}, 2,
                         out_elem=TensorProto.INT64))


REDUCTIONS = ["ReduceL1", "ReduceL2", "ReduceProd", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"]


@pytest.mark.parametrize("op", REDUCTIONS)
@pytest.mark.parametrize("opset", [13, 18])
@FEW
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple), keep=st.booleans(),
       seed=st.integers(0, 2**16), all_axes=st.booleans())
def test_reduce_family_axes_as_attribute_and_input(op, opset, shape, keep, seed, all_axes):
    lo, hi = (0.5, 1.5) if op in ("ReduceProd", "ReduceLogSum") else (-3.0, 3.0)
    x = data(shape, seed, lo, hi)
    rng = np.random.default_rng(seed)
    axes = sorted({int(a) for a in rng.integers(1, len(shape), int(rng.integers(1, len(shape))))})
    axes = [a - len(shape) if rng.random() < 0.5 else a for a in axes]
    out_rank = len(shape) if keep else len(shape) - len(axes)
    if opset == 18:
        node = helper.make_node(op, ["x", "axes"], ["y"], keepdims=int(keep))
        model = build([node], {"x": x}, out_rank, inits={"axes": _ints(axes)}, opset=18)
    else:
        model = build([helper.make_node(op, ["x"], ["y"], keepdims=int(keep), axes=axes)], {"x": x}, out_rank)
    compare(model, {"x": x}, rtol=1e-5, atol=1e-5)


def test_reduce_logsumexp_does_not_overflow():
    x = np.array([[100.0, 100.0, -1e4], [-200.0, -201.0, -np.inf]], np.float32)
    model = build([helper.make_node("ReduceLogSumExp", ["x"], ["y"], axes=[1], keepdims=0)], {"x": x}, 1)
    compare(model, {"x": x})


def _embedding_model(table: np.ndarray, ids_shape: tuple, opset: int = 13) -> onnx.ModelProto:
    g = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["e"]), helper.make_node("Relu", ["e"], ["y"])],
                          "g", [_vi("ids", ("N",) + ids_shape[1:], TensorProto.INT64)],
                          [_vi("y", [f"y{i}" for i in range(len(ids_shape) + table.ndim - 1)])],
                          [numpy_helper.from_array(table, "table")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


@FEW
@given(rows=st.integers(1, 20), dims=st.lists(st.integers(1, 4), min_size=1, max_size=2).map(tuple),
       ids_shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple), seed=st.integers(0, 2**16))
def test_gather_of_a_constant_table_by_int64_inputs_is_an_embedding(rows, dims, ids_shape, seed):
    """A token-id input (int64, negative ids count from the end) picks rows of the table."""
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((rows,) + dims).astype(np.float32)
    ids = rng.integers(-rows, rows, ids_shape).astype(np.int64)
    prog = compare(_embedding_model(table, ids_shape), {"ids": ids})
    assert [n.op for n in prog.graph.nodes][0] == "Embedding"


def test_embedding_index_out_of_range_is_an_irc_error_naming_the_op():
    table = np.ones((4, 2), np.float32)
    prog = irc.compile(from_model(_embedding_model(table, (2, 3))), target="numpy")
    with pytest.raises(irc.IRCError, match="Embedding: index 4 is out of range for a table of 4 rows"):
        prog.run(np.array([[0, 1, 4], [0, 0, 0]], np.int64))


def test_embedding_is_refused_by_the_spiking_and_cuda_targets():
    table = np.ones((4, 2), np.float32)
    with pytest.raises(irc.IRCError, match="cannot run: Embedding"):
        irc.compile(from_model(_embedding_model(table, (2, 3))), target="cuda")
    with pytest.raises(irc.UnsupportedError, match="input 'ids' is i64 .*Embedding"):
        irc.compile(from_model(_embedding_model(table, (2, 3))), target="spike-llvm",
                    calibration=np.zeros((2, 3), np.int64))


# -------------------------------------------------------------- spiking
def _three_branch_model(act: str, combine: str = "Sum") -> tuple[onnx.ModelProto, np.ndarray]:
    rng = np.random.default_rng(0)
    inits = {f"w{i}": (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32) for i in range(3)}
    nodes = [helper.make_node("Conv", ["x", f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]) for i in range(3)]
    nodes += [helper.make_node(combine, ["c0", "c1", "c2"], ["s"]), helper.make_node(act, ["s"], ["r"]),
              helper.make_node("GlobalAveragePool", ["r"], ["y"])]
    x = rng.uniform(0, 1, (16, 3, 6, 6)).astype(np.float32)
    return build(nodes, {"x": x}, 4, inits=inits, opset=20), x


def test_sum_of_branches_converts_to_spikes():
    """Sum follows Add's rate rule (branches with one scale add as they are): the spiking network tracks the
    analog one, and a target without a Sum lowering refuses it by name."""
    model, x = _three_branch_model("Relu")
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = irc.compile(from_model(model), target="spike-numpy", calibration=x, timesteps=128).run(x)
    assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.999
    with pytest.raises(irc.IRCError, match="cannot run: Sum"):
        irc.compile(from_model(model), target="spike-llvm", calibration=x, timesteps=8)


def test_mean_of_branches_converts_to_spikes_as_a_sum():
    """Mean is a Sum divided by the count: a constant factor the conversion folds like any other."""
    model, x = _three_branch_model("Relu", "Mean")
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = irc.compile(from_model(model), target="spike-numpy", calibration=x, timesteps=128).run(x)
    assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.999


@pytest.mark.parametrize("act", ["HardSwish", "HardSigmoid", "Gelu", "Erf"] + NEW_ACTIVATIONS)
def test_spike_conversion_refuses_the_new_activations_by_name(act):
    model, x = _three_branch_model(act)
    with pytest.raises(irc.IRCError, match=f"{act} has no spiking equivalent"):
        irc.compile(from_model(model), target="spike-numpy", calibration=x, timesteps=8)


# ------------------------------------------------------------------ cuda
@pytest.mark.parametrize("op,attrs,opset", ACTIVATIONS, ids=[f"{o}{a}" for o, a, _ in ACTIVATIONS])
def test_cuda_runs_the_new_activations_fused_and_alone(op, attrs, opset):
    """The cuda target's expressions (source.ACTIVATIONS), run through the C++ emulation, fused into a Conv and
    on their own (after a Mul, which hosts no activation)."""
    from cuda_emulation import compiler, emulate

    if compiler() is None:
        pytest.skip("no C++ compiler for the CUDA emulation")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    model = build([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                   helper.make_node(op, ["c"], ["a"], **attrs), helper.make_node("Mul", ["c", "c"], ["m"]),
                   helper.make_node(op, ["m"], ["b"], **attrs), helper.make_node("Add", ["a", "b"], ["y"])],
                  {"x": x}, 4, inits={"w": w}, opset=opset)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    prog = irc.compile(from_model(model), target="cuda")
    emulate(prog)
    np.testing.assert_allclose(prog.run(x), expected, **AFTER_A_CONV_TOL.get(op, dict(rtol=1e-5, atol=1e-4)))


def test_cuda_source_with_every_activation_compiles_with_nvcc(tmp_path):
    """Every activation of ACTIVATIONS, fused into a Conv and on its own, in one `--emit source` program that
    nvcc compiles to PTX (the C++ emulation above checks the arithmetic; this checks the CUDA spelling)."""
    import shutil
    import subprocess

    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    nodes, inits, outs = [], {}, []
    for i, (op, attrs, _) in enumerate(ACTIVATIONS):
        inits[f"w{i}"] = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
        nodes += [helper.make_node("Conv", ["x", f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node(op, [f"c{i}"], [f"f{i}"], **attrs),
                  helper.make_node("Mul", [f"f{i}", f"f{i}"], [f"m{i}"]),
                  helper.make_node(op, [f"m{i}"], [f"y{i}"], **attrs)]
        outs.append(f"y{i}")
    model = build(nodes, {"x": x}, 4, inits=inits, opset=20, outputs=outs)
    prog = irc.compile(from_model(model), target="cuda")
    ops = {op for op, _, _ in ACTIVATIONS}
    assert {n.attrs.get("activation") for n in prog.graph.nodes if n.op == "Conv"} == ops
    assert {n.op for n in prog.graph.nodes if n.op not in ("Conv", "Mul")} == ops
    cu = tmp_path / "net.cu"
    cu.write_text(prog.source)
    r = subprocess.run([nvcc, "--ptx", "-std=c++14", str(cu), "-o", str(tmp_path / "net.ptx")], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "net.ptx").stat().st_size > 0
