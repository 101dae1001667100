"""The `command` check: run a program in the policy repository; it passes when it exits 0.

The program is run directly (no shell) in the repository root, with stdin closed, in a process
group of its own. On timeout the whole group gets SIGTERM and, `kill_grace` later, SIGKILL; when
the program exits, whatever it left running in its group is killed too, so nothing holding the
new key outlives the check.

Environment. The program inherits keyrotor's environment (or the `env` given) *without* any
variable that carries or selects keyrotor's own credentials (`CREDENTIAL_VARIABLES`: AWS keys,
session tokens, profiles, role, web-identity and container credential settings, credential and
config file paths, and GitHub tokens). keyrotor's credentials may change IAM keys and write
secrets; a smoke test should not inherit that power by default. With `withNewKey`,
`AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` hold the new key, and nothing else can override
them (no session token, no profile). Region and endpoint variables pass through. This is not a
sandbox: the program can still read files such as `~/.aws/credentials` or reach an instance
metadata service.

Output. stdout and stderr are captured together, in the order written (a program's stdout
is a file here, so it may buffer it: flush to keep the order). Only the tail is kept (the last
`OUTPUT_LINES` lines, at most `OUTPUT_CHARS` characters); every secret given (and the new key's
secret) is masked as `***` before trimming, so a cut can never leave part of a secret; control
characters are dropped and lines are joined with ` | `, so the message stays one line.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import IO

from controller.checks import CheckResult
from controller.durations import format_duration
from controller.policy import CommandCheck
from controller.secret import AccessKeySecret

__all__ = [
    "CREDENTIAL_VARIABLES",
    "KILL_GRACE",
    "OUTPUT_CHARS",
    "OUTPUT_LINES",
    "child_environment",
    "redact_secrets",
    "run_command_check",
]

#: Variables never passed from keyrotor's environment to a check's program.
CREDENTIAL_VARIABLES = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_CREDENTIAL_EXPIRATION",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "ACTIONS_RUNTIME_TOKEN",
    }
)

OUTPUT_LINES = 20
OUTPUT_CHARS = 2048
#: Seconds between SIGTERM and SIGKILL when a program times out.
KILL_GRACE = 2.0

# How much of the output file is read: more than is shown, since masking shortens the text.
_READ_BYTES = 4 * OUTPUT_CHARS
_MASK = b"***"
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]")


def child_environment(
    base: Mapping[str, str], new_key: AccessKeySecret | None = None
) -> dict[str, str]:
    """`base` without keyrotor's credential variables; with `new_key` in the AWS key variables."""
    env = {name: value for name, value in base.items() if name not in CREDENTIAL_VARIABLES}
    if new_key is not None:
        env["AWS_ACCESS_KEY_ID"] = new_key.access_key_id
        env["AWS_SECRET_ACCESS_KEY"] = new_key.secret_access_key
    return env


def redact_secrets(data: bytes, secrets: Iterable[bytes], *, skip: int = 0) -> bytes:
    """`data[skip:]` with every occurrence of every secret in `data` replaced by `***`.

    Occurrences are found in all of `data`, so a secret that starts before `skip` is still
    masked; overlapping occurrences are masked as one. (Not `controller.secret.mask`, which
    tells GitHub Actions to mask a secret in its log.)
    """
    spans: list[tuple[int, int]] = []
    for secret in {s for s in secrets if s}:
        start = data.find(secret)
        while start != -1:
            spans.append((start, start + len(secret)))
            start = data.find(secret, start + 1)
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    out: list[bytes] = []
    pos = skip
    for start, end in merged:
        if end <= skip:
            continue
        out += [data[pos : max(start, pos)], _MASK]
        pos = end
    out.append(data[pos:])
    return b"".join(out)


