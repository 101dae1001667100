"""Least privilege, generated: the IAM policy keyrotor's role needs for these manifests and
guardrails, and the trust policy that lets a GitHub Actions workflow assume it (pure).

The actions are exactly the AWS calls keyrotor makes (see `PLAN_*` / `APPLY_*` below). Resources
are the narrowest ARNs the manifests can reach:

- IAM users: `arn:aws:iam::<account>:user<path>*` for each selector path (within the guardrails'
  `pathPrefixes`), and each named user at any allowed path; explicit `Deny` statements keep every
  change away from `denyNames` (by ARN) and `denyTags` (by `iam:ResourceTag`).
- Secrets Manager and SSM: the ARNs the target templates can produce (`{user}` becomes `*`).
- KMS: only the `kmsKeyId`s the manifests name, and only through Secrets Manager or SSM
  (`kms:ViaService`).
- Account-wide calls that IAM cannot scope (`Resource: "*"`): the credential report,
  `GetAccountAuthorizationDetails`, `ListUsers`, `ssm:DescribeParameters`.

The `plan` role gets read actions only: no secret value (`GetSecretValue`), no parameter value
(`GetParameter`), no KMS. keyrotor writes only its own tags (`keyrotor.dev/*`, `aws:TagKeys`).

Precondition: the policies pass `check_policy` against the same guardrails (the `iam-policy`
command checks this first); this module does not judge manifests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from controller.guardrails.evaluate import account_of, target_arn_pattern
from controller.guardrails.model import Guardrails
from controller.namepatterns import covers, glob_pattern, to_glob
from controller.policy import Policy, SecretsManagerTarget, SsmParameterTarget

__all__ = [
    "APPLY_SECRETS_ACTIONS",
    "APPLY_SSM_ACTIONS",
    "APPLY_USER_ACTIONS",
    "GITHUB_OIDC_PROVIDER",
    "KMS_ACTIONS",
    "PLAN_ACCOUNT_ACTIONS",
    "PLAN_SECRETS_ACTIONS",
    "PLAN_SSM_ACTIONS",
    "PLAN_USER_ACTIONS",
    "TAG_ACTIONS",
    "Role",
    "iam_policy",
    "trust_policy",
]

Role = Literal["apply", "plan"]

VERSION = "2012-10-17"
#: The tag keys keyrotor writes (on users and on targets).
TAG_PREFIX = "keyrotor.dev/"

PLAN_ACCOUNT_ACTIONS = (
    "iam:GenerateCredentialReport",
    "iam:GetAccountAuthorizationDetails",
    "iam:GetCredentialReport",
    "iam:ListUsers",
    "sts:GetCallerIdentity",
)
PLAN_USER_ACTIONS = (
    "iam:GetAccessKeyLastUsed",
    "iam:GetUser",
    "iam:ListAccessKeys",
    "iam:ListUserTags",
)
APPLY_USER_ACTIONS = ("iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:UpdateAccessKey")
PLAN_SECRETS_ACTIONS = ("secretsmanager:DescribeSecret", "secretsmanager:ListSecretVersionIds")
APPLY_SECRETS_ACTIONS = (
    "secretsmanager:CreateSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
)
PLAN_SSM_ACTIONS = ("ssm:ListTagsForResource",)
SSM_ACCOUNT_ACTIONS = ("ssm:DescribeParameters",)
APPLY_SSM_ACTIONS = ("ssm:GetParameter", "ssm:GetParameterHistory", "ssm:PutParameter")
#: Tagging actions, allowed only for keyrotor's own tag keys.
TAG_ACTIONS = {
    "iam": ("iam:TagUser", "iam:UntagUser"),
    "secretsmanager": ("secretsmanager:TagResource",),
    "ssm": ("ssm:AddTagsToResource",),
}
KMS_ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey")
#: What could change the guardrails parameter; denied to the apply role.
GUARDRAILS_CHANGES = (
    "ssm:AddTagsToResource",
    "ssm:DeleteParameter",
    "ssm:LabelParameterVersion",
    "ssm:PutParameter",
    "ssm:RemoveTagsFromResource",
)

GITHUB_OIDC_PROVIDER = "token.actions.githubusercontent.com"
#: The GitHub environment the reconcile workflow runs in (protected: default branch only).
GITHUB_ENVIRONMENT = "keyrotor"

# A secret's ARN is its name, `-` and six random characters.
_SECRET_SUFFIX = "-??????"
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def _statement(
    sid: str,
    actions: Iterable[str],
    resources: Iterable[str],
    *,
    effect: str = "Allow",
    condition: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Sid": sid,
        "Effect": effect,
        "Action": sorted(actions),
        "Resource": sorted(set(resources)),
    }
    if condition:
        out["Condition"] = condition
    return out


def _minimal(globs: Iterable[str]) -> list[str]:
    """The globs less those another one covers (`user/ci/*` makes `user/ci/x` redundant)."""
    unique = sorted(set(globs))
    return [g for g in unique if not any(o != g and covers(o, glob_pattern(g)) for o in unique)]


def _user_path_prefixes(policy: Policy, guardrails: Guardrails | None) -> list[str]:
    """The IAM paths under which a policy's selector may reach users, within the guardrails."""
    if not policy.users.has_selector:
        return []
    prefix = policy.users.path_prefix or "/"
    allowed = None if guardrails is None else guardrails.users.path_prefixes
    if allowed is None:
        return [prefix]
    return [
        prefix if prefix.startswith(a) else a
        for a in allowed
        if prefix.startswith(a) or a.startswith(prefix)
    ]


