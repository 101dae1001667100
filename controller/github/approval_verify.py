"""Is the approvals file on main an approval? Only if GitHub shows a person approved keyrotor's.

An approval used to be just a file: anyone who could push `approvals/<policy>.yaml` to main
approved a rotation, and the history credited it to a commit author anyone can set. Now the file
on main counts only when GitHub's API shows that it is the head of keyrotor's own approval pull
request, merged, and (for `approval: pull-request`) approved or merged by a person. `verify`
decides this for one policy; it returns a `VerifiedApproval` (who approved, in which pull request)
or a `Refusal` whose `reason` (an `ApprovalRefusal`) says why not. A refused file is never an
approval; the caller proposes afresh. `refusal_finding` is how the plan shows a refusal (its
English is in controller/messages.py, like every other reason's).

What keyrotor must do when it proposes (the other half of the contract):

- push a commit that changes only `approvals/<policy>.yaml` to branch `keyrotor/<policy>`, open
  the pull request with the bot's token, and then `attest()` the sha it pushed (a COMMENT review
  on that very commit) every time it pushes;
- stamp every entry of the file with the proposal id (the run that proposed it) and the
  manifest's blob id (`controller.approvals`), so each proposal's file, and so its blob id, is
  unique, and a fresh proposal always differs from a copy of an older one.

## The checks, and the GitHub facts that make each one sound

Nothing here trusts git metadata: author and committer names are whatever the committer typed.
Blob ids are hashes of content, so equal blob ids mean equal files.

1. **The file is the head of a merged pull request from `keyrotor/<policy>` into the base
   branch.** The blob id of the file on main must equal the blob id of the file at the head
   commit of such a pull request (`repos/get-content` at `head.sha`), and that pull request must
   be merged. GitHub keeps a pull request's head commit (under `refs/pull/N/head`) after the
   branch is deleted. The `head` filter names this repository's owner, so forks' branches of the
   same name do not count. A file pushed straight to main matches no merged pull request
   (`no-merged-pull-request`, `content-differs-from-pull-request`), and a copy of an open one's
   file is `pull-request-not-merged` until a person merges it.
2. **keyrotor opened it**: the pull request's `user.login` is the bot's login. GitHub sets it to
   the account of the token that created the pull request, and nobody can change it.
3. **Its head is a commit keyrotor pushed**: the bot submitted a COMMENT review whose
   `commit_id` is the merged head. GitHub records a review's `user` from the token and its
   `commit_id` when it is submitted; neither can be edited afterwards (a review's body can be).
   keyrotor attests only a sha it has just pushed itself. A person who pushes a commit onto the
   branch, or presses "Update branch", makes a head keyrotor never attested: such a pull request
   is refused (`head-not-keyrotors`) even when merged. This is deliberate: an approval approves
   exactly what keyrotor proposed. To change a proposal, close the pull request; keyrotor opens a
   fresh one. (A marker in the pull request's body could not carry this: anyone with write
   access may edit a body, a title or a comment, whoever wrote it.)
4. **It changes only `approvals/<policy>.yaml`** (`pulls/list-files`, which GitHub computes from
   the merge base of base and head), so no other change reaches main under cover of an
   approval (`pull-request-changes-other-files`).
5. **It is the newest merged keyrotor pull request of the policy.** Once a newer proposal was
   merged, a copy of an older one pushed back to main is refused
   (`superseded-by-a-newer-pull-request`). A copy of the newest one after its rotation has run
   names keys IAM no longer shows, so the planner refuses it as stale (the key digest).
6. **A person approved it** (policies with `approval: pull-request`): its `merged_by`, or the
   author of an APPROVED review on the merged head that is still that reviewer's latest decisive
   review (not dismissed or followed by a request for changes), is an account that is neither
   the bot's login nor of GitHub's type `Bot`. GitHub sets `merged_by` to the account that
   merged (the merge button or API; for auto-merge the account that enabled it; for a head
   pushed into the base by hand, the pusher). GitHub refuses an author's approval of their own
   pull request, and bots never count, even where GitHub lets Actions approve pull requests
   (`no-review-by-a-person`). The logins are recorded, never a commit author.
7. **Every entry carries the proposal id keyrotor attested** for that head
   (`proposal-differs-from-pull-request`) and **the manifest's current blob id**: editing the
   policy after the approval invalidates it (`manifest-changed-since-approval`). If several
   policies share a manifest file, editing any of them invalidates all their approvals.
8. **Entries written before verification existed** (no proposal id or manifest) are never
   approvals (`entry-without-proposal`), and without GitHub access nothing is
   (`no-github-access`).

## What this does not cover

- **The bot's identity must be keyrotor's alone.** The default `GITHUB_TOKEN` acts as
  `github-actions[bot]` in every workflow of the repository, including workflows on branches
  that anyone with push access creates, and any of them may open a pull request or submit a
  review under that name. With it, checks 2 and 3 mean "some workflow of this repository",
  and only the person of check 6 and the file checks remain. Give keyrotor a GitHub App's
  token (`KEYROTOR_GITHUB_TOKEN`) and set `KEYROTOR_BOT_LOGIN` to the App's login
  (`<app-slug>[bot]`), so that only keyrotor holds the identity.
- **One person suffices.** Whether that person may approve alone, or must be a code owner of
  `approvals/`, is for GitHub's branch protection (required reviews, CODEOWNERS).
- **Withdrawing a merged approval**: deleting the file from main holds only until someone
  pushes the same file back, which verifies again as long as it is the newest merged proposal
  and the keys are unchanged. To withdraw, edit the manifest (any change invalidates the
  approval) or set `suspend: true`.
- **GitHub errors** (`GitHubError`) propagate: an unreachable or rate-limited GitHub is not a
  refusal. The caller treats the approval as unverified for this run, and proposes nothing new.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from controller import commits, messages, reasons
from controller.approvals import Approval, approvals_path
from controller.github.client import GitHubClient, PullRequest, Review
from controller.plan import Finding, FindingKind
from controller.reasons import ApprovalRefusal, Facts

#: Where keyrotor proposes approvals: one branch per policy.
BRANCH_PREFIX = "keyrotor/"
#: The login the default GITHUB_TOKEN acts as in GitHub Actions.
DEFAULT_BOT_LOGIN = "github-actions[bot]"
#: The environment variable naming the login of keyrotor's token (a GitHub App's `<slug>[bot]`).
BOT_LOGIN_VARIABLE = "KEYROTOR_BOT_LOGIN"

#: Why a file is refused (`controller.reasons.ApprovalRefusal`; its English is in messages).
Reason = ApprovalRefusal

_ATTESTATION = re.compile(r"<!-- keyrotor:pushed proposal=(\S+) -->")
#: Review states that decide a reviewer's verdict; COMMENTED and PENDING do not.
_DECISIVE = frozenset({"APPROVED", "CHANGES_REQUESTED", "DISMISSED"})
#: How a proposal's file may appear in its pull request's changed files.
_PROPOSED = frozenset({"added", "modified"})


@dataclass(frozen=True)
class Refusal:
    """The file on main is not an approval, and the facts that show why."""

    policy: str
    reason: Reason
    base: str = "main"
    #: The pull request the file matched (or, for content-differs, the newest merged one).
    pull: int | None = None
    #: For superseded: the newer merged keyrotor pull request.
    newer_pull: int | None = None
    #: The head the pull request was merged at.
    head_sha: str | None = None
    #: For changes-other-files: the other files it changes.
    files: tuple[str, ...] = ()
    #: For entry-without-proposal, proposal-differs and manifest-changed: the users concerned.
    users: tuple[str, ...] = ()
    #: For not-opened-by-keyrotor: who opened it.
    author: str | None = None


@dataclass(frozen=True)
class VerifiedApproval:
    """The file on main is the head of keyrotor's merged pull request `pull`."""

    policy: str
    pull: int
    html_url: str
    head_sha: str
    proposal: str
    #: People (GitHub logins) who merged it or approved its head: the merger first, then the
    #: approving reviewers by login. Empty only when no review was required.
    approvers: tuple[str, ...]
    merged_by: str | None


