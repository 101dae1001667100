"""An approval is keyrotor's own pull request, merged, with a person's approval, as GitHub's API
shows it; each test below performs one way of faking an approval and sees it refused.

keyrotor's side is real: `StatusRepo.commit_on` and `push_branch` push its proposal to a bare
origin, the client opens the pull request and attests the pushed commit. People act on GitHub
through the stand-in's controls (review, merge) and on Git with their own clones.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import git
import pytest

from controller.approvals import Approval, approvals_path, dump, load
from controller.github import GitHubClient
from controller.github.approval_verify import (
    DEFAULT_BOT_LOGIN,
    Reason,
    Refusal,
    Verdict,
    VerifiedApproval,
    approval_branch,
    approved_by_trailers,
    attest,
    bot_login,
    render,
    verify,
)
from controller.gitops.repo import StatusRepo
from tests.support.github_standin import GitHubStandIn, run_standin
from tests.support.gitremote import GitRemote, push_commit

REPO = "acme/policies"
POLICY = "ci"
BOT = "keyrotor-app[bot]"
BRANCH = approval_branch(POLICY)
PATH = approvals_path(POLICY)
MANIFEST = "manifests/ci.yaml"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def github(git_remote: GitRemote) -> Iterator[GitHubStandIn]:
    standin_options = {"login": BOT, "max_per_page": 2, "now": lambda: NOW}
    for standin in run_standin(**standin_options):
        standin.attach_git(REPO, git_remote.bare)
        yield standin


@pytest.fixture
def client(github: GitHubStandIn) -> Iterator[GitHubClient]:
    with GitHubClient(github.url, github.token, REPO, sleep=lambda _: None) as client:
        yield client


@pytest.fixture
def person(git_remote: GitRemote, tmp_path: Path) -> git.Repo:
    """Someone with push access, in their own clone. The policy's manifest is on main."""
    repo = git_remote.second_clone(tmp_path / "person")
    push_commit(repo, "main", {MANIFEST: "kind: RotationPolicy\nmetadata: {name: ci}\n"})
    return repo


@pytest.fixture
def keyrotor(git_remote: GitRemote, person: git.Repo) -> Iterator[StatusRepo]:
    with StatusRepo.open(git_remote.clone) as repo:
        yield repo


def origin(git_remote: GitRemote, *args: str) -> str:
    with git.Repo(git_remote.bare) as bare:
        return str(bare.git.execute(["git", *args]))


def entries(run: str, manifest: str, **users: str) -> dict[str, Approval]:
    """Approvals of `users` (user -> old key) proposed by run `run` for manifest blob `manifest`."""
    return {
        user: Approval(POLICY, user, key, f"sha256:{key.lower()}", run, manifest)
        for user, key in users.items()
    }


def propose(
    keyrotor: StatusRepo,
    client: GitHubClient,
    git_remote: GitRemote,
    approvals: dict[str, Approval],
    *,
    run: str,
    extra: dict[str, str] | None = None,
) -> tuple[int, str]:
    """What keyrotor does: commit the approvals file on main's tip, push it to its branch, open
    (or keep) the pull request and attest the pushed commit. Returns (number, sha)."""
    with git.Repo(keyrotor.root) as repo:
        repo.git.fetch("origin")
        base = repo.git.rev_parse("origin/main")
    files = {PATH: dump(POLICY, approvals) or "", **(extra or {})}
    sha = keyrotor.commit_on(base, files, f"keyrotor({POLICY}): propose key rotation")
    keyrotor.push_branch(sha, BRANCH, keyrotor.fetch_branch(BRANCH))
    open_ = client.list_pulls(head=BRANCH, state="open")
    if open_:
        number = open_[0].number
    else:
        number = client.create_pull(title="approve", head=BRANCH, base="main").number
    attest(client, number, head_sha=sha, proposal=run)
    return number, sha


def manifest_blob(git_remote: GitRemote) -> str:
    return origin(git_remote, "rev-parse", f"main:{MANIFEST}")


