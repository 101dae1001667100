"""Gates that decide when an old key may be deactivated.

`new-key-used` and `old-key-idle` are judged from IAM's LastUsedDate, inside the pure planner.
`command` and `http` checks run outside the planner (they are I/O); their results reach it as
`ExternalResults`, keyed by the check's position in `spec.checks`. A check whose result is
missing counts as not passed, so a planner that was not given a result never deactivates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.durations import format_duration
from controller.inventory import ObservedKey
from controller.policy import Check, NewKeyUsedCheck, OldKeyIdleCheck

# IAM records at most the first use of a key in each 15-minute span. A use recorded later than
# this after keyrotor's own last use of the new key cannot have been keyrotor's.
LAST_USED_GRANULARITY = timedelta(minutes=15)


@dataclass(frozen=True)
class CheckResult:
    check: str
    passed: bool
    message: str


ExternalResults = Mapping[int, CheckResult]

# Checks that do I/O and therefore run outside the planner.
EXTERNAL_TYPES = frozenset({"command", "http"})
NOT_RUN = "check has not run"


def new_key_used(new: ObservedKey, baseline: datetime) -> CheckResult:
    """The application has used the new key: a use recorded after keyrotor's own plus 15 minutes."""
    threshold = baseline + LAST_USED_GRANULARITY
    if new.last_used is not None and new.last_used > threshold:
        return CheckResult(
            "new-key-used", True, f"new key {new.id} used at {new.last_used:%Y-%m-%d %H:%M}Z"
        )
    seen = (
        f"last use recorded {new.last_used:%Y-%m-%d %H:%M}Z" if new.last_used else "no use recorded"
    )
    return CheckResult(
        "new-key-used",
        False,
        f"new key {new.id} not yet used by the application ({seen}; a use must be recorded "
        f"after {threshold:%Y-%m-%d %H:%M}Z to count)",
    )


def old_key_idle(old: ObservedKey, idle_for: timedelta, now: datetime) -> CheckResult:
    """The old key has not been used for `idle_for`: no straggler still depends on it."""
    if old.last_used is None or now - old.last_used >= idle_for:
        return CheckResult(
            "old-key-idle", True, f"old key {old.id} idle for {format_duration(idle_for)}"
        )
    return CheckResult(
        "old-key-idle",
        False,
        f"old key {old.id} was last used {old.last_used:%Y-%m-%d %H:%M}Z; it must be idle for "
        f"{format_duration(idle_for)} (until {old.last_used + idle_for:%Y-%m-%d %H:%M}Z)",
    )


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
            results.append(CheckResult(check.type, False, f"{check.type} {NOT_RUN}"))
    return results