def _user_arns(
    policies: Sequence[Policy], guardrails: Guardrails | None, account_id: str, partition: str
) -> list[str]:
    allowed = None if guardrails is None else guardrails.users.path_prefixes
    out: list[str] = []
    for policy in policies:
        base = f"arn:{partition}:iam::{account_of(policy, account_id)}:user"
        out.extend(f"{base}{prefix}*" for prefix in _user_path_prefixes(policy, guardrails))
        for name in policy.users.names:
            for prefix in allowed or ("/",):
                # The user directly under the path, or anywhere below it.
                out.append(f"{base}{prefix}{name}")
                out.append(f"{base}{prefix}*/{name}")
    return _minimal(out)


def _target_arns(
    policies: Sequence[Policy], kind: type, *, account_id: str, region: str, partition: str
) -> list[str]:
    out: list[str] = []
    for policy in policies:
        for target in policy.targets:
            if not isinstance(target, kind):
                continue
            assert isinstance(target, SecretsManagerTarget | SsmParameterTarget)
            arn = to_glob(
                target_arn_pattern(
                    policy, target, account_id=account_id, region=region, partition=partition
                )
            )
            if isinstance(target, SecretsManagerTarget):
                if target.secret_id.startswith("arn:"):
                    out.append(arn)  # as written: perhaps with its suffix already
                if not arn.endswith("*"):
                    arn += _SECRET_SUFFIX
            out.append(arn)
    return _minimal(out)


def _kms_statements(
    policies: Sequence[Policy], *, account_id: str, region: str, partition: str
) -> list[dict[str, Any]]:
    keys: dict[str, set[str]] = {}  # via service -> key ARNs
    aliases: dict[tuple[str, str], set[str]] = {}  # (via service, key ARN glob) -> alias names
    for policy in policies:
        account = account_of(policy, account_id)
        for target in policy.targets:
            if not isinstance(target, SecretsManagerTarget | SsmParameterTarget):
                continue
            if not target.kms_key_id:
                continue
            where = target.region or policy.account.region or region
            service = "secretsmanager" if isinstance(target, SecretsManagerTarget) else "ssm"
            via = f"{service}.{where}.amazonaws.com"
            key = target.kms_key_id
            if key.startswith("arn:") and ":alias/" in key:
                arn_parts = key.split(":")
                any_key = ":".join([*arn_parts[:5], "key/*"])
                aliases.setdefault((via, any_key), set()).add(key.split(":", 5)[5])
            elif key.startswith("alias/"):
                any_key = f"arn:{partition}:kms:{where}:{account}:key/*"
                aliases.setdefault((via, any_key), set()).add(key)
            elif key.startswith("arn:"):
                keys.setdefault(via, set()).add(key)
            else:
                keys.setdefault(via, set()).add(f"arn:{partition}:kms:{where}:{account}:key/{key}")
    statements = [
        _statement(
            f"UseNamedKmsKeys{index}",
            KMS_ACTIONS,
            arns,
            condition={"StringEquals": {"kms:ViaService": via}},
        )
        for index, (via, arns) in enumerate(sorted(keys.items()), start=1)
    ]
    statements += [
        _statement(
            f"UseNamedKmsAliases{index}",
            KMS_ACTIONS,
            [any_key],
            condition={
                "StringEquals": {"kms:ViaService": via},
                "ForAnyValue:StringEquals": {"kms:ResourceAliases": sorted(names)},
            },
        )
        for index, ((via, any_key), names) in enumerate(sorted(aliases.items()), start=1)
    ]
    return statements


def _own_tags() -> dict[str, Any]:
    return {"ForAllValues:StringLike": {"aws:TagKeys": [f"{TAG_PREFIX}*"]}}


