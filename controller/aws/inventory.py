"""The AWS reader behind `controller.inventory`: IAM users, their keys, and their targets.

Read-only calls only (plan must never write).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller import targets
from controller.aws import AWS_ERRORS, describe_error, error_code
from controller.errors import KeyrotorError
from controller.inventory import ObservedKey, ObservedUser, PolicyObservation
from controller.policy import Policy


class AwsInventory:
    """Reads IAM and the targets with read-only calls only (plan must never write)."""

    def __init__(self, services: targets.TargetServices, *, values: bool = False) -> None:
        """`values`: where a target's metadata is missing or out of date, read its value (the
        apply role may; the plan role may not, and `plan` never does)."""
        self.services = services
        self.sessions = services.sessions
        self.values = values

    def observe(self, policy: Policy) -> PolicyObservation:
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
    def _tags(iam: Any, name: str) -> dict[str, str]:
        tags: dict[str, str] = {}
        for page in iam.get_paginator("list_user_tags").paginate(UserName=name):
            tags.update({t["Key"]: t["Value"] for t in page["Tags"]})
        return tags

    @classmethod
    def _tags_match(cls, iam: Any, name: str, wanted: Mapping[str, str]) -> bool:
        if not wanted:
            return True
        tags = cls._tags(iam, name)
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
        ids = {k.id for k in keys}
        readings = tuple(
            targets.reading(t, user_keys=ids, values=self.values)
            for t in targets.bind_all(policy, name, account_id, self.services)
        )
        return ObservedUser(
            name,
            tuple(sorted(keys, key=lambda k: (k.created, k.id))),
            readings,
            path=user.get("Path", "/"),
            tags=self._tags(iam, name),
        )
