"""keyrotor parses AWS's timestamps itself (botocore's dateutil parser dominated reading IAM)."""

from __future__ import annotations

from datetime import UTC, datetime

import botocore.utils
import pytest

from controller.aws import new_session, parse_timestamp


@pytest.mark.parametrize(
    "text",
    ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.123000+00:00", "2026-03-02T10:20:30+02:00"],
)
def test_an_iso_timestamp_parses_to_the_instant_botocore_would_give(text: str) -> None:
    assert parse_timestamp(text) == botocore.utils.parse_timestamp(text)
    assert parse_timestamp(text).tzinfo is not None


def test_a_timestamp_without_a_zone_is_utc() -> None:
    assert parse_timestamp("2026-01-01T00:00:00") == datetime(2026, 1, 1, tzinfo=UTC)


def test_epoch_seconds_go_to_botocores_parser() -> None:
    assert parse_timestamp(1767225600.5) == datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)


def test_sessions_parse_responses_with_it() -> None:
    factory = new_session()._session.get_component("response_parser_factory")
    assert factory._defaults["timestamp_parser"] is parse_timestamp
