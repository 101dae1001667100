"""The AWS reader behind `controller.inventory`: IAM users, their keys, and their targets.

Read-only calls only (plan must never write), and as few as a decision needs. Per account:

- the users, their paths and tags, from `GetAccountAuthorizationDetails` pages (1000 a page),
  and every user's keys from the credential report (`controller.aws.snapshot.read_account`):
  3 + ceil(N/1000) IAM calls for N users, however many users there are;
- the keys of a user read live (`ListAccessKeys`, `GetAccessKeyLastUsed`) only where a step may
  be due: a key at rotation age, two keys or an inactive one, a rotation in progress in status,
  an intent in IAM, a first sight, or a report the user's keys cannot be joined to with
  certainty (the report has no key ids: keys are named by the creation times keyrotor recorded
  in the `keyrotor.dev/keys` tag);
- targets only for users read live (and, for `plan`, only their metadata).

Everyone else is decided from the report alone, and such a user's keys are marked not `live`:
the planner takes no step on them, and the executor re-reads everything live before any step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from controller import ownership, targets
from controller.aws import AWS_ERRORS, describe_error, error_code
from controller.aws.credential_report import JoinedKey, KeyJoin
from controller.aws.listing import ListedUser
from controller.aws.snapshot import AccountSnapshot, read_account, read_live_keys
from controller.errors import KeyrotorError
from controller.guardrails.evaluate import exclusion
from controller.guardrails.model import Guardrails
from controller.inventory import ObservedKey, ObservedUser, PolicyObservation
from controller.policy import Policy
from controller.status import Phase, PolicyStatus, UserStatus

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


class AwsInventory:
    """Reads IAM and the targets of the policies of one account at a time."""

    def __init__(
        self,
        services: targets.TargetServices,
        *,
        values: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        guardrails: Guardrails | None = None,
        ambient_account_id: str | None = None,
    ) -> None:
        """`values`: where a target's metadata is missing or out of date, read its value (the
        apply role may; the plan role may not, and `plan` never does). `sleep` waits while IAM
        generates the credential report. A user `guardrails` exclude is given as listed (its
        path and tags) with no keys: neither its keys nor its targets are read."""
        self.guardrails = guardrails
        self.ambient_account_id = ambient_account_id
        self.services = services
        self.sessions = services.sessions
        self.values = values
        self.sleep = sleep

    def observe(
        self,
        policies: Sequence[Policy],
        now: datetime,
        hint: Callable[[Policy, str], PolicyStatus],
    ) -> dict[str, PolicyObservation]:
        if not policies:
            return {}
        account = policies[0].account
        account_id = ""
        try:
            iam = self.sessions.iam(account)
            account_id = self.sessions.account_id(account)
            snapshot = read_account(iam, sleep=self.sleep, path_prefixes=_prefixes(policies))
        except AWS_ERRORS as exc:
            return _failed(policies, describe_error(exc), account_id)
        except KeyrotorError as exc:
            return _failed(policies, str(exc), account_id)
        observed: dict[str, PolicyObservation] = {}
        for policy in policies:
            try:
                users = self._users(
                    iam, policy, account_id, snapshot, hint(policy, account_id), now
                )
            except AWS_ERRORS as exc:
                observed[policy.name] = PolicyObservation(
                    policy.name, account_id=account_id, error=describe_error(exc)
                )
            except KeyrotorError as exc:
                observed[policy.name] = PolicyObservation(
                    policy.name, account_id=account_id, error=str(exc)
                )
            else:
                observed[policy.name] = PolicyObservation(policy.name, users, account_id)
        return observed

    def _users(
        self,
        iam: IAMClient,
        policy: Policy,
        account_id: str,
        snapshot: AccountSnapshot,
        prior: PolicyStatus,
        now: datetime,
    ) -> dict[str, ObservedUser | None]:
        users: dict[str, ObservedUser | None] = {}
        for name in select(policy, snapshot.users):
            listed = snapshot.users.get(name)
            if listed is None:
                users[name] = None  # named by the policy, not in IAM
                continue
            if self.guardrails is not None and exclusion(
                self.guardrails,
                account_id=account_id,
                user_name=name,
                path=listed.path,
                tags=listed.tags,
                ambient_account_id=self.ambient_account_id,
            ):
                # The planner lists it as excluded; nothing of it is read.
                users[name] = ObservedUser(name, path=listed.path, tags=listed.tags)
                continue
            join = snapshot.joins.get(name)
            known = prior.users.get(name)
            if needs_live(policy, listed, join, known, now):
                users[name] = self._live(iam, policy, listed, account_id)
            else:
                assert join is not None
                users[name] = ObservedUser(
                    name,
                    tuple(_from_report(k) for k in join.keys),
                    path=listed.path,
                    tags=listed.tags,
                )
        return users

    def _live(
        self, iam: IAMClient, policy: Policy, listed: ListedUser, account_id: str
    ) -> ObservedUser | None:
        try:
            joined = read_live_keys(iam, listed.name)
        except AWS_ERRORS as exc:
            if error_code(exc) == "NoSuchEntity":
                return None  # deleted since it was listed
            raise
        keys = tuple(ObservedKey(k.id, "Active" if k.active else "Inactive", k.created,
                                 k.last_used) for k in joined)  # fmt: skip
        ids = {k.id for k in keys}
        readings = tuple(
            targets.reading(t, user_keys=ids, values=self.values)
            for t in targets.bind_all(policy, listed.name, account_id, self.services)
        )
        return ObservedUser(listed.name, keys, readings, path=listed.path, tags=listed.tags)


def select(policy: Policy, listed: Mapping[str, ListedUser]) -> list[str]:
    """The users `policy` selects: its names, and listed users its selector matches."""
    sel = policy.users
    names = set(sel.names)
    if sel.has_selector:
        for user in listed.values():
            if sel.path_prefix and not user.path.startswith(sel.path_prefix):
                continue
            if all(user.tags.get(k) == v for k, v in sel.tags.items()):
                names.add(user.name)
    return sorted(names - set(sel.exclude))


def needs_live(
    policy: Policy,
    listed: ListedUser,
    join: KeyJoin | None,
    known: UserStatus | None,
    now: datetime,
) -> bool:
    """Whether the credential report alone cannot decide this user (see the module docstring)."""
    if join is None or not join.joined or known is None:
        return True
    if known.phase != Phase.CURRENT or known.new_key or known.hold or known.intent_at:
        return True
    if ownership.parse(listed.tags).intent is not None:
        return True
    keys = join.keys
    if len(keys) > 1 or any(not k.active for k in keys):
        return True
    return any(k.created + policy.rotate_at_age <= now or k.id != known.old_key for k in keys)


def _from_report(key: JoinedKey) -> ObservedKey:
    return ObservedKey(key.id, "Active" if key.active else "Inactive", key.created,
                       key.last_used, live=False)  # fmt: skip


def _prefixes(policies: Iterable[Policy]) -> list[str] | None:
    """The paths to list: every user when a policy names users (they may be anywhere)."""
    prefixes: list[str] = []
    for policy in policies:
        sel = policy.users
        if sel.names or not sel.path_prefix:
            return None
        prefixes.append(sel.path_prefix)
    return prefixes


def _failed(
    policies: Sequence[Policy], error: str, account_id: str
) -> dict[str, PolicyObservation]:
    return {p.name: PolicyObservation(p.name, account_id=account_id, error=error) for p in policies}
