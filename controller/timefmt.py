"""Timestamps as keyrotor writes them: UTC, second precision, `Z` suffix, so files diff cleanly."""

from __future__ import annotations

from datetime import UTC, datetime


def to_iso(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