Verdict = VerifiedApproval | Refusal


def approval_branch(policy: str) -> str:
    return BRANCH_PREFIX + policy


def bot_login(environ: Mapping[str, str]) -> str:
    """The login keyrotor's token acts as: `KEYROTOR_BOT_LOGIN`, else `github-actions[bot]`.

    GitHub offers no cheap way to ask: `GET /user` refuses installation tokens, such as
    GitHub Actions' own.
    """
    return environ.get(BOT_LOGIN_VARIABLE, "").strip() or DEFAULT_BOT_LOGIN


def attestation_body(head_sha: str, proposal: str) -> str:
    return (
        f"keyrotor pushed {head_sha} for proposal {proposal}. Merging this pull request approves "
        "exactly this commit; a commit anyone else pushes to the branch voids the approval.\n\n"
        f"<!-- keyrotor:pushed proposal={proposal} -->"
    )


def attest(client: GitHubClient, number: int, *, head_sha: str, proposal: str) -> Review:
    """Record, as the bot, that keyrotor pushed `head_sha` for `proposal` to pull request
    `number`. Call it right after every push to the approval branch, with the sha pushed."""
    body = attestation_body(head_sha, proposal)
    return client.create_review(number, event="COMMENT", body=body, commit_id=head_sha)


def attested_proposal(reviews: Iterable[Review], *, bot_login: str, head_sha: str) -> str | None:
    """The proposal id keyrotor attested for `head_sha`, None if it never attested that commit."""
    found = None
    for review in reviews:
        match = _ATTESTATION.search(review.body)
        if review.login == bot_login and review.commit_id == head_sha and match:
            found = match.group(1)
    return found


