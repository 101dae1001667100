"""Run a policy's `command` and `http` checks: the I/O half of the checks, outside the planner.

The results are keyed by each check's index in `policy.checks`, which is the planner's
`ExternalResults`. Checks judged from IAM (`new-key-used`, `old-key-idle`) are the planner's and
are skipped here. Checks run one after another, in manifest order.

Wiring (for the service layer): read the environment once at the CLI edge, call
`controller.hardening.harden_process()` there, and pass that environment as `env` and every
secret keyrotor holds as `secrets` (`controller.hardening.secrets_to_mask(environ,
creds.secret_key, creds.token, github_token)`); the new key's secret is added here. A
`CheckTamperError` from a command check means: stop the run before any git command.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Mapping, Sequence
from pathlib import Path

from controller.checks import CheckResult
from controller.checks.command import (
    DEFAULT_CHECK_USER,
    KILL_GRACE,
    CommandOutcome,
    run_command_check,
)
from controller.checks.http import run_http_check
from controller.policy import CommandCheck, HttpCheck, Policy
from controller.secret import AccessKeySecret

__all__ = ["external_check_indexes", "run_external_checks"]


def external_check_indexes(policy: Policy) -> list[int]:
    """Indexes in `policy.checks` of the checks this module runs."""
    return [i for i, c in enumerate(policy.checks) if isinstance(c, CommandCheck | HttpCheck)]


def run_external_checks(
    policy: Policy,
    *,
    index_filter: Container[int] | None = None,
    cwd: Path,
    new_key: AccessKeySecret | None,
    secrets: Sequence[str] = (),
    sleep: Callable[[float], None] = time.sleep,
    env: Mapping[str, str] | None = None,
    run_as: str = DEFAULT_CHECK_USER,
    on_output: Callable[[int, CommandOutcome], None] | None = None,
    kill_grace: float = KILL_GRACE,
) -> dict[int, CheckResult]:
    """Run the command and http checks of `policy` (those in `index_filter`, if given).

    `cwd` is the policy repository's root: commands run in a temporary copy of its tracked
    files, never in it. `new_key` is given to commands with `withNewKey`; `secrets` (and the
    new key's secret, and the credentials in `env`) are masked in command output. `env` is
    keyrotor's environment as read at the edge (default `os.environ`); `run_as` the user
    commands run as when keyrotor runs as root. `on_output(index, outcome)` is called after
    each command check with its masked output tail (`outcome.output`), for the log only:
    the returned results, which go into status, carry a short message.
    """
    results: dict[int, CheckResult] = {}
    for index in external_check_indexes(policy):
        if index_filter is not None and index not in index_filter:
            continue
        check = policy.checks[index]
        if isinstance(check, CommandCheck):
            outcome = run_command_check(
                check,
                repo=cwd,
                new_key=new_key,
                secrets=secrets,
                env=env,
                run_as=run_as,
                kill_grace=kill_grace,
            )
            if on_output is not None:
                on_output(index, outcome)
            results[index] = outcome.result
        elif isinstance(check, HttpCheck):
            results[index] = run_http_check(check, sleep=sleep)
    return results
