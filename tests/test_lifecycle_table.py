"""The lifecycle table is the lifecycle: every transition it lists is what its function does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from controller import lifecycle
from controller.lifecycle import LIFECYCLE, Transition, Trigger
from controller.plan import Action, ActionKind, Outcome
from controller.policy import Policy, SecretsManagerTarget, Source, UserSelection
from controller.reasons import Reason
from controller.status import Phase, UserStatus

NOW = datetime(2026, 3, 22, tzinfo=UTC)
OLD, NEW = "AKIAOLD0000000000001", "AKIANEW0000000000002"
POLICY = Policy(
    name="ci",
    source=Source("manifests/ci.yaml"),
    users=UserSelection(names=("bot",)),
    max_key_age=timedelta(days=90),
    targets=(SecretsManagerTarget("ci/bot"),),
)


def status_in(phase: Phase | None) -> UserStatus:
    return UserStatus(
        phase or Phase.CURRENT,
        old_key=OLD,
        old_key_created=NOW - timedelta(days=80),
        new_key=NEW,
        new_key_created=NOW - timedelta(days=2),
        stored_at=NOW - timedelta(days=2),
        resumed_at=NOW - timedelta(hours=1) if phase == Phase.ROLLED_BACK else None,
    )


def _action(kind: ActionKind) -> Action:
    return Action("ci", "bot", kind, OLD, Reason.GRACE_ENDED, {"delete_after": timedelta(days=7)})


def after_action(t: Transition) -> UserStatus:
    assert isinstance(t.trigger, ActionKind)
    return lifecycle.on_success(
        POLICY, status_in(t.source), _action(t.trigger), Outcome(NEW, NOW, NOW), NOW
    )


WITHOUT_ACTION: dict[Trigger, Callable[[Transition], UserStatus | None]] = {
    Trigger.ROTATION_AGE: lambda t: lifecycle.due(status_in(t.source), OLD, POLICY),
    Trigger.NEEDS_APPROVAL: lambda t: lifecycle.awaiting_approval(status_in(t.source), OLD, POLICY),
    Trigger.APPROVED: lambda t: lifecycle.due(status_in(t.source), OLD, POLICY),
    Trigger.BLOCKED: lambda t: lifecycle.blocked(
        status_in(t.source), Reason.ONLY_KEY_INACTIVE, {"user": "bot", "key": OLD}
    ),
    Trigger.HELD: lambda t: lifecycle.on_failure(
        status_in(t.source), _action(ActionKind.CREATE_KEY), "did not authenticate", hold=True
    ),
    Trigger.CAUSE_FIXED: lambda t: lifecycle.current(
        status_in(t.source), OLD, NOW - timedelta(days=10), POLICY
    ),
    Trigger.RESUMED: lambda t: lifecycle.on_resume(
        UserStatus(
            t.source or Phase.CURRENT,
            old_key=OLD,
            hold="held" if t.source == Phase.BLOCKED else None,
        ),
        NOW,
    ),
}


@pytest.mark.parametrize("transition", LIFECYCLE, ids=lambda t: f"{t.source}-{t.trigger}")
def test_each_transition_of_the_table_is_what_its_function_does(transition: Transition) -> None:
    if isinstance(transition.trigger, ActionKind):
        after = after_action(transition)
    else:
        result = WITHOUT_ACTION[transition.trigger](transition)
        assert result is not None
        after = result
    assert after.phase == transition.target
    if transition.trigger not in (
        ActionKind.DELETE_ORPHAN,
        ActionKind.ADOPT_KEY,
        ActionKind.RECORD_TARGETS,
    ):
        # bookkeeping in IAM leaves the record as the planner made it
        assert after.message, "every status says why, in words rendered from its reason"


def test_every_action_and_trigger_appears_in_the_table() -> None:
    triggers = {t.trigger for t in LIFECYCLE}
    assert set(ActionKind) <= triggers
    assert set(Trigger) <= triggers


def test_every_phase_can_be_reached_and_left() -> None:
    targets = {t.target for t in LIFECYCLE}
    sources = {t.source for t in LIFECYCLE if t.source is not None}
    assert set(Phase) == targets
    assert set(Phase) == sources


def test_a_step_replayed_on_a_record_that_already_has_it_changes_nothing_more() -> None:
    """A run that lost a race re-applies its step to the winner's record: idempotent."""
    deactivate = Action("ci", "bot", ActionKind.DEACTIVATE_KEY, OLD, Reason.NEW_KEY_IN_USE, {})
    once = lifecycle.on_success(
        POLICY, status_in(Phase.AWAITING_USE), deactivate, Outcome(OLD), NOW
    )
    twice = lifecycle.on_success(POLICY, once, deactivate, Outcome(OLD), NOW)
    assert twice == once


def test_the_approvals_file_is_kept_whole_while_any_old_key_it_names_is_in_use() -> None:
    from controller.approvals import Approval

    approvals = {
        "bot": Approval("ci", "bot", OLD, "sha256:x"),
        "done": Approval("ci", "done", "AKIAGONE", "sha256:y"),
    }
    rotating = replace(status_in(Phase.AWAITING_USE), old_key=OLD, new_key=NEW)
    finished = replace(status_in(Phase.CURRENT), old_key="AKIANEXT", new_key=None)
    kept = lifecycle.approvals_left(approvals, {"bot": rotating, "done": finished})
    assert kept == approvals, "an entry is never dropped alone: the file stays as merged"


def test_the_approvals_file_is_removed_once_every_old_key_it_names_is_gone() -> None:
    from controller.approvals import Approval

    approvals = {"bot": Approval("ci", "bot", OLD, "sha256:x")}
    after_delete = replace(status_in(Phase.CURRENT), old_key=NEW, new_key=None)
    assert lifecycle.approvals_left(approvals, {"bot": after_delete}) == {}
    assert lifecycle.approvals_left(approvals, {}) == {}, "a user no longer managed"
