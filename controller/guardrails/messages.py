"""The English for guardrail decisions: violations, exclusions and the no-guardrails warning.

Decisions are data (`Rule`, `ExclusionReason`); this is the one place they become words.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.guardrails.model import ExclusionReason, Guardrails, Rule, Violation

__all__ = ["NO_GUARDRAILS_WARNING", "exclusion_message", "violation_message"]

#: What `plan` and `apply` print once when no guardrails are in force.
NO_GUARDRAILS_WARNING = (
    "warning: no guardrails are in force, so the manifests alone decide which IAM users keyrotor "
    "touches; pass --guardrails FILE or set KEYROTOR_GUARDRAILS (a path, or ssm:NAME)"
)


def violation_message(v: Violation) -> str:
    """E.g. `spec.checks[1]: command checks are not allowed (guardrail checks.command at g:9:3)`."""
    what = {
        Rule.ACCOUNT_NOT_ALLOWED: f"account {v.subject} is not one the guardrails allow "
        f"({v.limit})",
        Rule.DENIED_NAME: f"user {v.subject!r} may never be managed by keyrotor",
        Rule.SELECTOR_OUTSIDE_PATHS: f"the selector's path {v.subject!r} is outside every "
        f"allowed path ({v.limit}), so it could only select users keyrotor may not touch",
        Rule.TARGET_NOT_ALLOWED: f"{v.subject!r} can name a target outside the allowed "
        f"patterns ({v.limit})",
        Rule.CHECK_FORBIDDEN: f"{v.subject} checks are not allowed",
        Rule.CHECK_REQUIRED: f"a {v.subject} check is required and this policy has none",
        Rule.BELOW_MINIMUM: f"{v.subject} is shorter than the minimum, {v.limit}",
        Rule.ABOVE_MAXIMUM: f"{v.subject} is longer than the maximum, {v.limit}",
        Rule.APPROVAL_NOT_ALLOWED: f"approval {v.subject!r} is not allowed; use {v.limit}",
    }[v.rule]
    return f"{v.path}: {what} (guardrail {v.guardrail} at {v.guardrail_at})"


def exclusion_message(
    reason: ExclusionReason,
    guardrails: Guardrails,
    *,
    account_id: str,
    user_name: str,
    path: str,
    tags: Mapping[str, str],
) -> str:
    """Why a user a selector matched is excluded, for plans and status (one line)."""
    if reason is ExclusionReason.ACCOUNT_NOT_ALLOWED:
        return f"excluded by the guardrails: account {account_id} is not allowed"
    if reason is ExclusionReason.DENIED_NAME:
        return f"excluded by the guardrails: user {user_name} is in users.denyNames"
    if reason is ExclusionReason.DENIED_TAG:
        tag = next(
            (f"{k}={v}" for k, v in guardrails.users.deny_tags.items() if tags.get(k) == v), ""
        )
        return f"excluded by the guardrails: the user carries the protecting tag {tag}"
    prefixes = ", ".join(guardrails.users.path_prefixes or ())
    return f"excluded by the guardrails: path {path} is outside users.pathPrefixes ({prefixes})"
