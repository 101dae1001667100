"""Scale and many accounts: an account is read in pages, not per user; accounts behind roles
rotate side by side, a failing one does not stop the others, and shards split the accounts."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import git
import pytest

from controller import lifecycle
from controller.accounts import shard_of
from controller.cli import main
from controller.manifests import load_policies
from controller.sandbox import Sandbox
from controller.sandbox.config import DEFAULT_START as T0
from controller.sandbox.handle import UserSeed
from controller.status import Phase, UserStatus
from controller.statusfiles import dump_user, user_path
from tests.support.faultproxy import Fault, Rule, start_fault_proxy
from tests.support.world import World, advance

ACCOUNT_A, ACCOUNT_B = "111111111111", "222222222222"
DAY80 = advance(T0, days=80)


def policy_for(account: str, name: str, path: str = "/svc/", selector: str = "") -> str:
    selector = selector or f"{{pathPrefix: {path}}}"
    return textwrap.dedent(
        f"""\
        apiVersion: keyrotor.dev/v1
        kind: RotationPolicy
        metadata:
          name: {name}
        spec:
          account:
            roleArn: arn:aws:iam::{account}:role/keyrotor
          users:
            selector: {selector}
          maxKeyAge: 90d
          targets:
            - type: aws-secrets-manager
              secretId: "{name}/{{user}}/aws"
          approval: auto
        """
    )


def adopted(
    world: World, policy: str, account: str, users: list[tuple[str, str, datetime]]
) -> None:
    """The status keyrotor's first run would have committed for seeded, adopted users."""
    (pol,) = [p for p in load_policies([world.clone / "manifests"]) if p.name == policy]
    with git.Repo(world.clone) as repo:
        repo.git.pull("--ff-only", "origin", "main")
        for name, key_id, created in users:
            status = lifecycle.current(UserStatus(Phase.CURRENT), key_id, created, pol)
            status = replace(status, overdue_at=created + pol.max_key_age)
            path = world.clone / user_path(policy, account, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(dump_user(policy, account, name, status))
        repo.git.add("status")
        repo.index.commit(f"status of {policy}")
        repo.git.push("origin", "main")


def seed(
    aws: Sandbox,
    account: str,
    prefix: str,
    count: int,
    created: datetime,
    policy: str,
    tags: dict[str, str] | None = None,
) -> list[tuple[str, str, datetime]]:
    seeds = (
        UserSeed(
            f"{prefix}-{i:05d}",
            path="/svc/",
            tags=tags,
            key_created=created,
            own_key=True,
            secret_id=f"{policy}/{prefix}-{i:05d}/aws",
        )
        for i in range(count)
    )
    return [
        (u.name, u.access_key_id or "", u.created or created)
        for u in aws.seed_users(seeds, account_id=account)
    ]


def iam_calls(aws: Sandbox) -> list[str]:
    return [c.action for c in aws.requests() if c.service == "iam"]


PER_USER_CALLS = {"ListAccessKeys", "GetUser", "ListUserTags", "GetAccessKeyLastUsed"}


def test_a_no_op_plan_selecting_by_tag_reads_thousands_of_users_in_pages(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.seed_policy(policy_for(ACCOUNT_A, "svc", selector="{tags: {team: svc}}"))
    team = {"team": "svc"}
    users = seed(world.aws, ACCOUNT_A, "u", 1500, advance(T0, days=-10), "svc", tags=team)
    adopted(world, "svc", ACCOUNT_A, users)
    world.aws.clear_requests()
    assert world.cli("plan", "--detailed-exitcode", now=T0) == 0
    calls = iam_calls(world.aws)
    assert calls.count("GetAccountAuthorizationDetails") == 2  # pages of 1000
    assert len(calls) <= 3 + 2, calls  # 3 + ceil(N/1000), whatever N
    assert not PER_USER_CALLS & set(calls)
    assert "u-01499: Current" in capsys.readouterr().out


def test_a_no_op_plan_selecting_by_path_reads_only_the_credential_report(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.seed_policy(policy_for(ACCOUNT_A, "svc"))
    users = seed(world.aws, ACCOUNT_A, "u", 1500, advance(T0, days=-10), "svc")
    adopted(world, "svc", ACCOUNT_A, users)
    world.aws.clear_requests()
    assert world.cli("plan", "--detailed-exitcode", now=T0) == 0
    calls = iam_calls(world.aws)
    assert set(calls) <= {"GenerateCredentialReport", "GetCredentialReport"}, calls
    assert len(calls) <= 3, calls
    assert "u-01499: Current" in capsys.readouterr().out


def two_accounts(world: World) -> None:
    world.seed_policy(policy_for(ACCOUNT_A, "alpha"), name="alpha.yaml")
    world.seed_policy(policy_for(ACCOUNT_B, "beta"), name="beta.yaml")
    for account, name in ((ACCOUNT_A, "alpha"), (ACCOUNT_B, "beta")):
        adopted(world, name, account, seed(world.aws, account, name, 2, T0, name))


def keys_in(aws: Sandbox, account: str, user: str) -> int:
    from tests.support.assumed import iam_in

    return len(iam_in(aws, account).list_access_keys(UserName=user)["AccessKeyMetadata"])


def test_two_accounts_behind_roles_rotate_side_by_side(world: World) -> None:
    two_accounts(world)
    assert world.cli("apply", "--parallel", "2", now=DAY80) == 0
    assert keys_in(world.aws, ACCOUNT_A, "alpha-00000") == 2
    assert keys_in(world.aws, ACCOUNT_B, "beta-00001") == 2
    with git.Repo(world.bare) as origin:
        subjects = [c.summary for c in origin.iter_commits("main", max_count=4)]
    # Intents first, then each policy's status, in order, whichever account finished first.
    assert subjects == [
        "keyrotor(beta): create key for beta-00000, create key for beta-00001",
        "keyrotor(alpha): create key for alpha-00000, create key for alpha-00001",
        "keyrotor(beta): about to create a key for beta-00000, beta-00001",
        "keyrotor(alpha): about to create a key for alpha-00000, alpha-00001",
    ]


ROLE_B = f"arn:aws:iam::{ACCOUNT_B}:role/keyrotor"


def run_with_account_b_unreachable(
    world: World,
    aws: Sandbox,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *argv: str,
) -> tuple[int, str]:
    """Run the CLI while every AssumeRole into account B fails; (exit code, stdout + stderr)."""
    two_accounts(world)
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    with start_fault_proxy(aws) as proxy:
        for name, value in proxy.env(aws).items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        proxy.add(Rule(Fault.ERROR_503, action="AssumeRole", where={"RoleArn": ROLE_B}))
        capsys.readouterr()
        code = main([*argv, "--repo", str(world.clone), "--now", DAY80.isoformat()])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_an_account_whose_role_cannot_be_assumed_does_not_stop_the_others(
    world: World, aws: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = run_with_account_b_unreachable(world, aws, capsys, monkeypatch, "apply")
    assert code == 1, "a policy that could not be observed is an error"
    assert f"cannot assume role {ROLE_B}" in out
    assert keys_in(world.aws, ACCOUNT_A, "alpha-00000") == 2, "alpha rotated all the same"
    assert keys_in(world.aws, ACCOUNT_B, "beta-00000") == 1


@pytest.mark.parametrize(
    "argv",
    [
        ("plan",),
        ("plan", "--detailed-exitcode"),
        ("plan", "--format", "json"),
        ("reconcile",),
        ("apply", "--dry-run"),
    ],
    ids=" ".join,
)
def test_an_account_that_cannot_be_observed_makes_every_command_exit_1(
    world: World,
    aws: Sandbox,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
) -> None:
    code, out = run_with_account_b_unreachable(world, aws, capsys, monkeypatch, *argv)
    assert code == 1, out
    assert f"cannot assume role {ROLE_B}" in out


def test_the_json_plan_names_the_account_of_every_action(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    two_accounts(world)
    capsys.readouterr()
    assert (
        main(["plan", "--format", "json", "--repo", str(world.clone), "--now", DAY80.isoformat()])
        == 0
    )
    actions = json.loads(capsys.readouterr().out)["actions"]
    assert {(a["policy"], a["account"], a["action"]) for a in actions} == {
        ("alpha", ACCOUNT_A, "create-key"),
        ("beta", ACCOUNT_B, "create-key"),
    }


def test_shards_split_the_accounts_and_a_shard_acts_only_in_its_own(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    two_accounts(world)
    capsys.readouterr()
    assert main(["accounts", "--repo", str(world.clone), "--format", "json", "--shards", "8"]) == 0
    listing = json.loads(capsys.readouterr().out)
    by_account = {row["account"]: row for row in listing["accounts"]}
    assert by_account[ACCOUNT_A]["policies"] == ["alpha"]
    shard_a = f"{shard_of(ACCOUNT_A, 8)}/8"
    assert by_account[ACCOUNT_A]["shard"] == shard_a and shard_a in listing["shards"]
    assert shard_of(ACCOUNT_A, 8) != shard_of(ACCOUNT_B, 8), "the test needs them apart"
    assert world.cli("apply", "--shard", shard_a, now=DAY80) == 0
    assert keys_in(world.aws, ACCOUNT_A, "alpha-00000") == 2
    assert keys_in(world.aws, ACCOUNT_B, "beta-00000") == 1, "another shard's account"


def test_a_shard_is_named_as_i_of_n() -> None:
    from controller.accounts import Shard
    from controller.errors import KeyrotorError

    assert str(Shard.parse("2/4")) == "2/4"
    for bad in ("0/4", "5/4", "2", "a/b"):
        with pytest.raises(KeyrotorError, match="I/N"):
            Shard.parse(bad)
    assert {shard_of(str(n).zfill(12), 4) for n in range(50)} == {1, 2, 3, 4}


def organizational_unit(aws: Sandbox) -> tuple[str, list[str]]:
    """An organization with a unit holding two member accounts (and one outside it)."""
    org = aws.client("organizations")
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    unit = org.create_organizational_unit(ParentId=root, Name="ci")["OrganizationalUnit"]["Id"]
    members = []
    for name in ("ci-one", "ci-two", "elsewhere"):
        status = org.create_account(Email=f"{name}@example.com", AccountName=name)
        account = status["CreateAccountStatus"]["AccountId"]
        if name != "elsewhere":
            org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=unit)
            members.append(account)
    return unit, sorted(members)


def test_a_policy_over_an_organizational_unit_rotates_in_every_member_account(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    unit, members = organizational_unit(world.aws)
    world.seed_policy(
        policy_for(ACCOUNT_A, "fleet").replace(
            f"roleArn: arn:aws:iam::{ACCOUNT_A}:role/keyrotor",
            f"organizationalUnit: {unit}\n    roleName: keyrotor",
        )
    )
    for account in members:
        adopted(world, "fleet", account, seed(world.aws, account, "bot", 1, T0, "fleet"))
    capsys.readouterr()
    assert main(["accounts", "--repo", str(world.clone), "--format", "json"]) == 0
    listed = [row["account"] for row in json.loads(capsys.readouterr().out)["accounts"]]
    assert listed == members, "the unit's accounts, not the one outside it"
    assert world.cli("apply", now=DAY80) == 0
    for account in members:
        assert keys_in(world.aws, account, "bot-00000") == 2
    assert sorted(p.name for p in (world.fresh_clone() / "status" / "fleet").iterdir()) == members


def test_a_named_user_created_since_the_credential_report_is_read_live_and_adopted(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.world import USER

    world.seed_policy()
    assert world.cli("plan", now=T0) == 0  # IAM generates the report: no such user yet
    assert f"IAM user {USER} does not exist" in capsys.readouterr().out
    key = world.seed_user(at=advance(T0, hours=1))
    world.aws.clear_requests()
    assert world.cli("apply", now=advance(T0, hours=1)) == 0  # the same report, served again
    calls = iam_calls(world.aws)
    assert "GetUser" in calls and "GetAccountAuthorizationDetails" not in calls
    assert f"adopt-key {key} of {USER}" in capsys.readouterr().out


def test_a_named_user_created_since_the_report_that_a_guardrail_excludes_is_not_read(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rails = tmp_path / "guardrails.yaml"
    rails.write_text(
        "apiVersion: keyrotor.dev/v1\nkind: Guardrails\nusers:\n  pathPrefixes: [/ci/]\n"
    )
    world.seed_policy()
    world.cli("plan", "--guardrails", str(rails), now=T0)  # the report: no such user yet
    world.seed_user(at=advance(T0, hours=1))  # under /, which the guardrails exclude
    world.aws.clear_requests()
    capsys.readouterr()
    world.cli("plan", "--guardrails", str(rails), now=advance(T0, hours=1))
    calls = iam_calls(world.aws)
    assert "GetUser" in calls  # the user as a listing would give it: path and tags
    assert not {"ListAccessKeys", "GetAccessKeyLastUsed"} & set(calls), calls  # no key read
    assert "excluded" in capsys.readouterr().out
