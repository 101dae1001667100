"""The planner as a specification: from what IAM shows, status and the time, what comes next."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from controller.approvals import Approval, key_digest
from controller.checks import CheckResult
from controller.inventory import ObservedKey, ObservedUser, PolicyObservation, TargetReading
from controller.ownership import INTENT_TAG, KEYS_TAG, POLICY_TAG, intent_value, keys_value
from controller.planner import (
    ActionKind,
    FindingKind,
    Outcome,
    Plan,
    UserPlan,
    plan,
    record_success,
)
from controller.policy import (
    CommandCheck,
    NewKeyUsedCheck,
    OldKeyIdleCheck,
    Policy,
    SecretsManagerTarget,
    Source,
    SsmParameterTarget,
    UserSelection,
    Window,
)
from controller.reasons import Reason
from controller.render import plan_document, summary
from controller.status import Phase, PolicyStatus, UserStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
OLD, NEW, OTHER = "AKIAOLD0000000000001", "AKIANEW0000000000002", "AKIAOTHER00000000003"


def policy(**changes: object) -> Policy:
    base = Policy(
        name="ci",
        source=Source("manifests/ci.yaml", 1, 1),
        users=UserSelection(names=("bot",)),
        max_key_age=90 * DAY,
        targets=(SecretsManagerTarget("ci/bot"), SsmParameterTarget("/ci/bot")),
        approval="auto",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def key(
    key_id: str, created: datetime, status: str = "Active", used: datetime | None = None
) -> ObservedKey:
    return ObservedKey(key_id, status, created, used)  # type: ignore[arg-type]


def held(*key_ids: str | None) -> tuple[TargetReading, ...]:
    names = ("aws-secrets-manager ci/bot", "aws-ssm-parameter /ci/bot")
    return tuple(TargetReading(n, k) for n, k in zip(names, key_ids, strict=True))


def decide(
    keys: list[ObservedKey],
    *,
    now: datetime,
    prior: UserStatus | None = None,
    targets: tuple[TargetReading, ...] | None = None,
    pol: Policy | None = None,
    exists: bool = True,
    tags: dict[str, str] | None = None,
    **kwargs: object,
) -> UserPlan:
    pol = pol or policy()
    user = ObservedUser(
        "bot",
        tuple(keys),
        targets if targets is not None else held(OLD, OLD),
        tags=owned_by_keyrotor(prior, keys) if tags is None else tags,
    )
    obs = PolicyObservation("ci", {"bot": user if exists else None})
    statuses = {"ci": PolicyStatus("ci", {"bot": prior} if prior else {})}
    result = plan([pol], {"ci": obs}, statuses, now, **kwargs)  # type: ignore[arg-type]
    (user_plan,) = result.policies[0].users
    return user_plan


def owned_by_keyrotor(prior: UserStatus | None, keys: list[ObservedKey]) -> dict[str, str]:
    """The IAM tags of a user keyrotor manages: the keys its status names are keyrotor's (and
    an intent it recorded is in IAM too). Without status, a user's only key is keyrotor's (its
    status is not needed to decide); a user with two keys and no status was never adopted."""
    if prior is None:
        if len(keys) != 1:
            return {}
        return {POLICY_TAG: "ci", KEYS_TAG: keys_value({keys[0].id: keys[0].created})}
    owned = {k.id: k.created for k in keys if k.id in (prior.old_key, prior.new_key)}
    tags = {POLICY_TAG: "ci"}
    if owned:
        tags[KEYS_TAG] = keys_value(owned)
    if prior.intent_at is not None:
        tags[INTENT_TAG] = intent_value("run-1", prior.intent_at)
    return tags


def managed_bot() -> ObservedUser:
    keys = [key(OLD, T0)]
    return ObservedUser("bot", tuple(keys), held(OLD, OLD), tags=owned_by_keyrotor(None, keys))


def kinds(up: UserPlan) -> list[ActionKind]:
    return [a.kind for a in up.actions]


def finding_kinds(up: UserPlan) -> set[FindingKind]:
    return {f.kind for f in up.findings}


def rotating(stored_at: datetime, **changes: object) -> UserStatus:
    base = UserStatus(
        Phase.AWAITING_USE, old_key=OLD, new_key=NEW, stored_at=stored_at, self_used_at=stored_at
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# --- first sight and the Current phase ----------------------------------------------------------


def test_a_users_only_key_is_adopted_when_keyrotor_first_sees_it() -> None:
    up = decide([key(OLD, T0)], now=T0 + 10 * DAY, tags={})
    assert up.status is not None
    assert (up.status.phase, up.status.old_key) == (Phase.CURRENT, OLD)
    assert kinds(up) == [ActionKind.ADOPT_KEY], "recorded in IAM's tags, where only keyrotor writes"


def test_a_young_key_is_current_and_the_next_step_is_creation_at_rotation_age() -> None:
    up = decide([key(OLD, T0)], now=T0 + 10 * DAY)
    assert up.status is not None
    assert (up.status.next_step, up.status.next_at) == ("create-key", T0 + 76 * DAY)


def test_a_key_at_max_age_minus_rotate_before_gets_a_successor() -> None:
    up = decide([key(OLD, T0)], now=T0 + 76 * DAY)
    assert kinds(up) == [ActionKind.CREATE_KEY]
    assert up.actions[0].replaces == OLD
    assert up.status is not None and up.status.phase == Phase.DUE


def test_one_second_before_rotation_age_nothing_happens() -> None:
    up = decide([key(OLD, T0)], now=T0 + 76 * DAY - timedelta(seconds=1))
    assert kinds(up) == []


def test_a_user_without_keys_has_nothing_to_rotate() -> None:
    up = decide([], now=T0)
    assert up.status is not None
    assert (up.status.phase, up.actions) == (Phase.CURRENT, ())
    assert "no access key" in up.status.message


def test_a_pull_request_policy_waits_for_approval_instead_of_creating() -> None:
    up = decide([key(OLD, T0)], now=T0 + 80 * DAY, pol=policy(approval="pull-request"))
    assert kinds(up) == []
    assert up.status is not None and up.status.phase == Phase.AWAITING_APPROVAL
    assert FindingKind.AWAITING_APPROVAL in finding_kinds(up)


def approval_for(*keys: ObservedKey, old: str = OLD) -> dict[tuple[str, str], Approval]:
    return {("ci", "bot"): Approval("ci", "bot", old, key_digest(keys))}


def test_a_pull_request_policy_proposes_an_approval_for_the_keys_it_sees() -> None:
    up = decide([key(OLD, T0)], now=T0 + 80 * DAY, pol=policy(approval="pull-request"))
    assert up.proposal == Approval("ci", "bot", OLD, key_digest([key(OLD, T0)]))


def test_an_approved_pull_request_policy_creates_the_key() -> None:
    prior = UserStatus(Phase.AWAITING_APPROVAL, old_key=OLD)
    up = decide(
        [key(OLD, T0)],
        now=T0 + 80 * DAY,
        prior=prior,
        pol=policy(approval="pull-request"),
        approvals=approval_for(key(OLD, T0)),
    )
    assert kinds(up) == [ActionKind.CREATE_KEY]
    assert up.proposal is None


def test_an_approval_planned_against_other_keys_is_refused_as_stale() -> None:
    prior = UserStatus(Phase.AWAITING_APPROVAL, old_key=OLD)
    up = decide(
        [key(OLD, T0)],
        now=T0 + 80 * DAY,
        prior=prior,
        pol=policy(approval="pull-request"),
        approvals=approval_for(key(OLD, T0), key(OTHER, T0 + DAY)),
    )
    assert kinds(up) == []
    assert any("stale approval refused" in f.message for f in up.findings)
    assert up.proposal == Approval("ci", "bot", OLD, key_digest([key(OLD, T0)]))


def test_an_approval_covers_the_rest_of_that_old_keys_rotation() -> None:
    stored = T0 + 80 * DAY
    up = decide(
        both(used=stored + DAY),
        now=stored + 2 * DAY,
        prior=rotating(stored),
        targets=held(NEW, NEW),
        pol=policy(approval="pull-request"),
        approvals=approval_for(key(OLD, T0)),
    )
    assert kinds(up) == [ActionKind.DEACTIVATE_KEY]


def test_without_an_approval_an_in_flight_step_of_a_pull_request_policy_waits() -> None:
    stored = T0 + 80 * DAY
    up = decide(
        both(used=stored + DAY),
        now=stored + 2 * DAY,
        prior=rotating(stored),
        targets=held(NEW, NEW),
        pol=policy(approval="pull-request"),
    )
    assert kinds(up) == []
    assert FindingKind.AWAITING_APPROVAL in finding_kinds(up)


def test_a_suspended_policy_plans_no_action() -> None:
    up = decide([key(OLD, T0)], now=T0 + 80 * DAY, pol=policy(suspend=True))
    assert kinds(up) == []
    assert FindingKind.WAITING in finding_kinds(up)


def test_no_key_is_created_while_a_target_cannot_be_written() -> None:
    targets = (
        TargetReading("aws-secrets-manager ci/bot", None, error="AccessDenied"),
        TargetReading("aws-ssm-parameter /ci/bot", None),
    )
    up = decide([key(OLD, T0)], now=T0 + 80 * DAY, targets=targets)
    assert kinds(up) == []
    assert any("AccessDenied" in f.message for f in up.findings)


# --- overdue -----------------------------------------------------------------------------------


def test_an_active_key_older_than_max_key_age_is_reported_overdue() -> None:
    up = decide([key(OLD, T0)], now=T0 + 91 * DAY)
    assert FindingKind.OVERDUE in finding_kinds(up)


def test_a_key_younger_than_max_key_age_is_not_overdue() -> None:
    up = decide([key(OLD, T0)], now=T0 + 89 * DAY)
    assert FindingKind.OVERDUE not in finding_kinds(up)


def test_a_blocked_user_with_an_old_key_is_reported_overdue_and_blocked() -> None:
    up = decide(
        [key(OLD, T0), key(OTHER, T0 + DAY)],
        now=T0 + 95 * DAY,
        prior=UserStatus(Phase.CURRENT, old_key=OLD),
    )
    assert {FindingKind.OVERDUE, FindingKind.BLOCKED} <= finding_kinds(up)


# --- safety: keys keyrotor does not own --------------------------------------------------------


def test_a_foreign_second_key_blocks_the_user_and_no_third_key_is_created() -> None:
    up = decide(
        [key(OLD, T0), key(OTHER, T0 + 5 * DAY)],
        now=T0 + 80 * DAY,
        prior=UserStatus(Phase.CURRENT, old_key=OLD),
    )
    assert kinds(up) == []
    assert up.status is not None and up.status.phase == Phase.BLOCKED
    assert OTHER in up.status.message and "delete" in up.status.message


def test_two_keys_at_first_sight_block_the_user_rather_than_guess() -> None:
    up = decide([key(OLD, T0), key(OTHER, T0 + DAY)], now=T0 + 80 * DAY)
    assert kinds(up) == []
    assert up.status is not None and up.status.phase == Phase.BLOCKED


def test_an_only_key_that_is_inactive_is_not_rotated() -> None:
    up = decide([key(OLD, T0, "Inactive")], now=T0 + 80 * DAY)
    assert kinds(up) == []
    assert up.status is not None and up.status.phase == Phase.BLOCKED


def test_a_missing_iam_user_is_blocked_not_crashed_on() -> None:
    up = decide([], now=T0, exists=False, prior=UserStatus(Phase.CURRENT, old_key=OLD))
    assert up.status is not None and up.status.phase == Phase.BLOCKED
    assert "does not exist" in up.status.message


def test_a_user_no_longer_selected_leaves_status_with_a_drift_finding() -> None:
    obs = PolicyObservation("ci", {})
    statuses = {"ci": PolicyStatus("ci", {"gone": UserStatus(Phase.CURRENT, old_key=OLD)})}
    result = plan([policy()], {"ci": obs}, statuses, T0)
    assert result.policies[0].status.users == {}
    assert [f.kind for f in result.findings] == [FindingKind.DRIFT]


# --- AwaitingUse: step 2 and 3 -----------------------------------------------------------------


def both(used: datetime | None = None, old_used: datetime | None = None) -> list[ObservedKey]:
    return [key(OLD, T0, used=old_used), key(NEW, T0 + 80 * DAY, used=used)]


def test_after_creation_the_user_awaits_use_of_the_new_key() -> None:
    stored = T0 + 80 * DAY
    up = decide(
        both(), now=stored + timedelta(hours=1), prior=rotating(stored), targets=held(NEW, NEW)
    )
    assert up.status is not None and up.status.phase == Phase.AWAITING_USE
    assert kinds(up) == []


def test_the_old_key_is_not_deactivated_before_deactivate_after() -> None:
    stored = T0 + 80 * DAY
    up = decide(
        both(used=stored + timedelta(hours=2)),
        now=stored + timedelta(hours=23),
        prior=rotating(stored),
        targets=held(NEW, NEW),
    )
    assert kinds(up) == []
    assert any("deactivateAfter" in f.message for f in up.findings)


def test_the_old_key_is_deactivated_once_the_new_key_is_used_and_time_has_passed() -> None:
    stored = T0 + 80 * DAY
    up = decide(
        both(used=stored + timedelta(hours=2)),
        now=stored + DAY,
        prior=rotating(stored),
        targets=held(NEW, NEW),
    )
    assert kinds(up) == [ActionKind.DEACTIVATE_KEY]
    assert up.actions[0].key == OLD


def test_a_use_recorded_within_15_minutes_of_keyrotors_own_does_not_count() -> None:
    stored = T0 + 80 * DAY
    up = decide(
        both(used=stored + timedelta(minutes=15)),
        now=stored + 2 * DAY,
        prior=rotating(stored),
        targets=held(NEW, NEW),
    )
    assert kinds(up) == []
    assert any("not yet used" in f.message for f in up.findings)


def test_a_use_recorded_just_after_the_15_minute_span_counts() -> None:
    stored = T0 + 80 * DAY
    up = decide(
        both(used=stored + timedelta(minutes=16)),
        now=stored + 2 * DAY,
        prior=rotating(stored),
        targets=held(NEW, NEW),
    )
    assert kinds(up) == [ActionKind.DEACTIVATE_KEY]


def test_old_key_idle_holds_deactivation_while_a_straggler_uses_the_old_key() -> None:
    stored = T0 + 80 * DAY
    now = stored + 2 * DAY
    pol = policy(checks=(NewKeyUsedCheck(), OldKeyIdleCheck(timedelta(hours=24))))
    up = decide(
        both(used=stored + DAY, old_used=now - timedelta(hours=3)),
        now=now,
        prior=rotating(stored),
        targets=held(NEW, NEW),
        pol=pol,
    )
    assert kinds(up) == []
    assert any("old key" in f.message and "idle" in f.message for f in up.findings)


def test_old_key_idle_passes_once_the_old_key_was_unused_for_the_period() -> None:
    stored = T0 + 80 * DAY
    now = stored + 3 * DAY
    pol = policy(checks=(NewKeyUsedCheck(), OldKeyIdleCheck(timedelta(hours=24))))
    up = decide(
        both(used=stored + DAY, old_used=now - timedelta(hours=25)),
        now=now,
        prior=rotating(stored),
        targets=held(NEW, NEW),
        pol=pol,
    )
    assert kinds(up) == [ActionKind.DEACTIVATE_KEY]


def test_a_command_check_without_a_result_holds_deactivation() -> None:
    stored = T0 + 80 * DAY
    pol = policy(checks=(NewKeyUsedCheck(), CommandCheck(("./smoke.sh",))))
    up = decide(
        both(used=stored + DAY),
        now=stored + 2 * DAY,
        prior=rotating(stored),
        targets=held(NEW, NEW),
        pol=pol,
    )
    assert kinds(up) == []


def test_a_passed_external_check_result_lets_deactivation_proceed() -> None:
    stored = T0 + 80 * DAY
    pol = policy(checks=(NewKeyUsedCheck(), CommandCheck(("./smoke.sh",))))
    external = {("ci", "bot"): {1: CheckResult("command", True, "exit 0")}}
    up = decide(
        both(used=stored + DAY),
        now=stored + 2 * DAY,
        prior=rotating(stored),
        targets=held(NEW, NEW),
        pol=pol,
        external=external,
    )
    assert kinds(up) == [ActionKind.DEACTIVATE_KEY]


def test_a_target_overwritten_out_of_band_blocks_deactivation() -> None:
    stored = T0 + 80 * DAY
    up = decide(
        both(used=stored + DAY),
        now=stored + 2 * DAY,
        prior=rotating(stored),
        targets=held(NEW, OLD),
    )
    assert kinds(up) == []
    assert up.status is not None and up.status.phase == Phase.BLOCKED
    assert "overwritten outside keyrotor" in up.status.message


# --- Deactivated: step 5 -----------------------------------------------------------------------


def deactivated(at: datetime) -> UserStatus:
    return rotating(at - DAY, phase=Phase.DEACTIVATED, deactivated_at=at)


def test_the_old_key_is_deleted_only_after_the_grace_period() -> None:
    at = T0 + 82 * DAY
    keys = [key(OLD, T0, "Inactive"), key(NEW, T0 + 80 * DAY)]
    early = decide(
        keys, now=at + 7 * DAY - timedelta(minutes=1), prior=deactivated(at), targets=held(NEW, NEW)
    )
    due = decide(keys, now=at + 7 * DAY, prior=deactivated(at), targets=held(NEW, NEW))
    assert (kinds(early), kinds(due)) == ([], [ActionKind.DELETE_KEY])


def test_after_the_old_key_is_gone_the_new_key_is_current() -> None:
    at = T0 + 82 * DAY
    up = decide(
        [key(NEW, T0 + 80 * DAY)], now=at + 8 * DAY, prior=deactivated(at), targets=held(NEW, NEW)
    )
    assert up.status is not None
    assert (up.status.phase, up.status.old_key, up.status.new_key) == (Phase.CURRENT, NEW, None)
    assert FindingKind.DRIFT not in finding_kinds(up)


# --- drift -------------------------------------------------------------------------------------


def test_an_old_key_deleted_outside_keyrotor_mid_rotation_is_reported_as_drift() -> None:
    stored = T0 + 80 * DAY
    up = decide(
        [key(NEW, stored)], now=stored + DAY, prior=rotating(stored), targets=held(NEW, NEW)
    )
    assert FindingKind.DRIFT in finding_kinds(up)
    assert up.status is not None and (up.status.phase, up.status.old_key) == (Phase.CURRENT, NEW)


def test_a_new_key_deleted_outside_keyrotor_restarts_the_rotation() -> None:
    stored = T0 + 80 * DAY
    up = decide([key(OLD, T0)], now=stored + DAY, prior=rotating(stored), targets=held(NEW, NEW))
    assert FindingKind.DRIFT in finding_kinds(up)
    assert kinds(up) == [ActionKind.CREATE_KEY]


def test_a_new_key_deleted_while_the_old_is_inactive_is_blocked_with_what_to_do() -> None:
    at = T0 + 82 * DAY
    up = decide(
        [key(OLD, T0, "Inactive")], now=at + DAY, prior=deactivated(at), targets=held(NEW, NEW)
    )
    assert kinds(up) == []
    assert up.status is not None and up.status.phase == Phase.BLOCKED
    assert "no working key" in up.status.message and "update-access-key" in up.status.message


# --- recovering from a crash -------------------------------------------------------------------


def intent(at: datetime) -> UserStatus:
    return UserStatus(Phase.DUE, old_key=OLD, intent_at=at)


def test_a_key_created_after_the_intent_and_stored_nowhere_is_deleted_and_recreated() -> None:
    at = T0 + 80 * DAY
    up = decide(
        [key(OLD, T0), key(NEW, at)],
        now=at + timedelta(hours=1),
        prior=intent(at),
        targets=held(OLD, OLD),
    )
    assert kinds(up) == [ActionKind.DELETE_ORPHAN, ActionKind.CREATE_KEY]
    assert up.actions[0].key == NEW


def test_a_key_created_after_the_intent_and_stored_in_some_targets_is_stored_in_the_rest() -> None:
    at = T0 + 80 * DAY
    up = decide(
        [key(OLD, T0), key(NEW, at)],
        now=at + timedelta(hours=1),
        prior=intent(at),
        targets=held(NEW, OLD),
    )
    assert kinds(up) == [ActionKind.STORE_KEY]


def test_a_key_created_after_the_intent_and_stored_everywhere_is_recorded_as_awaiting_use() -> None:
    at = T0 + 80 * DAY
    up = decide(
        [key(OLD, T0), key(NEW, at)],
        now=at + timedelta(hours=1),
        prior=intent(at),
        targets=held(NEW, NEW),
    )
    assert kinds(up) == [ActionKind.ADOPT_KEY], "recorded in IAM's tags as keyrotor's"
    assert up.status is not None
    assert (up.status.phase, up.status.new_key, up.status.intent_at) == (
        Phase.AWAITING_USE,
        NEW,
        None,
    )


def test_a_key_created_before_the_intent_is_foreign_not_an_orphan() -> None:
    at = T0 + 80 * DAY
    up = decide(
        [key(OLD, T0), key(OTHER, at - DAY)],
        now=at + timedelta(hours=1),
        prior=intent(at),
        targets=held(OLD, OLD),
    )
    assert kinds(up) == []
    assert up.status is not None and up.status.phase == Phase.BLOCKED


def test_an_intent_with_no_key_created_is_cleared_and_the_key_created_again() -> None:
    at = T0 + 80 * DAY
    up = decide([key(OLD, T0)], now=at + timedelta(hours=1), prior=intent(at))
    assert kinds(up) == [ActionKind.CREATE_KEY]
    assert up.status is not None and up.status.intent_at is None


# --- transitions and output --------------------------------------------------------------------


def test_success_of_each_step_moves_the_phase_along_the_lifecycle() -> None:
    pol, now = policy(), T0 + 80 * DAY
    due = decide([key(OLD, T0)], now=now)
    assert due.status is not None
    created = record_success(pol, due.status, due.actions[0], Outcome(NEW, now, now), now)
    assert (created.phase, created.new_key, created.next_at) == (Phase.AWAITING_USE, NEW, now + DAY)
    deact = decide(both(used=now + DAY), now=now + 2 * DAY, prior=created, targets=held(NEW, NEW))
    assert deact.status is not None
    off = record_success(pol, deact.status, deact.actions[0], Outcome(OLD), now + 2 * DAY)
    assert off.phase == Phase.DEACTIVATED
    gone = decide(
        [key(OLD, T0, "Inactive"), key(NEW, now, used=now + DAY)],
        now=now + 9 * DAY,
        prior=off,
        targets=held(NEW, NEW),
    )
    assert gone.status is not None
    done = record_success(pol, gone.status, gone.actions[0], Outcome(OLD), now + 9 * DAY)
    assert (done.phase, done.old_key, done.new_key) == (Phase.CURRENT, NEW, None)


def test_the_plan_summary_counts_actions_and_findings_like_terraform() -> None:
    obs = PolicyObservation("ci", {"bot": managed_bot()})
    result = plan([policy()], {"ci": obs}, {}, T0 + 91 * DAY)
    assert summary(result) == (
        "Plan: 1 key to create, 0 to deactivate, 0 to delete; 1 overdue, 0 blocked"
    )


def test_the_json_plan_has_the_documented_shape() -> None:
    obs = PolicyObservation("ci", {"bot": managed_bot()})
    doc = plan_document(plan([policy()], {"ci": obs}, {}, T0 + 80 * DAY))
    assert doc["format_version"] == "2"
    assert doc["actions"] == [
        {
            "policy": "ci",
            "account": None,
            "user": "bot",
            "action": "create-key",
            "key": None,
            "replaces": OLD,
            "reason": "rotation-age",
            "message": f"key {OLD} reached rotation age 76d on 2026-03-18; key is 80d old",
            "facts": {
                "age": 80 * 86400,
                "key": OLD,
                "rotate_at": "2026-03-18T00:00:00Z",
                "rotate_at_age": 76 * 86400,
            },
        }
    ]


def test_an_unobservable_policy_plans_nothing_and_says_why() -> None:
    obs = PolicyObservation("ci", error="AccessDenied: not authorized")
    result: Plan = plan([policy()], {"ci": obs}, {}, T0)
    assert result.actions == ()
    assert [f.kind for f in result.findings] == [FindingKind.BLOCKED]


# --- verification, rollback and resume -----------------------------------------------------------

SMOKE = CommandCheck(("./smoke.sh",))


def in_grace(**changes: object) -> tuple[list[ObservedKey], UserStatus]:
    at = T0 + 82 * DAY
    keys = [key(OLD, T0, "Inactive"), key(NEW, T0 + 80 * DAY, used=T0 + 81 * DAY)]
    return keys, replace(deactivated(at), **changes)  # type: ignore[arg-type]


def test_a_failing_check_in_the_grace_period_reactivates_the_old_key() -> None:
    keys, prior = in_grace()
    external = {("ci", "bot"): {1: CheckResult("command", False, "exit 1: 502 from app")}}
    up = decide(
        keys,
        now=T0 + 83 * DAY,
        prior=prior,
        targets=held(NEW, NEW),
        pol=policy(checks=(NewKeyUsedCheck(), SMOKE)),
        external=external,
    )
    assert kinds(up) == [ActionKind.REACTIVATE_KEY]
    assert up.actions[0].key == OLD and "502 from app" in up.actions[0].message


def test_checks_that_have_not_run_never_trigger_a_rollback_but_ask_to_be_run() -> None:
    keys, prior = in_grace()
    up = decide(
        keys,
        now=T0 + 83 * DAY,
        prior=prior,
        targets=held(NEW, NEW),
        pol=policy(checks=(NewKeyUsedCheck(), SMOKE)),
    )
    assert kinds(up) == []
    assert up.needs_checks


def test_a_rollback_is_recorded_as_rolled_back_with_what_happened_to_the_targets() -> None:
    keys, prior = in_grace()
    external = {("ci", "bot"): {1: CheckResult("command", False, "exit 1")}}
    pol = policy(checks=(NewKeyUsedCheck(), SMOKE))
    up = decide(
        keys, now=T0 + 83 * DAY, prior=prior, targets=held(NEW, NEW), pol=pol, external=external
    )
    assert up.status is not None
    after = record_success(
        pol,
        up.status,
        up.actions[0],
        Outcome(OLD, restored="all"),
        T0 + 83 * DAY,
    )
    assert after.phase == Phase.ROLLED_BACK
    assert "command check failed: exit 1" in after.message
    assert "every target holds the old key again" in after.message


def rolled_back(**changes: object) -> UserStatus:
    return rotating(
        T0 + 80 * DAY,
        phase=Phase.ROLLED_BACK,
        rolled_back_at=T0 + 83 * DAY,
        message="command check failed: exit 1",
        **changes,
    )


def test_a_rolled_back_rotation_is_not_retried_without_a_person() -> None:
    keys = [key(OLD, T0), key(NEW, T0 + 80 * DAY)]
    up = decide(keys, now=T0 + 90 * DAY, prior=rolled_back(), targets=held(OLD, OLD))
    assert kinds(up) == []
    assert up.status is not None and up.status.phase == Phase.ROLLED_BACK
    assert any("keyrotor resume --policy ci --user bot" in f.message for f in up.findings)


def test_a_resumed_rotation_stores_the_new_key_again() -> None:
    keys = [key(OLD, T0), key(NEW, T0 + 80 * DAY)]
    up = decide(
        keys, now=T0 + 90 * DAY, prior=rolled_back(resumed_at=T0 + 89 * DAY), targets=held(OLD, OLD)
    )
    assert kinds(up) == [ActionKind.STORE_KEY]
    assert up.actions[0].key == NEW


def test_a_resumed_rotation_whose_targets_hold_the_new_key_awaits_use_again() -> None:
    keys = [key(OLD, T0), key(NEW, T0 + 80 * DAY)]
    up = decide(
        keys, now=T0 + 90 * DAY, prior=rolled_back(resumed_at=T0 + 89 * DAY), targets=held(NEW, NEW)
    )
    assert up.status is not None
    assert (up.status.phase, up.status.stored_at) == (Phase.AWAITING_USE, T0 + 89 * DAY)


def test_on_overdue_deactivate_deactivates_an_overdue_old_key_without_the_gates() -> None:
    stored = T0 + 88 * DAY
    keys = [key(OLD, T0), key(NEW, stored)]
    up = decide(
        keys,
        now=T0 + 91 * DAY,
        prior=rotating(stored),
        targets=held(NEW, NEW),
        pol=policy(on_overdue="deactivate"),
    )
    assert kinds(up) == [ActionKind.DEACTIVATE_KEY]
    assert up.actions[0].reason == Reason.OVERDUE_FORCED
    assert up.actions[0].message.startswith("OVERDUE:")


def test_on_overdue_report_only_reports_an_overdue_old_key() -> None:
    stored = T0 + 88 * DAY
    keys = [key(OLD, T0), key(NEW, stored)]
    up = decide(keys, now=T0 + 91 * DAY, prior=rotating(stored), targets=held(NEW, NEW))
    assert kinds(up) == []
    assert {FindingKind.OVERDUE, FindingKind.WAITING} <= finding_kinds(up)


def test_check_results_are_recorded_and_keep_their_since_while_unchanged() -> None:
    stored = T0 + 80 * DAY
    first = decide(both(), now=stored + DAY, prior=rotating(stored), targets=held(NEW, NEW))
    assert first.status is not None
    (recorded,) = first.status.checks
    assert (recorded.check, recorded.passed, recorded.since) == (
        "new-key-used",
        False,
        stored + DAY,
    )
    later = decide(both(), now=stored + 2 * DAY, prior=first.status, targets=held(NEW, NEW))
    assert later.status is not None and later.status.checks == first.status.checks


# --- maintenance windows -----------------------------------------------------------------------

WEEKEND_NIGHTS = Window("allow", "0 2 * * 6", timedelta(hours=2), "Europe/Berlin")


def test_deactivation_outside_an_allow_window_waits_for_the_next_opening() -> None:
    stored = T0 + 80 * DAY  # 2026-03-22, a Sunday
    now = stored + 2 * DAY
    up = decide(
        both(used=stored + DAY),
        now=now,
        prior=rotating(stored),
        targets=held(NEW, NEW),
        pol=policy(windows=(WEEKEND_NIGHTS,)),
    )
    assert kinds(up) == []
    assert up.status is not None
    assert up.status.next_at == datetime(2026, 3, 28, 1, 0, tzinfo=UTC)  # 02:00 CET
    assert any("outside maintenance windows" in f.message for f in up.findings)


def test_deactivation_inside_an_allow_window_proceeds() -> None:
    stored = T0 + 80 * DAY
    now = datetime(2026, 3, 28, 1, 30, tzinfo=UTC)
    up = decide(
        both(used=stored + DAY),
        now=now,
        prior=rotating(stored),
        targets=held(NEW, NEW),
        pol=policy(windows=(WEEKEND_NIGHTS,)),
    )
    assert kinds(up) == [ActionKind.DEACTIVATE_KEY]


def test_a_deny_window_never_holds_a_rollback() -> None:
    keys, prior = in_grace()
    always_denied = Window("deny", "0 0 * * *", timedelta(hours=24))
    external = {("ci", "bot"): {1: CheckResult("command", False, "exit 1")}}
    up = decide(
        keys,
        now=T0 + 83 * DAY,
        prior=prior,
        targets=held(NEW, NEW),
        pol=policy(checks=(NewKeyUsedCheck(), SMOKE), windows=(always_denied,)),
        external=external,
    )
    assert kinds(up) == [ActionKind.REACTIVATE_KEY]


def test_a_blocked_user_records_when_its_oldest_active_key_is_overdue() -> None:
    up = decide([key(OLD, T0), key(OTHER, T0 + 20 * DAY)], now=T0 + 95 * DAY)
    assert up.status is not None and up.status.phase == Phase.BLOCKED
    assert up.status.overdue_at == T0 + 90 * DAY
