"""The planner: a pure function from (policies, observed IAM state, status, now) to a plan.

It reads no clock and makes no call. Every decision carries a reason a person can read. The
executor carries out the plan's actions; `record_success` (also pure) says how the status of a
user changes when one of them succeeds, so that the whole state machine lives in this module.

State is derived from what IAM shows first and from status second: status only says which keys
are keyrotor's and when things happened. That is what makes a crash between any two calls
harmless: the next run sees the new IAM state and carries on from there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from controller import checks, windows
from controller.approvals import Approval, key_digest
from controller.durations import format_duration
from controller.inventory import ObservedKey, ObservedUser, PolicyObservation, TargetReading
from controller.policy import Policy
from controller.status import Phase, PolicyStatus, RecordedCheck, UserStatus

# Allowed difference between keyrotor's clock and IAM's when telling a key that a crashed run
# created (after its recorded intent) from one a person made before it.
CLOCK_SKEW = timedelta(minutes=5)


class ActionKind(StrEnum):
    CREATE_KEY = "create-key"
    STORE_KEY = "store-key"
    DELETE_ORPHAN = "delete-orphan-key"
    DEACTIVATE_KEY = "deactivate-key"
    DELETE_KEY = "delete-key"
    REACTIVATE_KEY = "reactivate-key"


class FindingKind(StrEnum):
    OVERDUE = "overdue"
    BLOCKED = "blocked"
    AWAITING_APPROVAL = "awaiting-approval"
    WAITING = "waiting"
    DRIFT = "drift"


@dataclass(frozen=True)
class Action:
    policy: str
    user: str
    kind: ActionKind
    key: str | None
    reason: str
    replaces: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        out = {
            "policy": self.policy,
            "user": self.user,
            "action": str(self.kind),
            "key": self.key,
            "reason": self.reason,
        }
        if self.replaces:
            out["replaces"] = self.replaces
        return out


@dataclass(frozen=True)
class Finding:
    policy: str
    user: str
    kind: FindingKind
    message: str

    def to_dict(self) -> dict[str, str]:
        return {
            "policy": self.policy,
            "user": self.user,
            "kind": str(self.kind),
            "message": self.message,
        }


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

    @property
    def status(self) -> PolicyStatus:
        """The status to record if no action runs (observations and bookkeeping only)."""
        users = {u.user: u.status for u in self.users if u.status is not None}
        return replace(self.previous, users=users, observed_generation=self.policy.generation)

    @property
    def actions(self) -> tuple[Action, ...]:
        return tuple(a for u in self.users for a in u.actions)


@dataclass(frozen=True)
class Plan:
    now: datetime
    policies: tuple[PolicyPlan, ...] = ()

    @property
    def actions(self) -> tuple[Action, ...]:
        return tuple(a for p in self.policies for a in p.actions)

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(
            f
            for p in self.policies
            for f in (*p.findings, *(f for u in p.users for f in u.findings))
        )

    def count(self, kind: ActionKind | FindingKind) -> int:
        items: Iterable[Action | Finding] = (
            self.actions if isinstance(kind, ActionKind) else self.findings
        )
        return sum(1 for item in items if getattr(item, "kind", None) == kind)

    def summary(self) -> str:
        creates = self.count(ActionKind.CREATE_KEY)
        return (
            f"Plan: {creates} {'key' if creates == 1 else 'keys'} to create, "
            f"{self.count(ActionKind.DEACTIVATE_KEY)} to deactivate, "
            f"{self.count(ActionKind.DELETE_KEY)} to delete"
            + (
                f", {n} to repair"
                if (n := self.count(ActionKind.STORE_KEY) + self.count(ActionKind.DELETE_ORPHAN))
                else ""
            )
            + f"; {self.count(FindingKind.OVERDUE)} overdue"
            + f", {self.count(FindingKind.BLOCKED)} blocked"
            + (
                f", {n} awaiting approval"
                if (n := self.count(FindingKind.AWAITING_APPROVAL))
                else ""
            )
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "format_version": "1",
            "now": self.now.isoformat().replace("+00:00", "Z"),
            "summary": self.summary(),
            "actions": [a.to_dict() for a in self.actions],
            "findings": [f.to_dict() for f in self.findings],
        }


# --- status messages: one wording each, so a run that only re-derives them commits nothing ----


def _msg_current(key_id: str) -> str:
    return f"key {key_id} is current"


def _msg_awaiting(key_id: str | None, targets: int) -> str:
    return (
        f"new key {key_id} stored in {targets} target{'s' if targets != 1 else ''}; "
        "waiting for the application to use it"
    )


def _msg_deactivated(key_id: str | None, delete_at: datetime) -> str:
    return f"old key {key_id} deactivated; grace period until {delete_at:%Y-%m-%d %H:%M}Z"


# --- entry point -------------------------------------------------------------------------------


def plan(
    policies: Iterable[Policy],
    observed: Mapping[str, PolicyObservation],
    statuses: Mapping[str, PolicyStatus],
    now: datetime,
    *,
    approvals: Mapping[tuple[str, str], Approval] | None = None,
    external: Mapping[tuple[str, str], checks.ExternalResults] | None = None,
) -> Plan:
    """Decide what to do for every user of every policy.

    `approvals` holds what merged pull requests approved, per (policy, user); `external` holds
    results of command/http checks per (policy, user).
    """
    plans = []
    for policy in policies:
        previous = statuses.get(policy.name) or PolicyStatus(policy=policy.name)
        observation = observed.get(policy.name) or PolicyObservation(policy=policy.name)
        plans.append(
            _plan_policy(policy, observation, previous, now, approvals or {}, external or {})
        )
    return Plan(now=now, policies=tuple(plans))


def _plan_policy(
    policy: Policy,
    observation: PolicyObservation,
    previous: PolicyStatus,
    now: datetime,
    approvals: Mapping[tuple[str, str], Approval],
    external: Mapping[tuple[str, str], checks.ExternalResults],
) -> PolicyPlan:
    if observation.error:
        finding = Finding(
            policy.name,
            "*",
            FindingKind.BLOCKED,
            f"cannot observe policy {policy.name}: {observation.error}",
        )
        kept = tuple(UserPlan(policy.name, name, st) for name, st in sorted(previous.users.items()))
        return PolicyPlan(policy, kept, previous, (finding,))
    users = []
    for name in sorted(set(observation.users) | set(previous.users)):
        prior = previous.users.get(name)
        if name not in observation.users:
            users.append(_deselected(policy, name, prior))
            continue
        ctx = _Ctx(
            policy,
            name,
            observation.users[name],
            prior,
            now,
            approval=approvals.get((policy.name, name)),
            external=external.get((policy.name, name), {}),
        )
        users.append(ctx.decide())
    mine = {user: a for (name, user), a in approvals.items() if name == policy.name}
    return PolicyPlan(policy, tuple(users), previous, approvals=mine)


def _deselected(policy: Policy, name: str, prior: UserStatus | None) -> UserPlan:
    in_flight = prior is not None and prior.new_key is not None
    message = (
        f"user {name} is no longer selected by policy {policy.name} (deselected, or deleted "
        "from IAM); keyrotor stops managing it"
    )
    if in_flight and prior is not None:
        message += (
            f" and leaves its unfinished rotation ({prior.old_key} -> {prior.new_key}) as it is"
        )
    return UserPlan(
        policy.name, name, None, findings=(Finding(policy.name, name, FindingKind.DRIFT, message),)
    )


# --- one user ----------------------------------------------------------------------------------


@dataclass
class _Ctx:
    """Working state while deciding for one user; `decide` returns the immutable result."""

    policy: Policy
    user: str
    observed: ObservedUser | None
    prior: UserStatus | None
    now: datetime
    approval: Approval | None
    external: checks.ExternalResults
    findings: list[Finding] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    needs_checks: bool = False
    proposal: Approval | None = None

    # -- approval --
    def may_start(self, old: ObservedKey) -> bool:
        """Creating a successor needs an approval made for exactly the keys IAM shows now."""
        if self.policy.approval == "auto":
            return True
        keys = self.observed.keys if self.observed else ()
        digest = key_digest(keys)
        self.proposal = Approval(self.policy.name, self.user, old.id, digest)
        approval = self.approval
        if approval is None:
            return False
        if approval.old_key == old.id and approval.digest == digest:
            self.proposal = None
            return True
        self.find(
            FindingKind.AWAITING_APPROVAL,
            f"stale approval refused: it was for key {approval.old_key} with keys "
            f"{approval.digest}, but IAM now shows {digest} for {old.id}; a fresh pull request "
            "asks again",
        )
        return False

    def may_continue(self, status: UserStatus) -> bool:
        """A merged approval covers the whole rotation of the old key it names."""
        if self.policy.approval == "auto":
            return True
        return self.approval is not None and self.approval.old_key == status.old_key

    # -- helpers --
    def find(self, kind: FindingKind, message: str) -> None:
        self.findings.append(Finding(self.policy.name, self.user, kind, message))

    def act(
        self, kind: ActionKind, key: str | None, reason: str, replaces: str | None = None
    ) -> None:
        self.actions.append(Action(self.policy.name, self.user, kind, key, reason, replaces))

    def result(self, status: UserStatus | None) -> UserPlan:
        return UserPlan(
            self.policy.name,
            self.user,
            status,
            tuple(self.actions),
            tuple(self.findings),
            self.needs_checks,
            self.proposal,
        )

    def evaluate_checks(
        self, status: UserStatus, old: ObservedKey, new: ObservedKey, *, builtin: bool
    ) -> tuple[UserStatus, list[checks.CheckResult]]:
        """Judge the gates and record them in status (keeping `since` while a result holds)."""
        wanted = self.policy.checks
        if any(c.type in checks.EXTERNAL_TYPES for c in wanted) and not self.external:
            self.needs_checks = True
        results = checks.evaluate(
            wanted,
            old=old,
            new=new,
            baseline=status.self_used_at or status.stored_at or self.now,
            now=self.now,
            external=self.external,
            builtin=builtin,
        )
        before = {(c.check, c.passed, c.message): c.since for c in status.checks}
        recorded = tuple(
            RecordedCheck(
                r.check, r.passed, r.message, before.get((r.check, r.passed, r.message), self.now)
            )
            for r in results
        )
        return replace(status, checks=recorded), results

    def blocked(self, message: str, base: UserStatus | None = None) -> UserPlan:
        self.find(FindingKind.BLOCKED, message)
        start = base or self.prior or UserStatus(phase=Phase.BLOCKED)
        status = replace(start, phase=Phase.BLOCKED, message=message, next_step=None, next_at=None)
        return self.result(status)

    # -- the decision --
    def decide(self) -> UserPlan:
        if self.observed is None:
            return self.blocked(
                f"IAM user {self.user} does not exist"
                + (" any more (deleted outside keyrotor)" if self.prior else "")
            )
        for key in self.observed.keys:
            if key.active and self.now >= key.created + self.policy.max_key_age:
                self.find(
                    FindingKind.OVERDUE,
                    f"active key {key.id} is {format_duration(self.now - key.created)} old; "
                    f"maxKeyAge is {format_duration(self.policy.max_key_age)}",
                )
        if self.prior is not None and self.prior.hold:
            return self.blocked(
                f"{self.prior.hold}. Once the cause is fixed, run `keyrotor resume --policy "
                f"{self.policy.name} --user {self.user}`",
                self.prior,
            )
        prior = self.prior or UserStatus(phase=Phase.CURRENT)
        active = [k.created for k in self.observed.keys if k.active]
        # Until a managed key is known, the oldest active key decides when the user is overdue,
        # so `keyrotor status` flags a blocked user too.
        prior = replace(prior, overdue_at=min(active) + self.policy.max_key_age if active else None)
        keys = {k.id: k for k in self.observed.keys}
        old, new = keys.get(prior.old_key or ""), keys.get(prior.new_key or "")
        others = [k for k in self.observed.keys if k not in (old, new)]
        status = prior

        # 1. A key a crashed run created after recording its intent.
        if prior.intent_at is not None:
            ours = [k for k in others if k.created >= prior.intent_at - CLOCK_SKEW]
            status = replace(status, intent_at=None)
            if ours:
                orphan = ours[0]
                others.remove(orphan)
                recovered = self._recover(orphan, old, status)
                if recovered is not None:
                    return recovered

        # 2. Keys keyrotor knew that vanished.
        if prior.old_key and old is None:
            if new is not None:
                if prior.phase != Phase.DEACTIVATED:
                    self.find(
                        FindingKind.DRIFT, f"old key {prior.old_key} was deleted outside keyrotor"
                    )
                status = self._promote(status, new)
                old, new = new, None
            else:
                self.find(FindingKind.DRIFT, f"key {prior.old_key} was deleted outside keyrotor")
        if prior.new_key and new is None and old is not None and prior.new_key not in keys:
            self.find(
                FindingKind.DRIFT,
                f"new key {prior.new_key} was deleted outside keyrotor; "
                "targets may hold a key that no longer works",
            )
            status = replace(
                status,
                new_key=None,
                new_key_created=None,
                stored_at=None,
                self_used_at=None,
                deactivated_at=None,
            )
            if not old.active:
                return self.blocked(
                    f"new key {prior.new_key} was deleted outside keyrotor and old key {old.id} is "
                    f"inactive: {self.user} has no working key. Reactivate {old.id} now "
                    f"(aws iam update-access-key --user-name {self.user} --access-key-id {old.id} "
                    "--status Active); keyrotor then starts a fresh rotation",
                    status,
                )

        # 3. Adopt the user's one key when keyrotor manages none.
        if old is None and new is None:
            if len(others) > 1:
                ids = ", ".join(k.id for k in others)
                return self.blocked(
                    f"{self.user} has two access keys ({ids}) and keyrotor manages neither; it "
                    "adopts a user with exactly one key. Delete the unused one (see "
                    "`aws iam get-access-key-last-used`), then keyrotor adopts the other",
                    status,
                )
            if not others:
                return self.result(
                    replace(
                        status,
                        phase=Phase.CURRENT,
                        old_key=None,
                        old_key_created=None,
                        overdue_at=None,
                        next_step=None,
                        next_at=None,
                        message=f"{self.user} has no access key: nothing to rotate",
                    )
                )
            old = others.pop()
            status = replace(status, old_key=old.id, old_key_created=old.created)

        # 4. Any other key is someone else's: never a third key, never touch it.
        if others:
            foreign = others[0]
            return self.blocked(
                f"access key {foreign.id} of {self.user} (created {foreign.created:%Y-%m-%d}) was "
                "not created by keyrotor. keyrotor will not create a third key or touch a key it "
                f"does not own: delete {foreign.id} if it is unused, or exclude {self.user} from "
                f"policy {self.policy.name}",
                status,
            )

        assert old is not None
        status = replace(
            status, old_key_created=old.created, overdue_at=old.created + self.policy.max_key_age
        )
        if new is None:
            return self._single_key(status, old)
        return self._rotating(status, old, new)

    def _recover(
        self, orphan: ObservedKey, old: ObservedKey | None, status: UserStatus
    ) -> UserPlan | None:
        """A key created after our intent: finish storing it if a target has it, else delete it."""
        targets = self.observed.targets if self.observed else ()
        holding = [t for t in targets if t.key_id == orphan.id]
        if holding and len(holding) == len(targets):
            self.find(
                FindingKind.DRIFT,
                f"key {orphan.id}, created by an interrupted run and "
                "stored in every target, is recorded now",
            )
            if old is None:
                return self._single_key(
                    replace(status, old_key=orphan.id, old_key_created=orphan.created), orphan
                )
            return self._rotating(self._stored(status, orphan), old, orphan)
        if holding:
            self.act(
                ActionKind.STORE_KEY,
                orphan.id,
                f"key {orphan.id} was created by an interrupted run and reached "
                f"{len(holding)} of {len(targets)} targets: copy it to the rest",
            )
            return self.result(
                replace(status, phase=Phase.DUE, message="repairing an interrupted key creation")
            )
        self.act(
            ActionKind.DELETE_ORPHAN,
            orphan.id,
            f"key {orphan.id} was created by an interrupted run and reached no target: "
            "its secret is lost, so delete it and create another",
        )
        return None

    def _stored(self, status: UserStatus, new: ObservedKey) -> UserStatus:
        return replace(
            status,
            new_key=new.id,
            new_key_created=new.created,
            stored_at=status.stored_at or self.now,
            intent_at=None,
        )

    def _promote(self, status: UserStatus, new: ObservedKey) -> UserStatus:
        return _promoted(status, new.id, new.created)

    def _single_key(self, status: UserStatus, old: ObservedKey) -> UserPlan:
        if not old.active:
            return self.blocked(
                f"the only access key of {self.user}, {old.id}, is inactive: nothing works with "
                "it. "
                f"Reactivate it or delete it; keyrotor will not rotate an inactive key",
                status,
            )
        rotate_at = old.created + self.policy.rotate_at_age
        if self.now < rotate_at:
            return self.result(
                replace(
                    status,
                    phase=Phase.CURRENT,
                    new_key=None,
                    message=_msg_current(old.id),
                    next_step=str(ActionKind.CREATE_KEY),
                    next_at=rotate_at,
                )
            )
        message = (
            f"key {old.id} reached rotation age {format_duration(self.policy.rotate_at_age)} "
            f"on {rotate_at:%Y-%m-%d}"
        )
        due = replace(
            status,
            phase=Phase.DUE,
            message=message,
            next_step=str(ActionKind.CREATE_KEY),
            next_at=rotate_at,
        )
        if self.policy.suspend:
            self.find(FindingKind.WAITING, f"policy {self.policy.name} is suspended")
            return self.result(due)
        if not self.may_start(old):
            self.find(
                FindingKind.AWAITING_APPROVAL,
                f"{message}; policy {self.policy.name} needs an approved pull request",
            )
            return self.result(replace(due, phase=Phase.AWAITING_APPROVAL))
        targets = self.observed.targets if self.observed else ()
        if broken := [t for t in targets if t.error]:
            self.find(
                FindingKind.WAITING,
                "a key is created only when every target can take it: "
                + "; ".join(f"{t.target}: {t.error}" for t in broken),
            )
            return self.result(due)
        self.act(
            ActionKind.CREATE_KEY,
            None,
            f"{message}; key is {format_duration(self.now - old.created)} old",
            replaces=old.id,
        )
        return self.result(due)

    def _rotating(self, status: UserStatus, old: ObservedKey, new: ObservedKey) -> UserPlan:
        status = replace(status, new_key=new.id, new_key_created=new.created)
        if not new.active:
            return self.blocked(
                f"new key {new.id} of {self.user} is inactive (deactivated outside keyrotor). "
                f"Reactivate it to continue the rotation, or delete it to start over",
                status,
            )
        targets = self.observed.targets if self.observed else ()
        unreadable = [t for t in targets if t.error]
        if unreadable:
            message = "; ".join(f"cannot read {t.target}: {t.error}" for t in unreadable)
            self.find(FindingKind.WAITING, message)
            return self.result(replace(status, message=message))
        if status.phase == Phase.ROLLED_BACK and old.active:
            return self._rolled_back(status, old, new, targets)
        if status.phase == Phase.DEACTIVATED and old.active:
            # Only a rollback makes a deactivated old key active again: finish it (the step is
            # idempotent), whether a crash interrupted keyrotor's or a person started one.
            self.act(
                ActionKind.REACTIVATE_KEY,
                old.id,
                f"rolling back: old key {old.id} is active again during the grace period (an "
                "interrupted rollback, or a person reactivated it)",
            )
            return self.result(status)
        stray = [t for t in targets if t.readable and t.key_id != new.id]
        if stray:
            what = "; ".join(f"{t.target} holds {t.key_id or 'nothing'}" for t in stray)
            return self.blocked(
                f"expected every target to hold new key {new.id}, but {what} (overwritten outside "
                f"keyrotor). keyrotor will not deactivate {old.id} while a target does not hold "
                f"{new.id}: restore the target, or delete {new.id} to start the rotation over",
                status,
            )
        if old.active:
            return self._awaiting_use(status, old, new, targets)
        return self._deactivated(status, old, new)

    def _awaiting_use(
        self,
        status: UserStatus,
        old: ObservedKey,
        new: ObservedKey,
        targets: tuple[TargetReading, ...],
    ) -> UserPlan:
        stored_at = status.stored_at or self.now
        earliest = stored_at + self.policy.deactivate_after
        status = replace(
            status,
            phase=Phase.AWAITING_USE,
            stored_at=stored_at,
            deactivated_at=None,
            next_step=str(ActionKind.DEACTIVATE_KEY),
            next_at=earliest,
            message=_msg_awaiting(new.id, len(targets)),
        )
        status, results = self.evaluate_checks(status, old, new, builtin=True)
        waiting = [r.message for r in results if not r.passed]
        if self.now < earliest:
            waiting.insert(0, f"deactivateAfter: not before {earliest:%Y-%m-%d %H:%M}Z")
            return self._wait(status, waiting)
        overdue = self.now >= old.created + self.policy.max_key_age
        if waiting and overdue and self.policy.on_overdue == "deactivate":
            return self._gated(
                status,
                ActionKind.DEACTIVATE_KEY,
                old.id,
                f"OVERDUE: {old.id} is older than maxKeyAge "
                f"{format_duration(self.policy.max_key_age)} and onOverdue is deactivate, so it is "
                "deactivated although these checks have not passed: " + "; ".join(waiting),
            )
        if waiting:
            return self._wait(status, waiting)
        return self._gated(
            status,
            ActionKind.DEACTIVATE_KEY,
            old.id,
            f"new key {new.id} is in use and every check passed: "
            + "; ".join(r.message for r in results),
        )

    def _wait(self, status: UserStatus, reasons: list[str]) -> UserPlan:
        self.find(FindingKind.WAITING, "; ".join(reasons))
        return self.result(status)

    def _deactivated(self, status: UserStatus, old: ObservedKey, new: ObservedKey) -> UserPlan:
        deactivated_at = status.deactivated_at or self.now
        delete_at = deactivated_at + self.policy.delete_after
        status = replace(
            status,
            phase=Phase.DEACTIVATED,
            deactivated_at=deactivated_at,
            next_step=str(ActionKind.DELETE_KEY),
            next_at=delete_at,
            message=_msg_deactivated(old.id, delete_at),
        )
        # Step 4: the application must keep working without the old key. Only command and http
        # checks can tell; a failure brings the old key back, whatever else holds other steps.
        status, results = self.evaluate_checks(status, old, new, builtin=False)
        failed = [
            r
            for r in results
            if not r.passed
            and r.check in checks.EXTERNAL_TYPES
            and not r.message.endswith(checks.NOT_RUN)
        ]
        if failed:
            reason = "; ".join(f"{r.check} check failed: {r.message}" for r in failed)
            self.act(ActionKind.REACTIVATE_KEY, old.id, f"rolling back: {reason}")
            return self.result(status)
        if self.now < delete_at:
            self.find(
                FindingKind.WAITING,
                f"deleteAfter: {old.id} is deleted after {delete_at:%Y-%m-%d %H:%M}Z",
            )
            return self.result(status)
        return self._gated(
            status,
            ActionKind.DELETE_KEY,
            old.id,
            f"grace period of {format_duration(self.policy.delete_after)} ended",
        )

    def _rolled_back(
        self,
        status: UserStatus,
        old: ObservedKey,
        new: ObservedKey,
        targets: tuple[TargetReading, ...],
    ) -> UserPlan:
        """A rolled-back rotation waits for a person: keyrotor never retries one by itself."""
        if status.resumed_at is None:
            self.find(
                FindingKind.BLOCKED,
                f"rotation rolled back: {status.message}. Fix the cause, then run `keyrotor "
                f"resume --policy {self.policy.name} --user {self.user}`",
            )
            return self.result(replace(status, next_step=None, next_at=None))
        if all(t.key_id == new.id for t in targets if t.readable):
            resumed = replace(
                status,
                phase=Phase.AWAITING_USE,
                stored_at=status.resumed_at,
                rolled_back_at=None,
                resumed_at=None,
                deactivated_at=None,
            )
            return self._awaiting_use(resumed, old, new, targets)
        self.act(
            ActionKind.STORE_KEY,
            new.id,
            f"rotation resumed: store new key {new.id} in every target again",
        )
        return self.result(status)

    def _gated(self, status: UserStatus, kind: ActionKind, key: str, reason: str) -> UserPlan:
        """Suspension, approval and maintenance windows hold a disruptive step that is due.

        Creation is not disruptive and rollback must never wait, so neither comes through here.
        """
        if self.policy.windows and not windows.is_open(self.policy.windows, self.now):
            opens = windows.next_opening(self.policy.windows, self.now)
            self.find(
                FindingKind.WAITING,
                f"{kind} of {key} is due but " + windows.describe(self.policy.windows, self.now),
            )
            return self.result(replace(status, next_at=opens or status.next_at))
        if self.policy.suspend:
            self.find(FindingKind.WAITING, f"policy {self.policy.name} is suspended; {kind} is due")
        elif not self.may_continue(status):
            self.find(
                FindingKind.AWAITING_APPROVAL, f"{kind} of {key} needs an approved pull request"
            )
        else:
            self.act(kind, key, reason)
        return self.result(status)


# --- what success does to status ---------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What the executor learned by carrying out an action (never a secret)."""

    key_id: str | None = None
    key_created: datetime | None = None
    self_used_at: datetime | None = None
    note: str = ""


