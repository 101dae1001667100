"""Every IAM user of an account with its path and tags, in pages rather than a call per user.

`GetAccountAuthorizationDetails(Filter=["User"])` returns up to 1000 users a page with their
Path, Arn, CreateDate and Tags, so listing N users costs ceil(N/1000) calls. `ListUsers` pages at
most 1000 too but carries no tags, which then cost one `ListUserTags` per user: it is used only
when the caller asks for it (`fallback=Fallback.LIST_USERS`), typically because the role lacks
`iam:GetAccountAuthorizationDetails`. The default is to let AccessDenied propagate: a plan role
missing that permission is a set-up error that `keyrotor`'s IAM policy generator prevents, and
silently degrading to N extra calls would hide it until an account grew large.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from controller.aws import AWS_ERRORS, error_code
from controller.errors import AwsError

#: The largest page IAM serves for both listing calls (`MaxItems` is 1..1000).
MAX_PAGE: Final = 1000

_DENIED: Final = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})


class Fallback(enum.Enum):
    NONE = "none"  # AccessDenied on GetAccountAuthorizationDetails propagates
    LIST_USERS = "list-users"  # then ListUsers pages + ListUserTags per user


class Source(enum.Enum):
    AUTHORIZATION_DETAILS = "GetAccountAuthorizationDetails"
    LIST_USERS = "ListUsers"
    CREDENTIAL_REPORT = "GetCredentialReport"  # names and paths only: no tags


@dataclass(frozen=True, slots=True)
class ListedUser:
    name: str
    path: str
    arn: str
    created: datetime
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Listing:
    """The users under the requested paths, by name, and which call listed them."""

    users: Mapping[str, ListedUser]
    source: Source


class ListingError(AwsError):
    """IAM's paging misbehaved (a marker repeated): the listing would never end."""


def list_users(
    iam: Any,
    *,
    path_prefixes: Iterable[str] | None = None,
    fallback: Fallback = Fallback.NONE,
    page_size: int = MAX_PAGE,
) -> Listing:
    """List the users whose path starts with one of `path_prefixes` (None: every user).

    IAM path prefixes are plain string prefixes (`/ci/` also matches `/ci/eu/`). Pages are
    followed by `Marker` while `IsTruncated`; AWS errors other than the AccessDenied a
    `fallback` covers propagate unchanged.
    """
    if not 1 <= page_size <= MAX_PAGE:
        raise ValueError(f"page_size must be 1..{MAX_PAGE}, not {page_size}")
    prefixes = _minimal_prefixes(path_prefixes)
    try:
        users = {
            u.name: u
            for u in _from_authorization_details(iam, page_size)
            if _under(u.path, prefixes)
        }
        return Listing(users, Source.AUTHORIZATION_DETAILS)
    except AWS_ERRORS as exc:
        if fallback is Fallback.NONE or error_code(exc) not in _DENIED:
            raise
    users = {u.name: u for u in _from_list_users(iam, prefixes, page_size)}
    return Listing(users, Source.LIST_USERS)


def _from_authorization_details(iam: Any, page_size: int) -> Iterator[ListedUser]:
    for page in _pages(iam.get_account_authorization_details, Filter=["User"], MaxItems=page_size):
        for user in page.get("UserDetailList", ()):
            yield _listed(user, _tags(user.get("Tags", ())))


def _from_list_users(iam: Any, prefixes: tuple[str, ...], page_size: int) -> Iterator[ListedUser]:
    for prefix in prefixes:
        for page in _pages(iam.list_users, PathPrefix=prefix, MaxItems=page_size):
            for user in page.get("Users", ()):
                yield _listed(user, user_tags(iam, user["UserName"], page_size))


def get_user(iam: Any, name: str) -> ListedUser | None:
    """One user by name (`GetUser`) with its tags (`ListUserTags`), or None if IAM has none."""
    try:
        user = iam.get_user(UserName=name)["User"]
    except AWS_ERRORS as exc:
        if error_code(exc) == "NoSuchEntity":
            return None
        raise
    return _listed(user, user_tags(iam, name))


def user_tags(iam: Any, name: str, page_size: int = MAX_PAGE) -> dict[str, str]:
    """One user's tags (`ListUserTags` pages). Raises botocore's ClientError for the caller."""
    tags: dict[str, str] = {}
    for page in _pages(iam.list_user_tags, UserName=name, MaxItems=page_size):
        tags.update(_tags(page.get("Tags", ())))
    return tags


def _pages(call: Any, **params: Any) -> Iterator[dict[str, Any]]:
    """Follow `Marker` by hand, so the page size is ours and a looping marker is caught."""
    seen: set[str] = set()
    while True:
        page: dict[str, Any] = call(**params)
        yield page
        if not page.get("IsTruncated"):
            return
        marker = str(page.get("Marker") or "")
        if not marker or marker in seen:
            raise ListingError(
                f"IAM answered a truncated page without a new Marker ({call.__name__}); "
                "the listing cannot continue"
            )
        seen.add(marker)
        params["Marker"] = marker


def _listed(user: Mapping[str, Any], tags: Mapping[str, str]) -> ListedUser:
    created: datetime = user["CreateDate"]
    return ListedUser(
        name=str(user["UserName"]),
        path=str(user.get("Path", "/")),
        arn=str(user["Arn"]),
        created=created.astimezone(UTC) if created.tzinfo else created.replace(tzinfo=UTC),
        tags=tags,
    )


def _tags(tags: Iterable[Mapping[str, str]]) -> dict[str, str]:
    return {str(t["Key"]): str(t["Value"]) for t in tags}


def path_of_arn(arn: str, name: str) -> str | None:
    """`/ci/eu/` from `arn:aws:iam::111122223333:user/ci/eu/bot` and `bot`; None if it is not."""
    resource = arn.split(":", 5)[-1]
    if not resource.startswith("user/") or not resource.endswith("/" + name):
        return None
    return resource[len("user") : len(resource) - len(name)]


def _minimal_prefixes(prefixes: Iterable[str] | None) -> tuple[str, ...]:
    """Drop prefixes another one covers, so ListUsers never lists a user twice."""
    if prefixes is None:
        return ("/",)
    kept: list[str] = []
    for prefix in sorted(set(prefixes), key=len):
        if not any(prefix.startswith(k) for k in kept):
            kept.append(prefix)
    return tuple(sorted(kept))


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path.startswith(prefix) for prefix in prefixes)
