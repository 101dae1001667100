"""Which accounts a run acts in: policies grouped by account, organizational units expanded,
and a stable split of the accounts into the shards of a GitHub Actions matrix.

A policy with `spec.account.organizationalUnit` becomes one policy per member account (the same
name, a concrete `Account`); status is kept per policy and account
(`status/<policy>/<account>/`), so shards, which own disjoint accounts, never write one file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from typing import Any

from controller.aws import AWS_ERRORS, AwsSessions, describe_error
from controller.aws.organizations import member_accounts
from controller.errors import KeyrotorError
from controller.policy import Account, Policy

_SHARD = re.compile(r"^([1-9][0-9]*)/([1-9][0-9]*)$")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based), as `--shard 2/4` says."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = _SHARD.match(text)
        if not match or int(match.group(1)) > int(match.group(2)):
            raise KeyrotorError(f"--shard {text!r}: write I/N with 1 <= I <= N, e.g. 2/4")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, account_id: str) -> bool:
        return shard_of(account_id, self.count) == self.index


def shard_of(account_id: str, count: int) -> int:
    """The shard (1..count) an account belongs to: stable across runs, machines and Pythons."""
    digest = hashlib.sha256(account_id.encode()).digest()
    return 1 + int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class AccountGroup:
    """The policies acting in one account; `error` when the account cannot be resolved."""

    account: Account
    account_id: str
    policies: tuple[Policy, ...]
    error: str | None = None


def resolve(
    sessions: AwsSessions, policies: tuple[Policy, ...] | list[Policy], shard: Shard | None = None
) -> list[AccountGroup]:
    """Group `policies` by account, expanding organizational units, sorted by account id.

    A unit that cannot be listed or an account whose id cannot be learnt becomes a group with
    an error: its policies are reported, and the other accounts still run.
    """
    groups: dict[Account, list[Policy]] = {}
    failed: list[AccountGroup] = []
    for policy in policies:
        unit = policy.account.organizational_unit
        if unit is None:
            groups.setdefault(policy.account, []).append(policy)
            continue
        try:
            ids = member_accounts(_organizations(sessions), unit)
        except AWS_ERRORS as exc:
            error = f"cannot list the accounts of {unit}: {describe_error(exc)}"
            failed.append(AccountGroup(policy.account, "", (policy,), error))
            continue
        for member in ids:
            account = _member(policy.account, member, sessions)
            groups.setdefault(account, []).append(replace(policy, account=account))
    resolved: list[AccountGroup] = []
    for account, members in groups.items():
        try:
            account_id = account.known_id or sessions.account_id(account)
        except (KeyrotorError, *AWS_ERRORS) as exc:
            error = str(exc) if isinstance(exc, KeyrotorError) else describe_error(exc)
            failed.append(AccountGroup(account, "", tuple(members), error))
            continue
        if shard is None or shard.owns(account_id):
            resolved.append(AccountGroup(account, account_id, tuple(members)))
    ordered = sorted(resolved, key=lambda g: (g.account_id, g.account.role_arn or ""))
    # An account no shard can name (its id unknown) is reported once, by the first shard.
    return ordered + failed if shard is None or shard.index == 1 else ordered


def _member(template: Account, account_id: str, sessions: AwsSessions) -> Account:
    partition = "aws"
    role = template.role_name or "keyrotor"
    return Account(
        role_arn=f"arn:{partition}:iam::{account_id}:role/{role.strip('/')}",
        external_id=template.external_id,
        region=template.region,
        account_id=account_id,
    )


def _organizations(sessions: AwsSessions) -> Any:
    return sessions.client(Account(), "organizations")
