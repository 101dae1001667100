"""One account's users and keys from a credential report and a paged listing: O(N/1000) calls.

`read_account` is the bulk half of the inventory: it lists users (paths, tags) and fetches the
credential report, then joins each listed user's report row to the key ids keyrotor knows. The
users whose join is not certain are in `AccountSnapshot.unresolved`; `read_live_keys` reads one
user's keys the per-user way (ListAccessKeys + GetAccessKeyLastUsed) for those, and for every
user a decision needs fresh data for. Which users those are is policy, decided by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from controller.aws.credential_report import (
    Candidate,
    CredentialReport,
    JoinedKey,
    KeyJoin,
    fetch_report,
    join_keys,
)
from controller.aws.listing import (
    Fallback,
    ListedUser,
    Listing,
    Source,
    list_users,
    path_of_arn,
)
from controller.timefmt import from_iso

#: The user tag in which keyrotor records the keys it created or adopted (design: trust model).
OWNED_KEYS_TAG: Final = "keyrotor.dev/keys"

CandidatesOf = Callable[[ListedUser], Iterable[Candidate]]


def owned_key_candidates(user: ListedUser) -> tuple[Candidate, ...]:
    """The keys a user's `keyrotor.dev/keys` tag names: `<AccessKeyId>@<CreateDate ISO Z>`, ...

    A malformed tag yields no candidates, which makes the user's join UNKNOWN (read live) rather
    than trusting part of it. The tag's own codec belongs to the ownership module; this decoder
    is what the reader needs until that lands, and `read_account` takes any other.
    """
    value = user.tags.get(OWNED_KEYS_TAG, "")
    candidates = []
    for item in value.split():
        key_id, at, created = item.partition("@")
        if not key_id or not at:
            return ()
        try:
            candidates.append(Candidate(key_id, from_iso(created)))
        except ValueError:
            return ()
    return tuple(candidates)


@dataclass(frozen=True)
class AccountSnapshot:
    """What the bulk reads said about one account."""

    report: CredentialReport
    listing: Listing
    joins: Mapping[str, KeyJoin]

    @property
    def users(self) -> Mapping[str, ListedUser]:
        return self.listing.users

    @property
    def unresolved(self) -> tuple[str, ...]:
        """Listed users whose keys the report could not name with certainty, sorted."""
        return tuple(sorted(name for name, join in self.joins.items() if not join.joined))

    def keys(self, user: str) -> tuple[JoinedKey, ...] | None:
        """The user's keys as of the report, or None when the join was not certain."""
        join = self.joins.get(user)
        return join.keys if join is not None and join.joined else None


def read_account(
    iam: Any,
    *,
    sleep: Callable[[float], None],
    path_prefixes: Iterable[str] | None = None,
    candidates_of: CandidatesOf = owned_key_candidates,
    fallback: Fallback = Fallback.NONE,
    list_tags: bool = True,
) -> AccountSnapshot:
    """List the users under `path_prefixes`, fetch the report, and join every listed user.

    Costs ceil(users/1000) GetAccountAuthorizationDetails pages plus two or three report calls
    (see `fetch_report`). The report is fetched on a second thread while the pages are read
    (boto3 clients are thread-safe), so IAM's generation time and the listing overlap; `sleep`
    is only used while IAM generates the report. Errors of either half propagate.

    With `list_tags=False` there is no listing at all: users, ARNs and paths come from the
    report's rows (tags empty, `Source.CREDENTIAL_REPORT`), so `candidates_of` must name keys
    from elsewhere (keyrotor's status) and no tag selector can be evaluated. Users created after
    the report are then not seen until the next report.
    """
    if not list_tags:
        report = fetch_report(iam, sleep=sleep)
        listing = users_from_report(report, path_prefixes)
    else:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="credential-report") as pool:
            report_future = pool.submit(fetch_report, iam, sleep=sleep)
            try:
                listing = list_users(iam, path_prefixes=path_prefixes, fallback=fallback)
            except BaseException:
                report_future.cancel()
                raise
            report = report_future.result()
    joins = {
        name: join_keys(report.row(name), candidates_of(user))
        for name, user in listing.users.items()
    }
    return AccountSnapshot(report, listing, joins)


def users_from_report(report: CredentialReport, path_prefixes: Iterable[str] | None) -> Listing:
    """The report's users under `path_prefixes`, with the path their ARN carries and no tags."""
    prefixes = ("/",) if path_prefixes is None else tuple(path_prefixes)
    users = {}
    for row in report.rows.values():
        path = path_of_arn(row.arn, row.user)
        if path is None or not path.startswith(prefixes):
            continue
        created = row.user_creation_time or report.generated_at
        users[row.user] = ListedUser(row.user, path, row.arn, created)
    return Listing(users, Source.CREDENTIAL_REPORT)


def read_live_keys(iam: Any, user: str) -> tuple[JoinedKey, ...]:
    """One user's keys read live: ListAccessKeys, then GetAccessKeyLastUsed per key.

    Raises botocore's ClientError (e.g. NoSuchEntity) for the caller to map.
    """
    keys = []
    for page in iam.get_paginator("list_access_keys").paginate(UserName=user):
        for meta in page["AccessKeyMetadata"]:
            last = iam.get_access_key_last_used(AccessKeyId=meta["AccessKeyId"])
            last_used: datetime | None = last.get("AccessKeyLastUsed", {}).get("LastUsedDate")
            keys.append(
                JoinedKey(
                    id=meta["AccessKeyId"],
                    active=meta["Status"] == "Active",
                    created=meta["CreateDate"].astimezone(UTC),
                    last_used=last_used.astimezone(UTC) if last_used else None,
                )
            )
    return tuple(sorted(keys, key=lambda k: (k.created, k.id)))
