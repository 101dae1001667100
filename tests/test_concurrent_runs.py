"""Two `keyrotor apply` processes at once, in two clones of one remote, over the same users.

The processes race in real time (which one publishes each intent first is up to the scheduler),
so the test asserts only what must hold in every interleaving: no user gets more keys than a
rotation allows, every step either run recorded is in the remote's history, and the next run
carries on to the same end as a lone run would have.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from controller.sandbox.config import DEFAULT_START as T0
from tests.support.world import World, advance, iso

USERS = ("deploy-bot", "build-bot", "release-bot")
MANIFEST = f"""\
apiVersion: keyrotor.dev/v1
kind: RotationPolicy
metadata:
  name: ci-deployers
spec:
  users:
    names: [{", ".join(USERS)}]
  maxKeyAge: 90d
  rotateBefore: 14d
  deactivateAfter: 1d
  deleteAfter: 7d
  targets:
    - type: aws-secrets-manager
      secretId: "ci/{{user}}/aws"
  approval: auto
"""
CREATE_AT = advance(T0, days=80)


def keyrotor_apply(world: World, clone: Path, run_id: str) -> subprocess.Popen[str]:
    """The real CLI in a process of its own, as a scheduled CI job runs it."""
    env = world.aws.environ({**os.environ, "GITHUB_RUN_ID": run_id})
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller",
            "apply",
            "--repo",
            str(clone),
            "--now",
            iso(CREATE_AT),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def git_log(repo: Path, fmt: str, rev: str = "main") -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(repo), "log", f"--format={fmt}", rev],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def steps_of(repo: Path, run_id: str) -> set[str]:
    """The `Keyrotor-Step`s of the commits run `run_id` made on `repo`'s main."""
    out = subprocess.run(
        ["git", "-C", str(repo), "log", "--format=%(trailers:only,unfold)%x1e", "main"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    steps: set[str] = set()
    for commit in out.split("\x1e"):
        trailers = [line.strip() for line in commit.splitlines() if ": " in line]
        if f"Keyrotor-Run: {run_id}" in trailers:
            steps |= {t.split(": ", 1)[1] for t in trailers if t.startswith("Keyrotor-Step: ")}
    return steps


def test_two_runs_at_once_rotate_each_user_once_and_lose_no_record(world: World) -> None:
    world.seed_policy(MANIFEST)
    original = {user: world.seed_user(user, at=T0) for user in USERS}
    assert world.cli("apply", now=advance(T0, days=1)) == 0  # every user adopted

    world.aws.set_clock(CREATE_AT)
    clones = {run: world.fresh_clone() for run in ("run-a", "run-b")}
    processes = {run: keyrotor_apply(world, clone, run) for run, clone in clones.items()}
    outputs = {run: p.communicate(timeout=120)[0] for run, p in processes.items()}
    codes = {run: p.returncode for run, p in processes.items()}
    # A run that lost a race for a user says so and exits 1; nothing else may go wrong.
    assert set(codes.values()) <= {0, 1}, outputs

    for user in USERS:
        keys = world.iam_keys(user)
        assert len(keys) <= 2, (user, keys)
        assert original[user] in keys, "the key in service is untouched"
        assert list(keys.values()).count("Active") == len(keys)
    remote = {
        line.split(": ", 1)[1]
        for line in git_log(world.bare, "%(trailers:key=Keyrotor-Step)")
        if ": " in line
    }
    for run, clone in clones.items():
        lost = steps_of(clone, run) - remote
        assert not lost, f"{run} recorded steps the remote lacks: {lost}\n{outputs[run]}"
    for user in USERS:
        new = set(world.iam_keys(user)) - {original[user]}
        for key in new:
            assert f"{user} create-key {key}" in remote, f"{key} of {user} is in no record"

    # The next scheduled run carries every user's rotation on.
    later = advance(CREATE_AT, minutes=30)
    assert world.cli("apply", now=later, repo=world.fresh_clone()) == 0
    for user in USERS:
        keys = world.iam_keys(user)
        assert len(keys) == 2 and original[user] in keys, (user, keys)
        (fresh,) = set(keys) - {original[user]}
        value = world.aws.client("secretsmanager").get_secret_value(
            SecretId=f"ci/{user}/aws", VersionStage="AWSCURRENT"
        )["SecretString"]
        assert fresh in value, f"{user}'s secret holds its new key"


def test_a_run_that_meets_another_runs_key_before_it_is_stored_leaves_it_alone(
    world: World,
) -> None:
    """The interleaving the race above may take: run B plans and applies while run A holds a
    key it created a moment ago and has not stored yet."""
    from controller.service import apply_once

    world.seed_policy(MANIFEST)
    original = world.seed_user("deploy-bot", at=T0)
    assert world.cli("apply", now=advance(T0, days=1)) == 0
    world.aws.set_clock(CREATE_AT)
    other = world.fresh_clone()
    seen: list[str] = []

    def run_b_now(point: str) -> None:
        if point == "after:create_access_key" and not seen:
            seen.append(point)
            world.apply(other, advance(CREATE_AT, seconds=30))

    world.aws.set_clock(CREATE_AT)
    _, result = apply_once(world.context(CREATE_AT, hook=run_b_now), world.fresh_clone())
    assert seen, "run A created a key"
    keys = world.iam_keys("deploy-bot")
    assert len(keys) == 2 and original in keys, "run B deleted run A's new key"
    assert not result.failed, [r.error for r in result.failed]
