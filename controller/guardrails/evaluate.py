"""Judge policies and users against guardrails (pure: no I/O, no AWS).

Two questions, asked at different times:

- `violations(policy, guardrails)` / `check_policy`: does a *manifest* break a guardrail? Asked
  by `validate`, `plan` and `apply` before anything touches AWS; a policy with a violation is
  refused as a whole (`path:line:column` in the manifest plus the guardrail it breaks).
- `exclusion(guardrails, account_id=..., user_name=..., path=..., tags=...)`: may keyrotor touch
  this *IAM user*, which a selector matched? Asked per user once IAM has been read; an excluded
  user is listed as excluded and never touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controller.durations import format_duration
from controller.errors import Diagnostic
from controller.guardrails.messages import violation_message
from controller.guardrails.model import ExclusionReason, Guardrails, Rule, Violation
from controller.namepatterns import (
    CharClass,
    Pattern,
    Slot,
    covers,
    glob_pattern,
    template_pattern,
)
from controller.policy import (
    CommandCheck,
    GithubActionsSecretTarget,
    HttpCheck,
    Policy,
    SecretsManagerTarget,
    SsmParameterTarget,
    Target,
    position,
)

__all__ = ["account_of", "check_policy", "exclusion", "target_arn_pattern", "violations"]

_ANY = Slot(CharClass.ANY, may_be_empty=False)


def account_of(policy: Policy, ambient_account_id: str | None = None) -> str | None:
    """The account a policy acts in: its role's, else the ambient one (None if unknown)."""
    arn = policy.account.role_arn
    return arn.split(":")[4] if arn else ambient_account_id


def _region_of(policy: Policy, target: Target, ambient_region: str | None) -> str | None:
    region = None if isinstance(target, GithubActionsSecretTarget) else target.region
    return region or policy.account.region or ambient_region


def _join(*parts: str | Pattern) -> Pattern:
    out: list[str | Slot] = []
    for part in parts:
        out.extend(part)
    return tuple(out)


def _known(value: str | None) -> str | Pattern:
    return value if value is not None else (_ANY,)


def target_arn_pattern(
    policy: Policy,
    target: SecretsManagerTarget | SsmParameterTarget,
    *,
    account_id: str | None = None,
    region: str | None = None,
    partition: str = "aws",
) -> Pattern:
    """The ARNs a Secrets Manager or SSM target's template can produce (unknown region or
    account become slots). A secret's ARN ends in `-` and 6 random characters, not included."""
    account = account_of(policy, account_id)
    where = _region_of(policy, target, region)
    name_of = template_pattern
    if isinstance(target, SecretsManagerTarget):
        if target.secret_id.startswith("arn:"):
            return name_of(target.secret_id, policy=policy.name, account=account)
        return _join(
            f"arn:{partition}:secretsmanager:",
            _known(where),
            ":",
            _known(account),
            ":secret:",
            name_of(target.secret_id, policy=policy.name, account=account),
        )
    name = target.name[1:] if target.name.startswith("/") else target.name
    return _join(
        f"arn:{partition}:ssm:",
        _known(where),
        ":",
        _known(account),
        ":parameter/",
        name_of(name, policy=policy.name, account=account),
    )


def _name_pattern(policy: Policy, target: Target, account: str | None) -> Pattern:
    if isinstance(target, SecretsManagerTarget):
        name = target.secret_id
        if name.startswith("arn:") and ":secret:" in name:
            name = name.split(":secret:", 1)[1]
        return template_pattern(name, policy=policy.name, account=account)
    if isinstance(target, SsmParameterTarget):
        return template_pattern(target.name, policy=policy.name, account=account)
    return template_pattern(target.repository.lower(), policy=policy.name, account=account)


def _target_allowed(
    policy: Policy,
    target: Target,
    globs: Iterable[str],
    *,
    account_id: str | None,
    region: str | None,
    partition: str,
) -> bool:
    account = account_of(policy, account_id)
    for glob in globs:
        if isinstance(target, GithubActionsSecretTarget):
            if covers(glob.lower(), _name_pattern(policy, target, account)):
                return True
        elif glob.startswith("arn:"):
            arn = target_arn_pattern(
                policy, target, account_id=account_id, region=region, partition=partition
            )
            # A secret's ARN carries a random suffix: `secret:ci/x` is matched as `ci/x-??????`.
            if covers(glob, arn) or covers(glob, _join(arn, "-", (_ANY,))):
                return True
        elif covers(glob_pattern(glob), _name_pattern(policy, target, account)):
            return True
    return False


