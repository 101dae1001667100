"""The English for guardrail decisions: violations, exclusions and the no-guardrails warning.

Decisions are data (`Rule`, `ExclusionReason`); this is the one place they become words.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.guardrails.model import ExclusionReason, Guardrails, Rule, Violation

__all__ = ["NO_GUARDRAILS_WARNING", "exclusion_message", "violation_message", "violation_text"]

#: What `plan` and `apply` print once when no guardrails are in force.
NO_GUARDRAILS_WARNING = (
    "warning: no guardrails are in force, so the manifests alone decide which IAM users keyrotor "
    "touches; pass --guardrails FILE or set KEYROTOR_GUARDRAILS (a path, or ssm:NAME)"
)


def violation_message(v: Violation) -> str:
    """E.g. `spec.checks[1]: command checks are not allowed (guardrail checks.command at g:9:3)`."""
    return violation_text(
        v.rule,
        path=v.path,
        guardrail=v.guardrail,
        guardrail_at=str(v.guardrail_at),
        subject=v.subject,
        limit=v.limit,
    )


def violation_text(
    rule: Rule, *, path: str, guardrail: str, guardrail_at: str, subject: str, limit: str
) -> str:
    """`violation_message` from a violation's parts (as a plan's facts carry them)."""
    what = {
        Rule.ACCOUNT_NOT_ALLOWED: f"account {subject} is not one the guardrails allow ({limit})",
        Rule.DENIED_NAME: f"user {subject!r} may never be managed by keyrotor",
        Rule.SELECTOR_OUTSIDE_PATHS: f"the selector's path {subject!r} is outside every "
        f"allowed path ({limit}), so it could only select users keyrotor may not touch",
        Rule.TARGET_NOT_ALLOWED: f"{subject!r} can name a target outside the allowed "
        f"patterns ({limit})",
        Rule.CHECK_FORBIDDEN: f"{subject} checks are not allowed",
        Rule.CHECK_REQUIRED: f"a {subject} check is required and this policy has none",
        Rule.BELOW_MINIMUM: f"{subject} is shorter than the minimum, {limit}",
        Rule.ABOVE_MAXIMUM: f"{subject} is longer than the maximum, {limit}",
        Rule.APPROVAL_NOT_ALLOWED: f"approval {subject!r} is not allowed; use {limit}",
    }[rule]
    return f"{path}: {what} (guardrail {guardrail} at {guardrail_at})"


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
