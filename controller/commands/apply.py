"""`keyrotor apply`: carry out what is due for auto-approved policies, then commit status."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from controller.aws import AwsSessions
from controller.executor import ApplyResult, Executor, Hook
from controller.gitops.repo import StatusRepo
from controller.inventory import AwsInventory
from controller.planner import Plan
from controller.render import plan_text
from controller.runtime import make_plan, now_of, open_workspace


def execute(
    repo_path: Path,
    now: datetime,
    *,
    policies: list[str] | None = None,
    push: bool = True,
    hook: Hook | None = None,
    sessions: AwsSessions | None = None,
) -> tuple[Plan, ApplyResult]:
    """Plan and apply in one checkout; `hook` sees every named step (tests inject crashes).

    A caller that runs many times in one process (the demo) passes one `sessions`, so boto3's
    clients are built once rather than on every run.
    """
    with StatusRepo.open(repo_path) as repo:
        ws = open_workspace(repo.root, policies)
        sessions = sessions or AwsSessions()
        plan = make_plan(ws, AwsInventory(sessions), now, run_checks=True, sessions=sessions)
        result = Executor(sessions, repo, now=now, push=push, hook=hook).apply(plan)
    return plan, result


def run(args: argparse.Namespace) -> int:
    now = now_of(args)
    if args.dry_run:
        ws = open_workspace(args.repo, args.policy)
        sys.stdout.write(plan_text(make_plan(ws, AwsInventory(AwsSessions()), now)))
        return 0
    plan, result = execute(Path(args.repo), now, policies=args.policy, push=not args.no_push)
    done = sum(1 for r in result.results if r.ok)
    print(
        f"Apply complete: {done} done, {len(result.failed)} failed; "
        f"{len(result.commits)} status commit{'s' if len(result.commits) != 1 else ''}."
    )
    for finding in plan.findings:
        print(f"  {finding.kind}: {finding.policy}/{finding.user}: {finding.message}")
    return 1 if result.failed else 0
