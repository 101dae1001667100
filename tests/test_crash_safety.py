"""A run may die between any two calls. The next run converges and the safety rules hold.

Each test kills `apply` at one named point of one rotation step (the executor calls a hook
before and after every mutating AWS call and target write, and before every push), then lets
later runs, each in a fresh clone as CI has, carry the rotation to its end. Every point runs in
`make test-faults`; `make test` runs the `SAMPLED` ones.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from controller.gitops.repo import StatusRepo
from controller.plan import ActionKind
from controller.sandbox.config import DEFAULT_START as T0
from controller.service import execute, prepare
from tests.support.checks import public_dir
from tests.support.world import MANIFEST, PARAMETER, SECRET_ID, World, advance

SM = f"aws-secrets-manager {SECRET_ID}"
SSM = f"aws-ssm-parameter {PARAMETER}"
CREATE_AT = advance(T0, days=80)
DEACTIVATE_AT = advance(T0, days=81, hours=3)
DELETE_AT = advance(T0, days=88, hours=4)

CREATE_POINTS = [
    "push:intent",
    "before:tag_user intent",
    "after:tag_user intent",
    "before:create_access_key",
    "after:create_access_key",
    "before:sts_get_caller_identity",
    "after:sts_get_caller_identity",
    f"before:write {SM}",
    f"after:write {SM}",
    f"before:write {SSM}",
    f"after:write {SSM}",
    "before:tag_user keys",
    "after:tag_user keys",
    "push:status",
]
DEACTIVATE_POINTS = ["before:update_access_key", "after:update_access_key", "push:status"]
DELETE_POINTS = [
    "before:delete_access_key",
    "after:delete_access_key",
    "before:tag_user keys",
    "after:tag_user keys",
    "push:status",
]


#: The crash points `make test` runs; the others run in `make test-faults` (marker `faults`).
SAMPLED = frozenset(
    {"push:intent", "after:create_access_key", "after:update_access_key",
     "after:delete_access_key"}
)  # fmt: skip


def sampled(points: list[str]) -> list[object]:
    return [p if p in SAMPLED else pytest.param(p, marks=pytest.mark.faults) for p in points]


class SimulatedCrash(BaseException):
    """Not an Exception: nothing in keyrotor may catch it, as nothing catches SIGKILL."""


@pytest.fixture(autouse=True)
def _seeded(world: World) -> None:
    """A user keyrotor adopted on its first run, long before its key is due."""
    world.seed_policy()
    world.seed_user(at=T0)
    _, adopted = world.apply(world.fresh_clone(), advance(T0, days=1))
    assert [r.action.kind for r in adopted.results] == [ActionKind.ADOPT_KEY]


def run(world: World, now: datetime, crash_at: str | None = None) -> None:
    """One scheduled run in a fresh clone; with `crash_at`, it dies at that point."""
    world.aws.set_clock(now)

    def hook(point: str) -> None:
        if point == crash_at:
            raise SimulatedCrash(point)

    clone = world.fresh_clone()
    if crash_at is None:
        _, result = world.apply(clone, now)
        assert not result.failed, [r.error for r in result.failed]
    else:
        with pytest.raises(SimulatedCrash):
            world.apply(clone, now, hook=hook)
    assert_safe(world)


def assert_safe(world: World) -> None:
    keys = world.iam_keys()
    assert len(keys) <= 2, f"more than two keys: {keys}"
    assert "Active" in keys.values(), "the user has no working key"
    for held in world.held_key_ids():
        assert keys.get(held) == "Active", f"a target holds {held}, which is {keys.get(held)}"


def use_new_key(world: World, at: datetime) -> None:
    world.aws.set_clock(at)
    world.application_call()


def finish(world: World, start: datetime) -> None:
    """Let scheduled runs carry the rotation to its end, the application using what it is given."""
    for day in (0, 1, 2, 9, 10):
        now = advance(start, days=day, minutes=30)
        run(world, now)
        if world.held_key_ids():
            use_new_key(world, advance(now, hours=1))
    keys = world.iam_keys()
    assert list(keys.values()) == ["Active"], keys
    assert world.held_key_ids() == set(keys)
    assert world.application_call().endswith(":user/deploy-bot")


@pytest.mark.parametrize("point", sampled(CREATE_POINTS))
def test_a_crash_while_creating_the_key_converges(world: World, point: str) -> None:
    run(world, CREATE_AT, crash_at=point)
    run(world, advance(CREATE_AT, minutes=5))
    assert len(world.iam_keys()) == 2, "the next run finishes creating the new key"
    finish(world, advance(CREATE_AT, hours=2))


@pytest.mark.parametrize("point", sampled(DEACTIVATE_POINTS))
def test_a_crash_while_deactivating_the_old_key_converges(world: World, point: str) -> None:
    run(world, CREATE_AT)
    use_new_key(world, advance(CREATE_AT, hours=2))
    run(world, DEACTIVATE_AT, crash_at=point)
    run(world, advance(DEACTIVATE_AT, minutes=5))
    assert sorted(world.iam_keys().values()) == ["Active", "Inactive"]
    finish(world, advance(DEACTIVATE_AT, hours=1))


@pytest.mark.parametrize("point", sampled(DELETE_POINTS))
def test_a_crash_while_deleting_the_old_key_converges(world: World, point: str) -> None:
    run(world, CREATE_AT)
    use_new_key(world, advance(CREATE_AT, hours=2))
    run(world, DEACTIVATE_AT)
    run(world, DELETE_AT, crash_at=point)
    run(world, advance(DELETE_AT, minutes=5))
    assert list(world.iam_keys().values()) == ["Active"]


def test_the_crash_points_tested_are_every_point_a_rotation_passes(world: World) -> None:
    seen: list[str] = []
    for now in (CREATE_AT, DEACTIVATE_AT, DELETE_AT):
        world.aws.set_clock(now)
        world.apply(world.fresh_clone(), now, hook=seen.append)
        use_new_key(world, advance(now, hours=1))
    assert seen == CREATE_POINTS + DEACTIVATE_POINTS + DELETE_POINTS


def test_a_run_that_loses_the_intent_race_creates_nothing_and_its_clone_recovers(
    world: World,
) -> None:
    slow = world.fresh_clone()
    world.aws.set_clock(CREATE_AT)
    ctx = world.context(CREATE_AT)
    with StatusRepo.open(slow) as repo:
        prepared = prepare(ctx, repo)  # planned before the other run published its intent
        assert [a.kind for a in prepared.plan.actions] == [ActionKind.CREATE_KEY]
        run(world, CREATE_AT, crash_at="before:create_access_key")  # the other run's intent
        world.aws.clear_requests()
        result = execute(ctx, repo, prepared)
    assert world.mutating_calls() == [], "nothing touched AWS"
    assert len(world.iam_keys()) == 1
    (error,) = result.errors
    assert "another run changed status/ci-deployers/" in error and "nothing was changed" in error
    # The same checkout, a run later, carries on without a person's help.
    later = advance(CREATE_AT, minutes=10)
    _, again = world.apply(slow, later)
    assert not again.failed and not again.errors
    assert len(world.iam_keys()) == 2


def test_a_fresh_intent_of_another_run_is_waited_for_not_raced(world: World) -> None:
    run(world, CREATE_AT, crash_at="before:create_access_key")
    world.aws.clear_requests()
    plan, result = world.apply(world.fresh_clone(), advance(CREATE_AT, minutes=1))
    assert plan.actions == () and not result.failed
    assert world.mutating_calls() == []
    assert any("another run" in f.message for f in plan.findings)


ROLLBACK_POINTS = [
    "before:update_access_key",
    "after:update_access_key",
    f"before:write {SM}",
    f"after:write {SM}",
    f"before:write {SSM}",
    f"after:write {SSM}",
    "push:status",
]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory a check can read even when it runs as `nobody` (keyrotor as root)."""
    path = public_dir("keyrotor-smoke-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("point", sampled(ROLLBACK_POINTS))
def test_a_crash_while_rolling_back_converges_to_rolled_back(
    world: World, shared_dir: Path, point: str
) -> None:
    w = world
    flag = shared_dir / "smoke-exit-code"
    flag.write_text("0")
    (old,) = w.iam_keys()
    creds = json.dumps({"AccessKeyId": old, "SecretAccessKey": w.secrets[0]})
    w.aws.client("secretsmanager").create_secret(Name=SECRET_ID, SecretString=creds)
    w.aws.client("ssm").put_parameter(Name=PARAMETER, Value=creds, Type="SecureString")
    smoke = f"import sys; sys.exit(int(open({str(flag)!r}).read()))"
    w.seed_policy(
        MANIFEST + "  checks:\n    - {type: new-key-used}\n"
        f'    - {{type: command, run: [python3, -c, "{smoke}"]}}\n'
    )
    run(w, CREATE_AT)
    use_new_key(w, advance(CREATE_AT, hours=2))
    run(w, DEACTIVATE_AT)
    assert w.iam_keys()[old] == "Inactive"
    flag.write_text("1")  # the application breaks
    run(w, advance(DEACTIVATE_AT, days=1), crash_at=point)
    run(w, advance(DEACTIVATE_AT, days=1, minutes=5))
    assert w.iam_keys()[old] == "Active"
    assert w.held_key_ids() == {old}
    assert "phase: RolledBack" in w.status_doc(w.tmp / f"run-{w.clones}")


def test_a_lost_answer_to_delete_access_key_is_the_goal_reached_and_recorded(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from controller.cli import main
    from tests.support.faultproxy import Fault, Rule, start_fault_proxy

    run(world, CREATE_AT)
    use_new_key(world, advance(CREATE_AT, hours=2))
    run(world, DEACTIVATE_AT)
    (old,) = [k for k, s in world.iam_keys().items() if s == "Inactive"]
    with start_fault_proxy(world.aws) as proxy:
        for name, value in proxy.env(world.aws).items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        # IAM deletes the key, the answer never arrives; the resend is told NoSuchEntity.
        proxy.add(Rule(Fault.CLOSE_AFTER, action="DeleteAccessKey", nth=1))
        world.aws.set_clock(DELETE_AT)
        clone = world.fresh_clone()
        code = main(["apply", "--repo", str(clone), "--now", DELETE_AT.isoformat()])
        assert proxy.answered("NoSuchEntity"), "the resend met a key already gone"
    assert code == 0
    assert old not in world.iam_keys()
    capsys.readouterr()
    main(["history", "--repo", str(world.fresh_clone()), "--format", "json"])
    steps = [(e["action"], e["key"]) for e in json.loads(capsys.readouterr().out)["entries"]]
    assert ("delete-key", old) in steps
