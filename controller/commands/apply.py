"""`keyrotor apply`: carry out what is due for auto-approved policies, then commit status."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from controller.aws import AwsSessions
from controller.executor import Executor
from controller.gitops.repo import StatusRepo
from controller.inventory import AwsInventory
from controller.render import plan_text
from controller.runtime import make_plan, now_of, open_workspace


def run(args: argparse.Namespace) -> int:
    now = now_of(args)
    with StatusRepo.open(Path(args.repo)) as repo:
        ws = open_workspace(repo.root, args.policy)
        sessions = AwsSessions()
        plan = make_plan(ws, AwsInventory(sessions), now)
        if args.dry_run:
            sys.stdout.write(plan_text(plan))
            return 0
        result = Executor(sessions, repo, now=now, push=not args.no_push).apply(plan)
    done = sum(1 for r in result.results if r.ok)
    print(
        f"Apply complete: {done} done, {len(result.failed)} failed; "
        f"{len(result.commits)} status commit{'s' if len(result.commits) != 1 else ''}."
    )
    for finding in plan.findings:
        print(f"  {finding.kind}: {finding.policy}/{finding.user}: {finding.message}")
    return 1 if result.failed else 0
