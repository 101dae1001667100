"""`keyrotor reconcile`: the one command a scheduled GitHub Actions workflow runs.

It applies what is due (auto policies, and steps a merged pull request approved), keeps one
approval pull request per pull-request policy in step with the plan, keeps one issue per user
that needs a person (from the status this run wrote), and reports to the workflow: a Markdown
summary in GITHUB_STEP_SUMMARY and `changes_present=true|false` in GITHUB_OUTPUT. Without
GITHUB_TOKEN and GITHUB_REPOSITORY it does the AWS and git part only and says so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from controller.commands import report_errors, run_context
from controller.render import plan_markdown
from controller.service import ReconcileResult, reconcile_once


def run(args: argparse.Namespace) -> int:
    ctx = run_context(args, guardrails=True)
    result = reconcile_once(ctx, Path(args.repo), args.policy, fetch=not args.no_fetch)
    if not result.github:
        print("GITHUB_TOKEN or GITHUB_REPOSITORY is not set: no pull requests or issues.")
    summary = render_summary(result)
    print(summary, end="")
    applied = result.applied
    changed = bool(applied.commits) or any(
        p.action not in ("none", "unchanged") for p in result.pulls
    )
    _append(ctx.ci.step_summary, summary)
    flag = "true" if changed or result.issues else "false"
    _append(ctx.ci.output, f"changes_present={flag}\n")
    for error in applied.errors:
        print(f"keyrotor: {error}", file=sys.stderr)
    unobserved = report_errors(result.plan)
    return 1 if applied.failed or applied.errors or unobserved else 0


def render_summary(result: ReconcileResult) -> str:
    applied = result.applied
    done = [r for r in applied.results if r.ok]
    lines = [
        "## keyrotor reconcile",
        "",
        f"{len(done)} step{'s' if len(done) != 1 else ''} done, {len(applied.failed)} failed, "
        f"{len(applied.commits)} status commit{'s' if len(applied.commits) != 1 else ''}.",
        "",
    ]
    lines += [f"- {r.action.policy}/`{r.action.user}`: {r.action.kind} done" for r in done]
    lines += [
        f"- {r.action.policy}/`{r.action.user}`: {r.action.kind} **failed**: {r.error}"
        for r in applied.failed
    ]
    lines += [
        f"- approval pull request for {p.policy}: {p.action}"
        for p in result.pulls
        if p.action != "none"
    ]
    lines += [f"- issue #{i.number} for {i.policy}/`{i.user}`: {i.action}" for i in result.issues]
    lines += ["", "### Plan before this run", "", plan_markdown(result.plan)]
    return "\n".join(lines)


def _append(path: Path | None, text: str) -> None:
    if path is not None:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(text)
