"""What the demo sets up and what it expects to see: users, key ages, application, scenarios.

Everything here is data. The expectations are written as the sequence of states each user goes
through: its phase in status, plus `OVERDUE` while the plan reports an active key past maxKeyAge.
The demo compares them with what it observed and fails when they differ, so CI can run it as a
smoke test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from importlib.resources.abc import Traversable

from controller.sandbox.config import DEFAULT_START

#: Day 0 of the simulated timeline (the sandbox clock is set back from here to age the keys).
START: datetime = DEFAULT_START
DAYS = 100

AUTO_POLICY = "service-bots"
REVIEWED_POLICY = "ci-deployers"


@dataclass(frozen=True)
class DemoUser:
    name: str
    policy: str
    #: Age of the user's key on day 0.
    key_age: timedelta
    #: What the application reads its credentials from (Secrets Manager, AWSCURRENT).
    secret_id: str
    #: An SSM parameter that also holds the credentials (a second target), if any.
    parameter: str | None
    #: How many instances of the user's application run.
    instances: int
    #: One line for the introduction.
    note: str
    #: Age on day 0 of a second key that keyrotor did not create, if any.
    foreign_key_age: timedelta | None = None


def _auto(name: str, days: int, instances: int, note: str, **kw: timedelta) -> DemoUser:
    return DemoUser(
        name,
        AUTO_POLICY,
        timedelta(days=days),
        f"apps/{name}/aws",
        f"/apps/{name}/aws",
        instances,
        note,
        **kw,
    )


USERS: tuple[DemoUser, ...] = (
    _auto("web-api", 10, 3, "key 10d old: fresh, rotated when it reaches 76d (day 66)"),
    _auto("billing-worker", 80, 3, "key 80d old: due (rotation age is 76d)"),
    _auto("report-bot", 95, 2, "key 95d old: overdue (maxKeyAge is 90d)"),
    _auto(
        "legacy-etl",
        30,
        1,
        "key 30d old plus a second key someone made by hand: blocked",
        foreign_key_age=timedelta(days=5),
    ),
    DemoUser(
        "deploy-bot",
        REVIEWED_POLICY,
        timedelta(days=70),
        "ci/deploy-bot/aws",
        None,
        2,
        "key 70d old, policy with approval: pull-request",
    ),
)

#: How often an application instance re-reads its credentials, and makes a signed call.
REFRESH_MINUTES = (60, 360)
CALL_MINUTES = (60, 120)


@dataclass(frozen=True)
class Straggler:
    """An application instance that read its credentials once and never again."""

    instance: str
    #: When the operator, having read `keyrotor plan`, restarts it with a config that refreshes.
    restart_at: datetime
    refresh_every: timedelta = timedelta(hours=4)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    #: The states each user goes through, in order (consecutive repeats collapsed).
    expected: dict[str, tuple[str, ...]]
    straggler: Straggler | None = None
    days: int = DAYS
    notes: tuple[str, ...] = field(default=())


_ROTATION = ("AwaitingUse", "Deactivated", "Current")

_HAPPY_EXPECTED: dict[str, tuple[str, ...]] = {
    # A fresh key: adopted, then rotated once when it reaches rotation age.
    "web-api": ("Current", *_ROTATION),
    # Rotated on day 0; its new key reaches rotation age on day 76 and is rotated again.
    "billing-worker": (*_ROTATION, *_ROTATION),
    "report-bot": ("AwaitingUse OVERDUE", "Deactivated", "Current", *_ROTATION),
    # Two keys, one not keyrotor's: never touched; its key ages past maxKeyAge and is reported.
    "legacy-etl": ("Blocked", "Blocked OVERDUE"),
    # approval: pull-request, and no pull request yet: waits, then is reported overdue.
    "deploy-bot": ("Current", "AwaitingApproval", "AwaitingApproval OVERDUE"),
}

SCENARIOS: dict[str, Scenario] = {
    "happy": Scenario(
        "happy",
        "every application instance refreshes its credentials every 1-6 h",
        _HAPPY_EXPECTED,
    ),
    "straggler": Scenario(
        "straggler",
        "one instance of billing-worker never refreshes its credentials",
        {
            **_HAPPY_EXPECTED,
            "web-api": ("Current",),
            # Held in AwaitingUse while the straggler uses the old key, reported overdue on
            # day 10, and finished only after the operator restarts the straggler.
            "billing-worker": ("AwaitingUse", "AwaitingUse OVERDUE", "Deactivated", "Current"),
            "report-bot": ("AwaitingUse OVERDUE", "Deactivated", "Current"),
            "legacy-etl": ("Blocked",),
        },
        straggler=Straggler("billing-worker/3", START + timedelta(days=12, hours=9)),
        # The story is over once billing-worker's rotation finished; the rest is the happy path.
        days=30,
        notes=(
            "billing-worker/3 read its credentials once at start and never refreshes them.",
            "The old-key-idle check keeps the old key active while it is in use.",
        ),
    ),
}


def manifests() -> list[Traversable]:
    """The demo's policies, shipped inside the package (the demo runs from any directory)."""
    folder = resources.files("controller.demo").joinpath("manifests")
    return sorted((f for f in folder.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name)
