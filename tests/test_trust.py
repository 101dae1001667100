"""A commit to the policy repository is input, not fact: each attack here is performed against
the embedded AWS and shown to do no harm. AWS decides which keys are keyrotor's (IAM tags only
its role writes); a status file is a readable record and a source of hints."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import git
import pytest
import yaml

from controller.cli import main
from controller.sandbox import Sandbox
from controller.sandbox.config import DEFAULT_START as T0
from tests.support.faultproxy import start_fault_proxy
from tests.support.world import MANIFEST, SECRET_ID, USER, World, advance

DAY80 = advance(T0, days=80)


@pytest.fixture(autouse=True)
def _managed(world: World) -> None:
    """deploy-bot has one key, which keyrotor adopted on its first run."""
    world.seed_policy()
    world.seed_user(at=T0)
    assert world.cli("apply", now=advance(T0, days=1)) == 0
    world.pull()


def forge_status(world: World, change: Callable[[dict[str, Any]], None]) -> None:
    """What anyone who can push to the policy repository can do: rewrite a status file."""
    world.pull()
    per_user = list((world.clone / "status" / "ci-deployers").glob(f"*/{USER}.yaml"))
    if per_user:
        (path,) = per_user
        doc = yaml.safe_load(path.read_text())
        change(doc)
    else:  # the first release's layout, so the attack can be replayed against it
        path = world.clone / "status" / "ci-deployers.yaml"
        doc = yaml.safe_load(path.read_text())
        change(doc["users"][USER])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with git.Repo(world.clone) as repo:
        repo.index.add([str(path.relative_to(world.clone))])
        repo.index.commit("status: a small fix")
        repo.git.push("origin", "main")


def deletes(world: World) -> list[str]:
    return [c for c in world.mutating_calls() if c.endswith(("DeleteAccessKey", "UpdateAccessKey"))]


def person_adds_a_key(world: World, at: datetime) -> str:
    world.aws.set_clock(at)
    made = world.aws.client("iam").create_access_key(UserName=USER)["AccessKey"]
    world.remember(made["SecretAccessKey"])
    return str(made["AccessKeyId"])


@pytest.mark.parametrize(
    "manifest",
    [MANIFEST, MANIFEST.replace("approval: auto", "approval: pull-request"),
     MANIFEST + "  suspend: true\n"],
    ids=["auto", "pull-request", "suspended"],
)  # fmt: skip
def test_a_forged_intent_never_makes_a_persons_key_an_orphan(world: World, manifest: str) -> None:
    world.seed_policy(manifest)
    hand_made = person_adds_a_key(world, advance(T0, days=30))
    forge_status(world, lambda doc: doc.update(intentAt="2026-01-30T00:00:00Z"))
    world.aws.clear_requests()
    world.cli("apply", now=advance(T0, days=31))
    assert deletes(world) == []
    assert hand_made in world.iam_keys()


def test_a_forged_status_never_deletes_a_users_only_key(world: World) -> None:
    (only,) = world.iam_keys()
    forge_status(
        world,
        lambda doc: doc.update(oldKey="AKIAGONE000000000000", intentAt="2025-12-01T00:00:00Z"),
    )
    world.aws.clear_requests()
    world.cli("apply", now=advance(T0, days=31))
    assert deletes(world) == []
    assert world.iam_keys() == {only: "Active"}


def test_a_status_naming_a_persons_key_as_keyrotors_holds_the_user(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    hand_made = person_adds_a_key(world, advance(T0, days=30))
    forge_status(world, lambda doc: doc.update(newKey=hand_made, phase="AwaitingUse"))
    world.aws.clear_requests()
    capsys.readouterr()
    world.cli("apply", now=advance(T0, days=40))
    out = capsys.readouterr().out
    assert deletes(world) == [] and hand_made in world.iam_keys()
    assert "status names key" in out and "IAM's tags do not" in out


def test_a_forged_store_time_never_counts_keyrotors_own_use_as_the_applications(
    world: World,
) -> None:
    assert world.cli("apply", now=DAY80) == 0  # the new key is created and stored

    def earlier_store(doc: dict[str, Any]) -> None:
        doc["storedAt"] = "2026-03-01T00:00:00Z"
        doc.pop("selfUsedAt")

    forge_status(world, earlier_store)
    world.aws.clear_requests()
    # Past deactivateAfter as counted from the forged time, and nobody used the new key.
    world.cli("apply", now=advance(DAY80, hours=6))
    assert deletes(world) == [], "the old key stays active: the application never used the new one"


def test_a_target_holding_someone_elses_secret_is_never_printed(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.cli("apply", now=DAY80) == 0
    password = "correct-horse-battery-staple"
    world.aws.client("secretsmanager").put_secret_value(
        SecretId=SECRET_ID,
        SecretString=json.dumps({"AccessKeyId": password, "SecretAccessKey": password}),
    )
    capsys.readouterr()
    for command in ("plan", "apply"):
        main([command, "--repo", str(world.clone), "--now", advance(DAY80, days=2).isoformat()])
        out = capsys.readouterr()
        assert password not in out.out + out.err
    main(["plan", "--repo", str(world.clone), "--now", advance(DAY80, days=2).isoformat()])
    assert "was written since keyrotor wrote it" in capsys.readouterr().out
    main(["apply", "--repo", str(world.clone), "--now", advance(DAY80, days=2).isoformat()])
    assert f"a value that is not {USER}'s key" in capsys.readouterr().out
    assert len(world.iam_keys()) == 2, "no deactivation while a target does not hold the new key"


def test_plan_reads_no_secret_value_at_any_stage(world: World, aws: Sandbox) -> None:
    with start_fault_proxy(aws) as proxy:
        env = proxy.env(aws)
        for stage, now in (("adopted", advance(T0, days=2)), ("created", DAY80)):
            if stage == "created":
                assert world.cli("apply", now=now) == 0
                world.aws.set_clock(advance(now, hours=2))
                world.application_call()
            proxy.clear_calls()
            argv = ["plan", "--repo", str(world.clone), "--now", advance(now, hours=3).isoformat()]
            _with_env(env, argv)
            assert proxy.count() > 0, "plan went through the proxy"
            assert proxy.secret_value_reads() == [], stage


def _with_env(env: dict[str, str | None], argv: list[str]) -> None:
    mp = pytest.MonkeyPatch()
    try:
        for name, value in env.items():
            if value is None:
                mp.delenv(name, raising=False)
            else:
                mp.setenv(name, value)
        main(argv)
    finally:
        mp.undo()


def test_a_status_contradicting_aws_is_reported_even_for_a_suspended_policy(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.seed_policy(MANIFEST + "  suspend: true\n")
    hand_made = person_adds_a_key(world, advance(T0, days=30))
    forge_status(world, lambda doc: doc.update(oldKey=hand_made))
    capsys.readouterr()
    main(["plan", "--repo", str(world.clone), "--now", advance(T0, days=31).isoformat()])
    out = capsys.readouterr().out
    assert "* drift: status names key" in out


FORGED_ID = "AKIAFORGED0000000000"


@pytest.mark.parametrize("listing", [(), ("--list-users",)], ids=["report", "listed"])
def test_a_key_id_only_a_forged_status_names_is_never_printed(
    world: World, capsys: pytest.CaptureFixture[str], listing: tuple[str, ...]
) -> None:
    """Users nothing is happening to are planned from the credential report, which has no key
    ids: status names their key (matched by CreateDate), and that name is never repeated; nor
    is it in the drift a listing, or the live read once the key is due, finds."""
    forge_status(world, lambda doc: doc.update(oldKey=FORGED_ID))  # the real key's CreateDate
    capsys.readouterr()
    day31, day80 = advance(T0, days=31).isoformat(), DAY80.isoformat()
    said = []
    for argv, now in (
        (["plan"], day31),
        (["plan", "--format", "json"], day31),
        (["apply", "--dry-run"], day31),
        (["apply"], day31),
        (["apply"], day80),  # due: read live, tags and all
    ):
        main([*argv, *listing, "--repo", str(world.clone), "--now", now])
        out = capsys.readouterr()
        assert FORGED_ID not in out.out + out.err, argv
        said.append(out.out)
    # The drift is found (by the listing at once, by the live read once due), without the id.
    assert "old key that status names is not in IAM" in "".join(said)


def test_a_forged_key_id_is_found_out_when_the_key_is_due_and_nothing_is_lost(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    forge_status(world, lambda doc: doc.update(oldKey=FORGED_ID))
    (real,) = world.iam_keys()
    world.aws.clear_requests()
    capsys.readouterr()
    main(["apply", "--repo", str(world.clone), "--now", DAY80.isoformat()])
    assert "drift: ci-deployers/deploy-bot: old key" in capsys.readouterr().out
    assert deletes(world) == []
    assert world.iam_keys()[real] == "Active" and len(world.iam_keys()) == 2
