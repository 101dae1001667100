"""`keyrotor reconcile`: the one command a scheduled GitHub Actions workflow runs.

It applies what is due (auto policies, and steps a merged pull request approved), keeps one
approval pull request per pull-request policy in step with the plan, keeps one issue per user
that needs a person, and reports to the workflow: a Markdown summary in GITHUB_STEP_SUMMARY and
`changes_present=true|false` in GITHUB_OUTPUT. Without GITHUB_TOKEN and GITHUB_REPOSITORY it does
the AWS and git part only and says so.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from controller.aws import AwsSessions
from controller.executor import ApplyResult, Executor
from controller.github.approval_pr import PullOutcome, ensure_approval_pr
from controller.github.client import GitHubClient
from controller.github.user_issues import IssueOutcome, sync_issues
from controller.gitops.repo import StatusRepo
from controller.inventory import AwsInventory
from controller.planner import Plan
from controller.render import plan_markdown
from controller.runtime import make_plan, now_of, open_workspace


def run(args: argparse.Namespace) -> int:
    now = now_of(args)
    prs: list[PullOutcome] = []
    issues: list[IssueOutcome] = []
    with StatusRepo.open(Path(args.repo)) as repo:
        ws = open_workspace(repo.root, args.policy)
        sessions = AwsSessions()
        plan = make_plan(ws, AwsInventory(sessions), now, run_checks=True, sessions=sessions)
        result = Executor(sessions, repo, now=now, push=not args.no_push).apply(plan)
        if os.environ.get("GITHUB_TOKEN") and os.environ.get("GITHUB_REPOSITORY"):
            with GitHubClient() as client:
                prs = [
                    ensure_approval_pr(repo, client, pp)
                    for pp in plan.policies
                    if pp.policy.approval == "pull-request"
                ]
                issues = sync_issues(client, plan)
        else:
            print("GITHUB_TOKEN or GITHUB_REPOSITORY is not set: no pull requests or issues.")
    summary = render_summary(plan, result, prs, issues)
    print(summary, end="")
    changed = bool(result.commits) or any(p.action not in ("none", "unchanged") for p in prs)
    _append("GITHUB_STEP_SUMMARY", summary)
    _append("GITHUB_OUTPUT", f"changes_present={'true' if changed or issues else 'false'}\n")
    return 1 if result.failed else 0


def render_summary(
    plan: Plan, result: ApplyResult, prs: list[PullOutcome], issues: list[IssueOutcome]
) -> str:
    done = [r for r in result.results if r.ok]
    lines = [
        "## keyrotor reconcile",
        "",
        f"{len(done)} step{'s' if len(done) != 1 else ''} done, {len(result.failed)} failed, "
        f"{len(result.commits)} status commit{'s' if len(result.commits) != 1 else ''}.",
        "",
    ]
    lines += [f"- {r.action.policy}/`{r.action.user}`: {r.action.kind} done" for r in done]
    lines += [
        f"- {r.action.policy}/`{r.action.user}`: {r.action.kind} **failed**: {r.error}"
        for r in result.failed
    ]
    lines += [f"- approval pull request for {p.policy}: {p.action}" for p in prs
              if p.action != "none"]  # fmt: skip
    lines += [f"- issue #{i.number} for {i.policy}/`{i.user}`: {i.action}" for i in issues]
    lines += ["", "### Plan before this run", "", plan_markdown(plan)]
    return "\n".join(lines)


def _append(variable: str, text: str) -> None:
    path = os.environ.get(variable)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
