"""The embedded IAM pages and ages its credential report as AWS does (moto alone does neither).

Pinned here through boto3, so that listing and report tests built on the sandbox cannot pass
because the sandbox answers everything in one page or always with the latest state.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from controller.sandbox import Sandbox, UserSeed

pytestmark = pytest.mark.e2e

SLACK = timedelta(minutes=1)


def _seed(aws: Sandbox, count: int, *, path: str = "/") -> list[str]:
    names = [f"user-{i:05d}" for i in range(count)]
    aws.seed_users(UserSeed(name, path=path) for name in names)
    return names


def _code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


# --- ListUsers -----------------------------------------------------------------------------------


def test_list_users_answers_100_users_a_page_by_default(aws: Sandbox) -> None:
    _seed(aws, 250)

    page = aws.client("iam").list_users()

    assert len(page["Users"]) == 100
    assert page["IsTruncated"] is True
    assert page["Marker"]


def test_list_users_pages_follow_the_marker_to_every_user_once(aws: Sandbox) -> None:
    names = _seed(aws, 250)
    iam = aws.client("iam")

    pages = list(iam.get_paginator("list_users").paginate())

    assert [len(p["Users"]) for p in pages] == [100, 100, 50]
    assert [u["UserName"] for p in pages for u in p["Users"]] == names


def test_list_users_serves_pages_of_up_to_1000(aws: Sandbox) -> None:
    _seed(aws, 1001)

    page = aws.client("iam").list_users(MaxItems=1000)

    assert len(page["Users"]) == 1000
    assert page["IsTruncated"] is True


def test_list_users_refuses_pages_larger_than_1000(aws: Sandbox) -> None:
    with pytest.raises(ClientError) as caught:
        aws.client("iam").list_users(MaxItems=1001)

    assert _code(caught) == "ValidationError"


def test_list_users_refuses_a_marker_it_did_not_issue(aws: Sandbox) -> None:
    with pytest.raises(ClientError) as caught:
        aws.client("iam").list_users(Marker="not-a-marker")

    assert _code(caught) == "ValidationError"


def test_list_users_pages_with_a_path_prefix_hold_only_that_path(aws: Sandbox) -> None:
    _seed(aws, 5)
    ci = [f"ci-{i}" for i in range(3)]
    aws.seed_users(UserSeed(name, path="/ci/") for name in ci)

    pages = list(aws.client("iam").get_paginator("list_users").paginate(PathPrefix="/ci/"))

    assert [u["UserName"] for p in pages for u in p["Users"]] == ci


def test_a_marker_still_leads_to_the_next_user_after_a_user_was_deleted(aws: Sandbox) -> None:
    names = _seed(aws, 150)
    iam = aws.client("iam")
    first = iam.list_users()

    iam.delete_user(UserName=names[10])
    rest = iam.list_users(Marker=first["Marker"])

    assert [u["UserName"] for u in rest["Users"]] == names[100:]


# --- GetAccountAuthorizationDetails --------------------------------------------------------------


def test_authorization_details_pages_users_with_their_tags(aws: Sandbox) -> None:
    aws.seed_users(UserSeed(f"bot-{i}", path="/ci/", tags={"team": "a"}) for i in range(3))

    page = aws.client("iam").get_account_authorization_details(Filter=["User"], MaxItems=2)

    assert [(u["UserName"], u["Path"], u["Tags"]) for u in page["UserDetailList"]] == [
        ("bot-0", "/ci/", [{"Key": "team", "Value": "a"}]),
        ("bot-1", "/ci/", [{"Key": "team", "Value": "a"}]),
    ]
    assert page["IsTruncated"] is True


def test_authorization_details_pages_of_1000_reach_every_user(aws: Sandbox) -> None:
    names = _seed(aws, 2001)
    iam = aws.client("iam")

    pages = list(
        iam.get_paginator("get_account_authorization_details").paginate(
            Filter=["User"], PaginationConfig={"PageSize": 1000}
        )
    )

    assert [len(p["UserDetailList"]) for p in pages] == [1000, 1000, 1]
    assert [u["UserName"] for p in pages for u in p["UserDetailList"]] == names


def test_authorization_details_default_to_pages_of_100(aws: Sandbox) -> None:
    _seed(aws, 101)

    page = aws.client("iam").get_account_authorization_details(Filter=["User"])

    assert len(page["UserDetailList"]) == 100


# --- the credential report -----------------------------------------------------------------------


def test_a_first_report_generation_starts_and_the_next_call_completes_it(aws: Sandbox) -> None:
    iam = aws.client("iam")

    states = [iam.generate_credential_report()["State"] for _ in range(2)]

    assert states == ["STARTED", "COMPLETE"]


def test_the_report_cannot_be_fetched_before_it_was_ever_generated(aws: Sandbox) -> None:
    with pytest.raises(ClientError) as caught:
        aws.client("iam").get_credential_report()

    assert _code(caught) == "ReportNotPresent"


def test_the_report_cannot_be_fetched_while_it_is_being_generated(aws: Sandbox) -> None:
    iam = aws.client("iam")
    iam.generate_credential_report()

    with pytest.raises(ClientError) as caught:
        iam.get_credential_report()

    assert _code(caught) == "ReportInProgress"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_the_report_is_dated_by_the_sandbox_clock_when_generated(aws: Sandbox) -> None:
    generated = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
    aws.set_clock(generated)
    iam = aws.client("iam")
    iam.generate_credential_report()
    iam.generate_credential_report()
    aws.advance(timedelta(hours=1))

    reply = iam.get_credential_report()

    assert generated <= reply["GeneratedTime"] < generated + SLACK


def test_a_report_younger_than_four_hours_is_served_again_without_later_keys(
    aws: Sandbox,
) -> None:
    iam = aws.client("iam")
    iam.generate_credential_report()
    aws.create_user_with_key("late")
    aws.advance(timedelta(hours=3, minutes=50))

    assert iam.generate_credential_report()["State"] == "COMPLETE"
    assert b"late" not in iam.get_credential_report()["Content"]


def test_a_report_four_hours_old_is_generated_anew(aws: Sandbox) -> None:
    iam = aws.client("iam")
    iam.generate_credential_report()
    iam.generate_credential_report()
    aws.create_user_with_key("late")
    aws.advance(timedelta(hours=4))

    states = [iam.generate_credential_report()["State"] for _ in range(2)]

    assert states == ["STARTED", "COMPLETE"]
    reply = iam.get_credential_report()
    assert b"late" in reply["Content"]
    assert reply["GeneratedTime"] >= aws.start + timedelta(hours=4)


def test_a_report_dated_after_the_clock_was_moved_back_is_generated_anew(aws: Sandbox) -> None:
    iam = aws.client("iam")
    aws.set_clock(aws.start + timedelta(days=2))
    iam.generate_credential_report()
    aws.set_clock(aws.start)

    assert iam.generate_credential_report()["State"] == "STARTED"


# --- per-key lookups -----------------------------------------------------------------------------


def test_the_last_use_of_a_key_is_found_among_many_users(aws: Sandbox) -> None:
    _seed(aws, 50)
    key = aws.create_user_with_key("alice")
    aws.client("sts", key.access_key_id, key.secret_access_key).get_caller_identity()

    reply = aws.client("iam").get_access_key_last_used(AccessKeyId=key.access_key_id)

    assert reply["UserName"] == "alice"
    assert aws.start <= reply["AccessKeyLastUsed"]["LastUsedDate"] < aws.start + SLACK


def test_a_deleted_key_has_no_last_use_to_report(aws: Sandbox) -> None:
    key = aws.create_user_with_key("alice")
    iam = aws.client("iam")
    iam.delete_access_key(UserName="alice", AccessKeyId=key.access_key_id)

    with pytest.raises(ClientError) as caught:
        iam.get_access_key_last_used(AccessKeyId=key.access_key_id)

    assert _code(caught) == "NoSuchEntity"


def test_the_key_of_a_deleted_user_has_no_last_use_to_report(aws: Sandbox) -> None:
    # moto deletes a user that still has keys (AWS refuses) and keeps the keys in its index
    key = aws.create_user_with_key("alice")
    iam = aws.client("iam")
    iam.delete_user(UserName="alice")

    with pytest.raises(ClientError) as caught:
        iam.get_access_key_last_used(AccessKeyId=key.access_key_id)

    assert _code(caught) == "NoSuchEntity"