def check(
    client: GitHubClient, git_remote: GitRemote, *, require_review: bool = True, bot: str = BOT
) -> Verdict:
    """What reconcile asks before acting on the approvals file on main."""
    text = origin(git_remote, "show", f"main:{PATH}")
    return verify(
        client,
        policy=POLICY,
        approvals=load(text, path=PATH),
        approvals_blob=origin(git_remote, "rev-parse", f"main:{PATH}"),
        manifest_blob=manifest_blob(git_remote),
        bot_login=bot,
        require_review=require_review,
        base="main",
    )


def refusal(verdict: Verdict) -> Refusal:
    assert isinstance(verdict, Refusal), verdict
    return verdict


def verified(verdict: Verdict) -> VerifiedApproval:
    assert isinstance(verdict, VerifiedApproval), render(verdict)
    return verdict


# --- the genuine flow --------------------------------------------------------------------------


def test_keyrotors_proposal_merged_by_a_person_is_verified_with_their_login(
    github: GitHubStandIn, client: GitHubClient, keyrotor: StatusRepo, git_remote: GitRemote
) -> None:
    approvals = entries("run-1", manifest_blob(git_remote), deploy="AKIAOLD1")
    number, sha = propose(keyrotor, client, git_remote, approvals, run="run-1")
    github.merge_pull(REPO, number, by="alice")
    assert verified(check(client, git_remote)) == VerifiedApproval(
        POLICY,
        number,
        f"https://github.com/{REPO}/pull/{number}",
        sha,
        "run-1",
        ("alice",),
        "alice",
    )


def test_a_persons_approval_of_the_head_counts_when_a_bot_merged(
    github: GitHubStandIn, client: GitHubClient, keyrotor: StatusRepo, git_remote: GitRemote
) -> None:
    approvals = entries("run-1", manifest_blob(git_remote), deploy="AKIAOLD1")
    number, _ = propose(keyrotor, client, git_remote, approvals, run="run-1")
    github.review_pull(REPO, number, by="bob")
    github.merge_pull(REPO, number, by="merge-queue[bot]")
    assert verified(check(client, git_remote)).approvers == ("bob",)


def test_the_merger_and_each_approving_reviewer_are_recorded_in_trailers(
    github: GitHubStandIn, client: GitHubClient, keyrotor: StatusRepo, git_remote: GitRemote
) -> None:
    approvals = entries("run-1", manifest_blob(git_remote), deploy="AKIAOLD1")
    number, _ = propose(keyrotor, client, git_remote, approvals, run="run-1")
    github.review_pull(REPO, number, by="carol")
    github.review_pull(REPO, number, by="bob")
    github.merge_pull(REPO, number, by="alice")
    assert approved_by_trailers(verified(check(client, git_remote))) == [
        ("Keyrotor-Approved-By", f"alice (#{number})"),
        ("Keyrotor-Approved-By", f"bob (#{number})"),
        ("Keyrotor-Approved-By", f"carol (#{number})"),
    ]


def test_an_auto_policy_needs_keyrotors_merged_proposal_but_no_person(
    github: GitHubStandIn, client: GitHubClient, keyrotor: StatusRepo, git_remote: GitRemote
) -> None:
    approvals = entries("run-1", manifest_blob(git_remote), deploy="AKIAOLD1")
    number, _ = propose(keyrotor, client, git_remote, approvals, run="run-1")
    github.merge_pull(REPO, number, by=BOT)
    assert verified(check(client, git_remote, require_review=False)).approvers == ()


# --- attacks -------------------------------------------------------------------------------------


def test_an_approvals_file_pushed_straight_to_main_is_refused(
    client: GitHubClient, person: git.Repo, git_remote: GitRemote
) -> None:
    forged = entries("run-9", manifest_blob(git_remote), deploy="AKIAOLD1")
    push_commit(person, "main", {PATH: dump(POLICY, forged) or ""})
    assert refusal(check(client, git_remote)).reason is Reason.NO_MERGED_PULL_REQUEST


def test_a_file_pushed_to_main_after_genuine_approvals_is_refused(
    github: GitHubStandIn,
    client: GitHubClient,
    keyrotor: StatusRepo,
    person: git.Repo,
    git_remote: GitRemote,
) -> None:
    manifest = manifest_blob(git_remote)
    number, _ = propose(
        keyrotor, client, git_remote, entries("run-1", manifest, a="AKIA1"), run="run-1"
    )
    github.merge_pull(REPO, number, by="alice")
    forged = entries("run-1", manifest, a="AKIA1", deploy="AKIAOLD1")
    push_commit(person, "main", {PATH: dump(POLICY, forged) or ""})
    assert refusal(check(client, git_remote)) == Refusal(
        POLICY, Reason.CONTENT_DIFFERS, pull=number
    )


