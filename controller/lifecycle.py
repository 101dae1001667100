"""The rotation lifecycle: every change to a user's status, as pure functions, and its table.

`LIFECYCLE` lists each transition `(phase, trigger) -> phase`: a trigger is one of keyrotor's
actions or something that happens without one (time passes, a person merges or resumes). The
README's state diagram is generated from it (`python -m controller.docs README.md`), and a test
checks every function here against it, so the table is the lifecycle.

The planner decides *which* situation a user is in and calls the builders below for the status
that goes with it; the executor calls `on_success`, `on_failure` and `on_intent`; `keyrotor
resume` calls `on_resume`; `approvals_left` says when the approvals file is used up. Nothing
else writes a `UserStatus`. Each status carries its reason and the English rendered from it,
built only from facts that stay the same from run to run, so a run that learns nothing new
commits nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from controller import messages
from controller.approvals import Approval
from controller.checks import CheckResult, CheckState, new_key_used
from controller.inventory import ObservedKey
from controller.plan import Action, ActionKind, Outcome
from controller.policy import NewKeyUsedCheck, Policy
from controller.reasons import Facts, Reason
from controller.status import Phase, RecordedCheck, UserStatus


class Trigger(StrEnum):
    """What moves a user without one of keyrotor's actions."""

    ROTATION_AGE = "rotation-age"
    NEEDS_APPROVAL = "needs-approval"
    APPROVED = "approved"
    BLOCKED = "blocked"
    HELD = "held"
    CAUSE_FIXED = "cause-fixed"
    RESUMED = "resumed"


@dataclass(frozen=True)
class Transition:
    source: Phase | None  # None: keyrotor has no record of the user yet
    trigger: ActionKind | Trigger
    target: Phase
    label: str


LIFECYCLE: tuple[Transition, ...] = (
    Transition(None, ActionKind.ADOPT_KEY, Phase.CURRENT, "adopt-key, the user's one key"),
    Transition(
        Phase.AWAITING_USE,
        ActionKind.RECORD_TARGETS,
        Phase.AWAITING_USE,
        "record-targets written before keyrotor tagged them",
    ),
    Transition(
        Phase.CURRENT, Trigger.ROTATION_AGE, Phase.DUE, "key age >= maxKeyAge - rotateBefore"
    ),
    Transition(Phase.DUE, Trigger.NEEDS_APPROVAL, Phase.AWAITING_APPROVAL, "approval pull-request"),
    Transition(Phase.AWAITING_APPROVAL, Trigger.APPROVED, Phase.DUE, "pull request merged"),
    Transition(
        Phase.DUE, ActionKind.CREATE_KEY, Phase.AWAITING_USE, "1. create-key, store in every target"
    ),
    Transition(
        Phase.DUE,
        ActionKind.STORE_KEY,
        Phase.AWAITING_USE,
        "store-key finishes an interrupted creation",
    ),
    Transition(
        Phase.DUE, ActionKind.DELETE_ORPHAN, Phase.DUE, "delete-orphan-key, its secret was lost"
    ),
    Transition(
        Phase.AWAITING_USE,
        ActionKind.DEACTIVATE_KEY,
        Phase.DEACTIVATED,
        "3. deactivate-key (old), once the new key is used (2.)",
    ),
    Transition(
        Phase.DEACTIVATED,
        ActionKind.REACTIVATE_KEY,
        Phase.ROLLED_BACK,
        "4. a check fails, reactivate-key (old)",
    ),
    Transition(
        Phase.ROLLED_BACK, Trigger.RESUMED, Phase.ROLLED_BACK, "a person runs keyrotor resume"
    ),
    Transition(
        Phase.ROLLED_BACK, ActionKind.STORE_KEY, Phase.AWAITING_USE, "store-key again, once resumed"
    ),
    Transition(
        Phase.DEACTIVATED,
        ActionKind.DELETE_KEY,
        Phase.CURRENT,
        "5. delete-key (old) after deleteAfter",
    ),
    Transition(
        Phase.CURRENT,
        Trigger.BLOCKED,
        Phase.BLOCKED,
        "a key keyrotor does not own, an inactive only key, ...",
    ),
    Transition(
        Phase.DUE,
        Trigger.HELD,
        Phase.BLOCKED,
        "keyrotor undid its own step (a key that never works)",
    ),
    Transition(Phase.BLOCKED, Trigger.RESUMED, Phase.BLOCKED, "keyrotor resume releases a hold"),
    Transition(Phase.BLOCKED, Trigger.CAUSE_FIXED, Phase.CURRENT, "a person fixes the cause"),
)

