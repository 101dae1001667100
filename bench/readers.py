"""The two readers measured beside keyrotor's entry points.

- `baseline_scan`: what AWS's own sample for finding old access keys does, per account:
  ListUsers pages, then ListAccessKeys and GetAccessKeyLastUsed for every user and key.
- `new_inventory`: keyrotor's bulk reader (controller.aws.snapshot) with the live reads a planner
  would add on top of it: users the report cannot name keys for, and users whose joined key is
  due (by the bench policy's 76 days) get ListAccessKeys + GetAccessKeyLastUsed. Which users need
  live reads is the planner's call once the lead wires the reader in; this triage only stands in
  for it so the figures include that cost. With `list_tags=False` it skips the listing: users and
  paths from the report's rows, key ids from keyrotor's status (which the bench knows), i.e. what
  a no-op plan could cost for policies without tag selectors.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bench.world import PATH, ROTATE_AT_AGE, Account, clients
from controller.aws.credential_report import Candidate
from controller.aws.listing import ListedUser
from controller.aws.snapshot import read_account, read_live_keys


@dataclass(frozen=True)
class ReaderResult:
    users: int
    keys: int
    live_users: int = 0


def baseline_scan(accounts: Sequence[Account]) -> ReaderResult:
    users = keys = 0
    for account in accounts:
        _, iam = clients(account)
        for page in iam.get_paginator("list_users").paginate(PathPrefix=PATH):
            for user in page["Users"]:
                users += 1
                listed = iam.list_access_keys(UserName=user["UserName"])["AccessKeyMetadata"]
                for meta in listed:
                    iam.get_access_key_last_used(AccessKeyId=meta["AccessKeyId"])
                    keys += 1
    return ReaderResult(users, keys)


def new_inventory(
    accounts: Sequence[Account], now: datetime, list_tags: bool = True
) -> ReaderResult:
    """With `list_tags=False`, no listing: users from the report, key ids from the status."""
    users = keys = live = 0
    for account in accounts:
        sts, iam = clients(account)
        sts.get_caller_identity()  # the account id, for target names
        if list_tags:
            snapshot = read_account(iam, sleep=time.sleep, path_prefixes=[PATH])
        else:
            status = _status_candidates(account)
            snapshot = read_account(
                iam,
                sleep=time.sleep,
                path_prefixes=[PATH],
                list_tags=False,
                candidates_of=functools.partial(_recorded, status),
            )
        due = {
            name
            for name, join in snapshot.joins.items()
            if join.joined and any(now - k.created >= ROTATE_AT_AGE for k in join.keys)
        }
        for name in sorted(set(snapshot.unresolved) | due):
            keys += len(read_live_keys(iam, name))
            live += 1
        users += len(snapshot.users)
        keys += sum(len(j.keys) for n, j in snapshot.joins.items() if j.joined and n not in due)
    return ReaderResult(users, keys, live)


def _recorded(status: dict[str, tuple[Candidate, ...]], user: ListedUser) -> tuple[Candidate, ...]:
    return status.get(user.name, ())


def _status_candidates(account: Account) -> dict[str, tuple[Candidate, ...]]:
    """The key each user's status records as adopted (`oldKey`, `oldKeyCreated`)."""
    return {
        u.name: (Candidate(u.access_key_id, u.created),)
        for u in account.users
        if u.access_key_id and u.created
    }
