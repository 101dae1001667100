"""Guardrails on the run path: `plan`, `apply` and `reconcile` load them once at the edge, refuse
a policy that breaks one (`path:line:column`, exit 1, nothing done for it while the others go
on), list a user a guardrail excludes and never touch it, and hold back steps past
`maxChangesPerRun` (oldest key first; a rollback is never held).

The end-to-end tests reproduce issue 11: `selector: {pathPrefix: /}` with `approval: auto`
would take over a break-glass admin's key."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.blastradius import COUNTED, hold_back
from controller.guardrails import NO_GUARDRAILS_WARNING
from controller.plan import Action, ActionKind, FindingKind, Plan, PolicyPlan, UserPlan
from controller.policy import Policy, SecretsManagerTarget, Source, UserSelection
from controller.reasons import Reason
from controller.sandbox.config import DEFAULT_START as T0
from controller.sandbox.handle import UserSeed
from controller.status import PolicyStatus
from tests.support.world import USER, World, advance

TAKEOVER = """\
apiVersion: keyrotor.dev/v1
kind: RotationPolicy
metadata:
  name: takeover
spec:
  users:
    selector: {pathPrefix: /}
  maxKeyAge: 90d
  rotateBefore: 14d
  deactivateAfter: 1d
  deleteAfter: 7d
  targets:
    - type: aws-secrets-manager
      secretId: "ci/{user}/aws"
  approval: auto
"""

GUARDRAILS = """\
apiVersion: keyrotor.dev/v1
kind: Guardrails
users:
  pathPrefixes: [/ci/]
  denyNames: [break-glass]
  denyTags: {keyrotor.dev/protect: "true"}
"""


def write_guardrails(world: World, text: str = GUARDRAILS) -> str:
    path = world.tmp / "guardrails.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def plan_document(
    world: World, capsys: pytest.CaptureFixture[str], *args: str, now: datetime
) -> tuple[int, dict[str, Any], str]:
    capsys.readouterr()
    code = world.cli("plan", "--format", "json", *args, now=now)
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def keys_and_tags(world: World, user: str) -> tuple[dict[str, str], dict[str, str]]:
    tags = world.aws.client("iam").list_user_tags(UserName=user)["Tags"]
    return world.iam_keys(user), {t["Key"]: t["Value"] for t in tags}


# --- end to end ----------------------------------------------------------------------------------


def test_a_takeover_manifest_never_touches_the_break_glass_user(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old = advance(T0, days=-100)
    world.aws.seed_users(
        [
            UserSeed("break-glass", path="/ci/", key_created=old),
            UserSeed("protected", path="/ci/", tags={"keyrotor.dev/protect": "true"},
                     key_created=old),
            UserSeed("outsider", path="/ops/", key_created=old),
            UserSeed("ci-bot", path="/ci/", key_created=old),
        ]
    )  # fmt: skip
    world.seed_policy(TAKEOVER, name="takeover.yaml")
    guardrails = write_guardrails(world)
    before = {u: keys_and_tags(world, u) for u in ("break-glass", "protected", "outsider")}

    code, document, err = plan_document(world, capsys, "--guardrails", guardrails, now=T0)
    assert code == 0
    assert NO_GUARDRAILS_WARNING not in err
    assert {a["user"] for a in document["actions"]} == {"ci-bot"}
    excluded = {f["user"]: f for f in document["findings"] if f["kind"] == "excluded"}
    assert {u: f["facts"]["exclusion"] for u, f in excluded.items()} == {
        "break-glass": "denied-name",
        "protected": "denied-tag",
        "outsider": "path-not-allowed",
    }
    assert all(f["reason"] == Reason.GUARDRAIL_EXCLUDED for f in excluded.values())
    assert "users.denyNames" in excluded["break-glass"]["message"]
    for fmt in ("text", "markdown"):
        world.cli("plan", "--format", fmt, "--guardrails", guardrails, now=T0)
        out = capsys.readouterr().out
        assert "excluded" in out and "break-glass" in out

    # The shipped workflows name an SSM parameter that only administrators may write.
    world.aws.client("ssm").put_parameter(
        Name="/keyrotor/guardrails", Value=textwrap.dedent(GUARDRAILS), Type="String"
    )
    monkeypatch.setenv("KEYROTOR_GUARDRAILS", "ssm:/keyrotor/guardrails")
    for hour in (0, 1, 2):  # the reproduction took the key over in three hourly runs
        assert world.cli("apply", now=advance(T0, hours=hour)) == 0
    assert NO_GUARDRAILS_WARNING not in capsys.readouterr().err
    assert {u: keys_and_tags(world, u) for u in before} == before
    assert len(world.iam_keys("ci-bot")) == 2
    world.pull()
    status = world.clone / "status" / "takeover"
    assert {p.stem for p in status.glob("*/*.yaml")} == {"ci-bot"}


BAD = """\
apiVersion: keyrotor.dev/v1
kind: RotationPolicy
metadata:
  name: grab
