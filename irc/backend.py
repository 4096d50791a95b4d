"""The protocol every target implements (see irc.backends for the targets)."""
from __future__ import annotations

from typing import Any, Mapping

from .errors import IRCError
from .graph import Graph
from .program import Program


class Backend:
    """Turns a lowered graph into a Program.

    ``options`` maps each option the target accepts to ``(default, help)``;
    ``pipeline`` names the passes that lower a loaded graph for this target.
    """

    target: str = ""
    summary: str = ""
    options: dict[str, tuple[Any, str]] = {
        "batch_size": (None, "run large batches in chunks of this many samples"),
    }

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Whether the target can run on this machine, and why not."""
        return True, ""

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise IRCError(f"target {self.target!r} has no option(s) {unknown}",
                           hint="its options: " + ", ".join(sorted(self.options)))
        out = {k: default for k, (default, _) in self.options.items()}
        out.update({k: v for k, v in options.items() if v is not None})
        return out

    def pipeline(self, options: Mapping[str, Any]) -> list[str]:
        raise NotImplementedError

    def build(self, graph: Graph, options: Mapping[str, Any], ctx=None) -> Program:
        raise NotImplementedError
