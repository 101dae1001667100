"""`keyrotor plan`: what apply would do. It reads IAM and the targets and writes nothing."""

from __future__ import annotations

import argparse
import sys

from controller.aws import AwsSessions
from controller.inventory import AwsInventory
from controller.render import plan_json, plan_markdown, plan_text
from controller.runtime import make_plan, now_of, open_workspace

RENDERERS = {"text": plan_text, "markdown": plan_markdown, "json": plan_json}


def run(args: argparse.Namespace) -> int:
    ws = open_workspace(args.repo, args.policy)
    result = make_plan(ws, AwsInventory(AwsSessions()), now_of(args))
    sys.stdout.write(RENDERERS[args.format](result))
    if args.detailed_exitcode and result.actions:
        return 2
    return 0