spec:
  users:
    names: [break-glass]
  maxKeyAge: 90d
  targets:
    - type: aws-secrets-manager
      secretId: "ci/{user}/grab"
  approval: auto
"""


def test_a_policy_that_breaks_a_guardrail_is_refused_while_another_rotates(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.seed_policy()
    world.seed_policy(BAD, name="grab.yaml")
    world.seed_user(at=T0)
    glass = world.seed_user("break-glass", at=T0)
    guardrails = write_guardrails(world, "apiVersion: keyrotor.dev/v1\nkind: Guardrails\n"
                                         "users:\n  denyNames: [break-glass]\n")  # fmt: skip
    day80 = advance(T0, days=80)

    code, document, err = plan_document(world, capsys, "--guardrails", guardrails, now=day80)
    assert code == 1
    (refused,) = [f for f in document["findings"] if f["kind"] == "refused"]
    assert refused["policy"] == "grab" and refused["reason"] == Reason.GUARDRAIL_VIOLATED
    assert "manifests/grab.yaml:7:13" in refused["message"]
    assert "users.denyNames" in refused["message"]
    assert "manifests/grab.yaml:7:13" in err
    assert {a["policy"] for a in document["actions"]} == {"ci-deployers"}

    capsys.readouterr()
    assert world.cli("apply", "--guardrails", guardrails, now=day80) == 1
    assert "users.denyNames" in capsys.readouterr().err
    assert len(world.iam_keys(USER)) == 2  # the other policy rotated
    assert world.iam_keys("break-glass") == {glass: "Active"}

    for command in ("apply", "reconcile"):
        world.aws.clear_requests()
        assert world.cli(command, "--guardrails", guardrails, "--policy", "grab", now=day80) == 1
        assert [c for c in world.aws.requests() if c.service != "sts"] == []


def test_max_changes_per_run_holds_the_newer_keys_for_the_next_run(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    ages = {"bot-a": 100, "bot-b": 120, "bot-c": 110}
    world.aws.seed_users(
        UserSeed(name, path="/ci/", key_created=advance(T0, days=-days), own_key=True)
        for name, days in ages.items()
    )
    world.seed_policy(TAKEOVER.replace("pathPrefix: /}", "pathPrefix: /ci/}"), name="t.yaml")
    guardrails = write_guardrails(world, GUARDRAILS + "maxChangesPerRun: 1\n")

    code, document, _ = plan_document(world, capsys, "--guardrails", guardrails, now=T0)
    assert code == 0
    assert [(a["user"], a["action"]) for a in document["actions"]] == [("bot-b", "create-key")]
    held = [f for f in document["findings"] if f["kind"] == "held"]
    assert [(f["user"], f["facts"]["step"]) for f in held] == [
        ("bot-a", "create-key"),
        ("bot-c", "create-key"),
    ]
    assert all(f["facts"]["max_changes"] == 1 for f in held)
    assert "maxChangesPerRun" in held[0]["message"]

    assert world.cli("apply", "--guardrails", guardrails, now=T0) == 0
    assert [len(world.iam_keys(u)) for u in ("bot-a", "bot-b", "bot-c")] == [1, 2, 1]
    capsys.readouterr()
    later = advance(T0, hours=1)
    code, document, _ = plan_document(world, capsys, "--guardrails", guardrails, now=later)
    assert [(a["user"], a["action"]) for a in document["actions"]] == [("bot-c", "create-key")]
    assert [f["user"] for f in document["findings"] if f["kind"] == "held"] == ["bot-a"]


def test_without_guardrails_plan_and_apply_warn_once(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.seed_policy()
    world.seed_user(at=T0)
    for command in ("plan", "apply"):
        capsys.readouterr()
        assert world.cli(command, now=T0) == 0
        assert capsys.readouterr().err.count(NO_GUARDRAILS_WARNING) == 1


def test_a_bad_guardrails_file_is_a_path_line_error_and_nothing_is_done(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.seed_policy()
    world.seed_user(at=T0)
    guardrails = write_guardrails(
        world, "apiVersion: keyrotor.dev/v1\nkind: Guardrails\nmaxChangesPerRun: lots\n"
    )
    world.aws.clear_requests()
    capsys.readouterr()
    assert world.cli("apply", "--guardrails", guardrails, now=advance(T0, days=80)) == 1
    assert f"{guardrails}:3:" in capsys.readouterr().err
    assert world.mutating_calls() == []


# --- the blast radius, as a pure function over the plan -----------------------------------------

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _policy(name: str) -> Policy:
    return Policy(
        name=name,
        source=Source(f"manifests/{name}.yaml"),
        users=UserSelection(names=("x",)),
        max_key_age=timedelta(days=90),
        targets=(SecretsManagerTarget("ci/{user}"),),
    )


def _user(policy: str, user: str, *actions: tuple[ActionKind, str]) -> UserPlan:
    made = tuple(
        Action(policy, user, kind, None if kind is ActionKind.CREATE_KEY else key,
               Reason.ROTATION_AGE, {"key": key})
        for kind, key in actions
    )  # fmt: skip
    return UserPlan(policy, user, None, made)


def _plan(*users: UserPlan) -> Plan:
    by_policy: dict[str, list[UserPlan]] = {}
    for up in users:
        by_policy.setdefault(up.policy, []).append(up)
    return Plan(
        NOW,
        tuple(
            PolicyPlan(_policy(name), tuple(ups), PolicyStatus(name))
            for name, ups in sorted(by_policy.items())
        ),
    )


CREATED = {f"K{i}": NOW - timedelta(days=100 + i) for i in range(10)}


def test_the_oldest_keys_go_first_across_policies_and_the_rest_are_held() -> None:
    plan = _plan(
        _user("a", "u1", (ActionKind.CREATE_KEY, "K1"), (ActionKind.STORE_KEY, "K1")),
        _user("a", "u2", (ActionKind.DELETE_KEY, "K5")),
        _user("b", "u3", (ActionKind.DEACTIVATE_KEY, "K3")),
    )
    limited = hold_back(plan, 2, CREATED)
    assert [(a.user, a.kind) for a in limited.actions] == [
        ("u2", ActionKind.DELETE_KEY),
        ("u3", ActionKind.DEACTIVATE_KEY),
    ]
    held = [f for f in limited.findings if f.kind is FindingKind.HELD]
    # The create is held, and the store that would follow it with it.
    assert [(f.user, f.facts["step"]) for f in held] == [("u1", "create-key"), ("u1", "store-key")]
    assert all(f.reason is Reason.MAX_CHANGES_PER_RUN for f in held)
    assert hold_back(plan, None, CREATED) == plan
    assert hold_back(plan, 3, CREATED) == plan


def test_a_rollback_is_never_held_and_uncounted_steps_pass() -> None:
    plan = _plan(
        _user("a", "u1", (ActionKind.CREATE_KEY, "K9")),
        _user("a", "u2", (ActionKind.REACTIVATE_KEY, "K1")),
        _user("a", "u3", (ActionKind.ADOPT_KEY, "K2"), (ActionKind.DELETE_KEY, "K2")),
    )
    limited = hold_back(plan, 0, CREATED)
    assert [(a.user, a.kind) for a in limited.actions] == [
        ("u2", ActionKind.REACTIVATE_KEY),
        ("u3", ActionKind.ADOPT_KEY),
    ]
    assert [f.user for f in limited.findings if f.kind is FindingKind.HELD] == ["u1", "u3"]
    assert ActionKind.REACTIVATE_KEY not in COUNTED


def test_a_key_of_unknown_age_goes_last() -> None:
    plan = _plan(_user("a", "u1", (ActionKind.DELETE_KEY, "KX")),
                 _user("a", "u2", (ActionKind.DELETE_KEY, "K0")))  # fmt: skip
    assert [a.user for a in hold_back(plan, 1, CREATED).actions] == ["u2"]


def test_held_steps_leave_the_users_status_alone(tmp_path: Path) -> None:
    plan = _plan(_user("a", "u1", (ActionKind.CREATE_KEY, "K1")))
    limited = hold_back(plan, 0, CREATED)
    assert limited.policies[0].users[0].status == plan.policies[0].users[0].status