# The phase an action leads to, whichever phase it started from (delete-orphan keeps it).
_AFTER_ACTION: dict[ActionKind, Phase | None] = {
    ActionKind.CREATE_KEY: Phase.AWAITING_USE,
    ActionKind.STORE_KEY: Phase.AWAITING_USE,
    ActionKind.DELETE_ORPHAN: None,
    ActionKind.ADOPT_KEY: None,
    ActionKind.RECORD_TARGETS: None,
    ActionKind.DEACTIVATE_KEY: Phase.DEACTIVATED,
    ActionKind.DELETE_KEY: Phase.CURRENT,
    ActionKind.REACTIVATE_KEY: Phase.ROLLED_BACK,
}


def _said(status: UserStatus, phase: Phase, reason: Reason, facts: Facts) -> UserStatus:
    return replace(status, phase=phase, reason=reason, message=messages.render(reason, facts))


# --- the situations the planner finds a user in ------------------------------------------------


def current(status: UserStatus, key: str, created: datetime, policy: Policy) -> UserStatus:
    """One managed active key, not yet due: the next step is its successor at rotation age."""
    next_at = created + policy.rotate_at_age
    if (
        status.phase is Phase.CURRENT
        and status.reason is Reason.KEY_CURRENT
        and status.old_key == key
        and status.old_key_created == created
        and status.new_key is None
        and status.new_key_created is None
        and status.next_step == ActionKind.CREATE_KEY
        and status.next_at == next_at
        and status.message == messages.render(Reason.KEY_CURRENT, {"key": key})
    ):
        return status  # says so already: most users of a large account, on most runs
    return _said(
        replace(
            status,
            old_key=key,
            old_key_created=created,
            new_key=None,
            new_key_created=None,
            next_step=str(ActionKind.CREATE_KEY),
            next_at=next_at,
        ),
        Phase.CURRENT,
        Reason.KEY_CURRENT,
        {"key": key},
    )


def no_key(status: UserStatus, user: str) -> UserStatus:
    return _said(
        replace(
            status,
            old_key=None,
            old_key_created=None,
            overdue_at=None,
            next_step=None,
            next_at=None,
        ),
        Phase.CURRENT,
        Reason.NO_KEY,
        {"user": user},
    )


def due(status: UserStatus, key: str, policy: Policy) -> UserStatus:
    """The key reached rotation age: the next run (or this one) creates its successor."""
    assert status.old_key_created is not None
    rotate_at = status.old_key_created + policy.rotate_at_age
    return _said(
        replace(status, next_step=str(ActionKind.CREATE_KEY), next_at=rotate_at),
        Phase.DUE,
        Reason.ROTATION_AGE,
        {"key": key, "rotate_at_age": policy.rotate_at_age, "rotate_at": rotate_at},
    )


def awaiting_approval(status: UserStatus, key: str, policy: Policy) -> UserStatus:
    assert status.old_key_created is not None
    rotate_at = status.old_key_created + policy.rotate_at_age
    return _said(
        status,
        Phase.AWAITING_APPROVAL,
        Reason.NEEDS_APPROVAL,
        {
            "key": key,
            "rotate_at_age": policy.rotate_at_age,
            "rotate_at": rotate_at,
            "policy": policy.name,
        },
    )


def repairing(status: UserStatus) -> UserStatus:
    return _said(status, Phase.DUE, Reason.REPAIRING, {})


def record_checks(status: UserStatus, results: Iterable[CheckResult], now: datetime) -> UserStatus:
    """Record gate results: `since` and `message` move only when a gate's state changes.

    Gates not evaluated this time (the IAM-based ones during the grace period) keep their record.
    """
    before = {c.check: c for c in status.checks}
    evaluated: dict[str, RecordedCheck] = {}
    for result in results:
        old = before.get(result.check)
        if old is not None and old.state == result.state:
            evaluated[result.check] = old
        else:
            evaluated[result.check] = RecordedCheck(result.check, result.state, result.message, now)
    kept = [c for c in status.checks if c.check not in evaluated]
    return replace(status, checks=(*kept, *evaluated.values()))


