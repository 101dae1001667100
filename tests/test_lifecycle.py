"""A whole rotation, end to end: Due -> AwaitingUse -> Deactivated -> Current.

keyrotor runs through its CLI against the moto server and a real Git remote; the application is
a client that reads its credentials from Secrets Manager and makes signed calls.
"""

from __future__ import annotations

import json

import git
import pytest

from controller.sandbox.config import DEFAULT_START as T0
from tests.support.world import POLICY, USER, World, advance

DAY80 = advance(T0, days=80)


@pytest.fixture(autouse=True)
def _seeded(world: World) -> None:
    world.seed_policy()


def rotate_fully(world: World) -> dict[str, str]:
    """Run the lifecycle; return the key id at each stage."""
    old = world.seed_user(at=T0)
    assert world.cli("apply", now=advance(T0, days=10)) == 0  # adopted while young
    assert world.cli("apply", now=DAY80) == 0
    (new,) = set(world.iam_keys()) - {old}
    world.aws.set_clock(advance(DAY80, hours=2))
    world.application_call()
    assert world.cli("apply", now=advance(DAY80, days=1, hours=3)) == 0
    assert world.cli("apply", now=advance(DAY80, days=8, hours=4)) == 0
    return {"old": old, "new": new}


def test_a_due_key_is_replaced_and_the_new_key_stored_in_every_target(world: World) -> None:
    old = world.seed_user(at=T0)
    assert world.cli("apply", now=DAY80) == 0
    keys = world.iam_keys()
    (new,) = set(keys) - {old}
    assert keys == {old: "Active", new: "Active"}
    assert world.held_key_ids() == {new}
    assert "phase: AwaitingUse" in world.status_doc()


def test_the_stored_secret_authenticates_as_the_user_at_each_stage(world: World) -> None:
    old = world.seed_user(at=T0)
    arn = f"arn:aws:iam::123456789012:user/{USER}"
    world.cli("apply", now=DAY80)
    world.aws.set_clock(advance(DAY80, hours=1))
    assert world.application_call() == arn
    assert world.application_call(world.parameter_value()) == arn
    world.cli("apply", now=advance(DAY80, days=1, hours=3))
    assert world.iam_keys()[old] == "Inactive"
    assert world.application_call() == arn
    world.cli("apply", now=advance(DAY80, days=8, hours=4))
    assert old not in world.iam_keys()
    assert world.application_call() == arn


def test_the_old_key_stays_active_until_the_application_uses_the_new_one(world: World) -> None:
    old = world.seed_user(at=T0)
    world.cli("apply", now=DAY80)
    assert world.cli("apply", now=advance(DAY80, days=3)) == 0
    assert world.iam_keys()[old] == "Active"
    world.aws.set_clock(advance(DAY80, days=3, hours=1))
    world.application_call()
    world.cli("apply", now=advance(DAY80, days=3, hours=2))
    assert world.iam_keys()[old] == "Inactive"


def test_after_a_full_rotation_the_user_is_current_with_only_the_new_key(world: World) -> None:
    ids = rotate_fully(world)
    assert world.iam_keys() == {ids["new"]: "Active"}
    doc = world.status_doc()
    assert "phase: Current" in doc and f"oldKey: {ids['new']}" in doc


def test_a_full_rotation_changes_keys_three_times_and_records_each_in_iam(world: World) -> None:
    world.seed_user(at=T0)
    world.aws.clear_requests()
    old_run_calls = len(world.aws.requests())
    assert old_run_calls == 0
    world.cli("apply", now=DAY80)
    world.aws.set_clock(advance(DAY80, hours=2))
    world.application_call()
    world.cli("apply", now=advance(DAY80, days=1, hours=3))
    world.cli("apply", now=advance(DAY80, days=8, hours=4))
    iam = [c for c in world.mutating_calls() if c.startswith("iam ")]
    assert iam == [
        "iam TagUser",  # adopt: the user's one key is keyrotor's
        "iam TagUser",  # the intent, before the key exists
        "iam CreateAccessKey",
        "iam TagUser",  # the new key is keyrotor's too, and the intent fulfilled
        "iam UpdateAccessKey",
        "iam DeleteAccessKey",
        "iam TagUser",  # the old key is gone from the record
    ]


