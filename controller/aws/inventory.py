"""The AWS reader behind `controller.inventory`: IAM users, their keys, and their targets.

Read-only calls only (plan must never write), and as few as a decision needs. Per account:

- every user's keys from the credential report (`controller.aws.snapshot.read_account`), and
  the users themselves either from the report's rows (names, and paths from their ARNs) or,
  where a policy's selector or the guardrails choose users by tag (`needs_tags`), from
  `GetAccountAuthorizationDetails` pages with their tags (1000 a page): 3 + ceil(N/1000) IAM
  calls for N users at most, 3 without the listing, however many users there are;
- the keys of a user read live (`ListAccessKeys`, `GetAccessKeyLastUsed`, and `ListUserTags`
  where the account was not listed) only where a step may be due: a key at rotation age, two
  keys or an inactive one, a rotation in progress in status, an intent in IAM, a first sight,
  or a report the user's keys cannot be joined to with certainty (the report has no key ids:
  keys are named by the creation times keyrotor recorded in the `keyrotor.dev/keys` tag, or,
  in an account not listed, in status);
- targets only for users read live (and, for `plan`, only their metadata).

Everyone else is decided from the report alone, and such a user's keys are marked not `live`
(and, unlisted, its tags not read): the planner takes no step on them, and the executor re-reads
everything live before any step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from controller import ownership, targets
from controller.aws import AWS_ERRORS, describe_error, error_code
from controller.aws.credential_report import Candidate, JoinedKey, KeyJoin
from controller.aws.listing import ListedUser, Source, get_user, user_tags
from controller.aws.snapshot import AccountSnapshot, read_account, read_live_keys
from controller.errors import KeyrotorError
from controller.guardrails.evaluate import exclusion
from controller.guardrails.model import Guardrails
from controller.inventory import ObservedKey, ObservedUser, PolicyObservation
from controller.policy import Policy
from controller.status import PolicyStatus, UserStatus

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
        always_list: bool = False,
    ) -> None:
        """`values`: where a target's metadata is missing or out of date, read its value (the
        apply role may; the plan role may not, and `plan` never does). `sleep` waits while IAM
        generates the credential report. A user `guardrails` exclude is given as listed (its
        path and tags) with no keys: neither its keys nor its targets are read.

        `always_list`: list every account's users with their tags, not only the accounts whose
        policies or guardrails choose users by tag (`needs_tags`); elsewhere the users come
        from the credential report alone."""
        self.guardrails = guardrails
        self.always_list = always_list
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
            if self.always_list or needs_tags(policies, self.guardrails):
                snapshot = read_account(iam, sleep=self.sleep, path_prefixes=_prefixes(policies))
            else:
                snapshot = read_account(
                    iam,
                    sleep=self.sleep,
                    path_prefixes=_prefixes(policies),
                    list_tags=False,
                    candidates_of=StatusCandidates(policies, account_id, hint),
                )
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
        tags_read = snapshot.listing.source is not Source.CREDENTIAL_REPORT
        for name in select(policy, snapshot.users):
            listed = snapshot.users.get(name)
            fetched = listed is None and not tags_read
            if fetched:
                # Named by the policy, not in the report: created since, or not there at all.
                # (Its join is then None: it is read live below, unless excluded.)
                listed = get_user(iam, name)
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
                users[name] = ObservedUser(
                    name, path=listed.path, tags=listed.tags, tags_read=tags_read
                )
                continue
            join = snapshot.joins.get(name)
            known = prior.users.get(name)
            if needs_live(policy, listed, join, known, now):
                if not tags_read and not fetched:
                    listed = replace(listed, tags=user_tags(iam, name))
                users[name] = self._live(iam, policy, listed, account_id)
            else:
                assert join is not None
                users[name] = ObservedUser(
                    name,
                    tuple(_from_report(k) for k in join.keys),
                    path=listed.path,
                    tags=listed.tags,
                    tags_read=tags_read,
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


def needs_tags(policies: Iterable[Policy], guardrails: Guardrails | None) -> bool:
    """Whether choosing the users of `policies` needs every user's tags, i.e. the listing.

    A policy's tag selector does, and so do guardrails that deny users by tag: both must be
    judged on every user. Otherwise the report names the users and their paths (in their ARNs),
    and only the users read live have their tags read (`ListUserTags`), where ownership decides.
    """
    if guardrails is not None and guardrails.users.deny_tags:
        return True
    return any(policy.users.tags for policy in policies)


class StatusCandidates:
    """The report's keys named by the key ids status last recorded, for accounts not listed.

    Only a `Current` user's one key is named (`oldKey`, `oldKeyCreated`); any other user is given
    no candidate, so its join is not certain and it is read live. Status is the branch's word,
    not AWS's: it only lets a user nothing is happening to be carried forward; whoever may have
    a step due is read live, tags included, and no step is decided on the report alone.
    Status is looked up when the join needs it, after the report has arrived.
    """

    def __init__(
        self,
        policies: Sequence[Policy],
        account_id: str,
        hint: Callable[[Policy, str], PolicyStatus],
    ) -> None:
        self._policies = policies
        self._account_id = account_id
        self._hint = hint
        self._known: dict[str, tuple[Candidate, ...]] | None = None

    def __call__(self, user: ListedUser) -> tuple[Candidate, ...]:
        if self._known is None:
            self._known = {}
            for policy in self._policies:
                for name, status in self._hint(policy, self._account_id).users.items():
                    named = set(self._known.get(name, ())) | set(_candidates(status))
                    self._known[name] = tuple(sorted(named, key=lambda c: (c.created, c.key_id)))
        return self._known.get(user.name, ())


def _candidates(status: UserStatus) -> tuple[Candidate, ...]:
    if not status.at_rest:
        return ()
    if status.old_key is None or status.old_key_created is None:
        return ()
    return (Candidate(status.old_key, status.old_key_created),)


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
    if not known.at_rest:
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
