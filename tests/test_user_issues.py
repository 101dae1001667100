"""One issue per user that needs a person, opened, updated in place and closed by `reconcile`
from the status the same run wrote. End to end against the OpenAPI-checked GitHub stand-in."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

import pytest

from controller.cli import main
from controller.github.client import GitHubClient, Issue
from controller.sandbox.config import DEFAULT_START as T0
from tests.support.github_standin import GitHubStandIn
from tests.support.world import MANIFEST, POLICY, USER, World, advance

REPO = "acme/policies"


@pytest.fixture(autouse=True)
def _connected_to_github(
    world: World, github: GitHubStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable, value in {
        "GITHUB_API_URL": github.url,
        "GITHUB_TOKEN": github.token,
        "GITHUB_REPOSITORY": REPO,
    }.items():
        monkeypatch.setenv(variable, value)


def reconcile(world: World, now: datetime) -> int:
    world.aws.set_clock(now)
    code = main(["reconcile", "--repo", str(world.clone), "--now", now.isoformat()])
    world.pull()
    return code


def open_issues() -> list[Issue]:
    with GitHubClient() as client:
        return [i for i in client.list_issues(labels=["keyrotor"]) if not i.is_pull_request]


def comments(number: int) -> list[str]:
    with GitHubClient() as client:
        return [c.body for c in client.list_comments(number)]


def use_new_key(world: World, at: datetime) -> None:
    world.aws.set_clock(at)
    world.application_call()


def test_an_issue_is_opened_updated_in_place_and_closed_as_the_user_recovers(
    world: World,
) -> None:
    world.seed_policy(MANIFEST + "  suspend: true\n")
    old = world.seed_user(at=T0)
    assert reconcile(world, advance(T0, days=91)) == 0
    (issue,) = open_issues()
    assert f"`{old}` passed maxKeyAge" in (issue.body or "")

    foreign = world.aws.client("iam").create_access_key(UserName=USER)["AccessKey"]
    world.remember(foreign["SecretAccessKey"])
    reconcile(world, advance(T0, days=92))
    (blocked,) = open_issues()
    assert blocked.number == issue.number, "updated in place, not a second issue"
    assert "**Blocked**" in (blocked.body or "") and foreign["AccessKeyId"] in (blocked.body or "")

    world.aws.client("iam").delete_access_key(UserName=USER, AccessKeyId=foreign["AccessKeyId"])
    world.seed_policy(MANIFEST)  # suspend lifted: the rotation starts
    reconcile(world, advance(T0, days=93))
    (rotating,) = open_issues()
    assert rotating.number == issue.number and "Overdue" in (rotating.body or "")
    unchanged = rotating.body
    reconcile(world, advance(T0, days=93, hours=6))
    (same,) = open_issues()
    assert same.body == unchanged, "nothing new: the issue is not edited"

    use_new_key(world, advance(T0, days=93, hours=8))
    reconcile(world, advance(T0, days=94, hours=1))
    assert world.iam_keys()[old] == "Inactive"
    assert open_issues() == [], "the inactive old key in its grace period is not overdue"
    assert any("is fine again" in body for body in comments(issue.number))


def test_a_rollback_opens_its_issue_in_the_same_run(world: World) -> None:
    flags = Path(tempfile.mkdtemp(prefix="keyrotor-flag-"))
    flags.chmod(0o755)  # command checks may run as an unprivileged user
    flag = flags / "exit-code"
    flag.write_text("0")
    flag.chmod(0o644)
    smoke = f"import sys; sys.exit(int(open({str(flag)!r}).read()))"
    world.seed_policy(
        MANIFEST + "  checks:\n    - {type: new-key-used}\n"
        f'    - {{type: command, run: [python3, -c, "{smoke}"]}}\n'
    )
    old = world.seed_user(at=T0)
    reconcile(world, advance(T0, days=80))
    use_new_key(world, advance(T0, days=80, hours=2))
    reconcile(world, advance(T0, days=81, hours=3))
    assert world.iam_keys()[old] == "Inactive"
    assert open_issues() == []

    flag.write_text("1")  # the application breaks
    reconcile(world, advance(T0, days=82))
    assert world.iam_keys()[old] == "Active", "rolled back"
    (issue,) = open_issues()
    assert "**RolledBack**" in (issue.body or "")
    assert f"policy={POLICY} account=123456789012 user={USER}" in (issue.body or "")
