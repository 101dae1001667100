"""Ownership lives in IAM's tags: the codec, and the planner deciding from tags, not status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller import ownership
from controller.inventory import (
    Holding,
    ObservedKey,
    ObservedUser,
    PolicyObservation,
    TargetReading,
)
from controller.plan import ActionKind, FindingKind, UserPlan
from controller.planner import plan
from controller.policy import Policy, SecretsManagerTarget, Source, UserSelection
from controller.reasons import Reason
from controller.status import Phase, PolicyStatus, UserStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
OLD, NEW, OTHER = "AKIAOLD0000000000001", "AKIANEW0000000000002", "AKIAOTHER00000000003"
POLICY = Policy(
    name="ci",
    source=Source("manifests/ci.yaml"),
    users=UserSelection(names=("bot",)),
    max_key_age=90 * DAY,
    targets=(SecretsManagerTarget("ci/bot"),),
    approval="auto",
)


def test_tags_round_trip_with_second_precision() -> None:
    keys = {OLD: T0 + timedelta(microseconds=5), NEW: T0 + DAY}
    own = ownership.parse(
        {
            ownership.KEYS_TAG: ownership.keys_value(keys),
            ownership.INTENT_TAG: ownership.intent_value("run 7/x", T0),
            ownership.POLICY_TAG: "ci",
        }
    )
    assert own.owns(OLD, T0) and own.owns(NEW, T0 + DAY)
    assert not own.owns(OLD, T0 + timedelta(seconds=1)), "a key re-issued under the id is not it"
    assert own.intent == ownership.Intent("run-7/x", T0) and own.policy == "ci"


def test_malformed_tags_record_nothing() -> None:
    own = ownership.parse(
        {ownership.KEYS_TAG: "garbage AKIA@not-a-time", ownership.INTENT_TAG: "x"}
    )
    assert own.keys == {} and own.intent is None and not own.recorded


def test_a_key_counts_as_intended_only_within_the_runs_window() -> None:
    own = ownership.Ownership(intent=ownership.Intent("r", T0))
    skew = timedelta(minutes=5)
    assert own.intended(T0 + timedelta(minutes=1), skew)
    assert not own.intended(T0 + ownership.RUN_WINDOW + timedelta(minutes=6), skew)
    assert not own.intended(T0 - timedelta(minutes=6), skew)


def decide(
    keys: list[ObservedKey],
    tags: dict[str, str],
    prior: UserStatus | None,
    now: datetime,
    targets: tuple[TargetReading, ...] = (),
) -> UserPlan:
    user = ObservedUser("bot", tuple(keys), targets, tags=tags)
    statuses = {"ci": PolicyStatus("ci", {"bot": prior} if prior else {})}
    result = plan([POLICY], {"ci": PolicyObservation("ci", {"bot": user})}, statuses, now)
    (up,) = result.policies[0].users
    return up


def owned(*keys: ObservedKey, intent: datetime | None = None) -> dict[str, str]:
    tags = {ownership.KEYS_TAG: ownership.keys_value({k.id: k.created for k in keys})}
    if intent is not None:
        tags[ownership.INTENT_TAG] = ownership.intent_value("run-1", intent)
    return tags


def test_an_orphan_needs_keyrotors_intent_in_iam_not_in_status() -> None:
    old, person = ObservedKey(OLD, "Active", T0), ObservedKey(OTHER, "Active", T0 + 30 * DAY)
    forged = UserStatus(Phase.DUE, old_key=OLD, intent_at=T0 + 29 * DAY)
    up = decide([old, person], owned(old), forged, T0 + 31 * DAY)
    assert [a.kind for a in up.actions] == []
    assert up.status is not None and up.status.reason == Reason.FOREIGN_KEY


def test_a_key_made_after_keyrotors_recorded_intent_that_no_target_holds_is_deleted() -> None:
    old, lost = ObservedKey(OLD, "Active", T0), ObservedKey(NEW, "Active", T0 + 80 * DAY)
    tags = owned(old, intent=T0 + 80 * DAY - timedelta(seconds=1))
    up = decide([old, lost], tags, UserStatus(Phase.DUE, old_key=OLD), T0 + 80 * DAY + DAY,
                targets=(TargetReading("sm", OLD),))  # fmt: skip
    assert [a.kind for a in up.actions] == [ActionKind.DELETE_ORPHAN, ActionKind.CREATE_KEY]


def test_a_status_that_names_a_key_iam_does_not_record_holds_the_user() -> None:
    old, person = ObservedKey(OLD, "Active", T0), ObservedKey(OTHER, "Active", T0 + 30 * DAY)
    claim = UserStatus(Phase.AWAITING_USE, old_key=OLD, new_key=OTHER, stored_at=T0 + 30 * DAY)
    up = decide([old, person], owned(old), claim, T0 + 40 * DAY)
    assert up.actions == ()
    assert up.status is not None and up.status.phase == Phase.BLOCKED
    assert {f.kind for f in up.findings} >= {FindingKind.DRIFT, FindingKind.BLOCKED}


def test_a_rotation_of_an_earlier_release_is_adopted_when_the_targets_bear_it_out() -> None:
    old, new = ObservedKey(OLD, "Active", T0), ObservedKey(NEW, "Active", T0 + 80 * DAY)
    legacy = UserStatus(Phase.AWAITING_USE, old_key=OLD, new_key=NEW, stored_at=T0 + 80 * DAY)
    up = decide([old, new], {}, legacy, T0 + 80 * DAY + timedelta(hours=1),
                targets=(TargetReading("sm", NEW),))  # fmt: skip
    assert [a.kind for a in up.actions] == [ActionKind.ADOPT_KEY]
    assert up.actions[0].facts["keys"] == (OLD, NEW)
    assert up.status is not None and up.status.phase == Phase.AWAITING_USE


def test_a_rotation_of_an_earlier_release_the_targets_deny_is_not_adopted() -> None:
    old, new = ObservedKey(OLD, "Active", T0), ObservedKey(NEW, "Active", T0 + 80 * DAY)
    legacy = UserStatus(Phase.AWAITING_USE, old_key=OLD, new_key=NEW, stored_at=T0 + 80 * DAY)
    up = decide([old, new], {}, legacy, T0 + 81 * DAY, targets=(TargetReading("sm", OLD),))
    assert up.actions == ()
    assert up.status is not None and up.status.reason == Reason.UNVERIFIED_MIGRATION


def test_a_target_that_holds_something_else_is_named_without_its_value() -> None:
    old, new = ObservedKey(OLD, "Active", T0), ObservedKey(NEW, "Active", T0 + 80 * DAY)
    rotating = UserStatus(Phase.AWAITING_USE, old_key=OLD, new_key=NEW, stored_at=T0 + 80 * DAY)
    other = TargetReading("aws-secrets-manager ci/bot", holding=Holding.OTHER)
    up = decide([old, new], owned(old, new), rotating, T0 + 82 * DAY, targets=(other,))
    assert up.status is not None
    assert "holds a value that is not bot's key" in up.status.message