def iam_policy(
    policies: Sequence[Policy],
    guardrails: Guardrails | None,
    *,
    role: Role,
    account_id: str,
    region: str,
    partition: str = "aws",
    guardrails_parameter: str | None = None,
) -> dict[str, Any]:
    """The identity policy document for keyrotor's `apply` or `plan` role.

    `account_id` and `region` are the ambient ones (a policy's `roleArn` and a target's `region`
    win). `guardrails_parameter` is the SSM parameter name the guardrails are read from, if any:
    both roles may read it (it must be a `String`), and the apply role is denied every change
    to it, even if a target's template could name it. One document covers every account the
    policies name; attach it to each account's role (statements for other accounts are inert).
    """
    apply = role == "apply"
    statements: list[dict[str, Any]] = []
    has_ssm = any(isinstance(t, SsmParameterTarget) for p in policies for t in p.targets)
    statements.append(
        _statement(
            "ReadAccountInventory",
            PLAN_ACCOUNT_ACTIONS + (SSM_ACCOUNT_ACTIONS if has_ssm else ()),
            ["*"],
        )
    )
    users = _user_arns(policies, guardrails, account_id, partition)
    if users:
        statements.append(_statement("ReadManagedUsers", PLAN_USER_ACTIONS, users))
        if apply:
            statements.append(_statement("RotateManagedUserKeys", APPLY_USER_ACTIONS, users))
            statements.append(
                _statement("TagManagedUsers", TAG_ACTIONS["iam"], users, condition=_own_tags())
            )
    secrets = _target_arns(
        policies, SecretsManagerTarget, account_id=account_id, region=region, partition=partition
    )
    if secrets:
        statements.append(_statement("ReadTargetSecretMetadata", PLAN_SECRETS_ACTIONS, secrets))
        if apply:
            statements.append(_statement("WriteTargetSecrets", APPLY_SECRETS_ACTIONS, secrets))
            statements.append(
                _statement(
                    "TagTargetSecrets",
                    TAG_ACTIONS["secretsmanager"],
                    secrets,
                    condition=_own_tags(),
                )
            )
    parameters = _target_arns(
        policies, SsmParameterTarget, account_id=account_id, region=region, partition=partition
    )
    if parameters:
        statements.append(_statement("ReadTargetParameterTags", PLAN_SSM_ACTIONS, parameters))
        if apply:
            statements.append(_statement("WriteTargetParameters", APPLY_SSM_ACTIONS, parameters))
            statements.append(
                _statement(
                    "TagTargetParameters", TAG_ACTIONS["ssm"], parameters, condition=_own_tags()
                )
            )
    if apply:
        statements += _kms_statements(
            policies, account_id=account_id, region=region, partition=partition
        )
    roles = sorted({p.account.role_arn for p in policies if p.account.role_arn})
    if roles:
        statements.append(_statement("AssumeAccountRoles", ["sts:AssumeRole"], roles))
    if guardrails_parameter:
        name = guardrails_parameter.lstrip("/")
        arn = f"arn:{partition}:ssm:{region}:{account_id}:parameter/{name}"
        statements.append(_statement("ReadGuardrails", ["ssm:GetParameter"], [arn]))
        if apply:
            # Whatever a target's template can name, keyrotor never changes its own limits.
            statements.append(
                _statement("ProtectGuardrails", GUARDRAILS_CHANGES, [arn], effect="Deny")
            )
    if apply and guardrails is not None:
        statements += _deny_statements(policies, guardrails, account_id, partition)
    return {"Version": VERSION, "Statement": statements}


def _deny_statements(
    policies: Sequence[Policy], guardrails: Guardrails, account_id: str, partition: str
) -> list[dict[str, Any]]:
    """Changes to protected users are denied outright, whatever else allows them.

    Reads are not denied: an excluded user is still seen (and listed as excluded).
    """
    changes = APPLY_USER_ACTIONS + TAG_ACTIONS["iam"]
    accounts = sorted({account_of(p, account_id) or account_id for p in policies} | {account_id})
    out = []
    if guardrails.users.deny_names:
        resources = [
            f"arn:{partition}:iam::{account}:user{where}{name}"
            for account in accounts
            for name in guardrails.users.deny_names
            for where in ("/", "/*/")
        ]
        out.append(_statement("DenyProtectedUserNames", changes, resources, effect="Deny"))
    for index, (key, value) in enumerate(sorted(guardrails.users.deny_tags.items()), start=1):
        out.append(
            _statement(
                f"DenyProtectedUserTag{index}",
                changes,
                [f"arn:{partition}:iam::{account}:user/*" for account in accounts],
                effect="Deny",
                condition={"StringEquals": {f"iam:ResourceTag/{key}": value}},
            )
        )
    return out


def trust_policy(
    repository: str,
    *,
    role: Role,
    account_id: str,
    partition: str = "aws",
    environment: str = GITHUB_ENVIRONMENT,
) -> dict[str, Any]:
    """Who may assume the role: GitHub Actions OIDC tokens of `repository` (`OWNER/REPO`).

    `apply`: only jobs in the GitHub environment `environment` (`sub` is
    `repo:OWNER/REPO:environment:keyrotor`); restrict that environment to the default branch in
    the repository's settings, so only the reconcile workflow on it gets the role. `plan`: jobs of
    pull requests (`repo:OWNER/REPO:pull_request`), which get only read access.
    """
    if not _REPOSITORY.fullmatch(repository):
        raise ValueError(f"{repository!r} is not OWNER/REPO")
    subject = (
        f"repo:{repository}:environment:{environment}"
        if role == "apply"
        else f"repo:{repository}:pull_request"
    )
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "GitHubActions",
                "Effect": "Allow",
                "Principal": {
                    "Federated": (
                        f"arn:{partition}:iam::{account_id}:oidc-provider/{GITHUB_OIDC_PROVIDER}"
                    )
                },
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{GITHUB_OIDC_PROVIDER}:aud": "sts.amazonaws.com",
                        f"{GITHUB_OIDC_PROVIDER}:sub": subject,
                    }
                },
            }
        ],
    }
