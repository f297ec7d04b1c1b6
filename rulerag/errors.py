"""Error types. Every error says what is wrong and how to fix it.

All user-facing failures derive from :class:`RuleRAGError`, so callers (the CLI, the web API) can
catch one type and show its message without a stack trace.
"""

from __future__ import annotations

from pathlib import Path


class RuleRAGError(Exception):
    """Base class for errors whose message is meant for the user."""


class ConfigError(RuleRAGError):
    """Invalid configuration value or file."""


class InputFormatError(RuleRAGError):
    """A malformed input file. The message names ``file:line`` and the fix.

    Example:
        >>> str(InputFormatError("rules.txt", 3, "unknown rule form", "use 'r2(X,Y) <- r1(X,Y)'"))
        "rules.txt:3: unknown rule form. Fix: use 'r2(X,Y) <- r1(X,Y)'"
    """

    def __init__(self, path: str | Path, line: int | None, problem: str, fix: str = "") -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        self.fix = fix
        where = f"{self.path}:{line}" if line is not None else self.path
        message = f"{where}: {problem}"
        if fix:
            message += f". Fix: {fix}"
        super().__init__(message)


class RuleFormatError(InputFormatError):
    """A rule that cannot be parsed or fails validation."""


class CorpusFormatError(InputFormatError):
    """A corpus line that is not a valid document."""


class IndexLoadError(RuleRAGError):
    """An index directory that is missing, corrupt or does not match the settings."""


class GenerationError(RuleRAGError):
    """A generator backend that failed (unreachable server, missing model file, ...)."""