def violations(
    policy: Policy,
    guardrails: Guardrails,
    *,
    ambient_account_id: str | None = None,
    ambient_region: str | None = None,
    partition: str = "aws",
) -> list[Violation]:
    """Every guardrail `policy` breaks, in manifest order of the offending nodes.

    Offline (`validate`) the ambient account and region are unknown: a policy without a role is
    then not judged against `accounts`, and target ARN patterns treat the region as unknown.
    """
    g = guardrails
    found: list[Violation] = []

    def add(rule: Rule, path: str, guardrail: str, subject: str = "", limit: str = "") -> None:
        found.append(
            Violation(
                rule,
                policy.name,
                path,
                position(policy, path),
                guardrail,
                g.where(guardrail),
                subject,
                limit,
            )
        )

    allowed = g.allowed_accounts(ambient_account_id)
    account = account_of(policy, ambient_account_id)
    if allowed is not None and account is not None and account not in allowed:
        path = "spec.account.roleArn" if policy.account.role_arn else "spec"
        add(Rule.ACCOUNT_NOT_ALLOWED, path, "accounts", account, ", ".join(sorted(allowed)))

    denied = {name.lower(): name for name in g.users.deny_names}
    for index, name in enumerate(policy.users.names):
        if name.lower() in denied:
            add(Rule.DENIED_NAME, f"spec.users.names[{index}]", "users.denyNames", name)

    prefixes = g.users.path_prefixes
    if prefixes is not None and policy.users.has_selector:
        prefix = policy.users.path_prefix or "/"
        if not any(prefix.startswith(p) or p.startswith(prefix) for p in prefixes):
            path = (
                "spec.users.selector.pathPrefix"
                if policy.users.path_prefix
                else "spec.users.selector"
            )
            add(
                Rule.SELECTOR_OUTSIDE_PATHS, path, "users.pathPrefixes", prefix, ", ".join(prefixes)
            )

    for index, target in enumerate(policy.targets):
        if isinstance(target, SecretsManagerTarget):
            globs, guardrail, field = g.targets.secrets_manager, "secretsManager", "secretId"
            subject = target.secret_id
        elif isinstance(target, SsmParameterTarget):
            globs, guardrail, field = g.targets.ssm_parameters, "ssmParameters", "name"
            subject = target.name
        else:
            globs, guardrail, field = (
                g.targets.github_repositories,
                "githubRepositories",
                ("repository"),
            )
            subject = target.repository
        if globs is None:
            continue
        if not _target_allowed(
            policy,
            target,
            globs,
            account_id=ambient_account_id,
            region=ambient_region,
            partition=partition,
        ):
            add(
                Rule.TARGET_NOT_ALLOWED,
                f"spec.targets[{index}].{field}",
                f"targets.{guardrail}",
                subject,
                ", ".join(globs),
            )

    for index, check in enumerate(policy.checks):
        path = f"spec.checks[{index}]"
        if isinstance(check, CommandCheck):
            if not g.checks.command:
                add(Rule.CHECK_FORBIDDEN, path, "checks.command", check.type)
            elif check.with_new_key and not g.checks.command_with_new_key:
                add(
                    Rule.CHECK_FORBIDDEN,
                    f"{path}.withNewKey",
                    "checks.commandWithNewKey",
                    "command with withNewKey: true",
                )
        elif isinstance(check, HttpCheck) and not g.checks.http:
            add(Rule.CHECK_FORBIDDEN, path, "checks.http", check.type)
    present = {check.type for check in policy.checks}
    for index, required in enumerate(g.checks.required):
        if required not in present:
            add(Rule.CHECK_REQUIRED, "spec.checks", f"checks.required[{index}]", required)

    if g.approval is not None and policy.approval not in g.approval:
        add(
            Rule.APPROVAL_NOT_ALLOWED,
            "spec.approval",
            "approval",
            policy.approval,
            ", ".join(g.approval),
        )

    for field, attr in (
        ("maxKeyAge", "max_key_age"),
        ("deactivateAfter", "deactivate_after"),
        ("deleteAfter", "delete_after"),
    ):
        minimum = getattr(g.minimums, attr)
        if minimum is not None and getattr(policy, attr) < minimum:
            add(
                Rule.BELOW_MINIMUM,
                f"spec.{field}",
                f"minimums.{field}",
                format_duration(getattr(policy, attr)),
                format_duration(minimum),
            )
    maximum = g.maximums.max_key_age
    if maximum is not None and policy.max_key_age > maximum:
        add(
            Rule.ABOVE_MAXIMUM,
            "spec.maxKeyAge",
            "maximums.maxKeyAge",
            format_duration(policy.max_key_age),
            format_duration(maximum),
        )
    return sorted(found, key=lambda v: (v.at.line, v.at.column, v.path))


def check_policy(
    policy: Policy,
    guardrails: Guardrails,
    *,
    ambient_account_id: str | None = None,
    ambient_region: str | None = None,
    partition: str = "aws",
) -> list[Diagnostic]:
    """`violations` as diagnostics: `path:line:column: message` in the manifest, each naming the
    guardrail it breaks and where that is written."""
    return [
        Diagnostic(v.at.path, v.at.line, v.at.column, violation_message(v))
        for v in violations(
            policy,
            guardrails,
            ambient_account_id=ambient_account_id,
            ambient_region=ambient_region,
            partition=partition,
        )
    ]


def exclusion(
    guardrails: Guardrails,
    *,
    account_id: str,
    user_name: str,
    path: str,
    tags: Mapping[str, str],
    ambient_account_id: str | None = None,
) -> ExclusionReason | None:
    """Why keyrotor must not touch this IAM user, or None when it may.

    `path` is the user's IAM path (`/ci/`), `tags` its IAM tags. Checked in this order: the
    account, a denied name, a denied tag, the allowed paths.
    """
    allowed = guardrails.allowed_accounts(ambient_account_id)
    if allowed is not None and account_id not in allowed:
        return ExclusionReason.ACCOUNT_NOT_ALLOWED
    if user_name.lower() in {name.lower() for name in guardrails.users.deny_names}:
        return ExclusionReason.DENIED_NAME
    if any(tags.get(key) == value for key, value in guardrails.users.deny_tags.items()):
        return ExclusionReason.DENIED_TAG
    prefixes = guardrails.users.path_prefixes
    if prefixes is not None and not any(path.startswith(p) for p in prefixes):
        return ExclusionReason.PATH_NOT_ALLOWED
    return None
