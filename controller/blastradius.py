"""The blast radius: at most `maxChangesPerRun` creations, deactivations and deletions per run.

A pure function over a whole plan (every policy, every account), so that `plan` shows exactly
what `apply` will do: the plan's actions are only what this run carries out, and each step held
back is a `held` finding. Steps are taken in a stable order, the oldest key concerned first; a
rollback (`reactivate-key`), which restores, is never held back and does not count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from controller.plan import Action, ActionKind, Finding, FindingKind, Plan, PolicyPlan, UserPlan
from controller.reasons import Reason

__all__ = ["COUNTED", "hold_back"]

#: The steps `maxChangesPerRun` counts.
COUNTED: frozenset[ActionKind] = frozenset(
    {
        ActionKind.CREATE_KEY,
        ActionKind.DEACTIVATE_KEY,
        ActionKind.DELETE_KEY,
        ActionKind.DELETE_ORPHAN,
    }
)


def _concerned(action: Action) -> str | None:
    """The key a step is about: the one it changes, or for a create the one it replaces."""
    if action.key is not None:
        return action.key
    named = action.facts.get("key") or action.replaces
    return named if isinstance(named, str) else None


def hold_back(plan: Plan, max_changes: int | None, key_created: Mapping[str, datetime]) -> Plan:
    """`plan` with its counted steps past `max_changes` held for the next run.

    Users are taken oldest key first (`key_created`: each key id's CreateDate as observed; a key
    of unknown age goes last), then by policy, account and name. Within a user, steps run in
    order and depend on each other: once one is held, the user's later steps are held too
    (a rollback excepted). A held user's status is left as planned (the status before its
    steps), so nothing it records pretends a held step was done.
    """
    if max_changes is None:
        return plan
    counted = [
        (pi, ui)
        for pi, pp in enumerate(plan.policies)
        for ui, up in enumerate(pp.users)
        if any(a.kind in COUNTED for a in up.actions)
    ]
    if sum(1 for pp in plan.policies for a in pp.actions if a.kind in COUNTED) <= max_changes:
        return plan

    def order(where: tuple[int, int]) -> tuple[bool, datetime, str, str, str]:
        pp = plan.policies[where[0]]
        up = pp.users[where[1]]
        keys = {_concerned(a) for a in up.actions if a.kind in COUNTED}
        dates = [key_created[key] for key in keys if key is not None and key in key_created]
        oldest = min(dates) if dates else plan.now
        return (not dates, oldest, pp.policy.name, pp.account_id, up.user)

    left = max_changes
    changed: dict[tuple[int, int], UserPlan] = {}
    for where in sorted(counted, key=order):
        up = plan.policies[where[0]].users[where[1]]
        kept: list[Action] = []
        held: list[Finding] = []
        holding = False
        for action in up.actions:
            if action.kind is ActionKind.REACTIVATE_KEY:
                kept.append(action)
                continue
            if action.kind in COUNTED and not holding:
                if left > 0:
                    left -= 1
                else:
                    holding = True
            if holding:
                held.append(_held(action, max_changes))
            else:
                kept.append(action)
        if held:
            changed[where] = replace(up, actions=tuple(kept), findings=(*up.findings, *held))
    if not changed:
        return plan
    policies: list[PolicyPlan] = []
    for pi, pp in enumerate(plan.policies):
        users = tuple(changed.get((pi, ui), up) for ui, up in enumerate(pp.users))
        policies.append(replace(pp, users=users) if users != pp.users else pp)
    return replace(plan, policies=tuple(policies))


def _held(action: Action, max_changes: int) -> Finding:
    facts = {"step": str(action.kind), "key": _concerned(action), "max_changes": max_changes}
    return Finding(action.policy, action.user, FindingKind.HELD, Reason.MAX_CHANGES_PER_RUN, facts)
