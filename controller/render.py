"""How a plan reads: text like `terraform plan`, Markdown for pull requests, JSON for machines.

Plans name key ids only; nothing rendered here ever sees a secret.
"""

from __future__ import annotations

import json

from controller.planner import ActionKind, FindingKind, Plan

_SIGILS = {
    ActionKind.CREATE_KEY: "+",
    ActionKind.STORE_KEY: "~",
    ActionKind.DELETE_ORPHAN: "-",
    ActionKind.DEACTIVATE_KEY: "~",
    ActionKind.DELETE_KEY: "-",
}
_MARKS = {
    FindingKind.OVERDUE: "!",
    FindingKind.BLOCKED: "x",
    FindingKind.AWAITING_APPROVAL: "?",
    FindingKind.WAITING: ".",
    FindingKind.DRIFT: "*",
}


def plan_text(plan: Plan) -> str:
    lines = [f"keyrotor plan at {plan.now:%Y-%m-%d %H:%M}Z", ""]
    for pp in plan.policies:
        policy = pp.policy
        lines.append(f"Policy {policy.name} ({policy.source.path}, approval: {policy.approval})")
        if not pp.users and not pp.findings:
            lines.append("    no users selected")
        for finding in pp.findings:
            lines.append(f"  {_MARKS[finding.kind]} {finding.kind}: {finding.message}")
        for up in pp.users:
            phase = up.phase or "unmanaged"
            lines.append(f"  {up.user}: {phase}")
            for action in up.actions:
                key = action.key or "(new key)"
                lines.append(f"    {_SIGILS[action.kind]} {action.kind} {key}")
                lines.append(f"        {action.reason}")
            for finding in up.findings:
                lines.append(f"    {_MARKS[finding.kind]} {finding.kind}: {finding.message}")
        lines.append("")
    lines.append(plan.summary())
    return "\n".join(lines) + "\n"


def plan_markdown(plan: Plan) -> str:
    lines = [f"**{plan.summary()}**", ""]
    actions = plan.actions
    if actions:
        lines += ["| policy | user | action | key | reason |", "|---|---|---|---|---|"]
        lines += [
            f"| {a.policy} | `{a.user}` | {a.kind} | `{a.key or 'new'}` | {_md(a.reason)} |"
            for a in actions
        ]
        lines.append("")
    findings = plan.findings
    if findings:
        lines += ["<details><summary>Findings</summary>", ""]
        lines += [f"- **{f.kind}** `{f.policy}/{f.user}`: {_md(f.message)}" for f in findings]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def plan_json(plan: Plan) -> str:
    return json.dumps(plan.to_dict(), indent=2) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
