"""The typed form of a Guardrails document, and the reasons a guardrail gives (pure data).

A `Guardrails` object is what `controller.guardrails.loader.load_guardrails` returns after
schema validation. Every section is optional: `None` (or an empty tuple / mapping) restricts
nothing, except `accounts`, where `None` means "only the ambient account".
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from controller.policy import Source

API_VERSION = "keyrotor.dev/v1"
KIND = "Guardrails"


@dataclass(frozen=True)
class UserGuardrails:
    """Which IAM users keyrotor may touch."""

    # Only users whose path starts with one of these; None: any path.
    path_prefixes: tuple[str, ...] | None = None
    # Never these users (compared case-insensitively, as IAM compares user names).
    deny_names: tuple[str, ...] = ()
    # Never a user carrying any one of these tags with this value.
    deny_tags: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class TargetGuardrails:
    """Globs (`*` matches any text, `/` included) every target name must match; None: any."""

    secrets_manager: tuple[str, ...] | None = None
    ssm_parameters: tuple[str, ...] | None = None
    github_repositories: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CheckGuardrails:
    command: bool = True
    command_with_new_key: bool = True
    http: bool = True
    # Check types (`new-key-used`, ...) every policy must have.
    required: tuple[str, ...] = ()


@dataclass(frozen=True)
class Minimums:
    max_key_age: timedelta | None = None
    deactivate_after: timedelta | None = None
    delete_after: timedelta | None = None


@dataclass(frozen=True)
class Maximums:
    max_key_age: timedelta | None = None


@dataclass(frozen=True)
class Guardrails:
    """One validated Guardrails document.

    `source` says where it came from (`guardrails.yaml:1:1`, or `ssm:/keyrotor/guardrails:1:1`);
    `positions` where each of its nodes was written, keyed by rendered JSON path
    (`users.denyNames[0]`), so that a violation can name the guardrail it breaks.
    """

    source: Source
    accounts: tuple[str, ...] | None = None
    users: UserGuardrails = field(default_factory=UserGuardrails)
    targets: TargetGuardrails = field(default_factory=TargetGuardrails)
    checks: CheckGuardrails = field(default_factory=CheckGuardrails)
    # Approval modes policies may use; None: any.
    approval: tuple[str, ...] | None = None
    minimums: Minimums = field(default_factory=Minimums)
    maximums: Maximums = field(default_factory=Maximums)
    # Creations + deactivations + deletions per run, across policies; None: no limit.
    max_changes_per_run: int | None = None
    positions: Mapping[str, Source] = field(default_factory=dict, compare=False, hash=False)

    def allowed_accounts(self, ambient_account_id: str | None) -> frozenset[str] | None:
        """The account ids policies may manage; None when that cannot be known (no `accounts`
        and no ambient account given, e.g. offline in `validate`)."""
        if self.accounts is not None:
            return frozenset(self.accounts)
        return None if ambient_account_id is None else frozenset({ambient_account_id})

    def where(self, path: str) -> Source:
        """Where the guardrail at `path` (`checks.command`) was written; its closest parent, or
        the document itself, when not written out."""
        probe = path
        while probe:
            found = self.positions.get(probe)
            if found is not None:
                return found
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""
        return self.source


class Rule(enum.Enum):
    """The guardrail a policy breaks (a violation: the policy is refused, `path:line:column`)."""

    ACCOUNT_NOT_ALLOWED = "account-not-allowed"
    DENIED_NAME = "denied-name"
    SELECTOR_OUTSIDE_PATHS = "selector-outside-paths"
    TARGET_NOT_ALLOWED = "target-not-allowed"
    CHECK_FORBIDDEN = "check-forbidden"
    CHECK_REQUIRED = "check-required"
    BELOW_MINIMUM = "below-minimum"
    ABOVE_MAXIMUM = "above-maximum"
    APPROVAL_NOT_ALLOWED = "approval-not-allowed"


@dataclass(frozen=True)
class Violation:
    """One way one policy breaks one guardrail.

    `path` is the manifest node at fault (`spec.targets[0].secretId`), `guardrail` the node of
    the guardrails document it breaks (`targets.secretsManager`), `subject` what is at fault
    (a user name, a template, a check type, a duration as written) and `limit` what the
    guardrail allows, both as text for the message.
    """

    rule: Rule
    policy: str
    path: str
    at: Source
    guardrail: str
    guardrail_at: Source
    subject: str = ""
    limit: str = ""


class ExclusionReason(enum.Enum):
    """Why a user that a selector matched is never touched (listed as excluded)."""

    ACCOUNT_NOT_ALLOWED = "account-not-allowed"
    DENIED_NAME = "denied-name"
    DENIED_TAG = "denied-tag"
    PATH_NOT_ALLOWED = "path-not-allowed"
