"""A person's approval of keyrotor's pull request, as GitHub's API shows it, is the approval: a
pull-request policy changes nothing in IAM until then, whatever the approvals file on main says.

End to end with a real bare Git remote, the moto sandbox and the OpenAPI-validated GitHub
stand-in (any request or answer outside GitHub's published contract fails the test). The
stand-in follows the bare repository: its merge button makes GitHub's merge commit on main, and
tests act as people through it (`merge_pull(by=)`, `review_pull(by=)`) or with their own clones.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import git
import pytest

from controller.approvals import Approval, approvals_path, key_digest
from controller.approvals import dump as dump_approvals
from controller.approvals import load as load_approvals
from controller.aws import AwsSessions
from controller.cli import main
from controller.context import CiEnvironment, RunContext
from controller.github.client import GitHubClient, PullRequest
from controller.inventory import ObservedKey
from controller.plan import Plan
from controller.reasons import Reason
from controller.sandbox.config import DEFAULT_START as T0
from controller.service import ReconcileResult, apply_once, reconcile_once
from tests.support.github_standin import GitHubStandIn
from tests.support.gitremote import push_commit, set_identity
from tests.support.world import SECRET_ID, World, advance

REPO = "acme/policies"
APP_REPO = "acme/app"
POLICY = "ci-deployers"
BRANCH = f"keyrotor/{POLICY}"
MANIFEST = f"""\
apiVersion: keyrotor.dev/v1
kind: RotationPolicy
metadata:
  name: {POLICY}
spec:
  users:
    names: [deploy-bot, backup-bot]
  maxKeyAge: 90d
  targets:
    - type: aws-secrets-manager
      secretId: "ci/{{user}}/aws"
    - type: github-actions-secret
      repository: {APP_REPO}
      environment: "{{user}}"
  approval: pull-request
"""
DUE = advance(T0, days=80)


@pytest.fixture(autouse=True)
def _connected_to_github(
    world: World, github: GitHubStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy repository is on GitHub: reconcile sees the stand-in and the CI variables."""
    for variable, value in {
        "GITHUB_API_URL": github.url,
        "GITHUB_TOKEN": github.token,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
        "KEYROTOR_BOT_LOGIN": github.login,
    }.items():
        monkeypatch.setenv(variable, value)
    for user in ("deploy-bot", "backup-bot"):
        github.add_environment(APP_REPO, user)
    github.attach_git(REPO, world.bare)
    world.seed_policy(MANIFEST)


def reconcile(world: World, now: datetime) -> int:
    world.aws.set_clock(now)
    code = main(["reconcile", "--repo", str(world.clone), "--now", now.isoformat()])
    world.pull()
    return code


def open_pulls() -> list[PullRequest]:
    with GitHubClient() as client:
        return client.list_pulls(head=BRANCH, state="open")


def origin_branch(world: World) -> str | None:
    with git.Repo(world.bare) as origin:
        return origin.heads[BRANCH].commit.hexsha if BRANCH in origin.heads else None


def merge(world: World, github: GitHubStandIn, number: int, *, by: str = "alice") -> None:
    """A person presses GitHub's merge button: GitHub's merge commit lands on main."""
    github.merge_pull(REPO, number, by=by)
    world.pull()


def reconcile_at(world: World, now: datetime, *, run: str = "") -> ReconcileResult:
    """`keyrotor reconcile` (run id `run`) through the service layer, for its plan as data."""
    world.aws.set_clock(now)
    ci = CiEnvironment.from_environ(os.environ)
    ctx = RunContext(now, AwsSessions(), ci=ci, echo=lambda _: None, run_id=run)
    result = reconcile_once(ctx, world.clone)
    world.pull()
    return result


def refusals(plan: Plan) -> list[str]:
    """Why each approvals file was not an approval (the `refusal` fact of its finding)."""
    return [str(f.facts["refusal"]) for f in plan.findings if f.reason == Reason.APPROVAL_REFUSED]


def approvals_on(world: World, rev: str) -> dict[str, Approval]:
    with git.Repo(world.bare) as origin:
        text = origin.git.show(f"{rev}:{approvals_path(POLICY)}")
    return load_approvals(text, path=approvals_path(POLICY))


