"""One module per CLI command; each exposes `run(args) -> exit code`.

This package is the edge: it is where the environment is read, once, into a `RunContext`.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from datetime import UTC, datetime

from controller.accounts import Shard
from controller.aws import AwsSessions, adaptive_from, max_attempts_from
from controller.checks.workspace import DEFAULT_CHECK_USER
from controller.context import CiEnvironment, RunContext
from controller.plan import Plan


def now_of(args: argparse.Namespace) -> datetime:
    return args.now if getattr(args, "now", None) else datetime.now(UTC)


def run_context(args: argparse.Namespace) -> RunContext:
    """The context of one CLI run: `--now`, AWS from the SDK environment (and AWS_MAX_ATTEMPTS,
    AWS_RETRY_MODE), CI and what `command` checks get (KEYROTOR_CHECK_USER) from os.environ."""
    env = os.environ
    ci = CiEnvironment.from_environ(env)
    run_id = ci.run_id or f"local-{uuid.uuid4().hex[:12]}"
    sessions = AwsSessions(
        max_attempts=max_attempts_from(env), adaptive=adaptive_from(env), run_id=run_id
    )
    shard = getattr(args, "shard", None)
    return RunContext(
        now=now_of(args),
        sessions=sessions,
        ci=ci,
        push=not getattr(args, "no_push", False),
        run_id=run_id,
        parallel=getattr(args, "parallel", 4),
        shard=Shard.parse(shard) if shard else None,
        check_env=dict(env),  # one snapshot, taken here
        check_user=env.get("KEYROTOR_CHECK_USER") or DEFAULT_CHECK_USER,
    )


def report_errors(plan: Plan) -> bool:
    """Say on stderr why the run fails (a policy that could not be observed); True if it does."""
    for finding in plan.errors:
        print(f"keyrotor: {finding.policy}: {finding.message}", file=sys.stderr)
    return bool(plan.errors)
