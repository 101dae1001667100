"""The `command` check: run a program from the policy repository; it passes when it exits 0.

What the program can see. It runs, directly (no shell) and with stdin closed:

- in a temporary copy of the files Git tracks in the repository (`controller.checks.workspace`):
  not in the work tree keyrotor commits from, and without `.git`;
- with a clean environment built from an allow-list (`check_environment`): `PATH` and `LANG`
  from keyrotor's environment, `HOME` set to an empty temporary directory, the AWS region and
  endpoint settings (`CHECK_VARIABLES`, `AWS_ENDPOINT_URL_<SERVICE>`),
  `AWS_EC2_METADATA_DISABLED=true` (SDKs in the check do not pick up an instance role), and
  with `withNewKey` the new key in `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`. Nothing else:
  no AWS profile, token or credential variable, no GitHub token, no proxy, no `SSH_AUTH_SOCK`;
- when keyrotor runs as root, as an unprivileged user (`run_as`, default `nobody`) with no
  supplementary groups and no capabilities; otherwise as keyrotor's own user;
- with `no_new_privs` (Linux): setuid programs such as `sudo`, and file capabilities, grant
  it nothing;
- under a supervisor process (`controller.checks.supervisor`) that kills it at the timeout
  (SIGTERM to its process group, SIGKILL `kill_grace` later) and, when it ends, every process
  it started, also those that left its process group or session.

keyrotor itself should be non-dumpable (`controller.hardening.harden_process`), so a check
running as keyrotor's user cannot read keyrotor's environment or memory through /proc.

What a check running as keyrotor's own user can still do: whatever that user can, e.g. write
files the user owns. `run_command_check` therefore seals keyrotor's repository (git config,
refs, HEAD, index, hooks) before the check and raises `CheckTamperError` if the check changed
any of it, before keyrotor's git could act on it.

Output. stdout and stderr are captured together, in the order written (a program's stdout is
a file here, so it may buffer it: flush to keep the order). Every secret given, the new key's
secret and the credentials in keyrotor's environment (`controller.hardening.secrets_to_mask`)
are masked as `***`, also JSON-escaped (`\\/`) and percent-encoded, before anything is cut, so
a cut never leaves part of a secret; control characters are dropped and lines joined with
` | `. The check's result message (`CheckResult.message`, which goes into status) is one line
of at most `MESSAGE_CHARS` characters: what happened and the end of the output.
`CommandOutcome.output` holds a longer masked tail (the last `OUTPUT_LINES` lines, at most
`OUTPUT_CHARS` characters) for the log; it is never meant for status.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from controller.checks import CheckResult
from controller.checks.workspace import (
    DEFAULT_CHECK_USER,
    CheckRepositoryError,
    CheckUser,
    CheckUserError,
    RepositorySeal,
    check_user,
    copy_tracked_files,
    scratch,
)
from controller.durations import format_duration
from controller.errors import KeyrotorError
from controller.hardening import secrets_to_mask
from controller.policy import CommandCheck
from controller.secret import AccessKeySecret

__all__ = [
    "CHECK_VARIABLES",
    "DEFAULT_CHECK_USER",
    "KILL_GRACE",
    "MESSAGE_CHARS",
    "OUTPUT_CHARS",
    "OUTPUT_LINES",
    "CheckTamperError",
    "CommandOutcome",
    "check_environment",
    "redact_secrets",
    "run_command_check",
]

#: Variables passed from keyrotor's environment to a check, if set (plus AWS_ENDPOINT_URL_*).
CHECK_VARIABLES = frozenset(
    {
        "PATH",
        "LANG",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
        "AWS_USE_FIPS_ENDPOINT",
        "AWS_USE_DUALSTACK_ENDPOINT",
        "AWS_STS_REGIONAL_ENDPOINTS",
        "AWS_CA_BUNDLE",
    }
)
_SERVICE_ENDPOINT = re.compile(r"AWS_ENDPOINT_URL_[A-Z0-9_]+")

#: The most characters of a check's result message (it goes into status).
MESSAGE_CHARS = 200
OUTPUT_LINES = 20
OUTPUT_CHARS = 2048
#: Seconds between SIGTERM and SIGKILL when a program times out.
KILL_GRACE = 2.0
#: How long keyrotor waits for the supervisor beyond the check's timeout and grace.
SUPERVISOR_SLACK = 15.0
SUPERVISOR = Path(__file__).with_name("supervisor.py")

# How much of the output file is read: more than is shown, since masking shortens the text.
_READ_BYTES = 4 * OUTPUT_CHARS
_MASK = b"***"
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]")
_COMMAND_CHARS = 80


class CheckTamperError(KeyrotorError):
    """A check changed keyrotor's repository, or escaped its supervisor: stop before any push."""


@dataclass(frozen=True)
class CommandOutcome:
    """The check's result (for the planner and status) and the masked output tail (for logs)."""

    result: CheckResult
    output: str = field(default="", repr=False)