def test_each_step_is_a_commit_whose_trailers_history_prints(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = rotate_fully(world)
    capsys.readouterr()
    from controller.cli import main

    assert main(["history", "--repo", str(world.clone), "--format", "json"]) == 0
    entries = json.loads(capsys.readouterr().out)["entries"]
    steps = [(e["policy"], e["user"], e["action"], e["key"]) for e in entries]
    assert steps == [
        (POLICY, USER, "delete-key", ids["old"]),
        (POLICY, USER, "deactivate-key", ids["old"]),
        (POLICY, USER, "create-key", ids["new"]),
        (POLICY, USER, "adopt-key", ids["old"]),
    ]


def test_status_commits_are_pushed_to_origin(world: World) -> None:
    rotate_fully(world)
    with git.Repo(world.bare) as origin:
        subjects = [c.summary for c in origin.iter_commits("main")]
    assert subjects[:4] == [
        f"keyrotor({POLICY}): delete old key of {USER}",
        f"keyrotor({POLICY}): deactivate old key of {USER}",
        f"keyrotor({POLICY}): create key for {USER}",
        f"keyrotor({POLICY}): about to create a key for {USER}",
    ]


def test_a_run_with_nothing_to_do_makes_no_commit(world: World) -> None:
    world.seed_user(at=T0)
    world.cli("apply", now=advance(T0, days=10))
    with git.Repo(world.clone) as repo:
        head = repo.head.commit.hexsha
        world.cli("apply", now=advance(T0, days=11))
        assert repo.head.commit.hexsha == head


def test_no_secret_reaches_git_or_output(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    rotate_fully(world)
    from controller.cli import main

    for args in (["status"], ["history"], ["plan", "--format", "json"], ["plan"]):
        main([*args, "--repo", str(world.clone)])
    out = capsys.readouterr()
    secrets = [s.encode() for s in world.secrets]
    assert len(secrets) >= 2  # the adopted key's secret and the one keyrotor created
    for blob in world.git_objects():
        assert not any(s in blob for s in secrets)
    for text in (out.out, out.err):
        assert not any(s.decode() in text for s in secrets)


def test_plan_makes_no_mutating_aws_call_at_any_stage(world: World) -> None:
    world.seed_user(at=T0)
    for now, then_apply in (
        (DAY80, True),
        (advance(DAY80, days=2), True),
        (advance(DAY80, days=9), False),
    ):
        world.aws.clear_requests()
        assert world.cli("plan", now=now) == 0
        assert world.mutating_calls() == []
        assert any(c.action == "ListAccessKeys" for c in world.aws.requests())
        if then_apply:
            world.cli("apply", now=now)
            world.aws.set_clock(advance(now, hours=1))
            world.application_call()


def test_plan_detailed_exitcode_says_whether_changes_are_pending(world: World) -> None:
    world.seed_user(at=T0)
    young = advance(T0, days=10)
    assert world.cli("plan", "--detailed-exitcode", now=young) == 2, "adopting is a change"
    assert world.cli("apply", now=young) == 0
    assert world.cli("plan", "--detailed-exitcode", now=advance(young, hours=1)) == 0
    assert world.cli("plan", "--detailed-exitcode", now=DAY80) == 2


def test_status_shows_phase_key_ages_and_the_next_step(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    old = world.seed_user(at=T0)
    world.cli("apply", now=advance(T0, days=10))
    capsys.readouterr()
    assert world.cli("status", now=advance(T0, days=12)) == 0
    out = capsys.readouterr().out
    assert f"{POLICY}  {USER}  Current  {old}  12d" in out
    assert "create-key 2026-03-18 00:00Z" in out
    assert "1 users, 0 overdue." in out


def test_status_flags_a_key_past_max_age_as_overdue(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.seed_user(at=T0)
    world.cli("apply", now=DAY80)
    capsys.readouterr()
    world.cli("status", now=advance(T0, days=91))
    out = capsys.readouterr().out
    assert "AwaitingUse OVERDUE" in out and "1 users, 1 overdue." in out


def test_history_text_lists_each_step_with_its_commit_and_author(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = rotate_fully(world)
    capsys.readouterr()
    from controller.cli import main

    main(["history", "--repo", str(world.clone), "--user", USER])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5  # a header, three steps and the adoption
    assert "delete-key" in lines[1] and ids["old"] in lines[1]
    assert "create-key" in lines[3] and ids["new"] in lines[3]
    assert "adopt-key" in lines[4] and ids["old"] in lines[4]
