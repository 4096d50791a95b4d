"""irc: a compiler for trained neural networks.

    import irc
    g = irc.load("net.onnx")
    prog = irc.compile(g, target="numpy")
    y = prog.run(x)
"""
__version__ = "0.1.0"

import os as _os

# In a source checkout the subpackages irc.frontends, irc.passes and irc.backends live in the
# top-level folders frontends/, passes/ and backends/ (pyproject.toml maps them when installing).
# Running from the checkout (python benchmarks/x.py, python -c "import irc" at the repo root) must
# give the same package as the installed one, so the checkout's root joins the package path.
_here = _os.path.dirname(_os.path.abspath(__file__))
_root = _os.path.dirname(_here)
if not _os.path.isdir(_os.path.join(_here, "frontends")) and all(
        _os.path.isfile(_os.path.join(_root, sub, "__init__.py")) for sub in ("frontends", "passes", "backends")):
    __path__.append(_root)  # type: ignore[name-defined]  # noqa: F821
del _here, _root

from .errors import IRCError, UnsupportedError, VerifyError  # noqa: E402
from .graph import Graph, Node, Value  # noqa: E402
from .types import BATCH, Domain, TensorType  # noqa: E402
from .driver import compile, load  # noqa: E402
from .program import Program, load_program  # noqa: E402
from .evaluation import Evaluation, evaluate  # noqa: E402
from .text import parse_graph, print_graph  # noqa: E402
from .verify import verify  # noqa: E402


def export_nir(program, path=None, *, lossy: bool = False, dt: float | None = None):
    """Write a spiking program as a NIR graph (``pip install "irc-compiler[nir]"``); returns the nir.NIRGraph."""
    from .backends.nir_export import to_nir
    from .shapes import SpecialisingProgram

    if isinstance(program, SpecialisingProgram):
        program.refuse("export")
    return to_nir(program, path, lossy=lossy, **({} if dt is None else {"dt": dt}))


__all__ = ["IRCError", "UnsupportedError", "VerifyError", "Graph", "Node", "Value", "BATCH", "Domain", "TensorType",
           "compile", "load", "Program", "load_program", "evaluate", "Evaluation", "export_nir", "parse_graph",
           "print_graph", "verify", "__version__"]
