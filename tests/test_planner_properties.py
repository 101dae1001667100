"""The planner's safety rules, for any IAM state, status record and time (hypothesis).

Each test states one rule of the plan for a user whose keys (0-2, any age, status and last use),
ownership tags, targets, status record and clock are drawn at random. The draws are derandomized:
the same examples every run, so a failure is reproducible and `make test` deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.inventory import ObservedKey, ObservedUser, PolicyObservation, TargetReading
from controller.ownership import INTENT_TAG, KEYS_TAG, POLICY_TAG, intent_value, keys_value, parse
from controller.plan import Action, ActionKind
from controller.planner import CLOCK_SKEW, INTENT_IN_FLIGHT, plan
from controller.policy import (
    Policy,
    SecretsManagerTarget,
    Source,
    SsmParameterTarget,
    UserSelection,
)
from controller.status import Phase, PolicyStatus, UserStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
ZERO = timedelta(0)
IDS = ("AKIAOLD0000000000001", "AKIANEW0000000000002", "AKIAOTHER00000000003")
UNSEEN = "AKIAGONE000000000004"  # a key a status record may name that IAM no longer lists
TARGETS = ("aws-secrets-manager ci/bot", "aws-ssm-parameter /ci/bot")
DESTRUCTIVE = {ActionKind.DEACTIVATE_KEY, ActionKind.DELETE_KEY, ActionKind.DELETE_ORPHAN}
DELETING = {ActionKind.DELETE_KEY, ActionKind.DELETE_ORPHAN}

POLICY = Policy(
    name="ci",
    source=Source("manifests/ci.yaml", 1, 1),
    users=UserSelection(names=("bot",)),
    max_key_age=90 * DAY,
    targets=(SecretsManagerTarget("ci/bot"), SsmParameterTarget("/ci/bot")),
    approval="auto",
)

SETTINGS = settings(
    deadline=None,
    max_examples=100,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Situation:
    user: ObservedUser
    prior: UserStatus | None
    now: datetime

    def actions(self) -> tuple[Action, ...]:
        observation = PolicyObservation("ci", {"bot": self.user})
        statuses = {"ci": PolicyStatus("ci", {"bot": self.prior} if self.prior else {})}
        result = plan([POLICY], {"ci": observation}, statuses, self.now)
        (user_plan,) = result.policies[0].users
        return user_plan.actions

    def key(self, key_id: str | None) -> ObservedKey | None:
        return self.user.key(key_id)

    @property
    def held(self) -> set[str]:
        return {t.key_id for t in self.user.targets if t.key_id}


def _at(offset: st.SearchStrategy[int]) -> st.SearchStrategy[datetime]:
    """A time `offset` hours after T0."""
    return offset.map(lambda hours: T0 + timedelta(hours=hours))


HOURS = st.integers(min_value=0, max_value=200 * 24)


@st.composite
def situations(draw: st.DrawFn) -> Situation:
    hours = draw(st.integers(min_value=24, max_value=200 * 24))
    now = T0 + timedelta(hours=hours)
    ids = draw(st.lists(st.sampled_from(IDS), max_size=2, unique=True))
    keys = []
    for key_id in ids:
        # Any age up to now, or made seconds ago (maybe by a run still under way).
        made = draw(st.integers(min_value=0, max_value=hours) | st.just(hours))
        used = draw(st.none() | st.integers(min_value=made, max_value=hours))
        keys.append(
            ObservedKey(
                key_id,
                draw(st.sampled_from(["Active", "Inactive"])),
                T0 + timedelta(hours=made) - (timedelta(seconds=30) if made == hours else ZERO),
                None if used is None else T0 + timedelta(hours=used),
                live=draw(st.booleans()),
            )
        )

    tags: dict[str, str] = {}
    if draw(st.booleans()):
        tags[POLICY_TAG] = "ci"
    recorded = {}
    for k in keys:
        choice = draw(st.sampled_from(["owned", "other-date", "unrecorded"]))
        if choice == "owned":
            recorded[k.id] = k.created
        elif choice == "other-date":
            recorded[k.id] = k.created - DAY
    if draw(st.booleans()):
        recorded[UNSEEN] = T0
    if recorded:
        tags[KEYS_TAG] = keys_value(recorded)
    # An intent: none, any time, or just before a key IAM lists (that key is a crashed run's).
    intents = [st.none(), _at(HOURS), *(st.just(k.created - timedelta(minutes=1)) for k in keys)]
    intent = draw(st.one_of(intents))
    if intent is not None:
        tags[INTENT_TAG] = intent_value("run-1", intent)

    holdings = st.sampled_from([*ids, None, "unreadable"])
    targets = []
    for name in TARGETS:
        holding = draw(holdings)
        if holding == "unreadable":
            targets.append(TargetReading(name, readable=False, error="AccessDenied"))
        else:
            targets.append(TargetReading(name, holding))

    user = ObservedUser("bot", tuple(keys), tuple(targets), tags=tags)
    return Situation(user, draw(st.none() | statuses(ids, now)), now)


@st.composite
def statuses(draw: st.DrawFn, ids: list[str], now: datetime) -> UserStatus:
    names = st.sampled_from([*ids, UNSEEN, None])
    before_now = st.none() | _at(HOURS).filter(lambda t: t <= now)
    return UserStatus(
        draw(st.sampled_from(list(Phase))),
        old_key=draw(names),
        new_key=draw(names),
        intent_at=draw(before_now),
        stored_at=draw(before_now),
        self_used_at=draw(before_now),
        deactivated_at=draw(before_now),
    )


@SETTINGS
@given(situations())
def test_at_most_one_key_is_created_and_never_for_a_user_with_two(s: Situation) -> None:
    # Counting the keys the plan deletes before it creates one (a crashed run's orphan).
    keys = len(s.user.keys)
    creates = 0
    for action in s.actions():
        if action.kind in DELETING:
            keys -= 1
        if action.kind is ActionKind.CREATE_KEY:
            creates += 1
            assert keys < 2, s.actions()
    assert creates <= 1


@SETTINGS
@given(situations())
def test_the_last_active_key_is_never_deactivated_or_deleted(s: Situation) -> None:
    # But for a crashed run's key that no target holds: no one has its secret.
    orphans = {a.key for a in s.actions() if a.kind is ActionKind.DELETE_ORPHAN}
    removed = {a.key for a in s.actions() if a.kind in DESTRUCTIVE} - orphans
    active = {k.id for k in s.user.keys if k.active} - orphans
    if active & removed:
        assert active - removed, f"every active key goes: {removed}"


@SETTINGS
@given(situations())
def test_a_key_a_target_holds_is_never_deactivated_or_deleted(s: Situation) -> None:
    for action in s.actions():
        if action.kind in DESTRUCTIVE:
            assert action.key not in s.held, action


@SETTINGS
@given(situations())
def test_nothing_is_deleted_while_a_target_cannot_be_read(s: Situation) -> None:
    if any(not t.readable for t in s.user.targets):
        assert not [a for a in s.actions() if a.kind in DELETING]


@SETTINGS
@given(situations())
def test_the_plan_names_only_keys_iam_listed(s: Situation) -> None:
    listed = {k.id for k in s.user.keys}
    for action in s.actions():
        assert {action.key, action.replaces} - {None} <= listed, action


@SETTINGS
@given(situations())
def test_no_key_is_removed_on_the_word_of_the_credential_report(s: Situation) -> None:
    for action in s.actions():
        key = s.key(action.key)
        if action.kind in DESTRUCTIVE:
            assert key is not None and key.live, action


@SETTINGS
@given(situations())
def test_a_destructive_step_needs_ownership_in_iam_tags(s: Situation) -> None:
    own = parse(s.user.tags)
    for action in s.actions():
        if action.kind not in DESTRUCTIVE:
            continue
        key = s.key(action.key)
        assert key is not None
        if action.kind is ActionKind.DELETE_ORPHAN:
            assert own.intended(key.created, CLOCK_SKEW) and not own.owns(key.id, key.created)
            assert own.intent is not None and s.now - own.intent.at >= INTENT_IN_FLIGHT, (
                "another run may still be storing it"
            )
        else:
            assert own.owns(key.id, key.created), action
