"""Listing an account's users with paths and tags costs a call per page, not a call per user."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from controller.aws.listing import Fallback, ListingError, Source, list_users
from controller.sandbox import Sandbox, UserSeed


def _seed(aws: Sandbox, count: int, *, path: str = "/", prefix: str = "user") -> list[str]:
    names = [f"{prefix}-{i:05d}" for i in range(count)]
    aws.seed_users(UserSeed(name, path=path, tags={"team": prefix}) for name in names)
    return names


def _actions(aws: Sandbox) -> list[str]:
    return [call.action for call in aws.requests()]


class _Denied:
    """Answers one operation of a real client with AccessDenied, as a role without it would."""

    status_code = 403

    def __init__(self, client: Any, operation: str) -> None:
        client.meta.events.register(f"before-call.iam.{operation}", self)

    def __call__(self, **_: Any) -> tuple[Any, dict[str, Any]]:
        error = {"Code": "AccessDenied", "Message": "not authorized"}
        return self, {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 403}}


def test_2001_users_are_listed_in_three_pages_of_up_to_1000(aws: Sandbox) -> None:
    names = _seed(aws, 2001)
    aws.clear_requests()

    listing = list_users(aws.client("iam"))

    assert sorted(listing.users) == names
    assert _actions(aws) == ["GetAccountAuthorizationDetails"] * 3
    assert listing.source is Source.AUTHORIZATION_DETAILS


def test_pages_of_100_reach_every_user(aws: Sandbox) -> None:
    names = _seed(aws, 250)
    aws.clear_requests()

    listing = list_users(aws.client("iam"), page_size=100)

    assert sorted(listing.users) == names
    assert len(aws.requests()) == 3


def test_a_listed_user_carries_its_path_arn_tags_and_creation(aws: Sandbox) -> None:
    aws.set_clock(datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC))
    aws.seed_users([UserSeed("bot", path="/ci/eu/", tags={"team": "a", "tier": "1"})])

    user = list_users(aws.client("iam")).users["bot"]

    assert (user.path, user.arn, dict(user.tags)) == (
        "/ci/eu/",
        "arn:aws:iam::123456789012:user/ci/eu/bot",
        {"team": "a", "tier": "1"},
    )
    assert user.created.tzinfo is UTC
    assert user.created.date() == datetime(2026, 2, 3).date()


def test_only_users_under_the_given_path_prefixes_are_listed(aws: Sandbox) -> None:
    _seed(aws, 2, path="/ci/", prefix="ci")
    _seed(aws, 2, path="/ci/eu/", prefix="eu")
    _seed(aws, 2, path="/ops/", prefix="ops")

    listing = list_users(aws.client("iam"), path_prefixes=["/ci/"])

    assert sorted(listing.users) == ["ci-00000", "ci-00001", "eu-00000", "eu-00001"]


def test_access_denied_on_authorization_details_propagates_by_default(aws: Sandbox) -> None:
    iam = aws.client("iam")
    _Denied(iam, "GetAccountAuthorizationDetails")

    with pytest.raises(ClientError, match="AccessDenied"):
        list_users(iam)


def test_the_list_users_fallback_pages_and_reads_tags_per_user(aws: Sandbox) -> None:
    names = _seed(aws, 150, path="/ci/")
    iam = aws.client("iam")
    _Denied(iam, "GetAccountAuthorizationDetails")
    aws.clear_requests()

    listing = list_users(iam, path_prefixes=["/ci/"], fallback=Fallback.LIST_USERS, page_size=100)

    assert sorted(listing.users) == names
    assert listing.users[names[0]].tags == {"team": "user"}
    assert listing.source is Source.LIST_USERS
    assert _actions(aws).count("ListUsers") == 2
    assert _actions(aws).count("ListUserTags") == 150


def test_overlapping_path_prefixes_list_a_user_once_in_the_fallback(aws: Sandbox) -> None:
    _seed(aws, 1, path="/ci/eu/", prefix="eu")
    iam = aws.client("iam")
    _Denied(iam, "GetAccountAuthorizationDetails")
    aws.clear_requests()

    list_users(iam, path_prefixes=["/ci/", "/ci/eu/"], fallback=Fallback.LIST_USERS)

    assert _actions(aws).count("ListUsers") == 1


def test_a_page_size_iam_would_refuse_is_refused_before_any_call() -> None:
    with pytest.raises(ValueError, match=r"1\.\.1000"):
        list_users(object(), page_size=1001)


def test_a_truncated_page_that_repeats_its_marker_stops_the_listing() -> None:
    class LoopingIam:
        def get_account_authorization_details(self, **_: Any) -> dict[str, Any]:
            return {"UserDetailList": [], "IsTruncated": True, "Marker": "same"}

    with pytest.raises(ListingError, match="Marker"):
        list_users(LoopingIam())
