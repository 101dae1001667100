"""What is actually there: IAM users, their access keys, and which key each target holds.

These are the planner's input, plain data with no I/O: `controller.aws.inventory` fills them
with read-only AWS calls, the tests build them by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Literal, Protocol

from controller.policy import Policy

if TYPE_CHECKING:
    from controller.status import PolicyStatus


KeyStatus = Literal["Active", "Inactive"]


@dataclass(frozen=True)
class ObservedKey:
    id: str
    status: KeyStatus
    created: datetime
    last_used: datetime | None = None
    # False: known from the credential report (up to 4 hours old), not read live. The planner
    # takes no step on such a key: the reader reads a user live whenever a step may be due.
    live: bool = True

    @property
    def active(self) -> bool:
        return self.status == "Active"


class Holding(StrEnum):
    """What a target holds, as far as this run could tell."""

    KEY = "key"  # one of the user's keys, `key_id`
    NOTHING = "nothing"  # the target does not exist yet, or holds no key
    OTHER = "other"  # a value that is not one of the user's keys
    UNRECORDED = "unrecorded"  # plan: written before keyrotor recorded what it writes there
    MOVED = "moved"  # plan: a newer version than the one keyrotor wrote is current
    WRITE_ONLY = "write-only"  # GitHub secrets: known only from keyrotor's own record
    ERROR = "error"  # could not be read this run (`error` says why)


@dataclass(frozen=True)
class TargetReading:
    """Which key one target holds.

    `plan` learns it from metadata keyrotor recorded when it wrote the target (a tag naming the
    key id and the version written), never from the secret value; `apply` reads the value where
    the metadata is missing or out of date, and `recorded` is then False (the next write records
    it). `key_id` is only ever one of the user's own keys as IAM lists them: anything else a
    target holds is `OTHER`, so output never repeats what a target happens to contain.
    """

    target: str
    key_id: str | None = None
    readable: bool = True
    error: str | None = None
    holding: Holding | None = None
    recorded: bool = True
    # The target was written since keyrotor wrote it (its version moved): reported as drift.
    moved: bool = False

    def __post_init__(self) -> None:
        if self.holding is None:
            if self.error is not None:
                holding = Holding.ERROR
            elif not self.readable:
                holding = Holding.WRITE_ONLY
            else:
                holding = Holding.KEY if self.key_id else Holding.NOTHING
            object.__setattr__(self, "holding", holding)

    @property
    def known(self) -> bool:
        """Whether this run knows what a readable target holds."""
        return self.holding not in (Holding.UNRECORDED, Holding.MOVED, Holding.ERROR)


@dataclass(frozen=True)
class ObservedUser:
    name: str
    keys: tuple[ObservedKey, ...] = ()
    targets: tuple[TargetReading, ...] = ()
    path: str = "/"
    tags: Mapping[str, str] = field(default_factory=dict)
    # False: the user's tags were not read (its account was not listed and nothing was due), so
    # which keys are keyrotor's is known only from status: the planner carries a quiet user's
    # status forward and takes no step on it.
    tags_read: bool = True

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
    def observe(
        self,
        policies: Sequence[Policy],
        now: datetime,
        hint: Callable[[Policy, str], PolicyStatus],
    ) -> dict[str, PolicyObservation]:
        """Observe the users `policies` (all acting in one account) select, their keys and, where
        a step may be in progress, their targets; `hint(policy, account_id)` is the status it was
        last recorded in, which says whose keys the report alone may not decide."""
        ...