def create_calls(world: World) -> list[str]:
    return [c for c in world.mutating_calls() if c == "iam CreateAccessKey"]


def manifest_blob(world: World) -> str:
    with git.Repo(world.bare) as origin:
        return str(origin.git.rev_parse("main:manifests/ci.yaml"))


def push_to_main_as(world: World, who: str, files: dict[str, str | None]) -> str:
    """Someone with push access commits `files` straight to main in their own clone."""
    clone = world.tmp / who
    if not clone.exists():
        with git.Repo.clone_from(str(world.bare), str(clone), branch="main") as repo:
            set_identity(repo, who, f"{who}@example.com")
    with git.Repo(clone) as repo:
        return push_commit(repo, "main", files)


def forged_approval(world: World, user: str, old: str, *, proposal: str = "1") -> str:
    """The approvals file keyrotor would propose for `user`'s key `old`, written by hand."""
    keys = [ObservedKey(old, "Active", T0)]
    entry = Approval(POLICY, user, old, key_digest(keys), proposal, manifest_blob(world))
    return dump_approvals(POLICY, {user: entry}) or ""


def test_a_due_user_gets_a_pull_request_and_nothing_changes_in_iam(world: World) -> None:
    world.seed_user("deploy-bot", at=T0)
    world.seed_user("backup-bot", at=advance(T0, days=30))
    world.aws.clear_requests()
    assert reconcile(world, DUE) == 0
    assert create_calls(world) == []
    (pr,) = open_pulls()
    assert pr.head_ref == BRANCH and "deploy-bot" in (pr.body or "")
    assert (pr.body or "").startswith("**Rotate 1 access key of policy `ci-deployers`.**")
    assert "What happens when you merge" in (pr.body or "")
    with git.Repo(world.bare) as origin:
        text = origin.git.show(f"{BRANCH}:{approvals_path(POLICY)}")
    assert "deploy-bot" in text and "backup-bot" not in text


def test_a_second_reconcile_leaves_the_one_pull_request_unchanged(world: World) -> None:
    world.seed_user("deploy-bot", at=T0)
    reconcile(world, DUE)
    (first,) = open_pulls()
    branch = origin_branch(world)
    reconcile(world, advance(DUE, hours=6))
    (again,) = open_pulls()
    assert (again.number, again.body, origin_branch(world)) == (first.number, first.body, branch)


def test_when_the_plan_changes_the_pull_request_is_updated_in_place(world: World) -> None:
    world.seed_user("deploy-bot", at=T0)
    world.seed_user("backup-bot", at=advance(T0, days=5))
    reconcile(world, DUE)
    (first,) = open_pulls()
    reconcile(world, advance(T0, days=85))  # backup-bot is due now too
    (updated,) = open_pulls()
    assert updated.number == first.number
    assert "backup-bot" in (updated.body or "") and updated.body != first.body