def test_a_copy_of_an_open_proposal_pushed_to_main_is_refused_until_it_is_merged(
    github: GitHubStandIn,
    client: GitHubClient,
    keyrotor: StatusRepo,
    person: git.Repo,
    git_remote: GitRemote,
) -> None:
    approvals = entries("run-1", manifest_blob(git_remote), deploy="AKIAOLD1")
    number, _ = propose(keyrotor, client, git_remote, approvals, run="run-1")
    push_commit(person, "main", {PATH: dump(POLICY, approvals) or ""})
    assert refusal(check(client, git_remote)) == Refusal(POLICY, Reason.NOT_MERGED, pull=number)


def test_a_proposal_only_the_bot_merged_is_refused_for_a_pull_request_policy(
    github: GitHubStandIn, client: GitHubClient, keyrotor: StatusRepo, git_remote: GitRemote
) -> None:
    approvals = entries("run-1", manifest_blob(git_remote), deploy="AKIAOLD1")
    number, sha = propose(keyrotor, client, git_remote, approvals, run="run-1")
    github.merge_pull(REPO, number, by=BOT)
    assert refusal(check(client, git_remote)) == Refusal(
        POLICY, Reason.NO_REVIEW_BY_A_PERSON, pull=number, head_sha=sha
    )


def test_another_bots_approval_is_not_a_persons(
    github: GitHubStandIn, client: GitHubClient, keyrotor: StatusRepo, git_remote: GitRemote
) -> None:
    approvals = entries("run-1", manifest_blob(git_remote), deploy="AKIAOLD1")
    number, _ = propose(keyrotor, client, git_remote, approvals, run="run-1")
    github.review_pull(REPO, number, by="github-actions[bot]")
    github.merge_pull(REPO, number, by="github-actions[bot]")
    assert refusal(check(client, git_remote)).reason is Reason.NO_REVIEW_BY_A_PERSON


def test_an_approval_of_an_earlier_head_does_not_approve_the_merged_one(
    github: GitHubStandIn, client: GitHubClient, keyrotor: StatusRepo, git_remote: GitRemote
) -> None:
    manifest = manifest_blob(git_remote)
    number, _ = propose(
        keyrotor, client, git_remote, entries("run-1", manifest, a="AKIA1"), run="run-1"
    )
    github.review_pull(REPO, number, by="bob")
    updated = entries("run-2", manifest, a="AKIA1", b="AKIA2")
    assert propose(keyrotor, client, git_remote, updated, run="run-2")[0] == number
    github.merge_pull(REPO, number, by=BOT)
    assert refusal(check(client, git_remote)).reason is Reason.NO_REVIEW_BY_A_PERSON


def test_a_dismissed_approval_does_not_count(
    github: GitHubStandIn, client: GitHubClient, keyrotor: StatusRepo, git_remote: GitRemote
) -> None:
    approvals = entries("run-1", manifest_blob(git_remote), deploy="AKIAOLD1")
    number, _ = propose(keyrotor, client, git_remote, approvals, run="run-1")
    github.dismiss_review(REPO, number, github.review_pull(REPO, number, by="bob"))
    github.merge_pull(REPO, number, by=BOT)
    assert refusal(check(client, git_remote)).reason is Reason.NO_REVIEW_BY_A_PERSON


def test_an_approval_withdrawn_by_requesting_changes_does_not_count(
    github: GitHubStandIn, client: GitHubClient, keyrotor: StatusRepo, git_remote: GitRemote
) -> None:
    approvals = entries("run-1", manifest_blob(git_remote), deploy="AKIAOLD1")
    number, _ = propose(keyrotor, client, git_remote, approvals, run="run-1")
    github.review_pull(REPO, number, by="bob")
    github.review_pull(REPO, number, by="bob", state="COMMENTED", body="one more thing")
    github.review_pull(REPO, number, by="bob", state="CHANGES_REQUESTED", body="wait")
    github.merge_pull(REPO, number, by=BOT)
    assert refusal(check(client, git_remote)).reason is Reason.NO_REVIEW_BY_A_PERSON


