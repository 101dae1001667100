"""Every reason, action, finding and phase renders in every format: no table keyed by an enum
may miss a member (the first release crashed `keyrotor plan` during a rollback that way)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from controller import commits, messages
from controller.plan import (
    Action,
    ActionKind,
    Finding,
    FindingKind,
    Outcome,
    Plan,
    PolicyPlan,
    UserPlan,
)
from controller.policy import Policy, SecretsManagerTarget, Source, UserSelection
from controller.reasons import Facts, Reason
from controller.render import MARKS, SIGILS, plan_json, plan_markdown, plan_text, summary
from controller.status import Phase, PolicyStatus, UserStatus

NOW = datetime(2026, 3, 22, 12, 30, tzinfo=UTC)
KEY = "AKIAKEY0000000000001"
#: One value for every fact name any renderer reads.
FACTS: Facts = {
    "key": KEY,
    "new": "AKIANEW0000000000002",
    "old": KEY,
    "user": "bot",
    "policy": "ci",
    "step": "deactivate-key",
    "check": "command",
    "gate": "old-key-idle",
    "detail": "exit 1",
    "cause": "create-key failed: did not authenticate",
    "before": "command check failed: exit 1",
    "error": "AccessDenied: not authorized",
    "approved_key": KEY,
    "approved_digest": "sha256:aaaa",
    "digest": "sha256:bbbb",
    "restored": "readable",
    "unreadable": "github-actions-secret acme/app",
    "inside": "deny window '0 0 * * *' (1d, UTC)",
    "inside_kind": "deny",
    "zone": "Europe/Berlin",
    "held": 1,
    "total": 2,
    "known": True,
    "allowed": False,
    "any_windows": True,
    "age": timedelta(days=91),
    "max_key_age": timedelta(days=90),
    "rotate_at_age": timedelta(days=76),
    "delete_after": timedelta(days=7),
    "idle_for": timedelta(hours=24),
    "horizon": timedelta(days=400),
    "rotate_at": NOW,
    "since": NOW,
    "earliest": NOW,
    "delete_at": NOW,
    "created": NOW,
    "used": NOW,
    "threshold": NOW,
    "until": NOW,
    "at": NOW,
    "opens": NOW,
    "keys": (KEY, "AKIAOTHER00000000003"),
    "passed": ("new key used",),
    "waiting": ("old key busy",),
    "failed": ("command check failed: exit 1",),
    "problems": ("aws-secrets-manager ci/bot: AccessDenied",),
    "holders": ("aws-ssm-parameter /ci/bot holds nothing",),
    "target": "aws-secrets-manager ci/bot",
    "targets": ("aws-secrets-manager ci/bot",),
    "refusal": "head-not-keyrotors",
    "base": "main",
    "branch": "keyrotor/ci",
    "pull": 3,
    "newer_pull": 4,
    "head": "a" * 40,
    "files": (".github/workflows/x.yml",),
    "users": ("bot",),
    "author": "mallory",
    "rule": "denied-name",
    "where": "manifests/ci.yaml:7:13",
    "path": "spec.users.names[0]",
    "guardrail": "users.denyNames",
    "guardrail_at": "guardrails.yaml:4:14",
    "subject": "bot",
    "limit": "",
    "exclusion": "denied-tag",
    "account": "123456789012",
    "user_path": "/ci/",
    "tag": "keyrotor.dev/protect=true",
    "prefixes": ("/ci/",),
    "max_changes": 20,
}
POLICY = Policy(
    name="ci",
    source=Source("manifests/ci.yaml"),
    users=UserSelection(names=("bot",)),
    max_key_age=timedelta(days=90),
    targets=(SecretsManagerTarget("ci/{user}"),),
)


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_renders_a_sentence(reason: Reason) -> None:
    text = messages.render(reason, FACTS)
    assert text.strip() and "\n" not in text


def every_kind_plan() -> Plan:
    users = []
    for index, phase in enumerate(Phase):
        kind = list(ActionKind)[index % len(ActionKind)]
        finding = list(FindingKind)[index % len(FindingKind)]
        users.append(
            UserPlan(
                "ci",
                f"user-{index}",
                UserStatus(phase, old_key=KEY, message="why"),
                (Action("ci", f"user-{index}", kind, KEY, Reason.GRACE_ENDED, FACTS),),
                (Finding("ci", f"user-{index}", finding, Reason.KEY_OVERDUE, FACTS),),
            )
        )
    for extra in range(len(Phase), max(len(ActionKind), len(FindingKind))):
        kind = list(ActionKind)[extra % len(ActionKind)]
        finding = list(FindingKind)[extra % len(FindingKind)]
        users.append(
            UserPlan(
                "ci",
                f"user-{extra}",
                None,
                (Action("ci", f"user-{extra}", kind, None, Reason.ROTATION_AGE, FACTS),),
                (Finding("ci", f"user-{extra}", finding, Reason.DESELECTED, FACTS),),
            )
        )
    policy_finding = Finding("ci", "*", FindingKind.BLOCKED, Reason.CANNOT_OBSERVE, FACTS)
    return Plan(NOW, (PolicyPlan(POLICY, tuple(users), PolicyStatus("ci"), (policy_finding,)),))


def test_the_plan_covers_every_action_kind_finding_kind_and_phase() -> None:
    plan = every_kind_plan()
    assert {a.kind for a in plan.actions} == set(ActionKind)
    assert {f.kind for f in plan.findings} == set(FindingKind)
    phases = {u.status.phase for p in plan.policies for u in p.users if u.status}
    assert phases == set(Phase)


def test_every_kind_renders_as_text_markdown_and_json() -> None:
    plan = every_kind_plan()
    text, markdown = plan_text(plan), plan_markdown(plan)
    document = json.loads(plan_json(plan))
    for kind in ActionKind:
        assert f"{SIGILS[kind]} {kind}" in text and str(kind) in markdown
    for finding in FindingKind:
        assert f"{MARKS[finding]} {finding}:" in text and f"**{finding}**" in markdown
    for phase in Phase:
        assert f": {phase}" in text
    assert {a["action"] for a in document["actions"]} == {str(k) for k in ActionKind}
    assert {f["kind"] for f in document["findings"]} == {str(k) for k in FindingKind}
    assert all(a["reason"] and a["message"] for a in document["actions"])
    assert summary(plan).startswith("Plan: ")


@pytest.mark.parametrize("kind", list(ActionKind))
def test_every_action_kind_makes_a_commit_subject_and_step_trailer(kind: ActionKind) -> None:
    action = Action("ci", "bot", kind, KEY, Reason.GRACE_ENDED, FACTS, replaces=KEY)
    message = commits.steps_commit("ci", [(action, Outcome(KEY))], [], ["bot"], "run-1")
    assert message.subject.startswith("keyrotor(ci): ") and "bot" in message.subject
    assert (commits.STEP, f"bot {kind} {KEY}") in message.trailers
    assert commits.parse_step(f"bot {kind} {KEY}") == commits.Step("bot", str(kind), KEY)
