"""The IR: text round trip, verifier, graph primitives, op registry facts."""
import numpy as np
import pytest

import irc
from irc.errors import VerifyError
from irc.graph import Graph
from irc.ops import all_ops, get_op
from irc.text import parse_graph, print_graph
from irc.types import Domain, TensorType
from irc.verify import verify
from test_frontend_onnx import FIXTURE_NAMES
from conftest import onnx_fixture, random_feeds


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_text_round_trip_of_every_fixture(name):
    graph = irc.load(onnx_fixture(name))
    text = print_graph(graph)
    back = parse_graph(text, graph.params)
    assert print_graph(back) == text
    verify(back)
    feeds = random_feeds(graph, 3)
    a = irc.compile(graph).run(feeds)
    b = irc.compile(back).run(feeds)
    for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_text_round_trip_after_lowering(name):
    prog = irc.compile(irc.load(onnx_fixture(name)))
    text = print_graph(prog.graph)
    assert print_graph(parse_graph(text, list(prog.graph.params.values()))) == text


def test_odd_names_are_quoted_and_read_back():
    g = Graph("odd \"name\"")
    x = g.add_input("in put/0 %weird", TensorType(("N", 4)))
    w = g.add_param("_", np.ones((3, 4), np.float32))
    y = g.add_node("Dense", [x, w], name="a{b}").output
    g.outputs.append(y)
    text = print_graph(g)
    back = parse_graph(text, g.params)
    assert [v.name for v in back.inputs] == ["in put/0 %weird"]
    assert print_graph(back) == text


def test_spike_and_current_domains_print_and_parse():
    text = """graph "g" {
  input %x : current f32[N,4]
  param %w : f32[2,4]
  %y : current f32[N,2] = Dense(%x, %w)
  output %y
}
"""
    g = parse_graph(text)
    assert g.outputs[0].type.domain == Domain.CURRENT
    assert print_graph(g) == text


def test_parser_rejects_a_wrong_declared_type():
    text = """graph "g" {
  input %x : f32[N,4]
  %y : f32[N,5] = Relu(%x)
  output %y
}
"""
    with pytest.raises(irc.IRCError, match=r"line 3.*declared f32\[N,5\] but Relu gives f32\[N,4\]"):
        parse_graph(text)


def test_parser_rejects_use_before_definition():
    text = 'graph "g" {\n  input %x : f32[N,4]\n  %y : f32[N,4] = Add(%x, %z)\n  output %y\n}\n'
    with pytest.raises(irc.IRCError, match="line 3.*%z is used before it is defined"):
        parse_graph(text)


def _small_graph() -> Graph:
    g = Graph("g")
    x = g.add_input("x", TensorType(("N", 1, 6, 6)))
    w = g.add_param("w", np.ones((2, 1, 3, 3), np.float32))
    c = g.add_node("Conv", [x, w], {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1]}, name="conv")
    r = g.add_node("Relu", [c.output], name="relu")
    g.outputs.append(r.output)
    return g


def test_verifier_accepts_a_good_graph():
    verify(_small_graph())


def test_verifier_catches_a_wrong_type():
    g = _small_graph()
    g.nodes[0].output.type = TensorType(("N", 2, 5, 5))
    with pytest.raises(VerifyError, match="typed f32\\[N,2,5,5\\] but Conv gives f32\\[N,2,4,4\\]"):
        verify(g)


def test_verifier_catches_a_cycle_or_dangling_use():
    g = _small_graph()
    g.nodes.reverse()  # relu now comes before the conv it reads
    with pytest.raises(VerifyError, match="used before it is defined"):
        verify(g)


def test_verifier_catches_a_runtime_weight():
    g = _small_graph()
    conv = g.nodes[0]
    g.set_input(conv, 1, g.inputs[0])
    with pytest.raises(VerifyError):
        verify(g)


def test_verifier_catches_a_domain_error():
    g = Graph("g")
    x = g.add_input("x", TensorType(("N", 4), domain=Domain.SPIKE))
    with pytest.raises(irc.IRCError, match="Sigmoid has no spiking equivalent"):
        g.add_node("Sigmoid", [x])


def test_verifier_catches_a_dangling_output():
    g = _small_graph()
    g.outputs = [g.nodes[0].output]
    g.remove_node(g.nodes[1])
    g.remove_node(g.nodes[0], force=True)
    with pytest.raises(VerifyError, match="not defined"):
        verify(g)


def test_every_op_declares_a_kernel_or_is_spiking():
    for name, op in all_ops().items():
        assert op.kernel is not None or op.spiking, name


def test_unknown_attribute_is_an_error():
    g = Graph("g")
    x = g.add_input("x", TensorType(("N", 4)))
    with pytest.raises(irc.IRCError, match="no attribute"):
        g.add_node("Relu", [x], {"alpha": 1.0})


def test_conv_output_shape_rules():
    conv = get_op("Conv")
    x = TensorType(("N", 3, 10, 11))
    w = TensorType((8, 3, 3, 3))
    a = conv.normalize_attrs({"strides": [2, 3], "pads": [1, 0, 1, 2], "dilations": [1, 2]})
    (out,) = conv.infer([x, w, None], a)
    # H: (10 + 2 - 3) // 2 + 1 = 5 ; W: (11 + 2 - 5) // 3 + 1 = 3
    assert out.shape == ("N", 8, 5, 3)


def test_networkx_export_has_the_edges():
    g = _small_graph()
    dg = g.to_networkx()
    assert list(dg.edges) == [("conv", "relu")]


class _NoIteration(list):
    def __iter__(self):
        raise AssertionError("replace_uses walked the node list")


def test_replace_uses_touches_only_the_users_of_the_value():
    g = irc.Graph("wide")
    x = g.add_input("x", TensorType(("N", 4)))
    shared = g.add_node("Relu", [x], name="shared").output
    chain = x
    for i in range(500):                       # many nodes that do not read `shared`
        chain = g.add_node("Relu", [chain], name=f"r{i}").output
    readers = [g.add_node("Add", [shared, chain], name="a"), g.add_node("Sub", [chain, shared], name="s")]
    g.outputs.extend([n.output for n in readers] + [shared])
    other = g.add_node("Tanh", [x], name="other").output
    calls = []
    original = g.set_input

    def counting_set_input(node, index, value):
        calls.append((node.name, index))
        original(node, index, value)

    g.set_input = counting_set_input
    nodes, g.nodes = g.nodes, _NoIteration(g.nodes)
    g.replace_uses(shared, other)
    g.nodes = nodes
    assert sorted(calls) == [("a", 0), ("s", 1)]
    assert readers[0].inputs == (other, chain) and readers[1].inputs == (chain, other)
    assert shared.users() == [] and sorted(n.name for n, _ in other.users()) == ["a", "s"]
    assert g.outputs[-1] is other              # graph outputs follow too
    g.sort()                                   # `other` was added last: order follows from the use lists
    verify(g)