def test_a_comment_after_an_approval_keeps_the_approval(
    github: GitHubStandIn, client: GitHubClient, keyrotor: StatusRepo, git_remote: GitRemote
) -> None:
    approvals = entries("run-1", manifest_blob(git_remote), deploy="AKIAOLD1")
    number, _ = propose(keyrotor, client, git_remote, approvals, run="run-1")
    github.review_pull(REPO, number, by="bob")
    github.review_pull(REPO, number, by="bob", state="COMMENTED", body="looks right")
    github.merge_pull(REPO, number, by=BOT)
    assert verified(check(client, git_remote)).approvers == ("bob",)


def test_keyrotors_own_account_is_never_the_person_even_when_it_is_a_user(
    git_remote: GitRemote, keyrotor: StatusRepo
) -> None:
    # A machine user's personal access token: GitHub types the account "User", not "Bot".
    machine = "keyrotor-machine"
    for github in run_standin(login=machine, login_is_bot=False, now=lambda: NOW):
        github.attach_git(REPO, git_remote.bare)
        with GitHubClient(github.url, github.token, REPO) as client:
            approvals = entries("run-1", manifest_blob(git_remote), deploy="AKIAOLD1")
            number, _ = propose(keyrotor, client, git_remote, approvals, run="run-1")
            github.merge_pull(REPO, number, by=machine)
            assert client.get_pull(number).merged_by_bot is False
            verdict = refusal(check(client, git_remote, bot=machine))
            assert verdict.reason is Reason.NO_REVIEW_BY_A_PERSON


def test_a_proposal_that_changes_another_file_is_refused(
    github: GitHubStandIn, client: GitHubClient, keyrotor: StatusRepo, git_remote: GitRemote
) -> None:
    # What a workflow holding the bot's identity could open: an "approval" that also edits CI.
    approvals = entries("run-1", manifest_blob(git_remote), deploy="AKIAOLD1")
    workflow = {".github/workflows/exfiltrate.yml": "on: push\n"}
    number, _ = propose(keyrotor, client, git_remote, approvals, run="run-1", extra=workflow)
    github.merge_pull(REPO, number, by="alice")
    verdict = refusal(check(client, git_remote))
    assert (verdict.reason, verdict.files) == (
        Reason.CHANGES_OTHER_FILES,
        (".github/workflows/exfiltrate.yml",),
    )


def test_a_copy_of_an_older_merged_proposal_pushed_to_main_is_refused(
    github: GitHubStandIn,
    client: GitHubClient,
    keyrotor: StatusRepo,
    person: git.Repo,
    git_remote: GitRemote,
) -> None:
    manifest = manifest_blob(git_remote)
    older = entries("run-1", manifest, deploy="AKIAOLD1")
    first, _ = propose(keyrotor, client, git_remote, older, run="run-1")
    github.merge_pull(REPO, first, by="alice")
    second, _ = propose(
        keyrotor, client, git_remote, entries("run-2", manifest, deploy="AKIANEW2"), run="run-2"
    )
    github.merge_pull(REPO, second, by="alice")
    push_commit(person, "main", {PATH: dump(POLICY, older) or ""})
    verdict = refusal(check(client, git_remote))
    assert (verdict.reason, verdict.pull, verdict.newer_pull) == (Reason.SUPERSEDED, first, second)


def test_a_fresh_proposal_of_the_same_keys_is_a_different_file() -> None:
    manifest = "3b18e512dba79e4c8300dd08aeb37f8e728b8dad"
    copy = dump(POLICY, entries("run-1", manifest, deploy="AKIAOLD1"))
    fresh = dump(POLICY, entries("run-2", manifest, deploy="AKIAOLD1"))
    assert copy != fresh