def _promoted(status: UserStatus, key_id: str | None, created: datetime | None) -> UserStatus:
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


def record_success(
    policy: Policy, status: UserStatus, action: Action, outcome: Outcome, now: datetime
) -> UserStatus:
    """The status of a user once `action` succeeded at `now`."""
    kind = action.kind
    if kind == ActionKind.REACTIVATE_KEY:
        return replace(
            status,
            phase=Phase.ROLLED_BACK,
            rolled_back_at=now,
            resumed_at=None,
            deactivated_at=None,
            next_step=None,
            next_at=None,
            message=f"{action.reason.removeprefix('rolling back: ')}; old key {action.key} "
            f"reactivated on {now:%Y-%m-%d %H:%M}Z; {outcome.note}",
        )
    if kind in (ActionKind.CREATE_KEY, ActionKind.STORE_KEY):
        return replace(
            status,
            phase=Phase.AWAITING_USE,
            rolled_back_at=None,
            resumed_at=None,
            checks=(),
            new_key=outcome.key_id,
            new_key_created=outcome.key_created,
            stored_at=now,
            self_used_at=outcome.self_used_at,
            intent_at=None,
            next_step=str(ActionKind.DEACTIVATE_KEY),
            next_at=now + policy.deactivate_after,
            message=_msg_awaiting(outcome.key_id, len(policy.targets)),
        )
    if kind == ActionKind.DELETE_ORPHAN:
        # The intent stays: a create-key follows in this run and must be recognisable after a crash.
        return status
    if kind == ActionKind.DEACTIVATE_KEY:
        return replace(
            status,
            phase=Phase.DEACTIVATED,
            deactivated_at=now,
            next_step=str(ActionKind.DELETE_KEY),
            next_at=now + policy.delete_after,
            message=_msg_deactivated(action.key, now + policy.delete_after),
        )
    if kind == ActionKind.DELETE_KEY:
        created = status.new_key_created
        return replace(
            _promoted(status, status.new_key, created),
            phase=Phase.CURRENT,
            next_step=str(ActionKind.CREATE_KEY),
            next_at=created + policy.rotate_at_age if created else None,
            overdue_at=created + policy.max_key_age if created else None,
            message=_msg_current(status.new_key or ""),
        )
    raise AssertionError(f"unknown action {kind}")
