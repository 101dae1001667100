"""A plan as data: what keyrotor will do for each user of each policy, and why.

The planner (`controller.planner`) makes these, the executor carries out their actions, and
`controller.render` shows them as text, Markdown or JSON. Reasons are `controller.reasons`
constants with their facts; `message` renders them through `controller.messages`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from controller import messages
from controller.approvals import Approval
from controller.policy import Policy
from controller.reasons import Facts, Reason
from controller.status import Phase, PolicyStatus, UserStatus


class ActionKind(StrEnum):
    CREATE_KEY = "create-key"
    STORE_KEY = "store-key"
    DELETE_ORPHAN = "delete-orphan-key"
    DEACTIVATE_KEY = "deactivate-key"
    DELETE_KEY = "delete-key"
    REACTIVATE_KEY = "reactivate-key"
    ADOPT_KEY = "adopt-key"  # record in IAM (tags) which keys keyrotor manages
    RECORD_TARGETS = "record-targets"  # tag targets written before keyrotor recorded them


class FindingKind(StrEnum):
    OVERDUE = "overdue"
    BLOCKED = "blocked"
    AWAITING_APPROVAL = "awaiting-approval"
    WAITING = "waiting"
    DRIFT = "drift"
    # The policy breaks a guardrail: nothing is read or done for it, and the run exits 1.
    REFUSED = "refused"
    # A user the selector matched that a guardrail keeps keyrotor from touching.
    EXCLUDED = "excluded"
    # A due step past `maxChangesPerRun`: it waits for the next run.
    HELD = "held"


@dataclass(frozen=True)
class Action:
    policy: str
    user: str
    kind: ActionKind
    key: str | None
    reason: Reason
    facts: Facts = field(default_factory=dict)
    replaces: str | None = None

    @property
    def message(self) -> str:
        return messages.render(self.reason, self.facts)


@dataclass(frozen=True)
class Finding:
    policy: str
    user: str
    kind: FindingKind
    reason: Reason
    facts: Facts = field(default_factory=dict)

    @property
    def message(self) -> str:
        return messages.render(self.reason, self.facts)


@dataclass(frozen=True)
class UserPlan:
    """One user's decision: the status to record now, then the actions, in order."""

    policy: str
    user: str
    status: UserStatus | None
    actions: tuple[Action, ...] = ()
    findings: tuple[Finding, ...] = ()
    # The decision reached a gate that command/http checks decide, and their results were not
    # given: the shell runs them and plans again (the planner itself never runs anything).
    needs_checks: bool = False
    # For a pull-request policy: the approval a merged pull request would have to carry.
    proposal: Approval | None = None

    @property
    def phase(self) -> Phase | None:
        return self.status.phase if self.status else None


@dataclass(frozen=True)
class PolicyPlan:
    policy: Policy
    users: tuple[UserPlan, ...]
    previous: PolicyStatus
    findings: tuple[Finding, ...] = ()
    approvals: Mapping[str, Approval] = field(default_factory=dict)
    # The AWS account the policy's users were observed in ("" when it could not be observed).
    account_id: str = ""

    @property
    def status(self) -> PolicyStatus:
        """The status to record if no action runs (observations and bookkeeping only)."""
        users = {u.user: u.status for u in self.users if u.status is not None}
        return replace(self.previous, users=users, observed_generation=self.policy.generation)

    @property
    def actions(self) -> tuple[Action, ...]:
        return tuple(a for u in self.users for a in u.actions)

    @property
    def all_findings(self) -> tuple[Finding, ...]:
        return (*self.findings, *(f for u in self.users for f in u.findings))


#: Findings that mean this run could not do what the manifests ask (a policy that could not be
#: observed, or one that breaks a guardrail): every command that meets one exits 1, after doing
#: what it could for the others.
ERROR_REASONS: frozenset[Reason] = frozenset({Reason.CANNOT_OBSERVE, Reason.GUARDRAIL_VIOLATED})


@dataclass(frozen=True)
class Plan:
    now: datetime
    policies: tuple[PolicyPlan, ...] = ()

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The findings that make the run fail (`ERROR_REASONS`)."""
        return tuple(f for f in self.findings if f.reason in ERROR_REASONS)

    @property
    def actions(self) -> tuple[Action, ...]:
        return tuple(a for p in self.policies for a in p.actions)

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(f for p in self.policies for f in p.all_findings)

    def count(self, kind: ActionKind | FindingKind) -> int:
        if isinstance(kind, ActionKind):
            return sum(1 for a in self.actions if a.kind == kind)
        return sum(1 for f in self.findings if f.kind == kind)


@dataclass(frozen=True)
class Outcome:
    """What the executor learned by carrying out an action (never a secret)."""

    key_id: str | None = None
    key_created: datetime | None = None
    self_used_at: datetime | None = None
    # After a rollback: which targets hold the old key again (`all`, `readable` or `none`) and,
    # for `readable`, the write-only ones that were rewritten without being read back.
    restored: str | None = None
    unreadable: tuple[str, ...] = ()