def approvers(
    pr: PullRequest, reviews: Sequence[Review], *, bot_login: str, head_sha: str
) -> tuple[str, ...]:
    """People who merged `pr` or whose latest decisive review approves `head_sha`."""

    def person(login: str | None, bot: bool) -> bool:
        return login is not None and not bot and login != bot_login

    latest: dict[str, Review] = {}
    for review in reviews:  # oldest first
        if review.login is not None and review.state in _DECISIVE:
            latest[review.login] = review
    approving = sorted(
        login
        for login, review in latest.items()
        if review.state == "APPROVED" and review.commit_id == head_sha and person(login, review.bot)
    )
    merger = [pr.merged_by] if pr.merged_by and person(pr.merged_by, pr.merged_by_bot) else []
    return tuple(dict.fromkeys(merger + approving))


def verify(
    client: GitHubClient,
    *,
    policy: str,
    approvals: Mapping[str, Approval],
    approvals_blob: str,
    manifest_blob: str,
    bot_login: str,
    require_review: bool,
    base: str,
) -> Verdict:
    """Whether `approvals/<policy>.yaml` on `base` is an approval.

    `approvals` are the entries of that file, `approvals_blob` its Git blob id, and
    `manifest_blob` the blob id of the policy's manifest file, all as of the commit keyrotor acts
    on. `require_review` is true for `approval: pull-request` policies. Raises `GitHubError` when
    GitHub cannot be asked (see the module's docstring).
    """
    path = approvals_path(policy)
    legacy = _users(approvals, lambda a: a.proposal is None or a.manifest is None)
    if legacy:
        return Refusal(policy, Reason.ENTRY_WITHOUT_PROPOSAL, base, users=legacy)

    pulls = client.list_pulls(head=approval_branch(policy), state="all", base=base)
    merged = sorted(
        (p for p in pulls if p.merged), key=lambda p: (p.merged_at or "", p.number), reverse=True
    )
    match = next((p for p in merged if _blob(client, path, p) == approvals_blob), None)
    if match is None:
        unmerged = sorted((p for p in pulls if not p.merged), key=lambda p: -p.number)
        copied = next((p for p in unmerged if _blob(client, path, p) == approvals_blob), None)
        if copied is not None:
            return Refusal(policy, Reason.NOT_MERGED, base, pull=copied.number)
        if merged:
            return Refusal(policy, Reason.CONTENT_DIFFERS, base, pull=merged[0].number)
        return Refusal(policy, Reason.NO_MERGED_PULL_REQUEST, base)

    def refuse(
        reason: Reason,
        *,
        newer_pull: int | None = None,
        files: tuple[str, ...] = (),
        users: tuple[str, ...] = (),
        author: str | None = None,
    ) -> Refusal:
        assert match is not None
        return Refusal(
            policy, reason, base, match.number, newer_pull, match.head_sha, files, users, author
        )

    if match.author != bot_login:
        return refuse(Reason.NOT_OPENED_BY_KEYROTOR, author=match.author)
    newest = next(p for p in merged if p.author == bot_login)
    if newest.number != match.number:
        return refuse(Reason.SUPERSEDED, newer_pull=newest.number)

    pr = client.get_pull(match.number)  # only a single pull request names its merger
    reviews = client.list_reviews(pr.number)
    proposal = attested_proposal(reviews, bot_login=bot_login, head_sha=pr.head_sha)
    if proposal is None:
        return refuse(Reason.HEAD_NOT_KEYROTORS)
    files = client.list_pull_files(pr.number)
    if [(f.filename, f.status in _PROPOSED) for f in files] != [(path, True)]:
        others = tuple(sorted({f.filename for f in files} - {path})) or (path,)
        return refuse(Reason.CHANGES_OTHER_FILES, files=others)
    differs = _users(approvals, lambda a: a.proposal != proposal)
    if differs:
        return refuse(Reason.PROPOSAL_DIFFERS, users=differs)
    people = approvers(pr, reviews, bot_login=bot_login, head_sha=pr.head_sha)
    if require_review and not people:
        return refuse(Reason.NO_REVIEW_BY_A_PERSON)
    changed = _users(approvals, lambda a: a.manifest != manifest_blob)
    if changed:
        return refuse(Reason.MANIFEST_CHANGED, users=changed)
    return VerifiedApproval(
        policy, pr.number, pr.html_url, pr.head_sha, proposal, people, pr.merged_by
    )


