"""Which access keys are keyrotor's, recorded where only its role writes: tags on the IAM user.

A branch of the policy repository can say anything; the IAM user's tags can be changed only by
identities IAM allows to `TagUser` (the generated policy gives that to keyrotor's role for its
own `keyrotor.dev/` keys). So every destructive decision is taken from these tags and IAM's own
key list, and the status file in git is only a readable record and a source of hints.

- `keyrotor.dev/keys`: the keys keyrotor created or adopted, as `<id>@<CreateDate>` separated
  by spaces. The creation time binds each entry to the key IAM issued under that id.
- `keyrotor.dev/intent`: `<run id> <time>`, set right before `CreateAccessKey` and removed once
  the new key is recorded in `keyrotor.dev/keys`. A key created after it, within `RUN_WINDOW`,
  that no tag records is that run's orphan.
- `keyrotor.dev/policy`: the policy that manages the user.

Tag values may hold letters, digits, spaces and `_ . : / = + - @` (IAM's rule); everything here
stays within it. Pure: tags in, data out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from controller.timefmt import from_iso, to_iso

PREFIX = "keyrotor.dev/"
KEYS_TAG = PREFIX + "keys"
INTENT_TAG = PREFIX + "intent"
POLICY_TAG = PREFIX + "policy"
TAGS = (KEYS_TAG, INTENT_TAG, POLICY_TAG)

#: How long after its intent a run may create its key: a key made later is not that run's.
RUN_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Intent:
    run: str
    at: datetime


@dataclass(frozen=True)
class Ownership:
    """What the IAM user's tags say about it."""

    keys: Mapping[str, datetime] = field(default_factory=dict)
    intent: Intent | None = None
    policy: str | None = None

    @property
    def recorded(self) -> bool:
        """Whether keyrotor ever recorded this user (a user managed before tags were used has
        only a status file, and is migrated on its next run)."""
        return bool(self.keys) or self.intent is not None or self.policy is not None

    def owns(self, key_id: str, created: datetime) -> bool:
        """The tag records this key, issued at this time (second precision, as IAM shows it)."""
        recorded = self.keys.get(key_id)
        return recorded is not None and _second(recorded) == _second(created)

    def intended(self, created: datetime, skew: timedelta) -> bool:
        """A key created after the recorded intent, within that run's window."""
        if self.intent is None:
            return False
        start = self.intent.at - skew
        return start <= created <= self.intent.at + RUN_WINDOW + skew


def _second(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(microsecond=0)


def parse(tags: Mapping[str, str]) -> Ownership:
    """The ownership the tags record; entries that are not keyrotor's format are ignored."""
    keys: dict[str, datetime] = {}
    for entry in tags.get(KEYS_TAG, "").split():
        key_id, at, created = entry.partition("@")
        if at and key_id:
            try:
                keys[key_id] = from_iso(created)
            except ValueError:
                continue
    intent = None
    run, _, when = tags.get(INTENT_TAG, "").partition(" ")
    if run and when:
        try:
            intent = Intent(run, from_iso(when))
        except ValueError:
            intent = None
    return Ownership(keys, intent, tags.get(POLICY_TAG) or None)


def keys_value(keys: Mapping[str, datetime]) -> str:
    return " ".join(f"{key_id}@{to_iso(created)}" for key_id, created in sorted(keys.items()))


_NOT_IN_A_TAG = re.compile(r"[^A-Za-z0-9_.:/=+@-]")


def intent_value(run: str, at: datetime) -> str:
    return f"{_NOT_IN_A_TAG.sub('-', run) or 'run'} {to_iso(at)}"