def check_environment(
    base: Mapping[str, str], *, home: Path, new_key: AccessKeySecret | None = None
) -> dict[str, str]:
    """The whole environment of a check: the allowed variables of `base`, `HOME`, the new key."""
    env = {
        name: value
        for name, value in base.items()
        if name in CHECK_VARIABLES or _SERVICE_ENDPOINT.fullmatch(name)
    }
    env["HOME"] = str(home)
    env["AWS_EC2_METADATA_DISABLED"] = "true"
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


def _forms(secrets: Iterable[str]) -> list[bytes]:
    """Each secret as written, JSON-escaped (`/` as `\\/`) and percent-encoded."""
    forms: dict[bytes, None] = {}
    for secret in secrets:
        if secret:
            for form in (secret, secret.replace("/", "\\/"), quote(secret, safe="")):
                forms[form.encode()] = None
    return list(forms)


def _clean(data: bytes) -> list[str]:
    text = _CONTROL.sub("", data.decode("utf-8", errors="replace").replace("\t", " "))
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _tail(output: IO[bytes], secrets: Sequence[bytes]) -> tuple[str, bool]:
    """The masked, cleaned last lines of `output`, and whether anything was cut."""
    size = output.seek(0, os.SEEK_END)
    start = max(0, size - _READ_BYTES)
    # Read far enough back that a secret crossing `start` is wholly inside what is read.
    margin = min(start, max((len(s) for s in secrets), default=1) - 1)
    output.seek(start - margin)
    lines = _clean(redact_secrets(output.read(), secrets, skip=margin))
    cut = start > 0 or len(lines) > OUTPUT_LINES
    joined = " | ".join(line for line in lines[-OUTPUT_LINES:])
    if len(joined) > OUTPUT_CHARS:
        joined, cut = joined[-OUTPUT_CHARS:], True
    return joined, cut


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _took(seconds: float) -> str:
    if seconds >= 60 or seconds.is_integer():
        return format_duration(timedelta(seconds=round(seconds)))
    return f"{seconds:.1f}s"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _not_started(
    program: str, repo: Path, copy: Path, env: Mapping[str, str], errno: int, user: str | None
) -> str:
    """Why `program` could not be started, in words."""
    if "/" in program and not Path(program).is_absolute():
        exists = (copy / program).exists()
        if not exists and (repo / program).exists():
            return (
                f"program {program!r} is not tracked by git; checks run in a copy of the "
                "tracked files: git add it"
            )
        missing = f"program {program!r} not found in the repository"
    elif "/" in program:
        exists, missing = Path(program).exists(), f"program {program!r} not found"
    else:
        exists = shutil.which(program, path=env.get("PATH", os.defpath)) is not None
        missing = f"program {program!r} not found on PATH"
    if not exists:
        return missing
    if errno == 2:  # ENOENT
        return f"{program!r} exists, but the interpreter on its #! line was not found"
    if errno == 13:  # EACCES
        if user is None:
            return f"{program!r} is not an executable file"
        return f"{program!r} is not an executable file, or user {user!r} may not run it"
    return f"{program!r} could not be started: {os.strerror(errno)}"


@dataclass(frozen=True)
class _Report:
    """What the supervisor reported; `lost` when it did not (it was killed or hung)."""

    data: Mapping[str, Any]
    lost: str | None = None


def _supervise(
    check: CommandCheck,
    copy: Path,
    env: Mapping[str, str],
    output: IO[bytes],
    user: CheckUser | None,
    kill_grace: float,
) -> _Report:
    timeout = check.timeout.total_seconds()
    read_end, write_end = os.pipe()
    spec = {
        "argv": list(check.run),
        "timeout": timeout,
        "grace": kill_grace,
        "status_fd": write_end,
        "uid": user.uid if user else None,
        "gid": user.gid if user else None,
    }
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", str(SUPERVISOR), json.dumps(spec)],
            cwd=copy,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=(write_end,),
        )
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as results:
        lost = None
        try:
            process.wait(timeout=timeout + kill_grace + SUPERVISOR_SLACK)
        except subprocess.TimeoutExpired:
            lost = "did not finish"
            _kill_session(process)
        except BaseException:
            # Interrupted: ask the supervisor to stop the check and sweep, then make sure.
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=kill_grace + SUPERVISOR_SLACK)
            except subprocess.TimeoutExpired:
                _kill_session(process)
            raise
        raw = results.read()
    try:
        data = json.loads(raw)
    except ValueError:
        lost = lost or f"ended ({_exit(process.returncode)}) without a result"
        data = {}
    if data.get("failure") and data.get("started"):
        lost = lost or f"failed: {data['failure']}"
    return _Report(data, lost)


def _exit(code: int) -> str:
    return f"killed by {_signal_name(-code)}" if code < 0 else f"exit {code}"