def _blob(client: GitHubClient, path: str, pr: PullRequest) -> str | None:
    return client.get_content_blob_sha(path, pr.head_sha)


def _users(approvals: Mapping[str, Approval], test: Callable[[Approval], bool]) -> tuple[str, ...]:
    return tuple(sorted(user for user, a in approvals.items() if test(a)))


# --- as the plan and people see it --------------------------------------------------------------


def refusal_facts(refusal: Refusal) -> Facts:
    """A refusal's facts, as a finding carries them (`Reason.APPROVAL_REFUSED`)."""
    return {
        "refusal": str(refusal.reason),
        "policy": refusal.policy,
        "base": refusal.base,
        "branch": approval_branch(refusal.policy),
        "pull": refusal.pull,
        "newer_pull": refusal.newer_pull,
        "head": refusal.head_sha,
        "files": refusal.files,
        "users": refusal.users,
        "author": refusal.author,
    }


def refusal_finding(refusal: Refusal) -> Finding:
    """The plan's finding for a refused approvals file: the policy awaits a (fresh) approval."""
    return Finding(
        refusal.policy,
        "*",
        FindingKind.AWAITING_APPROVAL,
        reasons.Reason.APPROVAL_REFUSED,
        refusal_facts(refusal),
    )


def render(verdict: Verdict) -> str:
    """One sentence for a refusal or a verified approval (the English is controller.messages')."""
    if isinstance(verdict, VerifiedApproval):
        return messages.verified_approval(
            verdict.policy, verdict.pull, verdict.proposal, verdict.approvers
        )
    return messages.render(reasons.Reason.APPROVAL_REFUSED, refusal_facts(verdict))


def approved_by_trailers(verified: VerifiedApproval) -> list[tuple[str, str]]:
    """`Keyrotor-Approved-By: <login> (#<pull request>)`, one per approver (for commits.py)."""
    return [
        (commits.APPROVED_BY, commits.approved_by(login, verified.pull))
        for login in verified.approvers
    ]
