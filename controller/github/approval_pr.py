"""One approval pull request per `approval: pull-request` policy, kept in step with the plan.

The pull request (branch `keyrotor/<policy>`) changes `approvals/<policy>.yaml`; merging it is
the approval, and the merge commit records who approved. keyrotor opens it when rotations become
due, updates it in place only when the proposed keys change (never for ages or timestamps),
closes it with a comment when nothing is due any more, and never overwrites a commit a person
pushed to the branch: it comments instead. The body is also updated when the findings a reviewer
should see change (a key became overdue, a user is blocked, drift), never for ages alone.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from controller import commits
from controller.approvals import Approval, approvals_path
from controller.approvals import dump as dump_approvals
from controller.github.client import GitHubClient, PullRequest
from controller.gitops.repo import StatusRepo
from controller.plan import Finding, FindingKind, PolicyPlan

#: Findings a reviewer of an approval should see; their set (not their wording) is in the marker.
REVIEWER_FINDINGS = frozenset({FindingKind.OVERDUE, FindingKind.BLOCKED, FindingKind.DRIFT})

BRANCH_PREFIX = "keyrotor/"
_MARKER = re.compile(
    r"<!-- keyrotor:approval policy=(\S+) digest=(\S+)(?: view=(\S+))? base=(\S+) -->"
)


@dataclass(frozen=True)
class PullOutcome:
    policy: str
    action: str  # opened, updated, unchanged, closed, held, none
    number: int | None = None
    message: str = ""


def reviewer_findings(pp: PolicyPlan) -> list[Finding]:
    return [f for f in pp.all_findings if f.kind in REVIEWER_FINDINGS]


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def proposal_digest(proposals: Mapping[str, Approval]) -> str:
    """Identifies the proposed keys: a change means a new commit on the branch."""
    return _sha(";".join(f"{u}:{a.old_key}:{a.digest}" for u, a in sorted(proposals.items())))


def view_digest(findings: list[Finding]) -> str:
    """Identifies which users have which kind of finding, by reason and not by wording, so ages
    and times never change it: a change means the body is rewritten."""
    return _sha(";".join(sorted({f"{f.user}:{f.kind}:{f.reason}" for f in findings})))


def marker(body: str | None) -> tuple[str | None, str | None]:
    """(proposal digest, view digest) from a pull request body keyrotor wrote."""
    match = _MARKER.search(body or "")
    return (match.group(2), match.group(3)) if match else (None, None)


def pr_title(policy: str, proposals: Mapping[str, Approval]) -> str:
    users = sorted(proposals)
    who = users[0] if len(users) == 1 else f"{len(users)} users"
    return f"keyrotor({policy}): approve key rotation for {who}"


def pr_body(
    pp: PolicyPlan, proposals: Mapping[str, Approval], digest: str, view: str, base: str
) -> str:
    """Summary first, the details folded, and what a merge sets in motion."""
    policy = pp.policy
    count = len(proposals)
    lines = [
        f"**Rotate {count} access key{'s' if count != 1 else ''} of policy `{policy.name}`.** "
        "Merging this pull request approves it.",
        "",
        "| user | key to rotate | keys when planned |",
        "|---|---|---|",
    ]
    lines += [f"| `{u}` | `{a.old_key}` | `{a.digest}` |" for u, a in sorted(proposals.items())]
    findings = reviewer_findings(pp)
    if findings:
        lines += ["", "**Findings:**", ""]
        lines += [f"- **{f.kind}** `{f.user}`: {f.message}" for f in findings]
    details = [
        f"- `{up.user}`: {up.status.message if up.status else ''}"
        for up in pp.users
        if up.user in proposals
    ]
    lines += [
        "",
        "<details><summary>Plan details</summary>",
        "",
        f"Policy `{policy.name}` ({policy.source.path}): maxKeyAge "
        f"{policy.max_key_age.days}d, targets: "
        + ", ".join(f"`{t.type} {t.name_template}`" for t in policy.targets),
        "",
        *details,
        "",
        "</details>",
        "",
        "### What happens when you merge",
        "",
        "1. The next `keyrotor reconcile` creates a second key for each user above, confirms it "
        "works and writes it to every target.",
        f"2. The old key is deactivated no sooner than {policy.deactivate_after.days}d later, and "
        "only once the application uses the new key and every check passes.",
        f"3. After {policy.delete_after.days}d more the old key is deleted; this approval is "
        "removed by that status commit.",
        "",
        "The approval is for exactly the keys listed. If they change before the merge takes "
        "effect, keyrotor refuses it as stale and opens a fresh pull request.",
        "",
        f"<!-- keyrotor:approval policy={policy.name} digest={digest} view={view} base={base} -->",
    ]
    return "\n".join(lines) + "\n"


def ensure_approval_pr(repo: StatusRepo, client: GitHubClient, pp: PolicyPlan) -> PullOutcome:
    policy = pp.policy.name
    branch = BRANCH_PREFIX + policy
    proposals = {u.user: u.proposal for u in pp.users if u.proposal is not None}
    existing = client.list_pulls(head=branch, state="open")
    pr = existing[0] if existing else None
    if not proposals:
        if pr is None:
            return PullOutcome(policy, "none")
        client.create_comment(
            pr.number,
            "Nothing in this policy needs approval any more (the keys were rotated, approved "
            "elsewhere or changed), so keyrotor closes this pull request.",
        )
        client.update_pull(pr.number, state="closed")
        return PullOutcome(policy, "closed", pr.number)
    digest, view = proposal_digest(proposals), view_digest(reviewer_findings(pp))
    title = pr_title(policy, proposals)
    if pr is not None:
        shown_digest, shown_view = marker(pr.body)
        if shown_digest == digest:
            if shown_view == view:
                return PullOutcome(policy, "unchanged", pr.number)
            base = _base_of(pr.body) or repo.head()
            client.update_pull(pr.number, body=pr_body(pp, proposals, digest, view, base))
            return PullOutcome(policy, "updated", pr.number, "the findings changed")
    base = repo.head()
    current = repo.fetch_branch(branch)
    if pr is not None and current is not None:
        held = _held_by_a_person(repo, client, pr, policy, (base, current), digest)
        if held is not None:
            return held
    files = {approvals_path(policy): dump_approvals(policy, {**pp.approvals, **proposals}) or ""}
    message = commits.propose_commit(
        policy, [(u, a.old_key, a.digest) for u, a in proposals.items()]
    )
    sha = repo.commit_on(base, files, message.subject, message.body, message.trailers)
    repo.push_branch(sha, branch, expected=current)
    body = pr_body(pp, proposals, digest, view, base)
    if pr is not None:
        client.update_pull(pr.number, title=title, body=body)
        return PullOutcome(policy, "updated", pr.number)
    _, base_branch = repo.base_branch()
    created = client.create_pull(title=title, head=branch, base=base_branch, body=body)
    return PullOutcome(policy, "opened", created.number)


def _base_of(body: str | None) -> str | None:
    match = _MARKER.search(body or "")
    return match.group(4) if match else None


def _held_by_a_person(
    repo: StatusRepo,
    client: GitHubClient,
    pr: PullRequest,
    policy: str,
    span: tuple[str, str],
    digest: str,
) -> PullOutcome | None:
    """A branch with a person's commit is theirs now: say what changed instead of pushing."""
    me = repo.own_email()
    if all(author == me for author in repo.authors_between(*span)):
        return None
    note = f"<!-- keyrotor:held digest={digest} -->"
    if not any(note in c.body for c in client.list_comments(pr.number)):
        client.create_comment(
            pr.number,
            "The plan changed, but this branch has commits that keyrotor did not make, so it "
            "leaves the branch alone. Close this pull request to get a fresh one, or update "
            f"`approvals/` yourself.\n\n{note}",
        )
    return PullOutcome(policy, "held", pr.number, "the branch has a person's commits")
