"""Seeding many users straight into the embedded AWS: they look as if created through the API."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.sandbox import Sandbox, UserSeed

pytestmark = pytest.mark.e2e


def test_a_seeded_user_has_one_key_created_when_asked_recorded_and_stored(aws: Sandbox) -> None:
    created = datetime(2025, 10, 1, 8, 30, tzinfo=UTC)

    (seeded,) = aws.seed_users(
        [UserSeed("bot", path="/ci/", key_created=created, own_key=True, secret_id="ci/bot")]
    )

    iam = aws.client("iam")
    (key,) = iam.list_access_keys(UserName="bot")["AccessKeyMetadata"]
    assert (key["AccessKeyId"], key["CreateDate"], key["Status"]) == (
        seeded.access_key_id,
        created,
        "Active",
    )
    tags = iam.list_user_tags(UserName="bot")["Tags"]
    assert tags == [
        {"Key": "keyrotor.dev/keys", "Value": f"{key['AccessKeyId']}@2025-10-01T08:30:00Z"}
    ]
    secret = aws.client("secretsmanager").get_secret_value(SecretId="ci/bot")
    assert f'"AccessKeyId": "{seeded.access_key_id}"' in secret["SecretString"]


def test_seeding_leaves_no_trace_in_the_request_log(aws: Sandbox) -> None:
    aws.clear_requests()

    aws.seed_users(UserSeed(f"user-{i}") for i in range(3))

    assert aws.requests() == []
