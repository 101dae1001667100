"""One GitHub issue per user that needs a person: `RolledBack`, `Blocked` or overdue.

keyrotor opens the issue when a user needs attention, edits it only when what it says changes
(its text is built from the status this run wrote, which is stable between runs, not from
ages), and closes it with a comment once the user is fine again. A hidden marker in the body
finds the issue again. Issues are built from status written *after* apply, so a rollback or a
user held for a person in this run gets its issue in the same run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from controller.github.client import GitHubClient
from controller.status import Phase, PolicyStatus, UserStatus

LABEL = "keyrotor"
_MARKER = re.compile(r"<!-- keyrotor:user policy=(\S+)(?: account=(\S+))? user=(\S+) -->")


@dataclass(frozen=True)
class IssueOutcome:
    policy: str
    user: str
    account: str
    action: str  # opened, updated, closed
    number: int


def attention(st: UserStatus, now: datetime) -> str | None:
    """Why a person must look at this user, or None."""
    if st.phase in (Phase.ROLLED_BACK, Phase.BLOCKED):
        return f"**{st.phase}**: {st.message}"
    if st.overdue(now):
        return (
            f"**Overdue**: active key `{st.old_key}` passed maxKeyAge on "
            f"{st.overdue_at:%Y-%m-%d %H:%M}Z (phase {st.phase}: {st.message})"
        )
    return None


def issue_body(policy: str, source: str, account: str, user: str, why: str) -> str:
    return (
        f"{why}\n\n"
        f"Policy `{policy}` ({source}), IAM user `{user}` in account `{account}`.\n\n"
        "keyrotor updates this issue while the situation changes and closes it once the user "
        "is fine again; `keyrotor status` shows the same from a clone of this repository.\n\n"
        f"<!-- keyrotor:user policy={policy} account={account} user={user} -->\n"
    )


def sync_issues(
    client: GitHubClient,
    statuses: Mapping[tuple[str, str], PolicyStatus],
    sources: Mapping[str, str],
    now: datetime,
) -> list[IssueOutcome]:
    """Open, update and close issues so that they match `statuses` (per policy and account, of
    those this run observed: an issue of a policy or account it could not see stays open)."""
    open_issues = {}
    for issue in client.list_issues(labels=[LABEL], state="open"):
        match = _MARKER.search(issue.body or "")
        if match and not issue.is_pull_request:
            open_issues[(match.group(1), match.group(2) or "", match.group(3))] = issue
    outcomes: list[IssueOutcome] = []
    wanted: set[tuple[str, str, str]] = set()
    for (policy, account), ps in sorted(statuses.items()):
        for user, st in sorted(ps.users.items()):
            why = attention(st, now)
            if why is None:
                continue
            wanted.add((policy, account, user))
            title = f"keyrotor: {user} ({policy}, {account}) needs attention"
            body = issue_body(policy, sources.get(policy, "manifests/"), account, user, why)
            existing = open_issues.get((policy, account, user))
            if existing is None:
                created = client.create_issue(title=title, body=body, labels=[LABEL])
                outcomes.append(IssueOutcome(policy, user, account, "opened", created.number))
            elif existing.body != body:
                client.update_issue(existing.number, body=body)
                outcomes.append(IssueOutcome(policy, user, account, "updated", existing.number))
    seen = set(statuses)
    for (policy, account, user), issue in sorted(open_issues.items()):
        if (policy, account, user) in wanted:
            continue  # still a problem
        if (policy, account) not in seen and not (
            not account and any(p == policy for p, _ in seen)
        ):
            continue  # a policy or account this run could not see: leave it open
        client.create_comment(issue.number, f"`{user}` is fine again; keyrotor closes this issue.")
        client.update_issue(issue.number, state="closed")
        outcomes.append(IssueOutcome(policy, user, account, "closed", issue.number))
    return outcomes