def awaiting_use(
    status: UserStatus, new_key: str, stored_at: datetime, policy: Policy
) -> UserStatus:
    """The new key is stored; the old key is still active. The message names what holds the
    rotation now: the first failing gate as recorded, else deactivateAfter."""
    earliest = stored_at + policy.deactivate_after
    status = replace(
        status,
        new_key=new_key,
        stored_at=stored_at,
        deactivated_at=None,
        rolled_back_at=None,
        resumed_at=None,
        next_step=str(ActionKind.DEACTIVATE_KEY),
        next_at=earliest,
    )
    failing = next((c for c in status.checks if c.state != CheckState.PASSED), None)
    if failing is not None:
        return _said(
            status,
            Phase.AWAITING_USE,
            Reason.AWAITING_CHECKS,
            {
                "new": new_key,
                "gate": failing.check,
                "since": failing.since,
                "detail": failing.message,
            },
        )
    return _said(
        status, Phase.AWAITING_USE, Reason.DEACTIVATE_AFTER, {"new": new_key, "earliest": earliest}
    )


def deactivated(
    status: UserStatus, old_key: str, deactivated_at: datetime, policy: Policy
) -> UserStatus:
    delete_at = deactivated_at + policy.delete_after
    return _said(
        replace(
            status,
            deactivated_at=deactivated_at,
            next_step=str(ActionKind.DELETE_KEY),
            next_at=delete_at,
        ),
        Phase.DEACTIVATED,
        Reason.GRACE_PERIOD,
        {"key": old_key, "delete_at": delete_at},
    )


def waiting_for_a_person(status: UserStatus) -> UserStatus:
    """A rolled-back rotation keeps its record but has no next step until a person resumes."""
    return replace(status, next_step=None, next_at=None)


def resumed_awaiting_use(status: UserStatus, new_key: str, policy: Policy) -> UserStatus:
    """A resumed rotation whose targets hold the new key again waits for use, from the resume."""
    assert status.resumed_at is not None
    return awaiting_use(replace(status, checks=()), new_key, status.resumed_at, policy)


def blocked(status: UserStatus, reason: Reason, facts: Facts) -> UserStatus:
    return _said(replace(status, next_step=None, next_at=None), Phase.BLOCKED, reason, facts)


def promoted(status: UserStatus, key_id: str | None, created: datetime | None) -> UserStatus:
    """The new key is now the one in service: the rotation's own fields are cleared."""
    return replace(
        status,
        old_key=key_id,
        old_key_created=created,
        new_key=None,
        new_key_created=None,
        stored_at=None,
        self_used_at=None,
        deactivated_at=None,
    )


def new_key_lost(status: UserStatus) -> UserStatus:
    """The new key vanished from IAM: forget the rotation's fields, keep the old key."""
    return replace(
        status,
        new_key=None,
        new_key_created=None,
        stored_at=None,
        self_used_at=None,
        deactivated_at=None,
    )


# --- what keyrotor's own steps do to status ------------------------------------------------------


def on_intent(status: UserStatus, now: datetime) -> UserStatus:
    """Recorded, and published, right before CreateAccessKey."""
    return replace(status, intent_at=now)


def on_success(
    policy: Policy, status: UserStatus, action: Action, outcome: Outcome, now: datetime
) -> UserStatus:
    """The status of a user once `action` succeeded at `now`."""
    kind = action.kind
    if kind == ActionKind.REACTIVATE_KEY:
        return _said(
            replace(
                status,
                rolled_back_at=now,
                resumed_at=None,
                deactivated_at=None,
                next_step=None,
                next_at=None,
            ),
            Phase.ROLLED_BACK,
            Reason.ROLLED_BACK,
            {
                "failed": action.facts.get("failed") or (),
                "key": action.key,
                "at": now,
                "restored": outcome.restored,
                "unreadable": ", ".join(outcome.unreadable),
            },
        )
    if kind in (ActionKind.CREATE_KEY, ActionKind.STORE_KEY):
        assert outcome.key_id is not None
        stored = replace(
            status,
            checks=(),
            new_key_created=outcome.key_created,
            self_used_at=outcome.self_used_at,
            intent_at=None,
        )
        # A key just stored is not yet used by the application, by new-key-used's own rule:
        # recording that now means the next run, which finds the same, records nothing new.
        key = ObservedKey(
            outcome.key_id, "Active", outcome.key_created or now, outcome.self_used_at
        )
        unused = [
            new_key_used(key, outcome.self_used_at or now)
            for check in policy.checks
            if isinstance(check, NewKeyUsedCheck)
        ]
        return awaiting_use(record_checks(stored, unused, now), outcome.key_id, now, policy)
    if kind in (ActionKind.DELETE_ORPHAN, ActionKind.ADOPT_KEY, ActionKind.RECORD_TARGETS):
        # Bookkeeping in IAM: the phase the planner derived stands. After deleting an orphan
        # the intent stays: a create-key follows in this run and must be recognisable.
        return status
    if kind == ActionKind.DEACTIVATE_KEY:
        assert action.key is not None
        return deactivated(status, action.key, now, policy)
    if kind == ActionKind.DELETE_KEY:
        created = status.new_key_created
        after = replace(
            promoted(status, status.new_key, created),
            checks=(),
            overdue_at=created + policy.max_key_age if created else None,
        )
        if status.new_key is None or created is None:
            return replace(after, phase=Phase.CURRENT, next_step=None, next_at=None)
        return current(after, status.new_key, created, policy)
    raise AssertionError(f"unknown action {kind}")


