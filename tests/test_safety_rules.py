"""The safety rules, end to end, each against the real sandbox and a real Git remote.

Never a third key; never touch a key keyrotor did not create or adopt; never deactivate or delete
a key a target holds; never leave a user without an active key; things changed out of band are
reported, not crashed on.
"""

from __future__ import annotations

import json

import pytest

from controller.cli import main
from controller.executor import VERIFY_DELAYS
from controller.gitops.repo import StatusRepo
from controller.planner import ActionKind
from controller.sandbox.config import DEFAULT_START as T0
from controller.service import execute, prepare
from tests.support.world import PARAMETER, USER, World, advance

DAY80 = advance(T0, days=80)


@pytest.fixture(autouse=True)
def _seeded(world: World) -> None:
    world.seed_policy()


def status_json(world: World, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    capsys.readouterr()
    assert main(["status", "--repo", str(world.clone), "--format", "json"]) == 0
    (user,) = json.loads(capsys.readouterr().out)["users"]
    return dict(user)


def test_a_foreign_second_key_blocks_the_rotation_and_nothing_is_changed(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.seed_user(at=T0)
    world.cli("apply", now=advance(T0, days=1))
    world.aws.set_clock(advance(T0, days=5))
    foreign = world.aws.client("iam").create_access_key(UserName=USER)["AccessKey"]
    world.remember(foreign["SecretAccessKey"])
    world.aws.clear_requests()
    assert world.cli("apply", now=DAY80) == 0
    assert world.mutating_calls() == []
    user = status_json(world, capsys)
    assert user["phase"] == "Blocked"
    assert foreign["AccessKeyId"] in user["message"]


def test_a_key_made_by_a_person_after_planning_stops_the_create_before_a_third_key(
    world: World,
) -> None:
    world.seed_user(at=T0)
    assert world.cli("apply", now=advance(T0, days=10)) == 0  # adopted
    world.aws.set_clock(DAY80)
    with StatusRepo.open(world.clone) as repo:
        ctx = world.context(DAY80)
        prepared = prepare(ctx, repo)
        plan = prepared.plan
        assert [a.kind for a in plan.actions] == [ActionKind.CREATE_KEY]
        world.aws.client("iam").create_access_key(UserName=USER)  # a person, meanwhile
        result = execute(ctx, repo, prepared)
    assert [r.error for r in result.failed] == [
        f"{USER} already has two access keys ({', '.join(sorted(world.iam_keys()))}); "
        "a third cannot exist"
    ]
    assert len(world.iam_keys()) == 2


def rotate_to_awaiting_use(world: World) -> tuple[str, str]:
    old = world.seed_user(at=T0)
    world.cli("apply", now=DAY80)
    (new,) = set(world.iam_keys()) - {old}
    world.aws.set_clock(advance(DAY80, hours=2))
    world.application_call()
    return old, new


def overwrite_parameter_with(world: World, creds: dict[str, str]) -> None:
    world.aws.client("ssm").put_parameter(
        Name=PARAMETER, Value=json.dumps(creds), Type="SecureString", Overwrite=True
    )


def test_a_target_overwritten_out_of_band_blocks_deactivation(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    old, _ = rotate_to_awaiting_use(world)
    overwrite_parameter_with(world, {"AccessKeyId": old, "SecretAccessKey": world.secrets[0]})
    assert world.cli("apply", now=advance(DAY80, days=2)) == 0
    assert world.iam_keys()[old] == "Active"
    user = status_json(world, capsys)
    assert user["phase"] == "Blocked"
    assert f"aws-ssm-parameter {PARAMETER} holds {old}" in user["message"]


def test_a_stale_plan_never_deactivates_a_key_a_target_still_holds(world: World) -> None:
    old, _ = rotate_to_awaiting_use(world)
    now = advance(DAY80, days=2)
    world.aws.set_clock(now)
    with StatusRepo.open(world.clone) as repo:
        ctx = world.context(now)
        prepared = prepare(ctx, repo)
        plan = prepared.plan
        assert [a.kind for a in plan.actions] == [ActionKind.DEACTIVATE_KEY]
        overwrite_parameter_with(world, {"AccessKeyId": old, "SecretAccessKey": world.secrets[0]})
        result = execute(ctx, repo, prepared)
    assert len(result.failed) == 1
    assert "refusing to deactivate" in result.failed[0].error
    assert world.iam_keys()[old] == "Active"


def test_a_stale_plan_never_deletes_a_key_a_target_holds(world: World) -> None:
    old, _ = rotate_to_awaiting_use(world)
    world.cli("apply", now=advance(DAY80, days=2))
    now = advance(DAY80, days=10)
    world.aws.set_clock(now)
    with StatusRepo.open(world.clone) as repo:
        ctx = world.context(now)
        prepared = prepare(ctx, repo)
        plan = prepared.plan
        assert [a.kind for a in plan.actions] == [ActionKind.DELETE_KEY]
        overwrite_parameter_with(world, {"AccessKeyId": old, "SecretAccessKey": world.secrets[0]})
        result = execute(ctx, repo, prepared)
    assert "refusing to delete" in result.failed[0].error
    assert old in world.iam_keys()


def test_the_only_active_key_is_never_deactivated(world: World) -> None:
    old, new = rotate_to_awaiting_use(world)
    now = advance(DAY80, days=2)
    world.aws.set_clock(now)
    with StatusRepo.open(world.clone) as repo:
        ctx = world.context(now)
        prepared = prepare(ctx, repo)
        world.aws.client("iam").update_access_key(UserName=USER, AccessKeyId=new, Status="Inactive")
        result = execute(ctx, repo, prepared)
    assert "would leave no working key" in result.failed[0].error
    assert world.iam_keys()[old] == "Active"


def test_a_user_deleted_out_of_band_is_reported_not_crashed_on(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = rotate_to_awaiting_use(world)
    iam = world.aws.client("iam")
    for key_id in (old, new):
        iam.delete_access_key(UserName=USER, AccessKeyId=key_id)
    iam.delete_user(UserName=USER)
    assert world.cli("apply", now=advance(DAY80, days=2)) == 0
    user = status_json(world, capsys)
    assert user["phase"] == "Blocked"
    assert "does not exist any more" in user["message"]


def test_a_new_key_deleted_out_of_band_is_replaced_by_a_fresh_rotation(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = rotate_to_awaiting_use(world)
    world.aws.client("iam").delete_access_key(UserName=USER, AccessKeyId=new)
    assert world.cli("apply", now=advance(DAY80, days=2)) == 0
    keys = world.iam_keys()
    assert old in keys and new not in keys and len(keys) == 2
    assert world.held_key_ids() == set(keys) - {old}
    captured = capsys.readouterr().out
    assert f"drift: ci-deployers/{USER}: new key {new} was deleted outside keyrotor" in captured


def test_an_invalid_manifest_stops_everything_before_any_aws_call(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.seed_user(at=T0)
    (world.clone / "manifests" / "bad.yaml").write_text(
        "apiVersion: keyrotor.dev/v1\nkind: RotationPolicy\nmetadata: {name: bad}\nspec: {}\n"
    )
    world.aws.clear_requests()
    assert world.cli("apply", now=DAY80) == 1
    assert world.aws.requests() == []
    assert "manifests/bad.yaml:4:7:" in capsys.readouterr().err


def test_a_new_key_that_never_authenticates_is_deleted_and_the_user_held_until_resumed(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    old = world.seed_user(at=T0)
    iam = world.aws.client("iam")

    def never_authenticates(point: str) -> None:
        if point == "after:create_access_key":
            for key_id in set(world.iam_keys()) - {old}:
                iam.update_access_key(UserName=USER, AccessKeyId=key_id, Status="Inactive")

    slept: list[float] = []
    world.aws.set_clock(DAY80)
    with StatusRepo.open(world.clone) as repo:
        ctx = world.context(DAY80, hook=never_authenticates)
        prepared = prepare(ctx, repo)
        result = execute(ctx, repo, prepared, sleep=slept.append)
    assert "did not authenticate" in result.failed[0].error
    assert slept == list(VERIFY_DELAYS), "retried with backoff, without real sleeping"
    assert world.iam_keys() == {old: "Active"} and world.held_key_ids() == set()
    assert world.cli("apply", now=advance(DAY80, hours=1)) == 0
    assert world.iam_keys() == {old: "Active"}, "held: no new attempt without a person"
    assert status_json(world, capsys)["phase"] == "Blocked"

    assert main(["resume", "--repo", str(world.clone), "--policy", "ci-deployers",
                 "--user", USER, "--now", advance(DAY80, hours=2).isoformat()]) == 0  # fmt: skip
    assert world.cli("apply", now=advance(DAY80, hours=3)) == 0
    assert len(world.iam_keys()) == 2
