"""`keyrotor plan`: what apply would do. It reads IAM and the targets and writes nothing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from controller.commands import report_errors, run_context
from controller.gitops.repo import StatusRepo
from controller.render import plan_json, plan_markdown, plan_text
from controller.service import open_workspace, plan_once

RENDERERS = {"text": plan_text, "markdown": plan_markdown, "json": plan_json}


def run(args: argparse.Namespace) -> int:
    ctx = run_context(args, guardrails=True)
    if args.fetch:
        with StatusRepo.open(Path(args.repo)) as repo:
            repo.sync()
    result = plan_once(ctx, open_workspace(args.repo, args.policy))
    sys.stdout.write(RENDERERS[args.format](result))
    if report_errors(result):
        return 1
    if args.detailed_exitcode and result.actions:
        return 2
    return 0
