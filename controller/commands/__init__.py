"""One module per CLI command; each exposes `run(args) -> exit code`.

This package is the edge: it is where the environment is read, once, into a `RunContext`.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from controller.accounts import Shard
from controller.aws import AwsSessions, adaptive_from, max_attempts_from
from controller.checks.workspace import DEFAULT_CHECK_USER
from controller.context import CiEnvironment, RunContext
from controller.guardrails import (
    NO_GUARDRAILS_WARNING,
    Guardrails,
    guardrails_spec,
    read_guardrails,
)
from controller.guardrails.source import ssm_reader
from controller.plan import Plan
from controller.policy import Account


def now_of(args: argparse.Namespace) -> datetime:
    return args.now if getattr(args, "now", None) else datetime.now(UTC)


def run_context(args: argparse.Namespace, *, guardrails: bool = False) -> RunContext:
    """The context of one CLI run: `--now`, AWS from the SDK environment (and AWS_MAX_ATTEMPTS,
    AWS_RETRY_MODE), CI and what `command` checks get (KEYROTOR_CHECK_USER) from os.environ.
    With `guardrails` (plan, apply, reconcile), also the guardrails `--guardrails` or
    KEYROTOR_GUARDRAILS name, read before anything else touches AWS (a bad document stops the
    run: `path:line:column` errors, exit 1); without any, the warning that none are in force,
    once, on stderr."""
    env = os.environ
    ci = CiEnvironment.from_environ(env)
    run_id = ci.run_id or f"local-{uuid.uuid4().hex[:12]}"
    sessions = AwsSessions(
        max_attempts=max_attempts_from(env), adaptive=adaptive_from(env), run_id=run_id
    )
    shard = getattr(args, "shard", None)
    loaded = _load_guardrails(args, env, sessions) if guardrails else None
    return RunContext(
        now=now_of(args),
        sessions=sessions,
        ci=ci,
        push=not getattr(args, "no_push", False),
        run_id=run_id,
        parallel=getattr(args, "parallel", 4),
        list_users=getattr(args, "list_users", False),
        shard=Shard.parse(shard) if shard else None,
        guardrails=loaded,
        check_env=dict(env),  # one snapshot, taken here
        check_user=env.get("KEYROTOR_CHECK_USER") or DEFAULT_CHECK_USER,
    )


def _load_guardrails(
    args: argparse.Namespace, env: Mapping[str, str], sessions: AwsSessions
) -> Guardrails | None:
    spec = guardrails_spec(getattr(args, "guardrails", None), env)
    if spec is None:
        print(NO_GUARDRAILS_WARNING, file=sys.stderr)
        return None

    def read_parameter(name: str) -> str:
        # The ambient credentials' SSM client, in their region.
        return ssm_reader(sessions.ssm(Account(), None))(name)

    return read_guardrails(spec, read_parameter=read_parameter)


def report_errors(plan: Plan) -> bool:
    """Say on stderr why the run fails (a policy that could not be observed); True if it does."""
    for finding in plan.errors:
        print(f"keyrotor: {finding.policy}: {finding.message}", file=sys.stderr)
    return bool(plan.errors)
