"""The protocol every target implements (see irc.backends for the targets)."""
from __future__ import annotations

from typing import Any, Mapping

from .graph import Graph
from .options import Option, check_options
from .program import Program


class Backend:
    """Turns a lowered graph into a Program.

    ``options`` is the target's option schema (:mod:`irc.options`); ``pipeline``
    names the passes that lower a loaded graph for this target.
    """

    target: str = ""
    summary: str = ""
    options: dict[str, Option] = {
        "batch_size": Option("int", None, "run large batches in chunks of this many samples", minimum=1),
    }

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Whether the target can run on this machine, and why not."""
        return True, ""

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options validated against the schema, defaults filled in (one IRCError naming a bad one)."""
        return check_options(self.target, self.options, options)

    @classmethod
    def lowering_table(cls):
        """The target's lowering table (which ops it runs), or None when it does not have one."""
        return None

    def pipeline(self, options: Mapping[str, Any], graph: Graph | None = None) -> list[str]:
        """The passes that lower ``graph`` for this target."""
        raise NotImplementedError

    def build(self, graph: Graph, options: Mapping[str, Any], ctx=None) -> Program:
        raise NotImplementedError
