"""The one error family a user can cause.

Every mistake that comes from the user's files or arguments (a bad model file,
an unsupported op, a wrong input shape, a bad INI line) is raised as an
:class:`IRCError` that names where it happened and what to do about it.  The CLI
prints these in one or two lines and exits non-zero; anything else is a bug in
irc and keeps its traceback.
"""
from __future__ import annotations


class IRCError(Exception):
    """A user-facing error: what went wrong, where, and what to do."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        node: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.node = node
        self.line = line
        self.hint = hint
        super().__init__(self.format())

    def format(self) -> str:
        where = []
        if self.file:
            where.append(f"{self.file}:{self.line}" if self.line is not None else str(self.file))
        elif self.line is not None:
            where.append(f"line {self.line}")
        if self.node:
            where.append(f"node {self.node!r}")
        text = (", ".join(where) + ": " if where else "") + self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def with_file(self, file: str) -> "IRCError":
        """Return the same error with the file filled in (if it was not)."""
        if self.file is None:
            self.file = file
            self.args = (self.format(),)
        return self


class UnsupportedError(IRCError):
    """The model uses something irc cannot represent or run."""


class BadTypeError(IRCError, ValueError):
    """A shape, dimension or dtype no IR value can have (a negative dim from a damaged file, say).

    Also a ValueError, which is what these checks raised before they were user errors."""


class VerifyError(IRCError):
    """The IR broke one of its invariants (a bug in a pass or a hand-edited IR)."""


class IRCWarning(UserWarning):
    """Something irc did on the user's behalf that they should know about (a cast, an ignored value)."""


def warn(message: str) -> None:
    """Issue an IRCWarning (the CLI prints it as one ``irc: warning:`` line)."""
    import warnings

    warnings.warn(message, IRCWarning, stacklevel=3)