def test_editing_the_manifest_after_the_approval_is_refused(
    github: GitHubStandIn,
    client: GitHubClient,
    keyrotor: StatusRepo,
    person: git.Repo,
    git_remote: GitRemote,
) -> None:
    approvals = entries("run-1", manifest_blob(git_remote), deploy="AKIAOLD1", backup="AKIAOLD2")
    number, _ = propose(keyrotor, client, git_remote, approvals, run="run-1")
    github.merge_pull(REPO, number, by="alice")
    push_commit(person, "main", {MANIFEST: "kind: RotationPolicy\nmetadata: {name: ci}\n# x\n"})
    verdict = refusal(check(client, git_remote))
    assert (verdict.reason, verdict.users) == (Reason.MANIFEST_CHANGED, ("backup", "deploy"))


def test_a_persons_commit_on_the_proposal_branch_is_refused_even_when_merged(
    github: GitHubStandIn,
    client: GitHubClient,
    keyrotor: StatusRepo,
    person: git.Repo,
    git_remote: GitRemote,
) -> None:
    manifest = manifest_blob(git_remote)
    number, _ = propose(
        keyrotor, client, git_remote, entries("run-1", manifest, a="AKIA1"), run="run-1"
    )
    # Mallory adds a user to keyrotor's proposal, committing under keyrotor's own git identity.
    widened = entries("run-1", manifest, a="AKIA1", mallory="AKIAMAL")
    theirs = push_commit(
        person,
        BRANCH,
        {PATH: dump(POLICY, widened) or ""},
        start=f"origin/{BRANCH}",
        author=("Test User", "test@example.com"),
    )
    github.merge_pull(REPO, number, by="mallory")
    assert refusal(check(client, git_remote)) == Refusal(
        POLICY, Reason.HEAD_NOT_KEYROTORS, pull=number, head_sha=theirs
    )


def test_a_pull_request_a_person_opened_from_keyrotors_branch_is_refused(
    github: GitHubStandIn, client: GitHubClient, person: git.Repo, git_remote: GitRemote
) -> None:
    approvals = entries("run-1", manifest_blob(git_remote), deploy="AKIAOLD1")
    push_commit(person, BRANCH, {PATH: dump(POLICY, approvals) or ""})
    number = github.open_pull(REPO, head=BRANCH, by="mallory")
    github.merge_pull(REPO, number, by="mallory")
    verdict = refusal(check(client, git_remote))
    assert (verdict.reason, verdict.author) == (Reason.NOT_OPENED_BY_KEYROTOR, "mallory")


def test_entries_naming_another_proposal_than_the_attested_one_are_refused(
    github: GitHubStandIn, client: GitHubClient, keyrotor: StatusRepo, git_remote: GitRemote
) -> None:
    approvals = entries("run-1", manifest_blob(git_remote), deploy="AKIAOLD1")
    number, _ = propose(keyrotor, client, git_remote, approvals, run="run-7")
    github.merge_pull(REPO, number, by="alice")
    verdict = refusal(check(client, git_remote))
    assert (verdict.reason, verdict.users) == (Reason.PROPOSAL_DIFFERS, ("deploy",))


def test_entries_written_before_verification_are_refused_without_asking_github(
    github: GitHubStandIn, client: GitHubClient, person: git.Repo, git_remote: GitRemote
) -> None:
    legacy = {"deploy": Approval(POLICY, "deploy", "AKIAOLD1", "sha256:x")}
    push_commit(person, "main", {PATH: dump(POLICY, legacy) or ""})
    verdict = refusal(check(client, git_remote))
    assert (verdict.reason, verdict.users) == (Reason.ENTRY_WITHOUT_PROPOSAL, ("deploy",))
    assert github.requests == []


# --- identity and English ------------------------------------------------------------------------


def test_the_bot_login_is_configured_and_defaults_to_github_actions() -> None:
    assert bot_login({}) == DEFAULT_BOT_LOGIN == "github-actions[bot]"
    assert bot_login({"KEYROTOR_BOT_LOGIN": "keyrotor-app[bot]"}) == "keyrotor-app[bot]"


def test_every_refusal_reason_has_its_own_sentence() -> None:
    sentences = {
        render(
            Refusal(
                POLICY,
                reason,
                pull=3,
                newer_pull=4,
                head_sha="a" * 40,
                files=("x.yml",),
                users=("deploy",),
                author="mallory",
            )
        )
        for reason in Reason
    }
    assert len(sentences) == len(Reason)
    assert all(s.startswith(f"{PATH} on main is not an approval: ") for s in sentences)
