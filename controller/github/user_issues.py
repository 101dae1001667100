"""One GitHub issue per user that needs a person: `RolledBack`, `Blocked` or overdue.

keyrotor opens the issue when a user needs attention, edits it only when what it says changes
(its text is built from status, which is stable between runs, not from ages), and closes it with
a comment once the user is fine again. A hidden marker in the body finds the issue again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from controller.github.client import GitHubClient
from controller.planner import Plan, PolicyPlan, UserPlan
from controller.status import Phase

LABEL = "keyrotor"
_MARKER = re.compile(r"<!-- keyrotor:user policy=(\S+) user=(\S+) -->")


@dataclass(frozen=True)
class IssueOutcome:
    policy: str
    user: str
    action: str  # opened, updated, closed
    number: int


def attention(up: UserPlan, now: datetime) -> str | None:
    """Why a person must look at this user, or None."""
    st = up.status
    if st is None:
        return None
    if st.phase in (Phase.ROLLED_BACK, Phase.BLOCKED):
        return f"**{st.phase}**: {st.message}"
    if st.overdue_at is not None and now >= st.overdue_at:
        return (
            f"**Overdue**: active key `{st.old_key}` passed maxKeyAge on "
            f"{st.overdue_at:%Y-%m-%d %H:%M}Z (phase {st.phase}: {st.message})"
        )
    return None


def issue_body(pp: PolicyPlan, up: UserPlan, why: str) -> str:
    return (
        f"{why}\n\n"
        f"Policy `{pp.policy.name}` ({pp.policy.source.path}), IAM user `{up.user}`.\n\n"
        "keyrotor updates this issue while the situation changes and closes it once the user "
        "is fine again; `keyrotor status` shows the same from a clone of this repository.\n\n"
        f"<!-- keyrotor:user policy={pp.policy.name} user={up.user} -->\n"
    )


def sync_issues(client: GitHubClient, plan: Plan) -> list[IssueOutcome]:
    open_issues = {}
    for issue in client.list_issues(labels=[LABEL], state="open"):
        match = _MARKER.search(issue.body or "")
        if match and not issue.is_pull_request:
            open_issues[(match.group(1), match.group(2))] = issue
    outcomes: list[IssueOutcome] = []
    wanted: set[tuple[str, str]] = set()
    for pp, up in _users(plan.policies):
        why = attention(up, plan.now)
        if why is None:
            continue
        wanted.add((pp.policy.name, up.user))
        title = f"keyrotor: {up.user} ({pp.policy.name}) needs attention"
        body = issue_body(pp, up, why)
        existing = open_issues.get((pp.policy.name, up.user))
        if existing is None:
            created = client.create_issue(title=title, body=body, labels=[LABEL])
            outcomes.append(IssueOutcome(pp.policy.name, up.user, "opened", created.number))
        elif existing.body != body:
            client.update_issue(existing.number, body=body)
            outcomes.append(IssueOutcome(pp.policy.name, up.user, "updated", existing.number))
    observed = {pp.policy.name for pp in plan.policies if not pp.findings}
    for (policy, user), issue in sorted(open_issues.items()):
        if (policy, user) in wanted or policy not in observed:
            continue  # still a problem, or a policy this run could not see: leave it open
        client.create_comment(issue.number, f"`{user}` is fine again; keyrotor closes this issue.")
        client.update_issue(issue.number, state="closed")
        outcomes.append(IssueOutcome(policy, user, "closed", issue.number))
    return outcomes


def _users(policies: Iterable[PolicyPlan]) -> Iterable[tuple[PolicyPlan, UserPlan]]:
    return ((pp, up) for pp in policies for up in pp.users)