def _tail(output: IO[bytes], secrets: Sequence[bytes]) -> tuple[str, bool]:
    """The masked, cleaned last lines of `output`, and whether anything was cut."""
    size = output.seek(0, os.SEEK_END)
    start = max(0, size - _READ_BYTES)
    # Read far enough back that a secret crossing `start` is wholly inside what is read.
    margin = min(start, max((len(s) for s in secrets), default=1) - 1)
    output.seek(start - margin)
    data = redact_secrets(output.read(), secrets, skip=margin)
    text = _CONTROL.sub("", data.decode("utf-8", errors="replace").replace("\t", " "))
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    cut = start > 0 or len(lines) > OUTPUT_LINES
    joined = " | ".join(lines[-OUTPUT_LINES:])
    if len(joined) > OUTPUT_CHARS:
        joined, cut = joined[-OUTPUT_CHARS:], True
    return joined, cut


def _took(seconds: float) -> str:
    if seconds >= 60 or seconds.is_integer():
        return format_duration(timedelta(seconds=round(seconds)))
    return f"{seconds:.1f}s"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _kill_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the program's process group, SIGKILL it after `grace` seconds, reap the leader."""
    _signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    # Even when the leader is gone, what it started may be ignoring SIGTERM.
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _not_started(program: str, cwd: Path, env: Mapping[str, str], exc: OSError) -> str:
    """Why `program` could not be started, in words."""
    if "/" in program:
        path = cwd / program  # an absolute `program` replaces cwd
        exists, missing = path.exists(), f"program {program!r} not found (looked for {path})"
    else:
        exists = shutil.which(program, path=env.get("PATH", os.defpath)) is not None
        missing = f"program {program!r} not found on PATH"
    if isinstance(exc, FileNotFoundError) and not exists:
        return missing
    if isinstance(exc, FileNotFoundError):
        return f"{program!r} exists, but the interpreter on its #! line was not found"
    if isinstance(exc, PermissionError):
        return f"{program!r} is not an executable file"
    return f"{program!r} could not be started: {exc.strerror or exc}"


def run_command_check(
    check: CommandCheck,
    *,
    cwd: Path,
    new_key: AccessKeySecret | None,
    secrets: Sequence[str],
    env: Mapping[str, str] | None = None,
    kill_grace: float = KILL_GRACE,
) -> CheckResult:
    """Run `check.run` in `cwd`; passed when it exits 0 within `check.timeout`.

    `env` replaces `os.environ` as the environment to start from; credential variables are
    removed from it either way. `secrets` (and the new key's secret) are masked in the output.
    """
    shown = shlex.join(check.run)
    if check.with_new_key and new_key is None:
        return CheckResult(
            "command", False, f"{shown} needs the new key (withNewKey), but its secret is unknown"
        )
    if not cwd.is_dir():
        return CheckResult("command", False, f"cannot run {shown}: {cwd} is not a directory")
    child_env = child_environment(
        os.environ if env is None else env, new_key if check.with_new_key else None
    )
    masks = [s.encode() for s in secrets if s]
    if new_key is not None:
        masks.append(new_key.secret_access_key.encode())
    timeout = check.timeout.total_seconds()
    with tempfile.TemporaryFile() as output:
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                list(check.run),
                cwd=cwd,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            problem = _not_started(check.run[0], cwd, child_env, exc)
            return CheckResult("command", False, f"cannot run {shown}: {problem}")
        timed_out = False
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            # Stop the program on timeout (or on an interrupt), and whatever it left running.
            _kill_group(process, kill_grace if timed_out else 0.0)
        code = process.returncode
        elapsed = time.monotonic() - started
        tail, cut = _tail(output, masks)

    if timed_out:
        message = f"{shown} timed out after {_took(timeout)} and was killed"
    elif code == 0:
        return CheckResult("command", True, f"{shown} exited 0 after {_took(elapsed)}")
    elif code < 0:
        message = f"{shown} was killed by {_signal_name(-code)} after {_took(elapsed)}"
    else:
        message = f"{shown} exited with code {code} after {_took(elapsed)}"
    if tail:
        message += f"; {'last ' if cut else ''}output: {tail}"
    else:
        message += "; no output"
    return CheckResult("command", False, message)
