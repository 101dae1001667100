"""The credential report: its CSV read as AWS writes it, joined to key ids only when certain,
and fetched with patience for a report IAM is still generating."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import boto3
import pytest
from botocore.stub import Stubber

from controller.aws.credential_report import (
    Candidate,
    CredentialReportError,
    JoinedKey,
    JoinOutcome,
    JoinProblem,
    KeySlot,
    ReportNotReady,
    ReportRow,
    fetch_report,
    join_keys,
    parse,
)
from controller.sandbox import Sandbox

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GENERATED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

HEADER = (
    "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,"
    "password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,"
    "access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,"
    "access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,"
    "access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,"
    "cert_1_last_rotated,cert_2_active,cert_2_last_rotated"
)

# The shape of a report from AWS, as the IAM User Guide describes it: the root row first, then
# users with no key, one used key, a never-used key, and two keys (one inactive).
AWS_REPORT = "\n".join(
    [
        HEADER,
        "<root_account>,arn:aws:iam::111122223333:root,2025-01-10T20:33:05+00:00,not_supported,"
        "2026-02-18T19:40:55+00:00,not_supported,not_supported,true,false,N/A,N/A,N/A,N/A,"
        "false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
        "console-only,arn:aws:iam::111122223333:user/console-only,2025-02-01T09:00:00+00:00,"
        "true,2026-02-27T08:00:00+00:00,2025-02-01T09:05:00+00:00,N/A,true,false,N/A,N/A,N/A,"
        "N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
        "deploy-bot,arn:aws:iam::111122223333:user/ci/deploy-bot,2025-03-01T10:00:00+00:00,"
        "false,N/A,N/A,N/A,false,true,2026-01-05T10:00:07+00:00,2026-02-28T23:15:00+00:00,"
        "eu-west-1,s3,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
        "idle-bot,arn:aws:iam::111122223333:user/idle-bot,2025-03-02T10:00:00+00:00,false,N/A,"
        "N/A,N/A,false,true,2026-01-06T00:00:00+00:00,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,"
        "false,N/A,false,N/A",
        "two-keys,arn:aws:iam::111122223333:user/two-keys,2025-03-03T10:00:00+00:00,false,N/A,"
        "N/A,N/A,false,false,2025-11-01T00:00:00+00:00,2025-12-01T00:00:00+00:00,us-east-1,"
        "sts,true,2026-02-01T00:00:00+00:00,no_information,N/A,N/A,false,N/A,false,N/A",
    ]
).encode()


def _row(user: str, *slots: KeySlot) -> ReportRow:
    padded = (*slots, KeySlot(), KeySlot())[:2]
    return ReportRow(user, f"arn:aws:iam::111122223333:user/{user}", T0, *padded)


def _key(created: datetime, *, active: bool = True, used: datetime | None = None) -> KeySlot:
    return KeySlot(active, created, used)


# --- parsing -----------------------------------------------------------------------------------


def test_the_root_row_is_not_an_iam_user() -> None:
    report = parse(AWS_REPORT, generated_at=GENERATED)

    assert "<root_account>" not in report.rows
    assert sorted(report.rows) == ["console-only", "deploy-bot", "idle-bot", "two-keys"]


def test_a_used_key_is_read_with_its_creation_and_last_use_to_the_second_in_utc() -> None:
    row = parse(AWS_REPORT, generated_at=GENERATED).rows["deploy-bot"]

    assert row.keys == (
        KeySlot(
            active=True,
            last_rotated=datetime(2026, 1, 5, 10, 0, 7, tzinfo=UTC),
            last_used=datetime(2026, 2, 28, 23, 15, tzinfo=UTC),
        ),
    )
    assert row.arn == "arn:aws:iam::111122223333:user/ci/deploy-bot"
    assert row.user_creation_time == datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


def test_a_user_without_access_keys_has_no_key_slots() -> None:
    row = parse(AWS_REPORT, generated_at=GENERATED).rows["console-only"]

    assert row.keys == ()


@pytest.mark.parametrize(("user", "slot"), [("idle-bot", 0), ("two-keys", 1)])
def test_n_a_and_no_information_last_used_dates_read_as_never_used(user: str, slot: int) -> None:
    row = parse(AWS_REPORT, generated_at=GENERATED).rows[user]

    assert row.keys[slot].last_used is None


def test_an_inactive_key_is_read_as_present_but_not_active() -> None:
    row = parse(AWS_REPORT, generated_at=GENERATED).rows["two-keys"]

    assert [(k.active, k.last_rotated) for k in row.keys] == [
        (False, datetime(2025, 11, 1, tzinfo=UTC)),
        (True, datetime(2026, 2, 1, tzinfo=UTC)),
    ]


def test_the_report_carries_its_generation_time_in_utc_without_fractions() -> None:
    stamp = datetime(2026, 3, 1, 13, 0, 0, 250000, tzinfo=UTC)

    report = parse(AWS_REPORT, generated_at=stamp)

    assert report.generated_at == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    assert report.age(datetime(2026, 3, 1, 15, 0, tzinfo=UTC)) == timedelta(hours=2)


def test_user_names_outside_ascii_are_read_from_utf8() -> None:
    content = "\n".join(
        [
            HEADER,
            "jörg+ci@déploi,arn:aws:iam::111122223333:user/jörg+ci@déploi,"
            "2025-03-01T10:00:00+00:00,false,N/A,N/A,N/A,false,true,2026-01-05T10:00:00+00:00,"
            "N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
        ]
    ).encode("utf-8")

    report = parse(content, generated_at=GENERATED)

    assert list(report.rows) == ["jörg+ci@déploi"]


def test_a_report_without_a_key_column_is_refused_naming_the_column() -> None:
    content = HEADER.replace(",access_key_2_last_rotated", "").encode()

    with pytest.raises(CredentialReportError, match="access_key_2_last_rotated"):
        parse(content, generated_at=GENERATED)


def test_a_value_that_is_not_a_date_is_refused_naming_its_line_and_column() -> None:
    content = AWS_REPORT.replace(b"2026-01-06T00:00:00+00:00", b"yesterday")

    with pytest.raises(CredentialReportError, match=r"line 5: access_key_1_last_rotated"):
        parse(content, generated_at=GENERATED)


def test_a_short_row_is_refused_rather_than_read_as_no_keys() -> None:
    content = HEADER.encode() + b"\nbot,arn:aws:iam::111122223333:user/bot,N/A\n"

    with pytest.raises(CredentialReportError, match="line 2"):
        parse(content, generated_at=GENERATED)


def test_the_report_moto_generates_is_read(aws: Sandbox) -> None:
    key = aws.create_user_with_key("alice")
    iam = aws.client("iam")

    report = fetch_report(iam, sleep=lambda _: None)

    (listed,) = iam.list_access_keys(UserName="alice")["AccessKeyMetadata"]
    (slot,) = report.rows["alice"].keys
    assert slot == KeySlot(True, listed["CreateDate"].replace(microsecond=0), None)
    join = join_keys(report.row("alice"), [Candidate(key.access_key_id, listed["CreateDate"])])
    assert join.joined


# --- joining -----------------------------------------------------------------------------------

K1, K2, K3 = "AKIAKEY1000000000001", "AKIAKEY2000000000002", "AKIAKEY3000000000003"
DAY = timedelta(days=1)


def test_a_key_is_joined_to_the_candidate_created_in_the_same_second() -> None:
    row = _row("bot", _key(T0, used=T0 + DAY))

    join = join_keys(row, [Candidate(K1, T0.replace(microsecond=400000))])

    assert join.outcome is JoinOutcome.JOINED
    assert join.keys == (JoinedKey(K1, True, T0, T0 + DAY),)


def test_two_keys_are_joined_each_to_its_own_candidate() -> None:
    row = _row("bot", _key(T0, active=False), _key(T0 + DAY))

    join = join_keys(row, [Candidate(K2, T0 + DAY), Candidate(K1, T0)])

    assert [(k.id, k.status) for k in join.keys] == [(K1, "Inactive"), (K2, "Active")]


def test_a_user_without_keys_or_candidates_is_joined_with_no_keys() -> None:
    assert join_keys(_row("bot"), []).outcome is JoinOutcome.JOINED


def test_two_keys_created_in_the_same_second_are_ambiguous() -> None:
    row = _row("bot", _key(T0, active=False), _key(T0))

    join = join_keys(row, [Candidate(K1, T0), Candidate(K2, T0)])

    assert (join.outcome, join.problem) == (JoinOutcome.AMBIGUOUS, JoinProblem.KEYS_SAME_SECOND)
    assert join.keys == ()


def test_two_candidates_created_in_the_key_s_second_are_ambiguous() -> None:
    join = join_keys(_row("bot", _key(T0)), [Candidate(K1, T0), Candidate(K2, T0)])

    assert (join.outcome, join.problem) == (
        JoinOutcome.AMBIGUOUS,
        JoinProblem.CANDIDATES_SAME_SECOND,
    )


def test_one_candidate_id_with_two_creation_times_is_ambiguous() -> None:
    row = _row("bot", _key(T0), _key(T0 + DAY))

    join = join_keys(row, [Candidate(K1, T0), Candidate(K1, T0 + DAY)])

    assert join.problem is JoinProblem.CANDIDATE_TWO_DATES


def test_a_key_whose_date_matches_no_candidate_is_unknown() -> None:
    # e.g. someone created a second key by hand, or keyrotor's record is older than the key
    row = _row("bot", _key(T0), _key(T0 + DAY))

    join = join_keys(row, [Candidate(K1, T0)])

    assert (join.outcome, join.problem) == (JoinOutcome.UNKNOWN, JoinProblem.UNMATCHED_KEY)


def test_a_key_one_second_off_its_candidate_is_not_joined() -> None:
    join = join_keys(_row("bot", _key(T0)), [Candidate(K1, T0 + timedelta(seconds=1))])

    assert join.problem is JoinProblem.UNMATCHED_KEY


def test_a_candidate_the_report_does_not_show_is_unknown() -> None:
    # a key created after the report was generated, or deleted before it
    join = join_keys(_row("bot", _key(T0)), [Candidate(K1, T0), Candidate(K3, T0 + DAY)])

    assert (join.outcome, join.problem) == (JoinOutcome.UNKNOWN, JoinProblem.UNMATCHED_CANDIDATE)


def test_a_user_missing_from_the_report_is_unknown() -> None:
    join = join_keys(None, [Candidate(K1, T0)])

    assert (join.outcome, join.problem) == (JoinOutcome.UNKNOWN, JoinProblem.NOT_IN_REPORT)


def test_candidate_times_in_other_zones_are_compared_in_utc() -> None:
    candidate = Candidate(K1, T0.astimezone(timezone(timedelta(hours=2))))

    assert join_keys(_row("bot", _key(T0)), [candidate]).joined


# --- fetching ----------------------------------------------------------------------------------

CSV = (HEADER + "\n").encode()


@pytest.fixture
def stubbed() -> Iterator[tuple[object, Stubber]]:
    iam = boto3.client(
        "iam", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    with Stubber(iam) as stub:
        yield iam, stub
        stub.assert_no_pending_responses()


def _complete(stub: Stubber) -> None:
    stub.add_response("generate_credential_report", {"State": "COMPLETE"})
    stub.add_response(
        "get_credential_report",
        {"Content": CSV, "ReportFormat": "text/csv", "GeneratedTime": GENERATED},
    )


def test_generation_in_progress_is_polled_with_doubling_waits(
    stubbed: tuple[object, Stubber],
) -> None:
    iam, stub = stubbed
    stub.add_response("generate_credential_report", {"State": "STARTED"})
    stub.add_response("generate_credential_report", {"State": "INPROGRESS"})
    stub.add_response("generate_credential_report", {"State": "INPROGRESS"})
    _complete(stub)
    waits: list[float] = []

    report = fetch_report(iam, sleep=waits.append, first_delay=1.0)

    assert waits == [1.0, 2.0, 4.0]
    assert report.generated_at == GENERATED


@pytest.mark.parametrize("code", ["Throttling", "ReportInProgress", "ServiceFailure"])
def test_throttling_and_a_report_not_ready_yet_are_waited_out(
    stubbed: tuple[object, Stubber], code: str
) -> None:
    iam, stub = stubbed
    stub.add_client_error("generate_credential_report", service_error_code=code)
    _complete(stub)
    waits: list[float] = []

    fetch_report(iam, sleep=waits.append)

    assert waits == [0.5]


def test_a_report_not_ready_when_fetched_is_generated_again(
    stubbed: tuple[object, Stubber],
) -> None:
    iam, stub = stubbed
    stub.add_response("generate_credential_report", {"State": "COMPLETE"})
    stub.add_client_error(
        "get_credential_report", service_error_code="ReportInProgress", http_status_code=404
    )
    _complete(stub)
    waits: list[float] = []

    fetch_report(iam, sleep=waits.append)

    assert waits == [0.5]


def test_waits_never_exceed_the_cap(stubbed: tuple[object, Stubber]) -> None:
    iam, stub = stubbed
    for _ in range(6):
        stub.add_response("generate_credential_report", {"State": "INPROGRESS"})
    _complete(stub)
    waits: list[float] = []

    fetch_report(iam, sleep=waits.append, first_delay=2.0, max_delay=5.0)

    assert waits == [2.0, 4.0, 5.0, 5.0, 5.0, 5.0]


def test_a_report_still_in_progress_after_the_longest_wait_is_an_error(
    stubbed: tuple[object, Stubber],
) -> None:
    iam, stub = stubbed
    for _ in range(3):
        stub.add_response("generate_credential_report", {"State": "INPROGRESS"})
    waits: list[float] = []

    with pytest.raises(ReportNotReady, match="INPROGRESS"):
        fetch_report(iam, sleep=waits.append, first_delay=1.0, max_wait=3.5)

    assert sum(waits) <= 3.5


def test_access_denied_is_not_retried(stubbed: tuple[object, Stubber]) -> None:
    iam, stub = stubbed
    stub.add_client_error("generate_credential_report", service_error_code="AccessDenied")
    waits: list[float] = []

    with pytest.raises(Exception, match="AccessDenied"):
        fetch_report(iam, sleep=waits.append)

    assert waits == []


def test_a_new_report_costs_three_calls_and_one_wait_on_the_sandbox(aws: Sandbox) -> None:
    aws.create_user_with_key("alice")
    aws.clear_requests()
    waits: list[float] = []

    fetch_report(aws.client("iam"), sleep=waits.append)

    assert [c.action for c in aws.requests()] == [
        "GenerateCredentialReport",
        "GenerateCredentialReport",
        "GetCredentialReport",
    ]
    assert waits == [0.5]


def test_a_report_iam_still_serves_costs_two_calls_and_no_wait(aws: Sandbox) -> None:
    iam = aws.client("iam")
    fetch_report(iam, sleep=lambda _: None)
    aws.clear_requests()
    waits: list[float] = []

    fetch_report(iam, sleep=waits.append)

    assert len(aws.requests()) == 2
    assert waits == []
