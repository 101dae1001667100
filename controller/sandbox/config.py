"""Values both sides of the sandbox must agree on: the parent that launches it and the server.

This module imports nothing heavy, so the parent can read these without loading moto.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

#: The identity every harness call uses. It is deliberately *not* in moto's `AKIA...` format:
#: the auth middleware lets any non-AKIA credential through (moto runs with auth enforcement
#: off), so the harness keeps working however the IAM state under test is changed.
ADMIN_ACCESS_KEY_ID: Final = "AKIDSANDBOXADMIN"
ADMIN_SECRET_ACCESS_KEY: Final = "sandbox-admin-secret"

REGION: Final = "us-east-1"

#: Where the sandbox's own routes live, beside moto's `/moto-api/`.
CONTROL_PREFIX: Final = "/_sandbox/"
CLOCK_PATH: Final = CONTROL_PREFIX + "clock"
REQUESTS_PATH: Final = CONTROL_PREFIX + "requests"
#: `{"enabled": bool}`: whether moto's authorization judges resources (see sandbox.scoping).
RESOURCE_SCOPING_PATH: Final = CONTROL_PREFIX + "resource-scoping"
#: moto's own switch for authorization enforcement (body `0`: on; `inf`: off).
RESET_AUTH_PATH: Final = "/moto-api/reset-auth"
SEED_PATH: Final = CONTROL_PREFIX + "seed"

#: The first line the server prints on stdout once it accepts connections, followed by its URL.
READY_MARKER: Final = "keyrotor-sandbox ready"

#: A fixed, round instant so that test expectations read as dates rather than offsets from "now".
DEFAULT_START: Final = datetime(2026, 1, 1, tzinfo=UTC)


def parse_instant(text: str) -> datetime:
    """Clock instants cross the process boundary as ISO-8601 and must name their zone.

    A naive time would be read in the server's local zone by some code and as UTC by other code;
    refusing it is cheaper than debugging an off-by-hours CreateDate.
    """
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; use e.g. 2026-01-01T00:00:00Z")
    return value.astimezone(UTC)


def format_instant(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