def on_failure(status: UserStatus, action: Action, error: str, *, hold: bool) -> UserStatus:
    """An action failed. With `hold`, keyrotor undid its own step and waits for a person."""
    facts: Facts = {"step": str(action.kind), "error": error}
    failed = replace(
        status, reason=Reason.ACTION_FAILED, message=messages.render(Reason.ACTION_FAILED, facts)
    )
    if not hold:
        return failed
    return replace(failed, phase=Phase.BLOCKED, hold=failed.message, next_step=None, next_at=None)


def on_resume(status: UserStatus, now: datetime) -> UserStatus | None:
    """A person's `keyrotor resume`; None when there is nothing to resume."""
    if status.hold:
        return _resumed(replace(status, hold=None), status.hold)
    if status.phase == Phase.ROLLED_BACK and status.resumed_at is None:
        return _resumed(replace(status, resumed_at=now), status.message)
    return None


def _resumed(status: UserStatus, before: str) -> UserStatus:
    return _said(status, status.phase, Reason.RESUMED_BY_PERSON, {"before": before})


def approvals_left(
    approvals: Mapping[str, Approval], statuses: Mapping[str, UserStatus]
) -> dict[str, Approval]:
    """The approvals file to keep: all of it while any entry is in use, else nothing (removed).

    An entry covers one old key's rotation and is in use while that key is still the user's
    (`statuses` are the users' statuses as this run leaves them). The file is never edited entry
    by entry: an approval counts only while the file is exactly the one a person merged (its
    blob id is compared with the pull request's), so it stays whole until every entry's old key
    is gone, and is then removed. An entry whose old key is gone approves nothing any more.
    """
    in_use = any(
        (status := statuses.get(user)) is not None
        and approval.old_key in (status.old_key, status.new_key)
        for user, approval in approvals.items()
    )
    return dict(approvals) if in_use else {}


# --- steps found done: what IAM shows happened that no status commit recorded --------------------

_STARTED = frozenset({Phase.AWAITING_USE, Phase.DEACTIVATED})


def found_steps(
    before: UserStatus | None, after: UserStatus | None
) -> tuple[tuple[ActionKind, str], ...]:
    """The steps of one rotation a user's record moved through between `before` (as published)
    and `after` (as this run records it), with the key each concerns: whether this run took them
    or found them done in IAM (a run that stopped after its AWS call and before its status
    commit). The caller leaves out the ones this run's own actions name.

    Only the moves of one rotation count, each from the key the record already named: a key
    that vanished outside a rotation, or one adopted anew, is not a step.
    """
    if before is None or after is None or before.old_key is None:
        return ()
    old, new = before.old_key, before.new_key
    steps: list[tuple[ActionKind, str]] = []
    if new is None:
        if after.phase in _STARTED and after.old_key == old and after.new_key:
            steps.append((ActionKind.CREATE_KEY, after.new_key))
            if after.phase == Phase.DEACTIVATED:
                steps.append((ActionKind.DEACTIVATE_KEY, old))
        return tuple(steps)
    if before.phase == Phase.AWAITING_USE and after.phase == Phase.DEACTIVATED:
        if after.old_key == old:
            steps.append((ActionKind.DEACTIVATE_KEY, old))
    elif before.phase == Phase.DEACTIVATED and after.phase == Phase.ROLLED_BACK:
        if after.old_key == old:
            steps.append((ActionKind.REACTIVATE_KEY, old))
    elif before.phase in _STARTED and after.phase == Phase.CURRENT and after.old_key == new:
        if before.phase == Phase.AWAITING_USE:
            steps.append((ActionKind.DEACTIVATE_KEY, old))
        steps.append((ActionKind.DELETE_KEY, old))
    return tuple(steps)
