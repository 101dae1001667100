"""What a user sees of the lifecycle: plan during a rollback, the reason a rotation waits, and a
history that records only what a person would care about. Driven through the CLI, end to end.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta

import pytest

from controller.cli import main
from controller.sandbox.config import DEFAULT_START as T0
from tests.support.world import MANIFEST, USER, World, advance

DAY80 = advance(T0, days=80)
STRAGGLER_MANIFEST = (
    MANIFEST + "  checks:\n    - {type: new-key-used}\n    - {type: old-key-idle, for: 24h}\n"
)
# A command check whose message names how long it took: the noise of the first release.
CHECKED_MANIFEST = MANIFEST + (
    "  checks:\n    - {type: new-key-used}\n"
    '    - {type: command, run: [python3, -c, "pass"], timeout: 30s}\n'
)


def output_of(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().out


def use_key(world: World, key_id: str, secret: str, at: datetime) -> None:
    world.aws.set_clock(at)
    world.application_call({"AccessKeyId": key_id, "SecretAccessKey": secret})


def new_secret(world: World) -> tuple[str, str]:
    creds = world.secret_value()
    assert creds is not None
    return creds["AccessKeyId"], creds["SecretAccessKey"]


def test_plan_during_a_rollback_shows_the_reactivation_instead_of_crashing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.seed_policy()
    old = world.seed_user(at=T0)
    assert world.cli("apply", now=DAY80) == 0
    use_key(world, *new_secret(world), at=advance(DAY80, hours=2))
    assert world.cli("apply", now=advance(DAY80, days=1, hours=3)) == 0
    assert world.iam_keys()[old] == "Inactive"
    # A person rolls back by hand during the grace period.
    world.aws.client("iam").update_access_key(UserName=USER, AccessKeyId=old, Status="Active")
    now = advance(DAY80, days=1, hours=4).isoformat()
    for command in (["plan"], ["apply", "--dry-run"]):
        code, out = output_of(capsys, *command, "--repo", str(world.clone), "--now", now)
        assert code == 0, out
        assert f"reactivate-key {old}" in out


def test_status_names_the_gate_that_holds_the_rotation_and_each_checks_state(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.seed_policy(STRAGGLER_MANIFEST)
    old = world.seed_user(at=T0)
    old_secret = world.secrets[0]
    assert world.cli("apply", now=DAY80) == 0
    new, secret = new_secret(world)
    for hours in (2, 8, 14, 20, 26):  # the new key is used, but a straggler keeps the old one
        use_key(world, new, secret, advance(DAY80, hours=hours))
        use_key(world, old, old_secret, advance(DAY80, hours=hours, minutes=30))
    assert world.cli("apply", now=advance(DAY80, days=1, hours=3)) == 0
    assert world.iam_keys()[old] == "Active", "held by old-key-idle"

    code, out = output_of(capsys, "status", "--repo", str(world.clone), "--format", "json")
    (user,) = json.loads(out)["users"]
    assert "old-key-idle" in user["message"]
    assert "waiting for the application to use it" not in user["message"]
    states = {c["check"]: c["state"] for c in user["checks"]}
    assert states == {"new-key-used": "passed", "old-key-idle": "failed"}
    assert all(c["since"] and c["message"] for c in user["checks"])

    code, out = output_of(capsys, "status", "--repo", str(world.clone))
    assert code == 0
    assert "old-key-idle" in out and "failed" in out and "passed" in out


def status_commits(world: World) -> list[str]:
    log = subprocess.run(
        ["git", "-C", str(world.bare), "log", "--format=%s", "main", "--", "status/"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return log.splitlines()


@pytest.mark.slow
@pytest.mark.timeout(600)  # 240 runs: about 140 s on 2 busy cores, past the 120 s default
def test_a_rotation_run_every_hour_makes_at_most_six_status_commits(world: World) -> None:
    world.seed_policy(CHECKED_MANIFEST)
    world.seed_user(at=T0)
    assert world.cli("apply", now=advance(T0, days=10)) == 0  # adopted long before it is due
    adopted = len(status_commits(world))
    due = advance(T0, days=76)
    at = due
    while at <= advance(due, days=10):
        creds = world.secret_value()
        if creds is not None and at > due:
            use_key(world, creds["AccessKeyId"], creds["SecretAccessKey"], advance(at, hours=-3))
        assert world.cli("apply", now=at) == 0
        at += timedelta(hours=1)
    assert len(world.iam_keys()) == 1, "the rotation completed"
    rotation = status_commits(world)[: len(status_commits(world)) - adopted]
    assert len(rotation) <= 6, rotation
