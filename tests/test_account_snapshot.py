"""One account read in bulk: every adopted user's keys named from the report and listing alone,
and exactly the users the report cannot speak for left to be read live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.aws.credential_report import Candidate, JoinProblem
from controller.aws.listing import ListedUser, Source, path_of_arn
from controller.aws.snapshot import owned_key_candidates, read_account, read_live_keys
from controller.sandbox import Sandbox, UserSeed

CREATED = datetime(2025, 11, 1, 9, 0, tzinfo=UTC)


def _adopted(aws: Sandbox, count: int) -> list[str]:
    names = [f"bot-{i:05d}" for i in range(count)]
    aws.seed_users(UserSeed(n, path="/ci/", key_created=CREATED, own_key=True) for n in names)
    return names


def _no_sleep(_: float) -> None:
    pass


def test_adopted_users_are_resolved_from_the_report_in_pages_plus_three_calls(
    aws: Sandbox,
) -> None:
    names = _adopted(aws, 1500)
    aws.clear_requests()

    snapshot = read_account(aws.client("iam"), sleep=_no_sleep)

    assert snapshot.unresolved == ()
    assert len(aws.requests()) == 2 + 3  # ceil(1500/1000) pages, Generate x2, Get
    (key,) = snapshot.keys(names[7]) or ()
    assert (key.created, key.active, key.last_used) == (CREATED, True, None)


def test_a_joined_key_has_the_id_iam_lists_for_it(aws: Sandbox) -> None:
    (name,) = _adopted(aws, 1)
    iam = aws.client("iam")

    snapshot = read_account(iam, sleep=_no_sleep)

    assert snapshot.keys(name) == read_live_keys(iam, name)


def test_a_second_key_made_by_hand_leaves_the_user_to_be_read_live(aws: Sandbox) -> None:
    name, _ = _adopted(aws, 2)
    iam = aws.client("iam")
    aws.advance(timedelta(days=1))
    iam.create_access_key(UserName=name)

    snapshot = read_account(iam, sleep=_no_sleep)

    assert snapshot.unresolved == (name,)
    assert snapshot.joins[name].problem is JoinProblem.UNMATCHED_KEY
    assert len(read_live_keys(iam, name)) == 2


def test_a_key_created_after_the_report_leaves_the_user_to_be_read_live(aws: Sandbox) -> None:
    (name,) = _adopted(aws, 1)
    iam = aws.client("iam")
    read_account(iam, sleep=_no_sleep)  # the report IAM will serve for four hours
    aws.advance(timedelta(hours=1))
    new = iam.create_access_key(UserName=name)["AccessKey"]
    (old,) = [k for k in read_live_keys(iam, name) if k.id != new["AccessKeyId"]]
    stamp = new["CreateDate"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    iam.tag_user(
        UserName=name,
        Tags=[
            {
                "Key": "keyrotor.dev/keys",
                "Value": f"{old.id}@2025-11-01T09:00:00Z {new['AccessKeyId']}@{stamp}",
            }
        ],
    )

    snapshot = read_account(iam, sleep=_no_sleep)

    assert snapshot.unresolved == (name,)
    assert snapshot.joins[name].problem is JoinProblem.UNMATCHED_CANDIDATE


def test_a_user_created_after_the_report_is_listed_but_left_to_be_read_live(
    aws: Sandbox,
) -> None:
    iam = aws.client("iam")
    read_account(iam, sleep=_no_sleep)
    aws.advance(timedelta(minutes=5))
    aws.seed_users([UserSeed("late", key_created=aws.now(), own_key=True)])

    snapshot = read_account(iam, sleep=_no_sleep)

    assert "late" in snapshot.users
    assert snapshot.joins["late"].problem is JoinProblem.NOT_IN_REPORT


def test_a_user_keyrotor_never_adopted_is_left_to_be_read_live(aws: Sandbox) -> None:
    aws.seed_users([UserSeed("fresh", key_created=CREATED)])

    snapshot = read_account(aws.client("iam"), sleep=_no_sleep)

    assert snapshot.unresolved == ("fresh",)
    assert snapshot.keys("fresh") is None


def test_only_users_under_the_path_prefixes_are_read(aws: Sandbox) -> None:
    _adopted(aws, 2)
    aws.seed_users([UserSeed("ops-bot", path="/ops/", key_created=CREATED)])

    snapshot = read_account(aws.client("iam"), sleep=_no_sleep, path_prefixes=["/ci/"])

    assert sorted(snapshot.users) == ["bot-00000", "bot-00001"]


def _user(tag: str) -> ListedUser:
    return ListedUser("bot", "/", "arn:aws:iam::1:user/bot", CREATED, {"keyrotor.dev/keys": tag})


def test_the_owned_keys_tag_names_each_key_with_its_creation_time() -> None:
    candidates = owned_key_candidates(
        _user("AKIAA@2026-01-01T00:00:00Z AKIAB@2026-03-22T10:11:12Z")
    )

    assert [(c.key_id, c.created) for c in candidates] == [
        ("AKIAA", datetime(2026, 1, 1, tzinfo=UTC)),
        ("AKIAB", datetime(2026, 3, 22, 10, 11, 12, tzinfo=UTC)),
    ]


def test_a_malformed_owned_keys_tag_names_no_key_at_all() -> None:
    assert owned_key_candidates(_user("AKIAA@2026-01-01T00:00:00Z AKIAB@soon")) == ()


def test_without_listing_users_and_paths_come_from_the_report_alone(aws: Sandbox) -> None:
    seeded = aws.seed_users(
        UserSeed(f"bot-{i}", path="/ci/eu/", key_created=CREATED) for i in range(3)
    )
    aws.seed_users([UserSeed("ops-bot", path="/ops/", key_created=CREATED)])
    from_status = {u.name: Candidate(u.access_key_id or "", CREATED) for u in seeded}
    aws.clear_requests()

    snapshot = read_account(
        aws.client("iam"),
        sleep=_no_sleep,
        path_prefixes=["/ci/"],
        list_tags=False,
        candidates_of=lambda user: [from_status[user.name]],
    )

    assert [call.action for call in aws.requests()] == [
        "GenerateCredentialReport",
        "GenerateCredentialReport",
        "GetCredentialReport",
    ]
    assert {name: user.path for name, user in snapshot.users.items()} == {
        "bot-0": "/ci/eu/",
        "bot-1": "/ci/eu/",
        "bot-2": "/ci/eu/",
    }
    assert snapshot.listing.source is Source.CREDENTIAL_REPORT
    assert snapshot.unresolved == ()


@pytest.mark.parametrize(
    ("arn", "name", "path"),
    [
        ("arn:aws:iam::111122223333:user/bot", "bot", "/"),
        ("arn:aws:iam::111122223333:user/ci/eu/bot", "bot", "/ci/eu/"),
        ("arn:aws:iam::111122223333:root", "<root_account>", None),
        ("arn:aws:iam::111122223333:user/ci/other", "bot", None),
    ],
)
def test_a_user_s_path_is_read_from_its_arn(arn: str, name: str, path: str | None) -> None:
    assert path_of_arn(arn, name) == path
