"""The planner's shortcut for users nothing is happening to gives what the full path gives."""

from __future__ import annotations

import itertools
from dataclasses import replace

from controller import planner
from controller.inventory import ObservedKey, ObservedUser
from controller.ownership import INTENT_TAG, KEYS_TAG, POLICY_TAG, intent_value, keys_value
from controller.status import Phase, UserStatus
from tests.test_planner import DAY, OLD, OTHER, T0, policy

POLICY = policy(targets=())
CREATED = T0
ADOPTED = UserStatus(Phase.CURRENT, old_key=OLD, old_key_created=CREATED)

PRIORS = {
    "adopted": ADOPTED,
    "stale words": replace(ADOPTED, message="something said long ago"),
    "created unknown": replace(ADOPTED, old_key_created=None),
    "other key": replace(ADOPTED, old_key=OTHER),
    "held": replace(ADOPTED, hold="a person must look"),
    "rotating": replace(ADOPTED, phase=Phase.AWAITING_USE, new_key=OTHER),
    "intent": replace(ADOPTED, intent_at=T0 + 70 * DAY),
    "blocked": replace(ADOPTED, phase=Phase.BLOCKED),
}
KEYS = {
    "report": (ObservedKey(OLD, "Active", CREATED, None, live=False),),
    "live": (ObservedKey(OLD, "Active", CREATED, T0 + 5 * DAY),),
    "inactive": (ObservedKey(OLD, "Inactive", CREATED, None, live=False),),
    "two": (
        ObservedKey(OLD, "Active", CREATED, None, live=False),
        ObservedKey(OTHER, "Active", CREATED + DAY, None, live=False),
    ),
}
TAGS = {
    "owned": {POLICY_TAG: "ci", KEYS_TAG: keys_value({OLD: CREATED})},
    "owned at another time": {POLICY_TAG: "ci", KEYS_TAG: keys_value({OLD: CREATED + DAY})},
    "intent": {
        POLICY_TAG: "ci",
        KEYS_TAG: keys_value({OLD: CREATED}),
        INTENT_TAG: intent_value("run-1", T0 + 70 * DAY),
    },
    "none": {},
}
NOWS = [T0 + 10 * DAY, T0 + 75 * DAY, T0 + 76 * DAY, T0 + 95 * DAY]


def test_the_shortcut_agrees_with_the_full_path_wherever_it_is_taken() -> None:
    taken = 0
    for (p, prior), (k, keys), (t, tags), now in itertools.product(
        PRIORS.items(), KEYS.items(), TAGS.items(), NOWS
    ):
        observed = ObservedUser("bot", keys, tags=tags)
        quiet = planner._quiet(POLICY, observed, prior, now, None)
        if quiet is None:
            continue
        taken += 1
        user = planner.narrow(POLICY, "bot", observed, prior, now)
        decision = planner.DECIDE[user.situation](user)
        case = (p, k, t, now)
        assert user.situation == planner.Situation.CURRENT, case
        assert not user.first and not user.notes and not decision.actions, case
        assert not decision.findings, case
        assert quiet == decision.status, case
    assert taken >= 6, "the shortcut is taken for the users it is for"


def test_the_shortcut_is_taken_for_a_current_user_read_from_the_report() -> None:
    observed = ObservedUser("bot", KEYS["report"], tags=TAGS["owned"])
    assert planner._quiet(POLICY, observed, ADOPTED, T0 + 10 * DAY, None) is not None


def test_the_shortcut_is_not_taken_once_the_key_is_due_or_anything_is_in_progress() -> None:
    observed = ObservedUser("bot", KEYS["report"], tags=TAGS["owned"])
    assert planner._quiet(POLICY, observed, ADOPTED, T0 + 76 * DAY, None) is None
    for name in ("held", "rotating", "intent", "blocked", "other key"):
        assert planner._quiet(POLICY, observed, PRIORS[name], T0 + 10 * DAY, None) is None, name
    with_intent = ObservedUser("bot", KEYS["report"], tags=TAGS["intent"])
    assert planner._quiet(POLICY, with_intent, ADOPTED, T0 + 10 * DAY, None) is None
