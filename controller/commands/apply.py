"""`keyrotor apply`: carry out what is due for auto-approved policies, then commit status."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from controller.commands import report_errors, run_context
from controller.render import plan_text
from controller.service import apply_once, open_workspace, plan_once


def run(args: argparse.Namespace) -> int:
    ctx = run_context(args, guardrails=True)
    if args.dry_run:
        planned = plan_once(ctx, open_workspace(args.repo, args.policy))
        sys.stdout.write(plan_text(planned))
        return 1 if report_errors(planned) else 0
    plan, result = apply_once(ctx, Path(args.repo), args.policy, fetch=not args.no_fetch)
    done = sum(1 for r in result.results if r.ok)
    print(
        f"Apply complete: {done} done, {len(result.failed)} failed; "
        f"{len(result.commits)} status commit{'s' if len(result.commits) != 1 else ''}."
    )
    for finding in plan.findings:
        print(f"  {finding.kind}: {finding.policy}/{finding.user}: {finding.message}")
    for error in result.errors:
        print(f"keyrotor: {error}", file=sys.stderr)
    unobserved = report_errors(plan)
    return 1 if result.failed or result.errors or unobserved else 0
