"""The planner: a pure function from (policies, observed IAM state, status, now) to a plan.

It reads no clock, makes no call and imports no I/O library. For each user it first narrows
what is known (which observed key is the managed old key, which the new one, which are someone
else's, what a crashed run left behind), then classifies the user into one `Situation`, and one
function per situation returns the decision: the status to record (built by
`controller.lifecycle`), the actions, the findings and, for a pull-request policy, the approval
a merged pull request would have to carry.

State is derived from what IAM shows first and from status second: status only says which keys
are keyrotor's and when things happened. That is what makes a crash between any two calls
harmless: the next run sees the new IAM state and carries on from there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from controller import checks, lifecycle, messages, ownership, windows
from controller.approvals import Approval, key_digest
from controller.checks import CheckResult, CheckState
from controller.guardrails.evaluate import exclusion
from controller.guardrails.model import Guardrails
from controller.inventory import (
    Holding,
    ObservedKey,
    ObservedUser,
    PolicyObservation,
    TargetReading,
)
from controller.lifecycle import on_success as record_success
from controller.plan import (
    Action,
    ActionKind,
    Finding,
    FindingKind,
    Outcome,
    Plan,
    PolicyPlan,
    UserPlan,
)
from controller.policy import Policy
from controller.reasons import Facts, Reason
from controller.status import Phase, PolicyStatus, UserStatus

__all__ = [
    "CLOCK_SKEW",
    "ActionKind",
    "FindingKind",
    "Outcome",
    "Plan",
    "Situation",
    "UserPlan",
    "plan",
    "record_success",
]

# Allowed difference between keyrotor's clock and IAM's when telling a key that a crashed run
# created (after its recorded intent) from one a person made before it.
CLOCK_SKEW = timedelta(minutes=5)
# An intent younger than this, with no key made after it yet, is another run about to call
# CreateAccessKey (it published its intent a moment ago): wait rather than race it. An older one
# is a run that died before creating: carry on.
INTENT_IN_FLIGHT = timedelta(minutes=3)


class Situation(StrEnum):
    """Where one user stands, as far as deciding the next step is concerned."""

    MISSING = "missing"  # the IAM user does not exist
    STATUS_DRIFT = "status-drift"  # status names a key AWS does not show as keyrotor's
    UNVERIFIED_MIGRATION = "unverified-migration"  # an old status file AWS cannot bear out
    HELD = "held"  # keyrotor undid its own step; a person must resume
    IN_FLIGHT = "in-flight"  # another run published its intent a moment ago
    NOT_READ_LIVE = "not-read-live"  # only the credential report says what keys there are
    REPAIR = "repair"  # an interrupted run's key reached some targets
    NO_WORKING_KEY = "no-working-key"
    NO_KEYS = "no-keys"
    TWO_UNMANAGED = "two-unmanaged"
    FOREIGN_KEY = "foreign-key"
    ONLY_KEY_INACTIVE = "only-key-inactive"
    CURRENT = "current"
    DUE = "due"
    NEW_KEY_INACTIVE = "new-key-inactive"
    TARGETS_UNREADABLE = "targets-unreadable"
    TARGETS_UNKNOWN = "targets-unknown"  # plan: what a target holds is not recorded
    # A crashed run's key that no readable target holds, while a target cannot be read or the key
    # is known only from the credential report: it may be in use, so it waits.
    ORPHAN_UNSURE = "orphan-unsure"
    ROLLED_BACK = "rolled-back"
    ROLLBACK_UNFINISHED = "rollback-unfinished"
    TARGET_OVERWRITTEN = "target-overwritten"
    AWAITING_USE = "awaiting-use"
    GRACE = "grace"


#: What a user may be found in on the credential report's word alone: nothing is done.
REPORT_DECIDES = frozenset({Situation.CURRENT, Situation.NO_KEYS})


def _from_report(user: _User) -> bool:
    return user.observed is not None and any(not k.live for k in user.observed.keys)


@dataclass(frozen=True)
class Decision:
    status: UserStatus | None
    actions: tuple[Action, ...] = ()
    findings: tuple[Finding, ...] = ()
    needs_checks: bool = False
    proposal: Approval | None = None


@dataclass(frozen=True)
class _User:
    """Everything known about one user, narrowed once; the situation functions only read it."""

    policy: Policy
    name: str
    now: datetime
    situation: Situation
    status: UserStatus
    observed: ObservedUser | None = None
    old: ObservedKey | None = None
    new: ObservedKey | None = None
    foreign: ObservedKey | None = None
    orphan: ObservedKey | None = None
    approval: Approval | None = None
    external: checks.ExternalResults = field(default_factory=dict)
    # Found while narrowing (overdue keys, keys deleted outside keyrotor, a recovered orphan).
    notes: tuple[Finding, ...] = ()
    # Steps that come first whatever the situation (deleting a crashed run's lost key).
    first: tuple[Action, ...] = ()
    known: bool = False
    unmanaged: tuple[ObservedKey, ...] = ()
    # A new key keyrotor recorded that IAM no longer has.
    lost_new_key: str | None = None
    # What status claimed that AWS denies.
    drift: Facts = field(default_factory=dict)
    # Another run's fresh intent (from the IAM tag).
    intent_at: datetime | None = None

    @property
    def targets(self) -> tuple[TargetReading, ...]:
        return self.observed.targets if self.observed else ()

    def finding(self, kind: FindingKind, reason: Reason, facts: Facts) -> Finding:
        return Finding(self.policy.name, self.name, kind, reason, facts)

    def action(
        self,
        kind: ActionKind,
        key: str | None,
        reason: Reason,
        facts: Facts,
        replaces: str | None = None,
    ) -> Action:
        return Action(self.policy.name, self.name, kind, key, reason, facts, replaces)


# --- entry point -------------------------------------------------------------------------------


def plan(
    policies: Iterable[Policy],
    observed: Mapping[str, PolicyObservation],
    statuses: Mapping[str, PolicyStatus],
    now: datetime,
    *,
    approvals: Mapping[tuple[str, str], Approval] | None = None,
    external: Mapping[tuple[str, str], checks.ExternalResults] | None = None,
    findings: Mapping[str, Sequence[Finding]] | None = None,
    guardrails: Guardrails | None = None,
    ambient_account_id: str | None = None,
) -> Plan:
    """Decide what to do for every user of every policy.

    `approvals` holds what merged pull requests approved (as verified), per (policy, user);
    `external` holds results of command/http checks per (policy, user); `findings` holds what
    the caller found per policy (an approvals file that is not an approval), shown with it.
    With `guardrails`, a selected user a guardrail excludes is listed as excluded and given no
    step and no new status (`ambient_account_id`: the account `accounts` defaults to).
    """
    plans = []
    for policy in policies:
        previous = statuses.get(policy.name) or PolicyStatus(policy=policy.name)
        observation = observed.get(policy.name) or PolicyObservation(policy=policy.name)
        pp = plan_policy(
            policy,
            observation,
            previous,
            now,
            approvals or {},
            external or {},
            guardrails=guardrails,
            ambient_account_id=ambient_account_id,
        )
        found = tuple((findings or {}).get(policy.name, ()))
        plans.append(replace(pp, findings=(*found, *pp.findings)) if found else pp)
    return Plan(now=now, policies=tuple(plans))


def plan_policy(
    policy: Policy,
    observation: PolicyObservation,
    previous: PolicyStatus,
    now: datetime,
    approvals: Mapping[tuple[str, str], Approval],
    external: Mapping[tuple[str, str], checks.ExternalResults],
    *,
    guardrails: Guardrails | None = None,
    ambient_account_id: str | None = None,
) -> PolicyPlan:
    if observation.error:
        finding = Finding(
            policy.name,
            "*",
            FindingKind.BLOCKED,
            Reason.CANNOT_OBSERVE,
            {"policy": policy.name, "error": observation.error},
        )
        kept = tuple(UserPlan(policy.name, name, st) for name, st in sorted(previous.users.items()))
        return PolicyPlan(policy, kept, previous, (finding,), account_id=observation.account_id)
    users = []
    for name in sorted(set(observation.users) | set(previous.users)):
        prior = previous.users.get(name)
        if name not in observation.users:
            users.append(_deselected(policy, name, prior))
            continue
        excluded = _excluded(
            policy, name, observation, prior, guardrails, ambient_account_id=ambient_account_id
        )
        if excluded is not None:
            users.append(excluded)
            continue
        approval = approvals.get((policy.name, name))
        quiet = _quiet(policy, observation.users[name], prior, now, approval)
        if quiet is not None:
            users.append(UserPlan(policy.name, name, quiet))
            continue
        untagged = _untagged(policy, name, observation.users[name], prior, now)
        user = untagged or narrow(
            policy,
            name,
            observation.users[name],
            prior,
            now,
            approval=approval,
            external=external.get((policy.name, name), {}),
        )
        if user.situation not in REPORT_DECIDES and _from_report(user):
            user = replace(user, situation=Situation.NOT_READ_LIVE)
        decision = DECIDE[user.situation](user)
        users.append(
            UserPlan(
                policy.name,
                name,
                decision.status,
                (*user.first, *decision.actions),
                (*user.notes, *decision.findings),
                decision.needs_checks,
                decision.proposal,
            )
        )
    mine = {user: a for (name, user), a in approvals.items() if name == policy.name}
    return PolicyPlan(
        policy, tuple(users), previous, approvals=mine, account_id=observation.account_id
    )


def _excluded(
    policy: Policy,
    name: str,
    observation: PolicyObservation,
    prior: UserStatus | None,
    guardrails: Guardrails | None,
    *,
    ambient_account_id: str | None,
) -> UserPlan | None:
    """A selected user a guardrail excludes: listed, never touched; its status stays as it was
    (none is written for it)."""
    observed = observation.users.get(name)
    if guardrails is None or observed is None:
        return None
    reason = exclusion(
        guardrails,
        account_id=observation.account_id,
        user_name=name,
        path=observed.path,
        tags=observed.tags,
        ambient_account_id=ambient_account_id,
    )
    if reason is None:
        return None
    tag = next(
        (f"{k}={v}" for k, v in guardrails.users.deny_tags.items() if observed.tags.get(k) == v),
        None,
    )
    facts: Facts = {
        "exclusion": reason.value,
        "user": name,
        "policy": policy.name,
        "account": observation.account_id,
        "user_path": observed.path,
        "tag": tag,
        "prefixes": tuple(guardrails.users.path_prefixes or ()),
    }
    finding = Finding(policy.name, name, FindingKind.EXCLUDED, Reason.GUARDRAIL_EXCLUDED, facts)
    return UserPlan(policy.name, name, prior, findings=(finding,))


def _deselected(policy: Policy, name: str, prior: UserStatus | None) -> UserPlan:
    facts: dict[str, str | None] = {"user": name, "policy": policy.name, "new": None}
    if prior is not None and prior.new_key is not None:
        facts |= {"old": prior.old_key, "new": prior.new_key}
    finding = Finding(policy.name, name, FindingKind.DRIFT, Reason.DESELECTED, facts)
    return UserPlan(policy.name, name, None, findings=(finding,))


def _quiet(
    policy: Policy,
    observed: ObservedUser | None,
    prior: UserStatus | None,
    now: datetime,
    approval: Approval | None,
) -> UserStatus | None:
    """The status of a user nothing is happening to, or None when `narrow` must judge it.

    Most users of a large account are `Current`: one owned active key, as status knows it, not
    yet due, nothing in progress, read from the credential report alone. Their status follows
    directly; `narrow` would take the same path to `Situation.CURRENT`, a few times slower (a
    test checks that both agree). Anything else, however small, goes through `narrow`.

    A user whose tags were not read (`ObservedUser.tags_read`) is quiet when the one key the
    report shows is the one status names, by its creation time: status's word, which only
    carries the user forward; the key's age, which decides when a step is due, is IAM's. An
    approval is then no reason to narrow: it matters only to a key that is due.
    """
    if observed is None or prior is None or observed.targets:
        return None
    if approval is not None and observed.tags_read:
        return None  # `narrow` judges it (an approval matters only to a due key: see below)
    if not prior.at_rest:
        return None
    if len(observed.keys) != 1:
        return None
    (key,) = observed.keys
    if not key.active or key.id != prior.old_key or now >= key.created + policy.rotate_at_age:
        return None
    if now >= key.created + policy.max_key_age:
        return None
    if observed.tags_read:
        own = ownership.parse(observed.tags)
        if not own.recorded or own.intent is not None or not own.owns(key.id, key.created):
            return None
    elif not _same_second(key.created, prior.old_key_created):
        return None  # not the key status names: see `_untagged`
    status = prior  # `intent_at` is None and `old_key` is the key's, as checked above
    overdue_at = key.created + policy.max_key_age
    if prior.overdue_at != overdue_at or prior.old_key_created != key.created:
        status = replace(prior, overdue_at=overdue_at, old_key_created=key.created)
    return lifecycle.current(status, key.id, key.created, policy)


def _untagged(
    policy: Policy,
    name: str,
    observed: ObservedUser | None,
    prior: UserStatus | None,
    now: datetime,
) -> _User | None:
    """A user whose tags were not read and who is not quiet: a safeguard, as the reader reads
    such a user live. Without its tags nothing says which keys are keyrotor's (narrowing would
    take every key for one to adopt), so it waits, its status as it was."""
    if observed is None or observed.tags_read or not observed.keys:
        return None  # no key, none to adopt: `narrow` needs no tags to say so
    status = prior or UserStatus(phase=Phase.BLOCKED)
    return _User(
        policy, name, now, Situation.NOT_READ_LIVE, status, observed, known=prior is not None
    )


def _recorded_id(own: ownership.Ownership, key_id: str) -> str | None:
    """A key id status names, if IAM's tags record it as keyrotor's; otherwise None."""
    return key_id if key_id in own.keys else None


def _same_second(a: datetime, b: datetime | None) -> bool:
    """The credential report gives creation times to the second."""
    return b is not None and a.replace(microsecond=0) == b.replace(microsecond=0)


# --- narrowing: from IAM's keys and status to the user's situation -----------------------------


def narrow(
    policy: Policy,
    name: str,
    observed: ObservedUser | None,
    prior: UserStatus | None,
    now: datetime,
    *,
    approval: Approval | None = None,
    external: checks.ExternalResults | None = None,
) -> _User:
    """What is known about one user, and the situation that follows from it.

    Which keys are keyrotor's comes from AWS: the IAM user's `keyrotor.dev/` tags and its key
    list (`controller.ownership`). Status only says which owned key plays which part and when
    things happened; where it contradicts AWS, the user is held for a person.
    """
    base = _User(
        policy,
        name,
        now,
        Situation.MISSING,
        prior or UserStatus(phase=Phase.BLOCKED),
        observed,
        approval=approval,
        external=external or {},
        known=prior is not None,
    )
    if observed is None:
        return base
    notes = [
        base.finding(
            FindingKind.OVERDUE,
            Reason.KEY_OVERDUE,
            {"key": k.id, "age": now - k.created, "max_key_age": policy.max_key_age},
        )
        for k in observed.keys
        if k.active and now >= k.created + policy.max_key_age
    ]
    if prior is not None and prior.hold:
        return replace(base, situation=Situation.HELD, status=prior, notes=tuple(notes))
    notes += _target_notes(base, observed.targets)
    status = prior or UserStatus(phase=Phase.CURRENT)
    active = [k.created for k in observed.keys if k.active]
    # Until a managed key is known, the oldest active key decides when the user is overdue,
    # so `keyrotor status` flags a blocked user too.
    status = replace(
        status,
        overdue_at=min(active) + policy.max_key_age if active else None,
        intent_at=None,
    )
    user = replace(base, status=status, notes=tuple(notes))
    own = ownership.parse(observed.tags)
    keys = {k.id: k for k in observed.keys}
    first: list[Action] = []
    unrecorded = tuple(t.target for t in observed.targets if not t.recorded and t.key_id)
    if unrecorded:
        first.append(
            user.action(
                ActionKind.RECORD_TARGETS,
                None,
                Reason.TARGETS_NOT_RECORDED,
                {"targets": unrecorded},
            )
        )

    # 0. A user keyrotor has not recorded in IAM yet: adopt its one key, or migrate the keys a
    #    status file of an earlier release names, where AWS bears them out.
    if not own.recorded:
        adopted = _adoptable(user, status, keys)
        if isinstance(adopted, Situation):
            return replace(user, situation=adopted, unmanaged=tuple(observed.keys))
        if adopted:
            first.append(
                user.action(
                    ActionKind.ADOPT_KEY,
                    adopted[0].id,
                    Reason.ADOPTED,
                    {"keys": tuple(k.id for k in adopted), "user": name},
                )
            )
            own = ownership.Ownership({k.id: k.created for k in adopted}, policy=policy.name)
    owned = [k for k in observed.keys if own.owns(k.id, k.created)]
    unowned = [k for k in observed.keys if not own.owns(k.id, k.created)]

    # 1. What status claims and AWS denies is never acted on.
    for claimed in (status.old_key, status.new_key):
        if claimed and claimed in keys and claimed not in {k.id for k in owned}:
            facts = {"user": name, "key": claimed}
            return replace(user, situation=Situation.STATUS_DRIFT, drift=facts, first=tuple(first))
    if status.old_key and status.old_key == status.new_key:
        facts = {"user": name, "key": status.old_key}
        return replace(user, situation=Situation.STATUS_DRIFT, drift=facts, first=tuple(first))

    # 2. A key a crashed run created after the intent it recorded in IAM.
    if own.intent is not None:
        ours = [k for k in unowned if own.intended(k.created, CLOCK_SKEW)]
        if not ours and now - own.intent.at < INTENT_IN_FLIGHT:
            return replace(user, situation=Situation.IN_FLIGHT, intent_at=own.intent.at)
        if ours:
            orphan = ours[0]
            unowned.remove(orphan)
            holding = [t for t in user.targets if t.key_id == orphan.id]
            if holding and len(holding) == len(user.targets):
                notes.append(
                    user.finding(FindingKind.DRIFT, Reason.ORPHAN_RECORDED, {"key": orphan.id})
                )
                first.append(
                    user.action(
                        ActionKind.ADOPT_KEY,
                        orphan.id,
                        Reason.ORPHAN_RECORDED,
                        {"key": orphan.id, "keys": (orphan.id,), "user": name},
                    )
                )
                owned.append(orphan)
            elif holding:
                return replace(
                    user,
                    situation=Situation.REPAIR,
                    orphan=orphan,
                    notes=tuple(notes),
                    first=(
                        *first,
                        user.action(
                            ActionKind.STORE_KEY,
                            orphan.id,
                            Reason.ORPHAN_PARTLY_STORED,
                            {"key": orphan.id, "held": len(holding), "total": len(user.targets)},
                        ),
                    ),
                )
            elif now - own.intent.at < INTENT_IN_FLIGHT:
                # Another run may be between CreateAccessKey and its target writes.
                return replace(
                    user,
                    situation=Situation.IN_FLIGHT,
                    intent_at=own.intent.at,
                    first=tuple(first),
                    notes=tuple(notes),
                )
            elif not orphan.live or any(t.error for t in user.targets):
                # Deleted only once every target is known not to hold it, from a live read.
                return replace(
                    user, situation=Situation.ORPHAN_UNSURE, first=tuple(first), notes=tuple(notes)
                )
            else:
                first.append(
                    user.action(
                        ActionKind.DELETE_ORPHAN,
                        orphan.id,
                        Reason.ORPHAN_UNSTORED,
                        {"key": orphan.id},
                    )
                )
    user = replace(user, first=tuple(first), notes=tuple(notes))

    # 3. Which owned key is the old one and which the new one: status says, where it names
    #    owned keys; otherwise the order IAM created them in.
    by_id = {k.id: k for k in sorted(owned, key=lambda k: (k.created, k.id))}
    old = by_id.get(status.old_key or "")
    new = by_id.get(status.new_key or "")
    rest = [k for k in by_id.values() if k not in (old, new)]
    if old is None and rest:
        old = rest.pop(0)
    if new is None and rest:
        new = rest.pop(0)
    if old is not None and new is not None and new.created < old.created and not status.new_key:
        old, new = new, old

    # 4. Keys keyrotor knew that vanished.
    #    Status is not AWS: a key it names is only named back where IAM's tags record it too.
    if status.old_key and status.old_key not in keys:
        gone: Facts = {"key": _recorded_id(own, status.old_key)}
        if new is not None or old is not None:
            if status.phase != Phase.DEACTIVATED:
                notes.append(user.finding(FindingKind.DRIFT, Reason.OLD_KEY_DELETED, gone))
        else:
            notes.append(user.finding(FindingKind.DRIFT, Reason.KEY_DELETED, gone))
        if old is None and new is not None:
            old, new = new, None
        status = lifecycle.promoted(status, old.id if old else None, old.created if old else None)
    if status.new_key and status.new_key not in keys:
        lost = _recorded_id(own, status.new_key)
        notes.append(user.finding(FindingKind.DRIFT, Reason.NEW_KEY_DELETED, {"key": lost}))
        status = lifecycle.new_key_lost(status)
        if old is not None and not old.active:
            return replace(
                user,
                situation=Situation.NO_WORKING_KEY,
                status=status,
                old=old,
                notes=tuple(notes),
                lost_new_key=lost,
            )
    user = replace(user, status=status, notes=tuple(notes))

    # 5. Nothing owned: nothing to rotate, or keys keyrotor does not own. When every key the
    #    tags recorded is gone and one key is left, that key is adopted, as at first sight.
    if old is None and len(unowned) == 1 and own.recorded and not owned:
        left = unowned.pop()
        first.append(
            user.action(
                ActionKind.ADOPT_KEY, left.id, Reason.ADOPTED, {"keys": (left.id,), "user": name}
            )
        )
        old = left
        status = replace(status, old_key=left.id, old_key_created=left.created)
        user = replace(user, status=status, first=tuple(first))
    if old is None:
        if len(unowned) > 1:
            return replace(user, situation=Situation.TWO_UNMANAGED, unmanaged=tuple(unowned))
        if unowned:
            return replace(user, situation=Situation.FOREIGN_KEY, foreign=unowned[0])
        return replace(user, situation=Situation.NO_KEYS)

    # 6. Any other key is someone else's: never a third key, never touch it.
    status = replace(status, old_key=old.id, old_key_created=old.created)
    user = replace(user, status=status, old=old, new=new)
    if unowned:
        return replace(user, situation=Situation.FOREIGN_KEY, foreign=unowned[0])
    status = replace(status, overdue_at=old.created + policy.max_key_age)
    if new is not None:
        status = _stored(status, new, now) if status.new_key != new.id else status
    user = replace(user, status=status)
    return replace(user, situation=classify(user))


def _target_notes(user: _User, targets: tuple[TargetReading, ...]) -> list[Finding]:
    notes = []
    for t in targets:
        if t.moved:
            notes.append(user.finding(FindingKind.DRIFT, Reason.TARGET_MOVED, {"target": t.target}))
        elif t.holding == Holding.UNRECORDED:
            notes.append(
                user.finding(FindingKind.DRIFT, Reason.TARGET_UNRECORDED, {"target": t.target})
            )
    return notes


def _adoptable(
    user: _User, status: UserStatus, keys: Mapping[str, ObservedKey]
) -> list[ObservedKey] | Situation:
    """The keys of a user keyrotor has not recorded in IAM that it may adopt, or why not.

    A user's only key is adopted. A status file of an earlier release may name two keys (a
    rotation in progress): both are adopted only when IAM has exactly those keys and every
    readable target holds the newer one, which only keyrotor writes. Anything else is held.
    """
    named = [k for k in (status.old_key, status.new_key) if k]
    if not keys:
        return []
    if not named or set(named) & set(keys) == set():
        if len(keys) == 1:
            return list(keys.values())
        return Situation.TWO_UNMANAGED
    if set(keys) - set(named):
        return []  # a key no record names: someone else's (FOREIGN_KEY below)
    adopted = [keys[k] for k in named if k in keys]
    if len(adopted) == 2:
        newer = keys[status.new_key or ""]
        readable = [t for t in user.targets if t.readable]
        if not readable or any(t.key_id != newer.id for t in readable):
            return Situation.UNVERIFIED_MIGRATION
    return adopted


def classify(user: _User) -> Situation:
    """The situation of a user whose managed old key (and maybe new key) are known."""
    old, new, status = user.old, user.new, user.status
    assert old is not None
    if new is None:
        if not old.active:
            return Situation.ONLY_KEY_INACTIVE
        if user.now < old.created + user.policy.rotate_at_age:
            return Situation.CURRENT
        return Situation.DUE
    if not new.active:
        return Situation.NEW_KEY_INACTIVE
    if any(t.error for t in user.targets):
        return Situation.TARGETS_UNREADABLE
    if not all(t.known for t in user.targets if t.readable):
        return Situation.TARGETS_UNKNOWN
    if status.phase == Phase.ROLLED_BACK and old.active:
        return Situation.ROLLED_BACK
    if status.phase == Phase.DEACTIVATED and old.active:
        # Only a rollback makes a deactivated old key active again: finish it (the step is
        # idempotent), whether a crash interrupted keyrotor's or a person started one.
        return Situation.ROLLBACK_UNFINISHED
    if any(t.readable and t.key_id != new.id for t in user.targets):
        return Situation.TARGET_OVERWRITTEN
    return Situation.AWAITING_USE if old.active else Situation.GRACE


def _stored(status: UserStatus, new: ObservedKey, now: datetime) -> UserStatus:
    return replace(
        status,
        new_key=new.id,
        new_key_created=new.created,
        stored_at=status.stored_at or now,
        intent_at=None,
    )


# --- one function per situation ----------------------------------------------------------------


def _blocked(
    user: _User, reason: Reason, facts: Facts, status: UserStatus | None = None
) -> Decision:
    after = lifecycle.blocked(status or user.status, reason, facts)
    return Decision(after, findings=(user.finding(FindingKind.BLOCKED, reason, facts),))


def _missing(user: _User) -> Decision:
    return _blocked(user, Reason.USER_MISSING, {"user": user.name, "known": user.known})


def _held(user: _User) -> Decision:
    facts: Facts = {"cause": user.status.hold, "policy": user.policy.name, "user": user.name}
    return _blocked(user, Reason.HELD_FOR_PERSON, facts)


def _in_flight(user: _User) -> Decision:
    facts: Facts = {"at": user.intent_at, "user": user.name}
    return Decision(
        user.status, findings=(user.finding(FindingKind.WAITING, Reason.CREATION_IN_FLIGHT, facts),)
    )


def _not_read_live(user: _User) -> Decision:
    """A safeguard: the reader reads a user live whenever a step may be due, so this is a
    reader that decided otherwise; no step is taken on report data alone."""
    facts: Facts = {"user": user.name}
    waiting = user.finding(FindingKind.WAITING, Reason.NOT_READ_LIVE, facts)
    return Decision(user.status, findings=(waiting,))


def _status_drift(user: _User) -> Decision:
    finding = user.finding(FindingKind.DRIFT, Reason.STATUS_CONTRADICTS_AWS, user.drift)
    decision = _blocked(user, Reason.STATUS_CONTRADICTS_AWS, user.drift)
    return replace(decision, findings=(finding, *decision.findings))


def _unverified_migration(user: _User) -> Decision:
    facts: Facts = {"user": user.name, "keys": tuple(k.id for k in user.unmanaged)}
    return _blocked(user, Reason.UNVERIFIED_MIGRATION, facts)


def _repair(user: _User) -> Decision:
    return Decision(lifecycle.repairing(user.status))


def _no_working_key(user: _User) -> Decision:
    assert user.old is not None
    facts: Facts = {"new": user.lost_new_key, "old": user.old.id, "user": user.name}
    return _blocked(user, Reason.NO_WORKING_KEY, facts)


def _no_keys(user: _User) -> Decision:
    return Decision(lifecycle.no_key(user.status, user.name))


def _two_unmanaged(user: _User) -> Decision:
    facts: Facts = {"user": user.name, "keys": tuple(k.id for k in user.unmanaged)}
    return _blocked(user, Reason.TWO_UNMANAGED_KEYS, facts)


def _foreign_key(user: _User) -> Decision:
    assert user.foreign is not None
    facts: Facts = {
        "key": user.foreign.id,
        "user": user.name,
        "created": user.foreign.created,
        "policy": user.policy.name,
    }
    return _blocked(user, Reason.FOREIGN_KEY, facts)


def _only_key_inactive(user: _User) -> Decision:
    assert user.old is not None
    return _blocked(user, Reason.ONLY_KEY_INACTIVE, {"user": user.name, "key": user.old.id})


def _current(user: _User) -> Decision:
    assert user.old is not None
    return Decision(lifecycle.current(user.status, user.old.id, user.old.created, user.policy))


@dataclass(frozen=True)
class _ApprovalGate:
    approved: bool
    proposal: Approval | None = None
    refused: Finding | None = None


def _approval_to_start(user: _User, old: ObservedKey) -> _ApprovalGate:
    """Creating a successor needs an approval made for exactly the keys IAM shows now."""
    if user.policy.approval == "auto":
        return _ApprovalGate(True)
    keys = user.observed.keys if user.observed else ()
    digest = key_digest(keys)
    proposal = Approval(user.policy.name, user.name, old.id, digest)
    approval = user.approval
    if approval is None:
        return _ApprovalGate(False, proposal)
    if approval.old_key == old.id and approval.digest == digest:
        return _ApprovalGate(True)
    stale = user.finding(
        FindingKind.AWAITING_APPROVAL,
        Reason.STALE_APPROVAL,
        {
            "approved_key": approval.old_key,
            "approved_digest": approval.digest,
            "digest": digest,
            "key": old.id,
        },
    )
    return _ApprovalGate(False, proposal, stale)


def _approved_to_continue(user: _User, status: UserStatus) -> bool:
    """A merged approval covers the whole rotation of the old key it names."""
    if user.policy.approval == "auto":
        return True
    return user.approval is not None and user.approval.old_key == status.old_key


def _due(user: _User) -> Decision:
    old, policy = user.old, user.policy
    assert old is not None
    due = lifecycle.due(user.status, old.id, policy)
    if policy.suspend:
        waiting = user.finding(FindingKind.WAITING, Reason.SUSPENDED, {"policy": policy.name})
        return Decision(due, findings=(waiting,))
    gate = _approval_to_start(user, old)
    if not gate.approved:
        facts: Facts = {
            "key": old.id,
            "rotate_at_age": policy.rotate_at_age,
            "rotate_at": old.created + policy.rotate_at_age,
            "policy": policy.name,
        }
        asks = user.finding(FindingKind.AWAITING_APPROVAL, Reason.NEEDS_APPROVAL, facts)
        findings = (gate.refused, asks) if gate.refused else (asks,)
        return Decision(
            lifecycle.awaiting_approval(due, old.id, policy),
            findings=findings,
            proposal=gate.proposal,
        )
    if broken := [t for t in user.targets if t.error]:
        problems = tuple(messages.target_problem(t.target, t.error or "") for t in broken)
        waiting = user.finding(
            FindingKind.WAITING, Reason.TARGETS_UNWRITABLE, {"problems": problems}
        )
        return Decision(due, findings=(waiting,))
    create = user.action(
        ActionKind.CREATE_KEY,
        None,
        Reason.ROTATION_AGE,
        {
            "key": old.id,
            "rotate_at_age": policy.rotate_at_age,
            "rotate_at": old.created + policy.rotate_at_age,
            "age": user.now - old.created,
        },
        replaces=old.id,
    )
    return Decision(due, actions=(create,))


def _rotating_status(user: _User) -> UserStatus:
    assert user.new is not None
    return replace(user.status, new_key=user.new.id, new_key_created=user.new.created)


def _new_key_inactive(user: _User) -> Decision:
    assert user.new is not None
    facts: Facts = {"key": user.new.id, "user": user.name}
    return _blocked(user, Reason.NEW_KEY_INACTIVE, facts, _rotating_status(user))


def _targets_unreadable(user: _User) -> Decision:
    problems = tuple(
        messages.unreadable_target(t.target, t.error or "") for t in user.targets if t.error
    )
    waiting = user.finding(FindingKind.WAITING, Reason.TARGETS_UNREADABLE, {"problems": problems})
    # A read error says nothing new about the rotation: status stays as it was.
    return Decision(_rotating_status(user), findings=(waiting,))


def _orphan_unsure(user: _User) -> Decision:
    if not any(t.error for t in user.targets):
        return _not_read_live(user)
    problems = tuple(
        messages.unreadable_target(t.target, t.error or "") for t in user.targets if t.error
    )
    waiting = user.finding(FindingKind.WAITING, Reason.TARGETS_UNREADABLE, {"problems": problems})
    return Decision(user.status, findings=(waiting,))


def _targets_unknown(user: _User) -> Decision:
    # Said by the drift notes; `apply` reads the values and decides.
    return Decision(_rotating_status(user))


def _rollback_unfinished(user: _User) -> Decision:
    assert user.old is not None
    reactivate = user.action(
        ActionKind.REACTIVATE_KEY, user.old.id, Reason.OLD_KEY_ACTIVE_AGAIN, {"key": user.old.id}
    )
    return Decision(_rotating_status(user), actions=(reactivate,))


def _target_overwritten(user: _User) -> Decision:
    old, new = user.old, user.new
    assert old is not None and new is not None
    holders = tuple(
        messages.target_holds(t.target, t.key_id, other=t.holding == Holding.OTHER, user=user.name)
        for t in user.targets
        if t.readable and t.key_id != new.id
    )
    facts: Facts = {"new": new.id, "old": old.id, "holders": holders}
    return _blocked(user, Reason.TARGET_OVERWRITTEN, facts, _rotating_status(user))


def _evaluate(
    user: _User, status: UserStatus, *, builtin: bool
) -> tuple[UserStatus, list[CheckResult], bool]:
    """Judge the gates and record them in status; and whether command/http results are missing."""
    assert user.old is not None and user.new is not None
    wanted = user.policy.checks
    needs = any(c.type in checks.EXTERNAL_TYPES for c in wanted) and not user.external
    # keyrotor's own use of the new key (its sts check) never counts as the application's. The
    # times in status are hints, bounded by what IAM reports: nothing keyrotor did with the key
    # happened before IAM created it, so a status rewritten to say otherwise gains nothing.
    baseline = max(status.self_used_at or status.stored_at or user.now, user.new.created)
    results = checks.evaluate(
        wanted,
        old=user.old,
        new=user.new,
        baseline=baseline,
        now=user.now,
        external=user.external,
        builtin=builtin,
    )
    return lifecycle.record_checks(status, results, user.now), results, needs


def _awaiting_use(user: _User, status: UserStatus | None = None) -> Decision:
    old, new, policy, now = user.old, user.new, user.policy, user.now
    assert old is not None and new is not None
    status = status or _rotating_status(user)
    stored_at = max(status.stored_at or now, new.created)
    status, results, needs = _evaluate(user, replace(status, stored_at=stored_at), builtin=True)
    status = lifecycle.awaiting_use(status, new.id, stored_at, policy)
    earliest = stored_at + policy.deactivate_after
    waiting = [r for r in results if r.state != CheckState.PASSED]
    held = tuple(
        user.finding(FindingKind.WAITING, r.reason, {**r.facts, "detail": r.detail})
        for r in waiting
    )
    if now < earliest:
        too_soon = user.finding(
            FindingKind.WAITING, Reason.DEACTIVATE_AFTER, {"new": new.id, "earliest": earliest}
        )
        return Decision(status, findings=(too_soon, *held), needs_checks=needs)
    overdue = now >= old.created + policy.max_key_age
    if waiting and overdue and policy.on_overdue == "deactivate":
        facts: Facts = {
            "key": old.id,
            "max_key_age": policy.max_key_age,
            "waiting": tuple(r.message for r in waiting),
        }
        decision = _gated(
            user, status, ActionKind.DEACTIVATE_KEY, old.id, Reason.OVERDUE_FORCED, facts
        )
        return replace(decision, needs_checks=needs)
    if waiting:
        return Decision(status, findings=held, needs_checks=needs)
    in_use: Facts = {"new": new.id, "passed": tuple(r.message for r in results)}
    decision = _gated(
        user, status, ActionKind.DEACTIVATE_KEY, old.id, Reason.NEW_KEY_IN_USE, in_use
    )
    return replace(decision, needs_checks=needs)


def _grace(user: _User) -> Decision:
    old, policy, now = user.old, user.policy, user.now
    assert old is not None
    status = _rotating_status(user)
    assert user.new is not None
    # keyrotor deactivates no sooner than deactivateAfter after creating the new key: an earlier
    # time in status would only shorten the grace period.
    earliest = user.new.created + policy.deactivate_after
    deactivated_at = max(status.deactivated_at or now, earliest)
    if deactivated_at > now:
        deactivated_at = now
    delete_at = deactivated_at + policy.delete_after
    status = lifecycle.deactivated(status, old.id, deactivated_at, policy)
    # Step 4: the application must keep working without the old key. Only command and http
    # checks can tell; a failure brings the old key back, whatever else holds other steps.
    status, results, needs = _evaluate(user, status, builtin=False)
    failed = [
        r for r in results if r.state == CheckState.FAILED and r.check in checks.EXTERNAL_TYPES
    ]
    if failed:
        facts: Facts = {"failed": tuple(messages.failed_check(r.check, r.message) for r in failed)}
        reactivate = user.action(ActionKind.REACTIVATE_KEY, old.id, Reason.CHECK_FAILED, facts)
        return Decision(status, actions=(reactivate,), needs_checks=needs)
    if now < delete_at:
        waiting = user.finding(
            FindingKind.WAITING, Reason.DELETE_AFTER, {"key": old.id, "delete_at": delete_at}
        )
        return Decision(status, findings=(waiting,), needs_checks=needs)
    decision = _gated(
        user,
        status,
        ActionKind.DELETE_KEY,
        old.id,
        Reason.GRACE_ENDED,
        {"delete_after": policy.delete_after},
    )
    return replace(decision, needs_checks=needs)


def _rolled_back(user: _User) -> Decision:
    """A rolled-back rotation waits for a person: keyrotor never retries one by itself."""
    new = user.new
    assert new is not None
    status = _rotating_status(user)
    if status.resumed_at is None:
        facts: Facts = {"before": status.message, "policy": user.policy.name, "user": user.name}
        waiting = user.finding(FindingKind.BLOCKED, Reason.AWAITING_RESUME, facts)
        return Decision(lifecycle.waiting_for_a_person(status), findings=(waiting,))
    if all(t.key_id == new.id for t in user.targets if t.readable):
        return _awaiting_use(user, lifecycle.resumed_awaiting_use(status, new.id, user.policy))
    store = user.action(ActionKind.STORE_KEY, new.id, Reason.RESUMED, {"key": new.id})
    return Decision(status, actions=(store,))


def _gated(
    user: _User, status: UserStatus, kind: ActionKind, key: str, reason: Reason, facts: Facts
) -> Decision:
    """Suspension, approval and maintenance windows hold a disruptive step that is due.

    Creation is not disruptive and rollback must never wait, so neither comes through here.
    """
    policy = user.policy
    if policy.windows and not windows.is_open(policy.windows, user.now):
        state = windows.explain(policy.windows, user.now)
        wait = user.finding(
            FindingKind.WAITING,
            Reason.OUTSIDE_WINDOW,
            {"step": str(kind), "key": key, **messages.window_facts(state)},
        )
        return Decision(replace(status, next_at=state.opens or status.next_at), findings=(wait,))
    if policy.suspend:
        wait = user.finding(
            FindingKind.WAITING, Reason.SUSPENDED, {"policy": policy.name, "step": str(kind)}
        )
        return Decision(status, findings=(wait,))
    if not _approved_to_continue(user, status):
        wait = user.finding(
            FindingKind.AWAITING_APPROVAL,
            Reason.STEP_NEEDS_APPROVAL,
            {"step": str(kind), "key": key},
        )
        # Its approval was refused midway (withdrawn, the manifest edited): ask again to carry on.
        keys = user.observed.keys if user.observed else ()
        again = Approval(policy.name, user.name, status.old_key or key, key_digest(keys))
        return Decision(status, findings=(wait,), proposal=again)
    return Decision(status, actions=(user.action(kind, key, reason, facts),))


DECIDE: dict[Situation, Callable[[_User], Decision]] = {
    Situation.MISSING: _missing,
    Situation.STATUS_DRIFT: _status_drift,
    Situation.UNVERIFIED_MIGRATION: _unverified_migration,
    Situation.HELD: _held,
    Situation.IN_FLIGHT: _in_flight,
    Situation.NOT_READ_LIVE: _not_read_live,
    Situation.REPAIR: _repair,
    Situation.NO_WORKING_KEY: _no_working_key,
    Situation.NO_KEYS: _no_keys,
    Situation.TWO_UNMANAGED: _two_unmanaged,
    Situation.FOREIGN_KEY: _foreign_key,
    Situation.ONLY_KEY_INACTIVE: _only_key_inactive,
    Situation.CURRENT: _current,
    Situation.DUE: _due,
    Situation.NEW_KEY_INACTIVE: _new_key_inactive,
    Situation.TARGETS_UNREADABLE: _targets_unreadable,
    Situation.TARGETS_UNKNOWN: _targets_unknown,
    Situation.ORPHAN_UNSURE: _orphan_unsure,
    Situation.ROLLED_BACK: _rolled_back,
    Situation.ROLLBACK_UNFINISHED: _rollback_unfinished,
    Situation.TARGET_OVERWRITTEN: _target_overwritten,
    Situation.AWAITING_USE: _awaiting_use,
    Situation.GRACE: _grace,
}
