"""Gates that decide when an old key may be deactivated.

`new-key-used` and `old-key-idle` are judged from IAM's LastUsedDate, inside the pure planner.
`command` and `http` checks run outside the planner (they are I/O); their results reach it as
`ExternalResults`, keyed by the check's position in `spec.checks`. A check whose result is
missing is `not-run`: it never passes, so a planner that was not given a result never
deactivates, and it never fails, so it never rolls back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from controller import messages
from controller.inventory import ObservedKey
from controller.policy import Check, NewKeyUsedCheck, OldKeyIdleCheck
from controller.reasons import Facts, Reason

# IAM records at most the first use of a key in each 15-minute span. A use recorded later than
# this after keyrotor's own last use of the new key cannot have been keyrotor's.
LAST_USED_GRANULARITY = timedelta(minutes=15)


class CheckState(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_RUN = "not-run"


@dataclass(frozen=True)
class CheckResult:
    """One gate's result.

    `detail` is what a command or http check runner said (already masked); builtin gates carry
    a reason and facts instead. `message` renders either for people.
    """

    check: str
    passed: bool
    detail: str = ""
    reason: Reason = Reason.CHECK_REPORTED
    facts: Facts = field(default_factory=dict)

    @property
    def state(self) -> CheckState:
        if self.reason == Reason.CHECK_NOT_RUN:
            return CheckState.NOT_RUN
        return CheckState.PASSED if self.passed else CheckState.FAILED

    @property
    def message(self) -> str:
        return messages.render(self.reason, {**self.facts, "detail": self.detail})


ExternalResults = Mapping[int, CheckResult]

# Checks that do I/O and therefore run outside the planner.
EXTERNAL_TYPES = frozenset({"command", "http"})


def new_key_used(new: ObservedKey, baseline: datetime) -> CheckResult:
    """The application has used the new key: a use recorded after keyrotor's own plus 15 minutes."""
    threshold = baseline + LAST_USED_GRANULARITY
    if new.last_used is not None and new.last_used > threshold:
        return CheckResult(
            "new-key-used",
            True,
            reason=Reason.NEW_KEY_USED,
            facts={"key": new.id, "used": new.last_used},
        )
    return CheckResult(
        "new-key-used",
        False,
        reason=Reason.NEW_KEY_NOT_USED,
        facts={"key": new.id, "used": new.last_used, "threshold": threshold},
    )


def old_key_idle(old: ObservedKey, idle_for: timedelta, now: datetime) -> CheckResult:
    """The old key has not been used for `idle_for`: no straggler still depends on it."""
    if old.last_used is None or now - old.last_used >= idle_for:
        return CheckResult(
            "old-key-idle",
            True,
            reason=Reason.OLD_KEY_IDLE,
            facts={"key": old.id, "idle_for": idle_for},
        )
    return CheckResult(
        "old-key-idle",
        False,
        reason=Reason.OLD_KEY_BUSY,
        facts={
            "key": old.id,
            "used": old.last_used,
            "idle_for": idle_for,
            "until": old.last_used + idle_for,
        },
    )


def not_run(check: Check) -> CheckResult:
    return CheckResult(check.type, False, reason=Reason.CHECK_NOT_RUN, facts={"check": check.type})


def evaluate(
    checks: tuple[Check, ...],
    *,
    old: ObservedKey,
    new: ObservedKey,
    baseline: datetime,
    now: datetime,
    external: ExternalResults,
    builtin: bool = True,
) -> list[CheckResult]:
    """Results in manifest order; `builtin=False` skips the IAM-based gates (after deactivation
    an inactive key's LastUsedDate no longer says anything about the application)."""
    results = []
    for index, check in enumerate(checks):
        if isinstance(check, NewKeyUsedCheck):
            if builtin:
                results.append(new_key_used(new, baseline))
        elif isinstance(check, OldKeyIdleCheck):
            if builtin:
                results.append(old_key_idle(old, check.idle_for, now))
        elif index in external:
            results.append(external[index])
        else:
            results.append(not_run(check))
    return results
