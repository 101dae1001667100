"""What is actually there: IAM users, their access keys, and which key each target holds.

These are the planner's input, plain data with no I/O: `controller.aws.inventory` fills them
with read-only AWS calls, the tests build them by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from controller.policy import Policy

KeyStatus = Literal["Active", "Inactive"]


@dataclass(frozen=True)
class ObservedKey:
    id: str
    status: KeyStatus
    created: datetime
    last_used: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status == "Active"


@dataclass(frozen=True)
class TargetReading:
    """Which key one target holds.

    `key_id` None with `readable` True means the target is empty. Write-only targets (GitHub
    secrets) have `readable` False: what they hold is known only from keyrotor's own record.
    `error` is set when the target could not be read this run.
    """

    target: str
    key_id: str | None = None
    readable: bool = True
    error: str | None = None


@dataclass(frozen=True)
class ObservedUser:
    name: str
    keys: tuple[ObservedKey, ...] = ()
    targets: tuple[TargetReading, ...] = ()
    path: str = "/"
    tags: Mapping[str, str] = field(default_factory=dict)

    def key(self, key_id: str | None) -> ObservedKey | None:
        return next((k for k in self.keys if k.id == key_id), None)


@dataclass(frozen=True)
class PolicyObservation:
    """One policy's slice of the world; `users` maps a selected name to None when IAM lacks it."""

    policy: str
    users: Mapping[str, ObservedUser | None] = field(default_factory=dict)
    account_id: str = ""
    error: str | None = None


class Inventory(Protocol):
    def observe(self, policy: Policy) -> PolicyObservation:
        """Observe the users `policy` selects, their keys and targets."""
        ...
