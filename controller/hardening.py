"""Process hardening: keep keyrotor's credentials out of reach of the programs it starts.

keyrotor holds credentials that may change IAM keys and write secrets (its AWS credentials, a
GitHub token), in its environment and in memory. A `command` check is a program from the policy
repository; keyrotor starts it. On Linux a child of the same user may read its parent's
`/proc/PID/environ` (the environment the parent *started* with: removing a variable from
`os.environ` later does not change it) and, by ptrace or `/proc/PID/mem`, its memory.

`harden_process()`, called once at the CLI edge before any credential is used, makes keyrotor
non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`), which stops a process of the same user from reading
its environment, memory, open files or cwd unless that process holds CAP_SYS_PTRACE (or
CAP_SYS_ADMIN or CAP_PERFMON); and it sets `RLIMIT_CORE` to 0, so no core dump writes its memory
to disk. A process running as root with those capabilities can still read everything: the
checks are run as another user when keyrotor is root (see `controller.checks.command`).

`secrets_to_mask()` lists the credentials keyrotor holds, to be masked in any output a check
produces. The service layer reads the environment once at the edge and passes it in, with the
credentials it resolved itself (boto3's, after assuming a role) and any token it was given.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.errors import KeyrotorError

__all__ = [
    "SECRET_VARIABLES",
    "Hardening",
    "HardeningError",
    "harden_process",
    "is_dumpable",
    "secrets_to_mask",
]

#: Environment variables whose values are credentials keyrotor holds (names, not values).
SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
)

_PR_GET_DUMPABLE = 3
_PR_SET_DUMPABLE = 4


class HardeningError(KeyrotorError):
    """keyrotor could not make itself non-dumpable on a platform that supports it."""


@dataclass(frozen=True)
class Hardening:
    """What `harden_process` did; `message` is one line for the log."""

    applied: bool
    message: str


def _libc() -> ctypes.CDLL:
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise HardeningError(
            f"cannot load the C library ({name}) to make keyrotor non-dumpable: {exc}"
        ) from exc


def is_dumpable() -> bool | None:
    """Whether this process is dumpable (`PR_GET_DUMPABLE`); None where that does not exist."""
    if not sys.platform.startswith("linux"):
        return None
    return bool(_libc().prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))


def harden_process() -> Hardening:
    """Make this process non-dumpable and give it no core dumps; call once, early, at the edge.

    On Linux: `prctl(PR_SET_DUMPABLE, 0)`, verified with `PR_GET_DUMPABLE`, and
    `setrlimit(RLIMIT_CORE, (0, 0))`. Raises `HardeningError` if the prctl fails. Elsewhere it
    only sets `RLIMIT_CORE` and says, in `message`, that the process is not protected from
    processes of the same user. The setting survives `fork` (but not `execve`: the programs
    keyrotor starts are dumpable again, and hold only what keyrotor passes them).
    """
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if not sys.platform.startswith("linux"):
        return Hardening(
            False,
            f"process hardening is Linux-only: on {sys.platform} keyrotor only turned core dumps "
            "off; programs of the same user can read its memory",
        )
    libc = _libc()
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise HardeningError(
            f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(errno)}; keyrotor will not run "
            "checks with its credentials readable"
        )
    if libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise HardeningError("prctl(PR_SET_DUMPABLE, 0) did not take effect")
    return Hardening(True, "process hardened: not dumpable, no core dumps")


def secrets_to_mask(environ: Mapping[str, str], *more: str | None) -> tuple[str, ...]:
    """The credentials keyrotor holds: the values of `SECRET_VARIABLES` in `environ`, then `more`.

    `environ` is the environment keyrotor started with, read once at the edge; `more` are
    credentials it holds otherwise (boto3's resolved secret key and session token, a GitHub
    token given by flag). Empty and None values are dropped, duplicates kept once, order kept.
    Access key ids are not secrets and are not listed.
    """
    values: Iterable[str | None] = (*(environ.get(name) for name in SECRET_VARIABLES), *more)
    return tuple(dict.fromkeys(v for v in values if v))
