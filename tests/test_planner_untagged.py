"""Users of an account that was not listed: their tags were not read, so which keys are
keyrotor's is known only from status. Such a user nothing is happening to is carried forward;
anyone else waits for a live read, and no step (not even adopting a key) is planned for them."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from controller.inventory import ObservedKey, ObservedUser, PolicyObservation
from controller.planner import UserPlan, plan
from controller.reasons import Reason
from controller.status import Phase, PolicyStatus, UserStatus
from tests.test_planner import DAY, OLD, OTHER, T0, approval_for, owned_by_keyrotor, policy

POLICY = policy(targets=())
CREATED = T0
ADOPTED = UserStatus(Phase.CURRENT, old_key=OLD, old_key_created=CREATED)
FROM_REPORT = (ObservedKey(OLD, "Active", CREATED, None, live=False),)


def decide_unlisted(
    keys: tuple[ObservedKey, ...],
    prior: UserStatus | None,
    *,
    now: datetime = T0 + 10 * DAY,
    tags_read: bool = False,
    **kwargs: object,
) -> UserPlan:
    tags = owned_by_keyrotor(prior, list(keys)) if tags_read else {}
    user = ObservedUser("bot", keys, tags=tags, tags_read=tags_read)
    statuses = {"ci": PolicyStatus("ci", {"bot": prior} if prior else {})}
    obs = {"ci": PolicyObservation("ci", {"bot": user})}
    result = plan([POLICY], obs, statuses, now, **kwargs)  # type: ignore[arg-type]
    (user_plan,) = result.policies[0].users
    return user_plan


def reasons(up: UserPlan) -> list[Reason]:
    return [f.reason for f in up.findings]


def test_a_quiet_unlisted_user_is_current_as_a_listed_one_would_be() -> None:
    unlisted = decide_unlisted(FROM_REPORT, ADOPTED)
    listed = decide_unlisted(FROM_REPORT, ADOPTED, tags_read=True)
    assert unlisted.status is not None and unlisted.status.phase == Phase.CURRENT
    assert not unlisted.actions and not unlisted.findings
    assert unlisted.status == listed.status


def test_an_unlisted_user_whose_key_was_created_at_another_time_waits_for_a_live_read() -> None:
    moved = (ObservedKey(OLD, "Active", CREATED + DAY, None, live=False),)
    up = decide_unlisted(moved, ADOPTED)
    assert not up.actions
    assert reasons(up) == [Reason.NOT_READ_LIVE]
    assert up.status == ADOPTED


def test_an_unlisted_user_with_no_status_is_not_adopted_on_the_report_alone() -> None:
    # Narrowing a user without its tags would take its one key as unrecorded, to adopt.
    up = decide_unlisted(FROM_REPORT, None)
    assert not up.actions
    assert reasons(up) == [Reason.NOT_READ_LIVE]


def test_an_unlisted_user_read_live_without_its_tags_is_not_adopted_either() -> None:
    live = (ObservedKey(OLD, "Active", CREATED, T0 + 5 * DAY),)
    up = decide_unlisted(live, None)
    assert not up.actions
    assert reasons(up) == [Reason.NOT_READ_LIVE]


def test_an_unlisted_user_whose_key_is_due_waits_for_a_live_read() -> None:
    up = decide_unlisted(FROM_REPORT, ADOPTED, now=T0 + 76 * DAY)
    assert not up.actions
    assert reasons(up) == [Reason.NOT_READ_LIVE]


def test_an_unlisted_user_with_a_rotation_in_progress_waits_for_a_live_read() -> None:
    rotating = replace(ADOPTED, phase=Phase.AWAITING_USE, new_key=OTHER)
    up = decide_unlisted(FROM_REPORT, rotating)
    assert not up.actions
    assert reasons(up) == [Reason.NOT_READ_LIVE]
    assert up.status == rotating


def test_an_unlisted_user_without_keys_has_nothing_to_rotate() -> None:
    up = decide_unlisted((), UserStatus(Phase.CURRENT))
    assert not up.actions and not up.findings
    assert up.status is not None and up.status.reason == Reason.NO_KEY


def test_an_approval_does_not_stop_a_quiet_unlisted_user_being_carried_forward() -> None:
    key = FROM_REPORT[0]
    up = decide_unlisted(FROM_REPORT, ADOPTED, approvals=approval_for(key))
    assert up.status is not None and up.status.phase == Phase.CURRENT
    assert not up.actions and not up.findings