def test_merging_approves_exactly_the_planned_steps_through_to_completion(
    world: World, github: GitHubStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy_old = world.seed_user("deploy-bot", at=T0)
    reconcile(world, DUE)
    (pr,) = open_pulls()
    merge(world, github, pr.number, by="alice")
    world.aws.clear_requests()

    assert reconcile(world, advance(DUE, hours=1)) == 0
    assert create_calls(world) == ["iam CreateAccessKey"]
    (new,) = set(world.iam_keys("deploy-bot")) - {deploy_old}
    stored = github.secret(APP_REPO, "AWS_SECRET_ACCESS_KEY", "deploy-bot")
    assert stored is not None and stored == json_secret(world)["SecretAccessKey"]
    assert github.secret(APP_REPO, "AWS_ACCESS_KEY_ID", "deploy-bot") == new

    world.aws.set_clock(advance(DUE, hours=3))
    world.application_call(json_secret(world))
    reconcile(world, advance(DUE, days=1, hours=2))
    assert world.iam_keys("deploy-bot")[deploy_old] == "Inactive"
    reconcile(world, advance(DUE, days=8, hours=3))
    assert world.iam_keys("deploy-bot") == {new: "Active"}
    assert not (world.clone / approvals_path(POLICY)).exists(), "approval removed when done"
    assert open_pulls() == []
    assert github.pull_state(REPO, pr.number) == "merged"

    capsys.readouterr()
    main(["history", "--repo", str(world.clone), "--format", "json"])
    entries = json.loads(capsys.readouterr().out)["entries"]
    approve = [e for e in entries if e["action"] == "approve"]
    assert [(e["user"], e["key"], e["author"]) for e in approve] == [
        ("deploy-bot", deploy_old, "alice")
    ]
    steps = [e["action"] for e in entries if e["user"] == "deploy-bot"]
    assert steps == [
        "delete-key", "deactivate-key", "create-key", "approve", "propose", "adopt-key"
    ]  # fmt: skip
    with git.Repo(world.bare) as origin:
        created = origin.git.log("--format=%(trailers:key=Keyrotor-Approved-By,valueonly)",
                                 "-1", f"{approve[0]['commit']}")  # fmt: skip
    assert created.strip() == f"alice (#{pr.number})"


def json_secret(world: World) -> dict[str, str]:
    value = world.aws.client("secretsmanager").get_secret_value(
        SecretId=SECRET_ID, VersionStage="AWSCURRENT"
    )["SecretString"]
    creds: dict[str, str] = json.loads(value)
    world.remember(creds["SecretAccessKey"])
    return creds


def test_a_stale_approval_is_refused_and_a_fresh_pull_request_opened(
    world: World, github: GitHubStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    old = world.seed_user("deploy-bot", at=T0)
    reconcile(world, DUE)
    (pr,) = open_pulls()
    # Before the approval takes effect, a person replaces the key by hand (made on day 1: due too).
    iam = world.aws.client("iam")
    iam.delete_access_key(UserName="deploy-bot", AccessKeyId=old)
    world.aws.set_clock(advance(T0, days=1))
    replacement = iam.create_access_key(UserName="deploy-bot")["AccessKey"]
    world.remember(replacement["SecretAccessKey"])
    merge(world, github, pr.number)
    world.aws.clear_requests()
    assert reconcile(world, advance(DUE, hours=1)) == 0
    assert create_calls(world) == []
    assert "stale approval refused" in capsys.readouterr().out
    (fresh,) = open_pulls()
    assert fresh.number != pr.number
    now = [ObservedKey(replacement["AccessKeyId"], "Active", T0)]
    assert key_digest(now) in (fresh.body or "")


def test_a_pull_request_is_closed_with_a_comment_when_nothing_is_due_any_more(
    world: World,
) -> None:
    world.seed_user("deploy-bot", at=T0)
    reconcile(world, DUE)
    (pr,) = open_pulls()
    iam = world.aws.client("iam")  # the user goes away out of band
    for key_id in world.iam_keys("deploy-bot"):
        iam.delete_access_key(UserName="deploy-bot", AccessKeyId=key_id)
    iam.delete_user(UserName="deploy-bot")
    reconcile(world, advance(DUE, hours=1))
    assert open_pulls() == []
    with GitHubClient() as client:
        comments = client.list_comments(pr.number)
    assert any("Nothing in this policy needs approval" in c.body for c in comments)


def test_a_person_s_commit_on_the_branch_is_never_overwritten(
    world: World, github: GitHubStandIn
) -> None:
    world.seed_user("deploy-bot", at=T0)
    world.seed_user("backup-bot", at=advance(T0, days=5))
    reconcile(world, DUE)
    (pr,) = open_pulls()
    person = world.tmp / "bob"
    with git.Repo.clone_from(str(world.bare), str(person), branch=BRANCH) as repo:
        (person / "NOTE.md").write_text("please wait for the release\n")
        repo.index.add(["NOTE.md"])
        repo.index.commit("a note", author=git.Actor("Bob", "bob@example.com"))
        repo.git.push("origin", BRANCH)
    held = origin_branch(world)
    reconcile(world, advance(T0, days=85))
    assert origin_branch(world) == held
    with GitHubClient() as client:
        comments = client.list_comments(pr.number)
    assert any("a commit keyrotor did not push" in c.body for c in comments)


def test_reconcile_reports_to_the_workflow(world: World) -> None:
    world.seed_user("deploy-bot", at=T0)
    reconcile(world, DUE)
    output = (world.tmp / "output.txt").read_text()
    summary = (world.tmp / "summary.md").read_text()
    assert "changes_present=true" in output
    assert "approval pull request for ci-deployers: opened" in summary


def test_the_pull_request_says_so_when_a_waiting_key_becomes_overdue(world: World) -> None:
    world.seed_user("deploy-bot", at=T0)
    reconcile(world, DUE)
    (first,) = open_pulls()
    assert "overdue" not in (first.body or "")
    branch = origin_branch(world)
    reconcile(world, advance(T0, days=91))  # past maxKeyAge, still not approved
    (overdue,) = open_pulls()
    assert overdue.number == first.number
    assert "**overdue** `deploy-bot`" in (overdue.body or "")
    assert origin_branch(world) == branch, "the proposal did not change: no new commit"
    reconcile(world, advance(T0, days=95))  # only the age moved
    (later,) = open_pulls()
    assert later.body == overdue.body


def test_a_long_lived_checkout_acts_on_an_approval_merged_since_it_was_cloned(
    world: World, github: GitHubStandIn
) -> None:
    """A self-hosted runner keeps its checkout: reconcile fetches before it reads anything."""
    old = world.seed_user("deploy-bot", at=T0)
    reconcile(world, DUE)
    (pr,) = open_pulls()
    runner = world.fresh_clone()  # made before the merge, never pulled by hand
    github.merge_pull(REPO, pr.number, by="alice")
    world.aws.set_clock(advance(DUE, hours=1))
    code = main(["reconcile", "--repo", str(runner), "--now", advance(DUE, hours=1).isoformat()])
    assert code == 0
    assert len(world.iam_keys("deploy-bot")) == 2 and old in world.iam_keys("deploy-bot")


def test_without_fetching_a_stale_checkout_does_not_see_the_merge(
    world: World, github: GitHubStandIn
) -> None:
    world.seed_user("deploy-bot", at=T0)
    reconcile(world, DUE)
    (pr,) = open_pulls()
    runner = world.fresh_clone()
    github.merge_pull(REPO, pr.number, by="alice")
    world.aws.set_clock(advance(DUE, hours=1))
    argv = [
        "apply",
        "--repo",
        str(runner),
        "--no-fetch",
        "--now",
        advance(DUE, hours=1).isoformat(),
    ]
    main(argv)
    assert len(world.iam_keys("deploy-bot")) == 1


# --- a proposal is keyrotor's, stamped, and attested ---------------------------------------------


def test_each_proposal_is_stamped_with_its_run_and_manifest_and_attested(
    world: World, github: GitHubStandIn
) -> None:
    world.seed_user("deploy-bot", at=T0)
    world.seed_user("backup-bot", at=advance(T0, days=5))
    reconcile_at(world, DUE, run="run-1")
    (pr,) = open_pulls()
    (entry,) = approvals_on(world, BRANCH).values()
    assert (entry.proposal, entry.manifest) == ("run-1", manifest_blob(world))
    reconcile_at(world, advance(T0, days=85), run="run-2")  # backup-bot is due too: new proposal
    again = approvals_on(world, BRANCH)
    assert sorted(again) == ["backup-bot", "deploy-bot"]
    assert {a.proposal for a in again.values()} == {"run-2"}
    with GitHubClient() as client:
        reviews = client.list_reviews(pr.number)
    attested = [(r.login, r.state, r.commit_id) for r in reviews]
    assert attested[-1] == (github.login, "COMMENTED", origin_branch(world))


# --- attacks: none of these is an approval, so nothing is rotated ---------------------------------


def test_an_approvals_file_pushed_straight_to_main_rotates_nothing(world: World) -> None:
    old = world.seed_user("deploy-bot", at=T0)
    forged = forged_approval(world, "deploy-bot", old)
    push_to_main_as(world, "mallory", {approvals_path(POLICY): forged})
    world.pull()
    world.aws.clear_requests()
    result = reconcile_at(world, DUE)
    assert create_calls(world) == []
    assert world.iam_keys("deploy-bot") == {old: "Active"}
    assert refusals(result.plan) == ["no-merged-pull-request"]
    (pr,) = open_pulls()  # a genuine proposal asks instead
    assert "deploy-bot" in (pr.body or "")
    assert [(i.user, i.action) for i in result.issues] == [("backup-bot", "opened")], (
        "the policy's users still get their issues"
    )


def test_keyrotors_pull_request_merged_by_the_bot_alone_rotates_nothing(
    world: World, github: GitHubStandIn
) -> None:
    old = world.seed_user("deploy-bot", at=T0)
    reconcile(world, DUE)
    (pr,) = open_pulls()
    merge(world, github, pr.number, by=github.login)  # e.g. a workflow holding the bot's token
    world.aws.clear_requests()
    result = reconcile_at(world, advance(DUE, hours=1))
    assert create_calls(world) == []
    assert world.iam_keys("deploy-bot") == {old: "Active"}
    assert refusals(result.plan) == ["no-review-by-a-person"]
    (fresh,) = open_pulls()
    assert fresh.number != pr.number


def test_a_copy_of_an_older_approval_pushed_back_to_main_rotates_nothing(
    world: World, github: GitHubStandIn
) -> None:
    old = world.seed_user("deploy-bot", at=T0)
    reconcile(world, DUE)
    (first,) = open_pulls()
    merge(world, github, first.number)
    older = (world.clone / approvals_path(POLICY)).read_text()
    # The approval is withdrawn before it is acted on; keyrotor proposes again, and a bot merges.
    push_to_main_as(world, "carol", {approvals_path(POLICY): None})
    reconcile(world, advance(DUE, minutes=10))
    (second,) = open_pulls()
    merge(world, github, second.number, by=github.login)
    push_to_main_as(world, "mallory", {approvals_path(POLICY): older})  # the first one, again
    world.pull()
    world.aws.clear_requests()
    result = reconcile_at(world, advance(DUE, hours=1))
    assert create_calls(world) == []
    assert world.iam_keys("deploy-bot") == {old: "Active"}
    assert refusals(result.plan) == ["superseded-by-a-newer-pull-request"]


def test_editing_the_manifest_after_the_approval_rotates_nothing(
    world: World, github: GitHubStandIn
) -> None:
    old = world.seed_user("deploy-bot", at=T0)
    reconcile(world, DUE)
    (pr,) = open_pulls()
    merge(world, github, pr.number)
    push_to_main_as(world, "mallory", {"manifests/ci.yaml": MANIFEST + "# the same policy\n"})
    world.pull()
    world.aws.clear_requests()
    result = reconcile_at(world, advance(DUE, hours=1))
    assert create_calls(world) == []
    assert world.iam_keys("deploy-bot") == {old: "Active"}
    assert refusals(result.plan) == ["manifest-changed-since-approval"]
    (fresh,) = open_pulls()  # the edited policy is proposed afresh
    assert {a.manifest for a in approvals_on(world, BRANCH).values()} == {manifest_blob(world)}
    assert fresh.number != pr.number


def test_apply_without_github_access_never_takes_the_approvals_file_for_an_approval(
    world: World, github: GitHubStandIn
) -> None:
    old = world.seed_user("deploy-bot", at=T0)
    reconcile(world, DUE)
    (pr,) = open_pulls()
    merge(world, github, pr.number)  # a genuine approval, but this run cannot check it
    world.aws.clear_requests()
    now = advance(DUE, hours=1)
    world.aws.set_clock(now)
    # No GITHUB_TOKEN: only the token that writes the application's Actions secrets.
    ci = CiEnvironment(api_url=github.url, secrets_token=github.token)
    ctx = RunContext(now, AwsSessions(), ci=ci, echo=lambda _: None)
    plan, _ = apply_once(ctx, world.clone)
    assert create_calls(world) == []
    assert world.iam_keys("deploy-bot") == {old: "Active"}
    assert refusals(plan) == ["no-github-access"]


def test_an_approval_github_cannot_confirm_approves_nothing_and_proposes_nothing_new(
    world: World, github: GitHubStandIn
) -> None:
    old = world.seed_user("deploy-bot", at=T0)
    reconcile(world, DUE)
    (pr,) = open_pulls()
    merge(world, github, pr.number)
    github.rate_limit(retry_after=3600)  # GitHub's first answer: wait an hour
    world.aws.clear_requests()
    result = reconcile_at(world, advance(DUE, hours=1))
    assert create_calls(world) == []
    assert [f.reason for f in result.plan.findings if f.user == "*"] == [Reason.APPROVAL_UNVERIFIED]
    assert open_pulls() == [], "an unconfirmed approval is not a refusal: nothing new to merge"
    reconcile(world, advance(DUE, hours=2))
    assert len(world.iam_keys("deploy-bot")) == 2 and old in world.iam_keys("deploy-bot")


# --- the approvals file stays exactly as merged while it is in use --------------------------------


def test_a_second_proposal_carries_the_rotation_in_progress_and_the_file_goes_when_all_are_done(
    world: World, github: GitHubStandIn
) -> None:
    deploy_old = world.seed_user("deploy-bot", at=T0)
    backup_old = world.seed_user("backup-bot", at=advance(T0, days=5))
    reconcile(world, DUE)
    (first,) = open_pulls()
    merge(world, github, first.number)
    reconcile_at(world, advance(DUE, hours=1), run="run-2")  # deploy-bot's new key is created
    assert len(world.iam_keys("deploy-bot")) == 2
    reconcile_at(world, advance(T0, days=85), run="run-3")  # backup-bot is due
    (second,) = open_pulls()
    proposed = approvals_on(world, BRANCH)
    assert sorted(proposed) == ["backup-bot", "deploy-bot"]
    assert {a.proposal for a in proposed.values()} == {"run-3"}, "carried over, stamped anew"
    merge(world, github, second.number)
    reconcile(world, advance(T0, days=85, hours=1))
    assert len(world.iam_keys("backup-bot")) == 2, "the second approval is verified"
    merged = (world.clone / approvals_path(POLICY)).read_text()
    deploy_new = next(k for k in world.iam_keys("deploy-bot") if k != deploy_old)
    iam = world.aws.client("iam")  # deploy-bot's rotation ends (its old key is gone)
    iam.delete_access_key(UserName="deploy-bot", AccessKeyId=deploy_old)
    reconcile(world, advance(T0, days=85, hours=2))
    assert world.iam_keys("deploy-bot") == {deploy_new: "Active"}
    assert (world.clone / approvals_path(POLICY)).read_text() == merged, "kept whole"
    backup_new = next(k for k in world.iam_keys("backup-bot") if k != backup_old)
    iam.delete_access_key(UserName="backup-bot", AccessKeyId=backup_old)
    reconcile(world, advance(T0, days=85, hours=3))
    assert world.iam_keys("backup-bot") == {backup_new: "Active"}
    assert not (world.clone / approvals_path(POLICY)).exists(), "removed once all are done"


def test_a_rotation_whose_approval_is_voided_midway_is_proposed_again_to_carry_on(
    world: World, github: GitHubStandIn
) -> None:
    old = world.seed_user("deploy-bot", at=T0)
    reconcile(world, DUE)
    (pr,) = open_pulls()
    merge(world, github, pr.number)
    reconcile(world, advance(DUE, hours=1))  # the new key is created and stored
    push_to_main_as(world, "carol", {"manifests/ci.yaml": MANIFEST + "# the same policy\n"})
    world.pull()
    world.aws.set_clock(advance(DUE, hours=3))
    world.application_call(json_secret(world))
    reconcile(world, advance(DUE, days=1, hours=2))  # deactivation would be due now
    assert world.iam_keys("deploy-bot")[old] == "Active", "a voided approval allows no step"
    (again,) = open_pulls()
    assert again.number != pr.number and "deploy-bot" in approvals_on(world, BRANCH)
    merge(world, github, again.number)
    reconcile(world, advance(DUE, days=1, hours=3))
    assert world.iam_keys("deploy-bot")[old] == "Inactive"
