"""Runs in long-lived checkouts and clones that are behind: fetch first, never lose a record."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import git
import pytest

from controller.cli import main
from controller.sandbox.config import DEFAULT_START as T0
from tests.support.world import MANIFEST, World, advance

DAY80 = advance(T0, days=80)
TWO_USERS = MANIFEST.replace("names: [deploy-bot]", "names: [deploy-bot, backup-bot]")
SECOND_POLICY = (
    MANIFEST.replace("name: ci-deployers", "name: backups")
    .replace("names: [deploy-bot]", "names: [archive-bot]")
    .replace('"ci/{user}/aws"', '"backups/{user}/aws"')
    .replace('"/ci/{user}/aws"', '"/backups/{user}/aws"')
)


def remote_phases(world: World, capsys: pytest.CaptureFixture[str]) -> dict[tuple[str, str], str]:
    """Each user's phase as the remote records it (read through `keyrotor status`)."""
    clone = world.fresh_clone()
    capsys.readouterr()
    assert main(["status", "--repo", str(clone), "--format", "json"]) == 0
    users = json.loads(capsys.readouterr().out)["users"]
    return {(u["policy"], u["user"]): u["phase"] for u in users}


def test_a_clone_that_is_behind_never_overwrites_status_it_did_not_see(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first release's data loss: a run planned from stale status rebased its first push
    over another run's commits, then wrote the next policy's whole file from its stale plan."""
    world.seed_policy()  # ci-deployers: deploy-bot
    world.seed_user("deploy-bot", at=T0)
    world.seed_user("archive-bot", at=advance(T0, days=20))
    assert world.cli("apply", now=advance(T0, days=10)) == 0  # deploy-bot adopted
    world.seed_policy(SECOND_POLICY, name="backups.yaml")  # archive-bot not yet adopted
    behind = world.fresh_clone()
    # Run A rotates ci-deployers only.
    assert world.cli("apply", "--policy", "ci-deployers", now=DAY80, repo=world.fresh_clone()) == 0
    assert remote_phases(world, capsys)[("ci-deployers", "deploy-bot")] == "AwaitingUse"
    # Run B, on the clone that is behind, adopts archive-bot (its push must go over A's
    # commits) and plans deploy-bot from status that does not know A's new key.
    world.cli("apply", "--no-fetch", now=advance(DAY80, minutes=10), repo=behind)
    phases = remote_phases(world, capsys)
    assert phases[("ci-deployers", "deploy-bot")] == "AwaitingUse", "A's record survives"
    assert phases[("backups", "archive-bot")] == "Current", "B's record landed too"


def test_a_run_on_a_diverged_checkout_refuses_before_touching_aws(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.seed_policy()
    world.seed_user(at=T0)
    with git.Repo(world.clone) as repo:
        (world.clone / "notes.txt").write_text("a local commit\n")
        repo.index.add(["notes.txt"])
        repo.index.commit("a person's local commit")
    other = world.fresh_clone()
    with git.Repo(other) as repo:
        (Path(other) / "other.txt").write_text("pushed meanwhile\n")
        repo.index.add(["other.txt"])
        repo.index.commit("someone else's commit")
        repo.git.push("origin", "main")
    world.aws.clear_requests()
    assert world.cli("apply", now=DAY80) == 1
    assert "main" in capsys.readouterr().err
    assert world.mutating_calls() == []
    assert len(world.iam_keys()) == 1


def test_status_of_the_first_release_is_migrated_to_one_file_per_user(world: World) -> None:
    world.seed_policy()
    old = world.seed_user(at=T0)
    legacy = (
        "apiVersion: keyrotor.dev/v1\nkind: RotationStatus\npolicy: ci-deployers\n"
        "observedGeneration: ''\nusers:\n  deploy-bot:\n    phase: Current\n"
        f"    oldKey: {old}\n    oldKeyCreated: '2026-01-01T00:00:00Z'\n"
    )
    with git.Repo(world.clone) as repo:
        (world.clone / "status").mkdir()
        (world.clone / "status" / "ci-deployers.yaml").write_text(legacy)
        repo.index.add(["status/ci-deployers.yaml"])
        repo.index.commit("status written by keyrotor 0.1")
        repo.git.push("origin", "main")
    assert world.cli("apply", now=DAY80) == 0
    assert "phase: AwaitingUse" in world.status_doc(world.fresh_clone())
    gone = subprocess.run(
        ["git", "-C", str(world.bare), "cat-file", "-e", "main:status/ci-deployers.yaml"],
        capture_output=True,
    )
    assert gone.returncode != 0, "the old whole-policy file is removed once migrated"


REJECT_BACKUPS = """#!/bin/sh
# The remote refuses any push that carries a status commit of policy backups' steps.
while read old new ref; do
    if git log --format=%s "$old..$new" 2>/dev/null | grep -q '^keyrotor(backups): create key'; then
        echo "status of backups refused by this test" >&2
        exit 1
    fi
done
"""


def test_a_failed_status_push_of_one_policy_stops_no_other_and_the_run_exits_1(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.seed_policy()  # ci-deployers: deploy-bot
    world.seed_policy(SECOND_POLICY, name="backups.yaml")  # backups: archive-bot
    world.seed_user("deploy-bot", at=T0)
    world.seed_user("archive-bot", at=T0)
    assert world.cli("apply", now=advance(T0, days=10)) == 0  # both adopted
    hook = world.bare / "hooks" / "pre-receive"
    hook.write_text(REJECT_BACKUPS)
    hook.chmod(0o755)
    capsys.readouterr()
    assert world.cli("apply", now=DAY80) == 1
    assert "backups" in capsys.readouterr().err, "the failure is named"
    assert len(world.iam_keys("deploy-bot")) == 2, "ci-deployers' steps ran"
    assert len(world.iam_keys("archive-bot")) == 2
    # Once the remote accepts again, the next run on the same checkout publishes what was kept.
    hook.unlink()
    assert world.cli("apply", now=advance(DAY80, minutes=10)) == 0
    phases = remote_phases(world, capsys)
    assert phases[("ci-deployers", "deploy-bot")] == "AwaitingUse"
    assert phases[("backups", "archive-bot")] == "AwaitingUse"
    assert len(world.iam_keys("archive-bot")) == 2, "no second key was made for the lost record"
