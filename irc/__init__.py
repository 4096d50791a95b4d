"""irc: a compiler for trained neural networks.

    import irc
    g = irc.load("net.onnx")
    prog = irc.compile(g, target="numpy")
    y = prog.run(x)
"""
__version__ = "0.1.0"

from .errors import IRCError, UnsupportedError, VerifyError  # noqa: E402
from .graph import Graph, Node, Value  # noqa: E402
from .types import BATCH, Domain, TensorType  # noqa: E402
from .driver import compile, load  # noqa: E402
from .program import Program, load_program  # noqa: E402
from .text import parse_graph, print_graph  # noqa: E402
from .verify import verify  # noqa: E402

__all__ = ["IRCError", "UnsupportedError", "VerifyError", "Graph", "Node", "Value", "BATCH", "Domain",
           "TensorType", "compile", "load", "Program", "load_program", "parse_graph", "print_graph", "verify",
           "__version__"]
