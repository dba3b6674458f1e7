"""The project's own error types: every user-facing failure is a GlodeError."""

from __future__ import annotations

from pathlib import Path


class GlodeError(Exception):
    """A problem the user can fix; the message says what, where, and what to do."""


class InputError(GlodeError):
    """Bad input data, located by file and (when known) 1-based line number."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class ParamError(GlodeError):
    """A parameter value that cannot work, named by its params.yaml key."""

    def __init__(self, name: str, problem: str):
        self.name = name
        self.problem = problem
        super().__init__(f"parameter '{name}': {problem}")


class ParamsError(GlodeError):
    """Every problem found in a params file (or a stage's options), one per line."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = list(problems)
        if len(problems) == 1:
            super().__init__(f"{source}: {problems[0]}")
        else:
            super().__init__(f"{source}: {len(problems)} bad parameters:\n  " + "\n  ".join(problems))


class LabelError(GlodeError, ValueError):
    """A malformed tag or span (BIO <-> span conversion). Also a ValueError, so callers that
    validate with ``except ValueError`` keep working; readers turn it into an InputError that
    names the file and line."""
