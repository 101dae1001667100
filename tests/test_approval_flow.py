"""Merge is the approval: a pull-request policy changes nothing in IAM until a person merges.

End to end with a real bare Git remote, the moto sandbox and the OpenAPI-validated GitHub
stand-in (any request or answer outside GitHub's published contract fails the test).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import git
import pytest

from controller.approvals import Approval, approvals_path, key_digest
from controller.approvals import dump as dump_approvals
from controller.cli import main
from controller.github.client import GitHubClient, PullRequest
from controller.inventory import ObservedKey
from controller.sandbox.config import DEFAULT_START as T0
from tests.support.github_standin import GitHubStandIn
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
    }.items():
        monkeypatch.setenv(variable, value)
    for user in ("deploy-bot", "backup-bot"):
        github.add_environment(APP_REPO, user)
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


def merge_as_a_person(world: World, github: GitHubStandIn, number: int) -> None:
    """What GitHub's merge button does by default: a merge commit on main by the merger."""
    person = world.tmp / "alice"
    with git.Repo.clone_from(str(world.bare), str(person), branch="main") as repo:
        repo.git.fetch("origin", BRANCH)
        repo.git.merge(
            "--no-ff", "FETCH_HEAD", "-m", f"Merge pull request #{number} from {REPO}/{BRANCH}",
            env={"GIT_AUTHOR_NAME": "Alice Reviewer", "GIT_AUTHOR_EMAIL": "alice@example.com",
                 "GIT_COMMITTER_NAME": "GitHub", "GIT_COMMITTER_EMAIL": "noreply@github.com"},
        )  # fmt: skip
        repo.git.push("origin", "main")
    github.merge_pull(REPO, number)


def create_calls(world: World) -> list[str]:
    return [c for c in world.mutating_calls() if c == "iam CreateAccessKey"]


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
    merge_as_a_person(world, github, pr.number)
    world.pull()
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
        ("deploy-bot", deploy_old, "Alice Reviewer <alice@example.com>")
    ]
    steps = [e["action"] for e in entries if e["user"] == "deploy-bot"]
    assert steps == [
        "delete-key", "deactivate-key", "create-key", "approve", "propose", "adopt-key"
    ]  # fmt: skip


def json_secret(world: World) -> dict[str, str]:
    value = world.aws.client("secretsmanager").get_secret_value(
        SecretId=SECRET_ID, VersionStage="AWSCURRENT"
    )["SecretString"]
    creds: dict[str, str] = json.loads(value)
    world.remember(creds["SecretAccessKey"])
    return creds


def test_a_stale_approval_is_refused_and_a_fresh_pull_request_opened(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    old = world.seed_user("deploy-bot", at=T0)
    then = [ObservedKey(old, "Active", T0), ObservedKey("AKIAGONE000000000000", "Active", T0)]
    approvals = {"deploy-bot": Approval(POLICY, "deploy-bot", old, key_digest(then))}
    with git.Repo(world.clone) as repo:
        path = world.clone / approvals_path(POLICY)
        path.parent.mkdir()
        path.write_text(dump_approvals(POLICY, approvals) or "")
        repo.index.add([approvals_path(POLICY)])
        repo.index.commit("an approval merged while the user had two keys")
        repo.git.push("origin", "main")
    world.aws.clear_requests()
    assert reconcile(world, DUE) == 0
    assert create_calls(world) == []
    assert "stale approval refused" in capsys.readouterr().out
    (pr,) = open_pulls()
    assert key_digest([ObservedKey(old, "Active", T0)]) in (pr.body or "")


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
    assert any("commits that keyrotor did not make" in c.body for c in comments)


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
    merge_as_a_person(world, github, pr.number)
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
    merge_as_a_person(world, github, pr.number)
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
