"""Each pass on its own: the IR before, the IR after, and the same numbers."""
import numpy as np
import pytest

import irc
from irc.errors import VerifyError
from irc.interp import run_graph
from irc.passes import PassContext, register_pass, run_pass, run_pipeline
from irc.text import parse_graph, print_graph


def _params(g, rng):
    """Replace the zero parameters the parser made with random ones (variances positive)."""
    for name, arr in list(g.params.items()):
        g.set_param(g.values[name], (rng.uniform(0.5, 1.5, arr.shape) if "var" in name
                                     else rng.standard_normal(arr.shape)).astype(np.float32))
    return g


def _check_same_numbers(before, after, rng, batch=3):
    feeds = {v.name: rng.standard_normal(v.type.concrete(batch)).astype(np.float32) for v in before.inputs}
    for a, b in zip(run_graph(before, feeds), run_graph(after, feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _body(g):
    """The node lines of the printed graph."""
    return [line.strip() for line in print_graph(g).splitlines() if " = " in line]


CONV_BN_RELU = """graph "g" {
  input %x : f32[N,2,6,6]
  param %w : f32[4,2,3,3]
  param %b : f32[4]
  param %gamma : f32[4]
  param %beta : f32[4]
  param %mean : f32[4]
  param %var : f32[4]
  %c : f32[N,4,4,4] = Conv(%x, %w, %b) {dilations=[1, 1], pads=[0, 0, 0, 0], strides=[1, 1]}
  %d : f32[N,4,4,4] = Dropout(%c)
  %bn : f32[N,4,4,4] = BatchNorm(%d, %gamma, %beta, %mean, %var)
  %i : f32[N,4,4,4] = Identity(%bn)
  %y : f32[N,4,4,4] = Relu(%i)
  output %y
}
"""


def test_simplify_drops_dropout_and_identity(rng):
    g = _params(parse_graph(CONV_BN_RELU), rng)
    out = run_pass(g, "simplify", PassContext(verify=True))
    assert [line.split(" = ")[1].split("(")[0] for line in _body(out)] == ["Conv", "BatchNorm", "Relu"]
    _check_same_numbers(g, out, rng)


def test_fold_batchnorm_into_conv(rng):
    g = _params(parse_graph(CONV_BN_RELU), rng)
    g = run_pass(g, "simplify")
    out = run_pass(g, "fold_batchnorm", PassContext(verify=True))
    assert _body(out) == [
        "%c : f32[N,4,4,4] = Conv(%x, %c.weight, %c.bias) {dilations=[1, 1], pads=[0, 0, 0, 0], strides=[1, 1]}",
        "%y : f32[N,4,4,4] = Relu(%c)",
    ]
    _check_same_numbers(g, out, rng)


def test_standalone_batchnorm_becomes_a_scale_shift(rng):
    text = """graph "g" {
  input %x : f32[N,3,4,4]
  param %gamma : f32[3]
  param %beta : f32[3]
  param %mean : f32[3]
  param %var : f32[3]
  %bn : f32[N,3,4,4] = BatchNorm(%x, %gamma, %beta, %mean, %var)
  %y : f32[N,3,4,4] = Relu(%bn)
  output %y
}
"""
    g = _params(parse_graph(text), rng)
    out = run_pass(g, "fold_batchnorm", PassContext(verify=True))
    assert _body(out) == ["%bn_1 : f32[N,3,4,4] = ScaleShift(%x, %bn.scale, %bn.shift)",
                          "%y : f32[N,3,4,4] = Relu(%bn_1)"]
    _check_same_numbers(g, out, rng)


def test_scale_before_an_unpadded_conv_folds_forward(rng):
    text = """graph "g" {
  input %x : f32[N,3,5,5]
  param %gamma : f32[3]
  param %beta : f32[3]
  param %mean : f32[3]
  param %var : f32[3]
  param %w : f32[2,3,3,3]
  %bn : f32[N,3,5,5] = BatchNorm(%x, %gamma, %beta, %mean, %var)
  %y : f32[N,2,3,3] = Conv(%bn, %w, _) {dilations=[1, 1], pads=[0, 0, 0, 0], strides=[1, 1]}
  output %y
}
"""
    g = _params(parse_graph(text), rng)
    out = run_pass(g, "fold_batchnorm", PassContext(verify=True))
    assert [l.split(" = ")[1].split("(")[0] for l in _body(out)] == ["Conv"]
    _check_same_numbers(g, out, rng)


def test_bias_add_after_dense_folds_into_its_bias(rng):
    text = """graph "g" {
  input %x : f32[N,4]
  param %w : f32[3,4]
  param %c : f32[3]
  %d : f32[N,3] = Dense(%x, %w)
  %y : f32[N,3] = Add(%d, %c)
  output %y
}
"""
    g = _params(parse_graph(text), rng)
    out = run_pass(g, "fold_batchnorm", PassContext(verify=True))
    assert _body(out) == ["%d : f32[N,3] = Dense(%x, %d.weight, %d.bias)"]
    _check_same_numbers(g, out, rng)


def test_fold_constants(rng):
    text = """graph "g" {
  input %x : f32[N,4]
  param %wt : f32[4,3]
  %w : f32[3,4] = Transpose(%wt) {perm=[1, 0]}
  %y : f32[N,3] = Dense(%x, %w)
  output %y
}
"""
    g = _params(parse_graph(text), rng)
    out = run_pass(g, "fold_constants", PassContext(verify=True))
    assert _body(out) == ["%y : f32[N,3] = Dense(%x, %w.folded)"]
    np.testing.assert_array_equal(out.params["w.folded"], g.params["wt"].T)
    _check_same_numbers(g, out, rng)


def test_fuse_activations_and_back(rng):
    g = _params(parse_graph(CONV_BN_RELU), rng)
    g = run_pipeline(g, ["simplify", "fold_batchnorm"])
    fused = run_pass(g, "fuse_activations", PassContext(verify=True))
    assert _body(fused) == [
        '%c : f32[N,4,4,4] = Conv(%x, %c.weight, %c.bias) {activation="Relu", dilations=[1, 1], '
        'pads=[0, 0, 0, 0], strides=[1, 1]}']
    _check_same_numbers(g, fused, rng)
    unfused = run_pass(fused, "unfuse_activations", PassContext(verify=True))
    assert [l.split(" = ")[1].split("(")[0] for l in _body(unfused)] == ["Conv", "Relu"]
    _check_same_numbers(g, unfused, rng)


def test_no_fusion_when_the_output_has_another_user(rng):
    text = """graph "g" {
  input %x : f32[N,4]
  param %w : f32[4,4]
  %d : f32[N,4] = Dense(%x, %w)
  %r : f32[N,4] = Relu(%d)
  %y : f32[N,4] = Add(%r, %d)
  output %y
}
"""
    g = _params(parse_graph(text), rng)
    out = run_pass(g, "fuse_activations")
    assert [l.split(" = ")[1].split("(")[0] for l in _body(out)] == ["Dense", "Relu", "Add"]


def test_print_ir_after_each_pass_and_errors_name_the_pass(rng):
    g = _params(parse_graph(CONV_BN_RELU), rng)
    seen = []
    run_pipeline(g, ["simplify", "fold_batchnorm"], PassContext(print_ir=seen.append))
    assert "after pass simplify" in seen[0] and "after pass fold_batchnorm" in seen[1]

    @register_pass("test_breaks_types")
    def breaks(graph, ctx):
        graph.nodes[0].output.type = graph.nodes[0].output.type.with_(dtype="f64")
        return graph

    with pytest.raises(VerifyError, match="pass 'test_breaks_types' broke the IR \\(after simplify\\)"):
        run_pipeline(g, ["simplify", "test_breaks_types"], PassContext(verify=True))
