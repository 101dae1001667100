"""`status/<policy>.yaml`: what keyrotor knows that IAM cannot tell it.

IAM says which keys exist; only keyrotor knows which key it adopted or created, when the new key
reached every target, and that it is about to create a key (the intent that lets a later run
recognise its own orphan after a crash). The file is owned by keyrotor, sorted and free of
volatile values so that each commit's diff shows only what changed. It never holds a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

import yaml

from controller.checks import CheckState
from controller.errors import KeyrotorError
from controller.reasons import Reason
from controller.timefmt import from_iso, to_iso

STATUS_DIR = "status"
HEADER = (
    "# Owned by keyrotor: written by `keyrotor apply`, read by `keyrotor status`.\n"
    "# Do not edit by hand; change manifests/ instead.\n"
    "# Key ids only: no secret is ever stored here.\n"
)


class Phase(StrEnum):
    CURRENT = "Current"
    DUE = "Due"
    AWAITING_USE = "AwaitingUse"
    DEACTIVATED = "Deactivated"
    ROLLED_BACK = "RolledBack"
    BLOCKED = "Blocked"
    AWAITING_APPROVAL = "AwaitingApproval"


@dataclass(frozen=True)
class RecordedCheck:
    """A gate's state, the time it last changed and what it said then.

    Neither `since` nor `message` moves while the state holds: a check that keeps failing with
    a fresher last-use time is not news, so a rerun commits nothing.
    """

    check: str
    state: CheckState
    message: str
    since: datetime

    @property
    def passed(self) -> bool:
        return self.state == CheckState.PASSED

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "state": str(self.state),
            "message": self.message,
            "since": to_iso(self.since),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordedCheck:
        if "state" in data:
            state = CheckState(str(data["state"]))
        else:  # written by keyrotor 0.1, which recorded a boolean
            state = CheckState.PASSED if data.get("passed") else CheckState.FAILED
        return cls(
            str(data["check"]), state, str(data.get("message", "")), from_iso(str(data["since"]))
        )


@dataclass(frozen=True)
class UserStatus:
    """One user's rotation record.

    `old_key` is the key in service that the next rotation replaces (in `Current`, the user's one
    managed key); `new_key` is its successor once created. `intent_at` is set, and pushed, before
    CreateAccessKey: a key created after it that no target holds is keyrotor's own orphan.
    """

    phase: Phase
    old_key: str | None = None
    old_key_created: datetime | None = None
    new_key: str | None = None
    new_key_created: datetime | None = None
    intent_at: datetime | None = None
    stored_at: datetime | None = None
    self_used_at: datetime | None = None
    deactivated_at: datetime | None = None
    overdue_at: datetime | None = None
    next_step: str | None = None
    next_at: datetime | None = None
    rolled_back_at: datetime | None = None
    resumed_at: datetime | None = None
    # Set when keyrotor undid a step of its own that it must not retry by itself (a new key that
    # never authenticated); the user stays Blocked until `keyrotor resume` clears it.
    hold: str | None = None
    checks: tuple[RecordedCheck, ...] = ()
    message: str = ""
    # Why the user is in this phase; `message` is its English, rendered once by the lifecycle.
    reason: Reason | None = None

    @property
    def at_rest(self) -> bool:
        """`Current` with nothing in progress: no successor, no intent, no hold."""
        return (
            self.phase == Phase.CURRENT
            and not self.new_key
            and not self.hold
            and self.intent_at is None
        )

    def overdue(self, now: datetime) -> bool:
        """The key in service is past maxKeyAge and still active (in the grace period the old
        key is already inactive: that is not overdue)."""
        return (
            self.overdue_at is not None
            and now >= self.overdue_at
            and self.phase not in (Phase.DEACTIVATED,)
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"phase": str(self.phase)}
        for name, value in (
            ("oldKey", self.old_key),
            ("oldKeyCreated", self.old_key_created),
            ("newKey", self.new_key),
            ("newKeyCreated", self.new_key_created),
            ("intentAt", self.intent_at),
            ("storedAt", self.stored_at),
            ("selfUsedAt", self.self_used_at),
            ("deactivatedAt", self.deactivated_at),
            ("overdueAt", self.overdue_at),
            ("nextStep", self.next_step),
            ("nextAt", self.next_at),
            ("rolledBackAt", self.rolled_back_at),
            ("resumedAt", self.resumed_at),
            ("hold", self.hold),
        ):
            if value is not None:
                out[name] = to_iso(value) if isinstance(value, datetime) else value
        if self.checks:
            out["checks"] = [c.to_dict() for c in self.checks]
        if self.reason is not None:
            out["reason"] = str(self.reason)
        if self.message:
            out["message"] = self.message
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UserStatus:
        def when(key: str) -> datetime | None:
            value = data.get(key)
            return from_iso(str(value)) if value is not None else None

        return cls(
            phase=Phase(data["phase"]),
            old_key=data.get("oldKey"),
            old_key_created=when("oldKeyCreated"),
            new_key=data.get("newKey"),
            new_key_created=when("newKeyCreated"),
            intent_at=when("intentAt"),
            stored_at=when("storedAt"),
            self_used_at=when("selfUsedAt"),
            deactivated_at=when("deactivatedAt"),
            overdue_at=when("overdueAt"),
            next_step=data.get("nextStep"),
            next_at=when("nextAt"),
            rolled_back_at=when("rolledBackAt"),
            resumed_at=when("resumedAt"),
            hold=data.get("hold"),
            checks=tuple(RecordedCheck.from_dict(c) for c in data.get("checks") or ()),
            message=str(data.get("message", "")),
            reason=_reason(data.get("reason")),
        )


def _reason(value: Any) -> Reason | None:
    """A reason this version knows, else None (a newer keyrotor may have written one)."""
    try:
        return Reason(str(value)) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class PolicyStatus:
    policy: str
    users: Mapping[str, UserStatus] = field(default_factory=dict)
    observed_generation: str = ""
    last_reconciled: datetime | None = None

    def with_user(self, user: str, status: UserStatus | None) -> PolicyStatus:
        users = dict(self.users)
        if status is None:
            users.pop(user, None)
        else:
            users[user] = status
        return replace(self, users=users)

    def same_content(self, other: PolicyStatus) -> bool:
        """Equal as written, but for `lastReconciled`: a run that changed nothing commits nothing.

        Compared as text because the file keeps second precision: an in-memory time with
        microseconds must not count as a change against the same time read back from git.
        """
        return dump(replace(self, last_reconciled=None)) == dump(
            replace(other, last_reconciled=None)
        )


def status_path(policy: str) -> str:
    return f"{STATUS_DIR}/{policy}.yaml"


def dump(status: PolicyStatus) -> str:
    doc: dict[str, Any] = {
        "apiVersion": "keyrotor.dev/v1",
        "kind": "RotationStatus",
        "policy": status.policy,
        "observedGeneration": status.observed_generation,
    }
    if status.last_reconciled is not None:
        doc["lastReconciled"] = to_iso(status.last_reconciled)
    doc["users"] = {name: status.users[name].to_dict() for name in sorted(status.users)}
    return HEADER + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def load(text: str, *, path: str) -> PolicyStatus:
    try:
        doc = yaml.safe_load(text)
        users = {str(k): UserStatus.from_dict(v) for k, v in (doc.get("users") or {}).items()}
        last = doc.get("lastReconciled")
        return PolicyStatus(
            policy=str(doc["policy"]),
            users=users,
            observed_generation=str(doc.get("observedGeneration", "")),
            last_reconciled=from_iso(str(last)) if last else None,
        )
    except (yaml.YAMLError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise KeyrotorError(
            f"{path}: not a keyrotor status file ({exc}); it is owned by keyrotor: restore it "
            f"from git history (`git checkout HEAD~1 -- {path}`) or delete it to re-adopt keys"
        ) from exc
