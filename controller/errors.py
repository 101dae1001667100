"""keyrotor's own exception types.

Every error a user can cause or fix derives from `KeyrotorError`; the CLI prints its message
and exits 1. Anything else is a bug in keyrotor and exits 3 with a traceback file.
Messages never contain secret access keys: they are built from key ids only.
"""

from __future__ import annotations

from dataclasses import dataclass


class KeyrotorError(Exception):
    """A problem the user can act on (bad input, failed precondition)."""

    exit_code = 1


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in one file, printed as compilers do: `path:line:column: message`."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class ManifestError(KeyrotorError):
    """One or more manifests are invalid; carries every diagnostic found in one pass."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class GitError(KeyrotorError):
    """The status repository cannot be read, committed to or pushed."""


class PushRejected(GitError):
    """Another run moved the branch: nothing may touch AWS on the strength of this run's intent."""


class TargetError(KeyrotorError):
    """A credential target (Secrets Manager, SSM, GitHub) could not be read or written."""


class AwsError(KeyrotorError):
    """An AWS call failed in a way keyrotor cannot recover from in this run."""
