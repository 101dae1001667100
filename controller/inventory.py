"""What is actually there: IAM users, their access keys, and which key each target holds.

The dataclasses here are the planner's input; `AwsInventory` fills them with read-only calls.
Per-user calls are used today (ListAccessKeys, GetAccessKeyLastUsed); the interface is the
seam where the credential report will replace them for large accounts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from controller.aws import AWS_ERRORS, AwsSessions, describe_error, error_code
from controller.errors import KeyrotorError
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
    def observe(self, policy: Policy, known_users: Iterable[str]) -> PolicyObservation:
        """Observe the users `policy` selects, plus `known_users` it managed before."""
        ...


class AwsInventory:
    """Reads IAM and the targets with read-only calls only (plan must never write)."""

    def __init__(self, sessions: AwsSessions) -> None:
        self.sessions = sessions

    def observe(self, policy: Policy, known_users: Iterable[str]) -> PolicyObservation:
        try:
            iam = self.sessions.client(policy.account, "iam")
            account_id = self.sessions.account_id(policy.account)
            names = self._select(iam, policy)
            users = {name: self._user(iam, policy, name, account_id) for name in names}
        except AWS_ERRORS as exc:
            return PolicyObservation(policy.name, error=describe_error(exc))
        except KeyrotorError as exc:
            return PolicyObservation(policy.name, error=str(exc))
        return PolicyObservation(policy.name, users, account_id)

    def _select(self, iam: Any, policy: Policy) -> list[str]:
        sel = policy.users
        names = set(sel.names)
        if sel.has_selector:
            params = {"PathPrefix": sel.path_prefix} if sel.path_prefix else {}
            for page in iam.get_paginator("list_users").paginate(**params):
                for user in page["Users"]:
                    if self._tags_match(iam, user["UserName"], sel.tags):
                        names.add(user["UserName"])
        return sorted(names - set(sel.exclude))

    @staticmethod
    def _tags_match(iam: Any, name: str, wanted: Mapping[str, str]) -> bool:
        if not wanted:
            return True
        tags: dict[str, str] = {}
        for page in iam.get_paginator("list_user_tags").paginate(UserName=name):
            tags.update({t["Key"]: t["Value"] for t in page["Tags"]})
        return all(tags.get(k) == v for k, v in wanted.items())

    def _user(self, iam: Any, policy: Policy, name: str, account_id: str) -> ObservedUser | None:
        try:
            user = iam.get_user(UserName=name)["User"]
        except AWS_ERRORS as exc:
            if error_code(exc) == "NoSuchEntity":
                return None
            raise
        keys = []
        for meta in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
            last = iam.get_access_key_last_used(AccessKeyId=meta["AccessKeyId"])
            keys.append(
                ObservedKey(
                    id=meta["AccessKeyId"],
                    status=meta["Status"],
                    created=meta["CreateDate"],
                    last_used=last.get("AccessKeyLastUsed", {}).get("LastUsedDate"),
                )
            )
        from controller import targets

        readings = tuple(
            targets.reading(t) for t in targets.bind_all(policy, name, account_id, self.sessions)
        )
        return ObservedUser(
            name,
            tuple(sorted(keys, key=lambda k: (k.created, k.id))),
            readings,
            path=user.get("Path", "/"),
        )