def _kill_session(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_command_check(
    check: CommandCheck,
    *,
    repo: Path,
    new_key: AccessKeySecret | None,
    secrets: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    run_as: str = DEFAULT_CHECK_USER,
    kill_grace: float = KILL_GRACE,
) -> CommandOutcome:
    """Run `check.run` in a copy of `repo`; passed when it exits 0 within `check.timeout`.

    `env` is keyrotor's environment as read at the edge (default `os.environ`): the check's
    environment is built from its allowed variables, and its credential variables are masked.
    `secrets` are the other secrets keyrotor holds (e.g. `hardening.secrets_to_mask(...)`),
    masked too, like the new key's secret. `run_as` is the user checks run as when keyrotor
    runs as root. Problems that keep the check from running (no such user, not a git
    repository, the program not found) are a failed result. Raises `CheckTamperError` when the
    check changed keyrotor's repository, or its supervisor was killed or hung (a process of
    the check may still run): keyrotor must stop before its git acts on the repository.
    """
    base = os.environ if env is None else env
    masks = _forms([*secrets, *secrets_to_mask(base), new_key.secret_access_key if new_key else ""])
    written = redact_secrets(shlex.join(check.run).encode(), masks)
    shown = _clip(" ".join(_clean(written)), _COMMAND_CHARS)

    def failed(problem: str) -> CommandOutcome:
        text = redact_secrets(f"cannot run {shown}: {problem}".encode(), masks).decode()
        return CommandOutcome(CheckResult("command", False, _one_line(text)))

    if check.with_new_key and new_key is None:
        return failed("it needs the new key (withNewKey), but its secret is unknown")
    if not repo.is_dir():
        return failed(f"{repo} is not a directory")
    try:
        user = check_user(run_as)
        seal = RepositorySeal.take(repo, base)
    except (CheckUserError, CheckRepositoryError) as exc:
        return failed(str(exc))
    with scratch(user) as (copy, home), tempfile.TemporaryFile() as output:
        try:
            copy_tracked_files(repo, copy, base, user)
        except (CheckRepositoryError, OSError) as exc:
            return failed(f"cannot copy the repository: {exc}")
        child_env = check_environment(
            base, home=home, new_key=new_key if check.with_new_key else None
        )
        report = _supervise(check, copy, child_env, output, user, kill_grace)
        if report.lost is None and not report.data.get("started"):
            if "errno" in report.data:
                name = user.name if user else None
                errno = report.data["errno"]
                problem = _not_started(check.run[0], repo, copy, child_env, errno, name)
            else:
                problem = f"its supervisor failed: {report.data.get('failure', 'no reason given')}"
            outcome = failed(problem)
        else:
            tail, cut = _tail(output, masks)
            outcome = _outcome(check, shown, report, tail, cut)
    try:
        changed = seal.changes(base)
    except CheckRepositoryError as exc:
        changed = [f"git fails there now: {exc}"]
    if changed:
        raise CheckTamperError(
            f"the check {shown} changed keyrotor's repository {repo} ({', '.join(changed)}); "
            "keyrotor stopped before running git there: restore the repository, and find out "
            "how the check could write it (a check runs as keyrotor's own user unless keyrotor "
            "runs as root)"
        )
    if report.lost:
        raise CheckTamperError(
            f"the supervisor of check {shown} {report.lost}; a process the check started may "
            "still be running, so keyrotor stopped before running git"
        )
    return outcome


def _one_line(text: str) -> str:
    return _clip(" ".join(_clean(text.encode())), MESSAGE_CHARS)


def _outcome(
    check: CommandCheck, shown: str, report: _Report, tail: str, cut: bool
) -> CommandOutcome:
    data = report.data
    elapsed = _took(float(data.get("elapsed", 0.0)))
    code = data.get("code")
    if data.get("timed_out"):
        what = f"timed out after {_took(check.timeout.total_seconds())} and was killed"
    elif data.get("stopped"):
        what = f"was stopped after {elapsed}"
    elif code == 0:
        what = f"exited 0 after {elapsed}"
    elif isinstance(code, int) and code < 0:
        what = f"was killed by {_signal_name(-code)} after {elapsed}"
    else:
        what = f"exited with code {code} after {elapsed}"
    passed = code == 0 and not data.get("timed_out") and not data.get("stopped")
    if not data.get("swept", True):
        passed, what = False, what + " (some processes it started could not be killed)"
    message = f"{shown} {what}"
    if not passed:
        message += _shown_output(tail, cut, MESSAGE_CHARS - len(message))
    return CommandOutcome(CheckResult("command", passed, _one_line(message)), tail)


def _shown_output(tail: str, cut: bool, room: int) -> str:
    """`; output: ...`, its start cut off to fit `room` characters."""
    if not tail:
        return "; no output"
    label = f"; {'last ' if cut else ''}output: "
    left = room - len(label)
    if left < 10:
        return ""
    return label + (tail if len(tail) <= left else "…" + tail[-(left - 1) :])
