"""How a plan reads: text like `terraform plan`, Markdown for pull requests, JSON for machines.

Plan data (`controller.plan`) stays apart from its rendering; the English of each reason comes
from `controller.messages`. Every table here is keyed by an enum and complete (a test renders
every kind through every format). Plans name key ids only; nothing here ever sees a secret.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from controller.messages import plural
from controller.plan import ActionKind, FindingKind, Plan, UserPlan
from controller.reasons import Facts, FactValue
from controller.timefmt import to_iso

#: The JSON plan's format; 2 made `reason` a stable code and added `message` and `facts`.
FORMAT_VERSION = "2"

SIGILS: dict[ActionKind, str] = {
    ActionKind.CREATE_KEY: "+",
    ActionKind.STORE_KEY: "~",
    ActionKind.DELETE_ORPHAN: "-",
    ActionKind.DEACTIVATE_KEY: "~",
    ActionKind.DELETE_KEY: "-",
    ActionKind.REACTIVATE_KEY: "~",
    ActionKind.ADOPT_KEY: "~",
    ActionKind.RECORD_TARGETS: "~",
}
MARKS: dict[FindingKind, str] = {
    FindingKind.OVERDUE: "!",
    FindingKind.BLOCKED: "x",
    FindingKind.AWAITING_APPROVAL: "?",
    FindingKind.WAITING: ".",
    FindingKind.DRIFT: "*",
    FindingKind.REFUSED: "x",
    FindingKind.EXCLUDED: "-",
    FindingKind.HELD: "=",
}


def summary(plan: Plan) -> str:
    """`Plan: 1 key to create, 0 to deactivate, 0 to delete; 1 overdue, 0 blocked`."""
    repairs = plan.count(ActionKind.STORE_KEY) + plan.count(ActionKind.DELETE_ORPHAN)
    rollbacks = plan.count(ActionKind.REACTIVATE_KEY)
    adoptions = plan.count(ActionKind.ADOPT_KEY)
    approvals = plan.count(FindingKind.AWAITING_APPROVAL)
    return (
        f"Plan: {plural(plan.count(ActionKind.CREATE_KEY), 'key')} to create, "
        f"{plan.count(ActionKind.DEACTIVATE_KEY)} to deactivate, "
        f"{plan.count(ActionKind.DELETE_KEY)} to delete"
        + (f", {repairs} to repair" if repairs else "")
        + (f", {rollbacks} to roll back" if rollbacks else "")
        + (f", {adoptions} to adopt" if adoptions else "")
        + f"; {plan.count(FindingKind.OVERDUE)} overdue"
        + f", {plan.count(FindingKind.BLOCKED)} blocked"
        + (f", {approvals} awaiting approval" if approvals else "")
        + "".join(
            f", {count} {kind}"
            for kind in (FindingKind.HELD, FindingKind.EXCLUDED, FindingKind.REFUSED)
            if (count := plan.count(kind))
        )
    )


def plan_text(plan: Plan) -> str:
    lines = [f"keyrotor plan at {plan.now:%Y-%m-%d %H:%M}Z", ""]
    for pp in plan.policies:
        policy = pp.policy
        lines.append(f"Policy {policy.name} ({policy.source.path}, approval: {policy.approval})")
        if not pp.users and not pp.findings:
            lines.append("    no users selected")
        for finding in pp.findings:
            lines.append(f"  {MARKS[finding.kind]} {finding.kind}: {finding.message}")
        for up in pp.users:
            lines += ["  " + line for line in user_lines(up)]
        lines.append("")
    lines.append(summary(plan))
    return "\n".join(lines) + "\n"


def user_lines(up: UserPlan) -> list[str]:
    """One user's part of the text plan: its phase, then its actions and findings, indented."""
    lines = [f"{up.user}: {up.phase or 'unmanaged'}"]
    for action in up.actions:
        lines.append(f"  {SIGILS[action.kind]} {action.kind} {action.key or '(new key)'}")
        lines.append(f"      {action.message}")
    for finding in up.findings:
        lines.append(f"  {MARKS[finding.kind]} {finding.kind}: {finding.message}")
    return lines


def plan_markdown(plan: Plan) -> str:
    lines = [f"**{summary(plan)}**", ""]
    actions = plan.actions
    if actions:
        lines += ["| policy | user | action | key | reason |", "|---|---|---|---|---|"]
        lines += [
            f"| {a.policy} | `{a.user}` | {SIGILS[a.kind]} {a.kind} | `{a.key or 'new'}` | "
            f"{_md(a.message)} |"
            for a in actions
        ]
        lines.append("")
    findings = plan.findings
    if findings:
        lines += ["<details><summary>Findings</summary>", ""]
        lines += [
            f"- {MARKS[f.kind]} **{f.kind}** `{f.policy}/{f.user}`: {_md(f.message)}"
            for f in findings
        ]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def plan_document(plan: Plan) -> dict[str, Any]:
    """The JSON plan (see the README): reasons as codes, English as `message`, facts as data."""
    return {
        "format_version": FORMAT_VERSION,
        "now": to_iso(plan.now),
        "summary": summary(plan),
        "actions": [
            {
                "policy": a.policy,
                "account": pp.account_id or None,
                "user": a.user,
                "action": str(a.kind),
                "key": a.key,
                "replaces": a.replaces,
                "reason": str(a.reason),
                "message": a.message,
                "facts": facts_document(a.facts),
            }
            for pp in plan.policies
            for a in pp.actions
        ],
        "findings": [
            {
                "policy": f.policy,
                "account": pp.account_id or None,
                "user": f.user,
                "kind": str(f.kind),
                "reason": str(f.reason),
                "message": f.message,
                "facts": facts_document(f.facts),
            }
            for pp in plan.policies
            for f in pp.all_findings
        ],
    }


def plan_json(plan: Plan) -> str:
    return json.dumps(plan_document(plan), indent=2) + "\n"


def facts_document(facts: Facts) -> dict[str, Any]:
    """Facts as JSON values: times as ISO-8601 UTC, durations in seconds, lists as lists."""
    return {name: _fact(value) for name, value in sorted(facts.items())}


def _fact(value: FactValue) -> Any:
    if isinstance(value, datetime):
        return to_iso(value)
    if isinstance(value, timedelta):
        return int(value.total_seconds())
    if isinstance(value, tuple):
        return list(value)
    return value


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
