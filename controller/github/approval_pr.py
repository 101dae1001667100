"""One approval pull request per `approval: pull-request` policy, kept in step with the plan.

The pull request (branch `keyrotor/<policy>`) changes `approvals/<policy>.yaml`; a person merging
or approving it is the approval, as GitHub's API shows it (controller/github/approval_verify.py).
keyrotor opens it when rotations become due, updates it in place only when the proposed keys
change (never for ages or timestamps), and closes it with a comment when nothing is due any more.
The body is also updated when the findings a reviewer should see change (a key became overdue, a
user is blocked, drift), never for ages alone.

Each proposal is stamped with its own id (the run that proposes it) and the manifest's blob id:
every entry of the file, including those carried over from the approvals file in use, so each
proposal's file is unique. After every push keyrotor attests the commit it pushed (a COMMENT
review on it). A head keyrotor did not attest is a commit someone else pushed: keyrotor never
overwrites it, and comments instead (closing the pull request gets a fresh one).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from controller import commits
from controller.approvals import Approval, approvals_path
from controller.approvals import dump as dump_approvals
from controller.github.approval_verify import approval_branch, attest, attested_proposal
from controller.github.client import GitHubClient, PullRequest
from controller.gitops.repo import StatusRepo
from controller.plan import Finding, FindingKind, PolicyPlan

#: Findings a reviewer of an approval should see; their set (not their wording) is in the marker.
REVIEWER_FINDINGS = frozenset({FindingKind.OVERDUE, FindingKind.BLOCKED, FindingKind.DRIFT})

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
    """Identifies the proposed keys (new and carried over): a change means a new commit on the
    branch. Proposal ids and manifests are not in it: they are stamped on each new commit."""
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
        "1. The next `keyrotor reconcile` carries on the rotation of each user above: it creates "
        "a second key (unless one exists already), confirms it works and writes it to every "
        "target.",
        f"2. The old key is deactivated no sooner than {policy.deactivate_after.days}d later, and "
        "only once the application uses the new key and every check passes.",
        f"3. After {policy.delete_after.days}d more the old key is deleted; once every old key "
        "in the file is, the status commit removes the file.",
        "",
        "The approval is for exactly the keys listed, in exactly the commit keyrotor pushed. If "
        "the keys change before the merge takes effect, keyrotor refuses it as stale and opens a "
        "fresh pull request. A commit anyone else pushes to this branch voids the approval: close "
        "the pull request instead, and keyrotor opens a fresh one.",
        "",
        f"<!-- keyrotor:approval policy={policy.name} digest={digest} view={view} base={base} -->",
    ]
    return "\n".join(lines) + "\n"


def ensure_approval_pr(
    repo: StatusRepo, client: GitHubClient, pp: PolicyPlan, *, proposal: str, bot_login: str
) -> PullOutcome:
    """Open, update or close the policy's approval pull request. `proposal` is this proposal's
    id (the run's id), `bot_login` the login keyrotor's token acts as."""
    policy = pp.policy.name
    branch = approval_branch(policy)
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
    # The approvals in use are carried over: the merged file replaces the whole file.
    proposed = {**pp.approvals, **proposals}
    digest, view = proposal_digest(proposed), view_digest(reviewer_findings(pp))
    title = pr_title(policy, proposals)
    if pr is not None:
        held = _held_by_a_person(client, policy, pr, pr.head_sha, digest, bot_login)
        if held is not None:
            return held
        shown_digest, shown_view = marker(pr.body)
        if shown_digest == digest:
            if shown_view == view:
                return PullOutcome(policy, "unchanged", pr.number)
            base = _base_of(pr.body) or repo.head()
            client.update_pull(pr.number, body=pr_body(pp, proposals, digest, view, base))
            return PullOutcome(policy, "updated", pr.number, "the findings changed")
    base = repo.head()
    current = repo.fetch_branch(branch)
    if pr is not None and current not in (None, pr.head_sha):
        held = _held_by_a_person(client, policy, pr, current or "", digest, bot_login)
        if held is not None:
            return held
    stamped = {
        user: replace(a, proposal=proposal, manifest=pp.policy.generation)
        for user, a in proposed.items()
    }
    files = {approvals_path(policy): dump_approvals(policy, stamped) or ""}
    message = commits.propose_commit(
        policy, [(u, a.old_key, a.digest) for u, a in proposals.items()]
    )
    sha = repo.commit_on(base, files, message.subject, message.body, message.trailers)
    repo.push_branch(sha, branch, expected=current)
    body = pr_body(pp, proposals, digest, view, base)
    if pr is not None:
        attest(client, pr.number, head_sha=sha, proposal=proposal)
        client.update_pull(pr.number, title=title, body=body)
        return PullOutcome(policy, "updated", pr.number)
    _, base_branch = repo.base_branch()
    created = client.create_pull(title=title, head=branch, base=base_branch, body=body)
    attest(client, created.number, head_sha=sha, proposal=proposal)
    return PullOutcome(policy, "opened", created.number)


def _base_of(body: str | None) -> str | None:
    match = _MARKER.search(body or "")
    return match.group(4) if match else None


def _held_by_a_person(
    client: GitHubClient, policy: str, pr: PullRequest, head: str, digest: str, bot_login: str
) -> PullOutcome | None:
    """A branch whose `head` keyrotor did not attest has someone else's commit: it is theirs now.
    Say so once per proposal instead of pushing (its approval would be refused anyway)."""
    reviews = client.list_reviews(pr.number)
    if attested_proposal(reviews, bot_login=bot_login, head_sha=head) is not None:
        return None
    note = f"<!-- keyrotor:held digest={digest} -->"
    if not any(note in c.body for c in client.list_comments(pr.number)):
        client.create_comment(
            pr.number,
            f"The head of this branch, {head[:12]}, is a commit keyrotor did not push, so "
            "keyrotor leaves the branch alone, and merging this pull request would approve "
            "nothing. Close this pull request to get a fresh one.\n\n"
            f"{note}",
        )
    return PullOutcome(policy, "held", pr.number, "the branch has someone else's commit")
