"""The generated IAM policies: exactly keyrotor's calls, on the narrowest resources, linted.

Decisions are judged with the tests' evaluator (`tests/support/iam_eval.py`), which reads
parliament's IAM definitions; the sandbox proves the same documents against moto in
`tests/test_least_privilege.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from controller.guardrails import Guardrails, iam_policy, load_guardrails, trust_policy
from controller.manifests import load_policies
from controller.policy import Policy
from tests.support.iam_eval import (
    Decision,
    Request,
    access_level,
    evaluate,
    moto_judgeable,
    resource_types,
)
from tests.support.parliament_lint import lint

ACCOUNT = "123456789012"
REGION = "us-east-1"
USER = f"arn:aws:iam::{ACCOUNT}:user"
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret"
PARAMETER = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter"

# The AWS calls of the design contract (notes/design.md, "AWS calls keyrotor makes").
DESIGN_PLAN_ACTIONS = {
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:GetAccountAuthorizationDetails",
    "iam:ListUsers",
    "iam:GetUser",
    "iam:ListUserTags",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "sts:GetCallerIdentity",
    "secretsmanager:DescribeSecret",
    "secretsmanager:ListSecretVersionIds",
    "ssm:DescribeParameters",
    "ssm:ListTagsForResource",
}
DESIGN_APPLY_ACTIONS = DESIGN_PLAN_ACTIONS | {
    "iam:CreateAccessKey",
    "iam:UpdateAccessKey",
    "iam:DeleteAccessKey",
    "iam:TagUser",
    "iam:UntagUser",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:CreateSecret",
    "secretsmanager:TagResource",
    "ssm:GetParameter",
    "ssm:GetParameterHistory",
    "ssm:PutParameter",
    "ssm:AddTagsToResource",
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:GenerateDataKey",
}

MANIFESTS = """\
apiVersion: keyrotor.dev/v1
kind: RotationPolicy
metadata:
  name: ci
spec:
  users:
    selector: {pathPrefix: /}
  maxKeyAge: 90d
  targets:
    - {type: aws-secrets-manager, secretId: "ci/{user}/aws"}
    - {type: aws-ssm-parameter, name: "/ci/{user}/aws", kmsKeyId: alias/ci-keys}
---
apiVersion: keyrotor.dev/v1
kind: RotationPolicy
metadata:
  name: billing
spec:
  users:
    names: [billing-bot]
  maxKeyAge: 90d
  targets:
    - type: aws-secrets-manager
      secretId: service/billing/aws
      kmsKeyId: 1234abcd-12ab-34cd-56ef-1234567890ab
"""

GUARDRAILS = """\
apiVersion: keyrotor.dev/v1
kind: Guardrails
accounts: ["123456789012"]
users:
  pathPrefixes: [/ci/, /service/]
  denyNames: [break-glass]
  denyTags: {keyrotor.dev/protect: "true"}
targets:
  secretsManager: ["ci/*", "service/*"]
  ssmParameters: ["/ci/*"]
"""


@pytest.fixture
def policies(tmp_path: Path) -> list[Policy]:
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "p.yaml").write_text(MANIFESTS)
    return load_policies([tmp_path / "manifests"], root=tmp_path)


@pytest.fixture
def guardrails() -> Guardrails:
    return load_guardrails(GUARDRAILS, path="guardrails.yaml")


def _document(
    policies: list[Policy], guardrails: Guardrails | None, role: str = "apply"
) -> dict[str, Any]:
    return iam_policy(
        policies,
        guardrails,
        role=role,  # type: ignore[arg-type]
        account_id=ACCOUNT,
        region=REGION,
    )


def _actions(document: dict[str, Any]) -> set[str]:
    return {a for s in document["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}


def _judge(document: dict[str, Any], action: str, resource: str = "*", **context: Any) -> Decision:
    return evaluate([document], Request(action, resource, context))


# --- what is in them ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["apply", "plan"])
def test_parliament_finds_nothing_to_fault(
    policies: list[Policy], guardrails: Guardrails, role: str
) -> None:
    for with_guardrails in (guardrails, None):
        document = _document(policies, with_guardrails, role)
        assert lint(document) == []


def test_the_apply_role_has_exactly_the_calls_keyrotor_makes(
    policies: list[Policy], guardrails: Guardrails
) -> None:
    assert _actions(_document(policies, guardrails)) == DESIGN_APPLY_ACTIONS


def test_the_plan_role_only_reads_and_never_sees_a_secret(
    policies: list[Policy], guardrails: Guardrails
) -> None:
    actions = _actions(_document(policies, guardrails, "plan"))
    assert actions == DESIGN_PLAN_ACTIONS
    assert {access_level(a) for a in actions} <= {"Read", "List"}
    assert not actions & {"secretsmanager:GetSecretValue", "ssm:GetParameter", "kms:Decrypt"}


def test_only_actions_that_cannot_be_scoped_are_granted_on_every_resource(
    policies: list[Policy], guardrails: Guardrails
) -> None:
    for statement in _document(policies, guardrails)["Statement"]:
        if "*" in statement["Resource"]:
            assert statement["Resource"] == ["*"]
            assert all(resource_types(a) == [] for a in statement["Action"]), statement["Sid"]


def test_a_guardrails_parameter_is_readable_by_both_roles(policies: list[Policy]) -> None:
    for role in ("apply", "plan"):
        document = iam_policy(
            policies,
            None,
            role=role,
            account_id=ACCOUNT,
            region=REGION,
            guardrails_parameter="/keyrotor/guardrails",
        )
        arn = f"{PARAMETER}/keyrotor/guardrails"
        assert _judge(document, "ssm:GetParameter", arn) is Decision.ALLOWED
        assert lint(document) == []


def test_the_apply_role_can_never_change_its_own_guardrails(tmp_path: Path) -> None:
    # A manifest whose target could name the guardrails parameter.
    text = MANIFESTS.replace('name: "/ci/{user}/aws"', 'name: "/{user}/guardrails"').replace(
        "pathPrefix: /}", "pathPrefix: /keyrotor/}"
    )
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "p.yaml").write_text(text)
    policies = load_policies([tmp_path / "manifests"], root=tmp_path)
    document = iam_policy(
        policies,
        None,
        role="apply",
        account_id=ACCOUNT,
        region=REGION,
        guardrails_parameter="/keyrotor/guardrails",
    )
    arn = f"{PARAMETER}/keyrotor/guardrails"
    assert _judge(document, "ssm:PutParameter", f"{PARAMETER}/other/guardrails") is (
        Decision.ALLOWED
    )
    assert _judge(document, "ssm:PutParameter", arn) is Decision.EXPLICIT_DENY
    assert _judge(document, "ssm:GetParameter", arn) is Decision.ALLOWED


# --- what they allow ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "resource", "context", "expected"),
    [
        ("iam:CreateAccessKey", f"{USER}/ci/deploy-bot", {}, Decision.ALLOWED),
        ("iam:CreateAccessKey", f"{USER}/ci/team/deploy-bot", {}, Decision.ALLOWED),
        # The selector says `/`, the guardrails only /ci/ and /service/.
        ("iam:CreateAccessKey", f"{USER}/admin/root-ish", {}, Decision.IMPLICIT_DENY),
        ("iam:DeleteAccessKey", f"{USER}/cider/x", {}, Decision.IMPLICIT_DENY),
        ("iam:UpdateAccessKey", f"{USER}/service/billing-bot", {}, Decision.ALLOWED),
        # The selector `/` reaches every allowed path.
        ("iam:UpdateAccessKey", f"{USER}/service/other-bot", {}, Decision.ALLOWED),
        ("iam:CreateAccessKey", f"{USER}/ci/break-glass", {}, Decision.EXPLICIT_DENY),
        (
            "iam:CreateAccessKey",
            f"{USER}/ci/deploy-bot",
            {"iam:ResourceTag/keyrotor.dev/protect": "true"},
            Decision.EXPLICIT_DENY,
        ),
        (
            "iam:GetUser",
            f"{USER}/ci/deploy-bot",
            {"iam:ResourceTag/keyrotor.dev/protect": "true"},
            Decision.ALLOWED,  # a protected user is still seen, and listed as excluded
        ),
        (
            "iam:TagUser",
            f"{USER}/ci/deploy-bot",
            {"aws:TagKeys": ["keyrotor.dev/keys", "keyrotor.dev/intent"]},
            Decision.ALLOWED,
        ),
        (
            "iam:TagUser",
            f"{USER}/ci/deploy-bot",
            {"aws:TagKeys": ["keyrotor.dev/keys", "owner"]},
            Decision.IMPLICIT_DENY,
        ),
        ("secretsmanager:PutSecretValue", f"{SECRET}:ci/deploy-bot/aws-AbCdEf", {}, "allowed"),
        ("secretsmanager:PutSecretValue", f"{SECRET}:prod/db-AbCdEf", {}, "implicit-deny"),
        ("secretsmanager:GetSecretValue", f"{SECRET}:service/billing/aws-AbCdEf", {}, "allowed"),
        ("ssm:PutParameter", f"{PARAMETER}/ci/deploy-bot/aws", {}, Decision.ALLOWED),
        ("ssm:PutParameter", f"{PARAMETER}/prod/db", {}, Decision.IMPLICIT_DENY),
        (
            "kms:Decrypt",
            f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0000aaaa-12ab-34cd-56ef-1234567890ab",
            {
                "kms:ViaService": "ssm.us-east-1.amazonaws.com",
                "kms:ResourceAliases": ["alias/ci-keys"],
            },
            Decision.ALLOWED,
        ),
        (
            "kms:Decrypt",
            f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0000aaaa-12ab-34cd-56ef-1234567890ab",
            {"kms:ResourceAliases": ["alias/ci-keys"]},  # directly, not through SSM
            Decision.IMPLICIT_DENY,
        ),
        (
            "kms:GenerateDataKey",
            f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"},
            Decision.ALLOWED,
        ),
    ],
)
def test_the_apply_role_allows_only_what_the_manifests_and_guardrails_reach(
    policies: list[Policy],
    guardrails: Guardrails,
    action: str,
    resource: str,
    context: dict[str, Any],
    expected: Decision | str,
) -> None:
    assert _judge(_document(policies, guardrails), action, resource, **context) is Decision(
        expected
    )


def test_without_guardrails_the_selector_alone_bounds_the_users(policies: list[Policy]) -> None:
    document = _document(policies, None)
    assert _judge(document, "iam:CreateAccessKey", f"{USER}/admin/root-ish") is Decision.ALLOWED
    assert _judge(document, "iam:CreateAccessKey", f"{USER}/ci/break-glass") is Decision.ALLOWED


def test_the_plan_role_reads_metadata_of_the_targets_only(
    policies: list[Policy], guardrails: Guardrails
) -> None:
    plan = _document(policies, guardrails, "plan")
    assert _judge(plan, "secretsmanager:DescribeSecret", f"{SECRET}:ci/x/aws-AbCdEf") is (
        Decision.ALLOWED
    )
    assert _judge(plan, "secretsmanager:GetSecretValue", f"{SECRET}:ci/x/aws-AbCdEf") is (
        Decision.IMPLICIT_DENY
    )
    assert _judge(plan, "ssm:GetParameter", f"{PARAMETER}/ci/x/aws") is Decision.IMPLICIT_DENY


def test_moto_gets_a_looser_allow_and_no_conditional_deny(
    policies: list[Policy], guardrails: Guardrails
) -> None:
    kept, set_aside = moto_judgeable(_document(policies, guardrails))
    assert all("Condition" not in s for s in kept["Statement"])
    assert {s["Sid"] for s in set_aside} >= {"DenyProtectedUserTag1", "TagManagedUsers"}
    assert "DenyProtectedUserTag1" not in {s["Sid"] for s in kept["Statement"]}


# --- the trust policy and the command ----------------------------------------------------------


def test_apply_is_trusted_to_the_keyrotor_environment_and_plan_to_pull_requests() -> None:
    def subject(role: str) -> str:
        document = trust_policy("acme/policies", role=role, account_id=ACCOUNT)  # type: ignore[arg-type]
        (statement,) = document["Statement"]
        assert statement["Principal"]["Federated"] == (
            f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
        )
        conditions = statement["Condition"]["StringEquals"]
        assert conditions["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
        return str(conditions["token.actions.githubusercontent.com:sub"])

    assert subject("apply") == "repo:acme/policies:environment:keyrotor"
    assert subject("plan") == "repo:acme/policies:pull_request"
    with pytest.raises(ValueError, match="OWNER/REPO"):
        trust_policy("acme", role="apply", account_id=ACCOUNT)


def _repo(tmp_path: Path, manifests: str = MANIFESTS) -> Path:
    (tmp_path / "repo" / "manifests").mkdir(parents=True)
    (tmp_path / "repo" / "manifests" / "p.yaml").write_text(manifests)
    (tmp_path / "g.yaml").write_text(GUARDRAILS)
    return tmp_path / "repo"


def test_the_command_prints_the_policy_and_the_trust_policy_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _repo(tmp_path)
    argv = ["iam-policy", "--repo", str(repo), "--guardrails", str(tmp_path / "g.yaml")]
    argv += ["--account-id", ACCOUNT, "--region", REGION, "--format", "json"]
    assert main([*argv, "--trust", "github:acme/policies", "--role", "plan"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["role"] == "plan"
    assert _actions(out["policy"]) == DESIGN_PLAN_ACTIONS
    assert out["trustPolicy"]["Statement"][0]["Action"] == "sts:AssumeRoleWithWebIdentity"


def test_the_command_refuses_manifests_that_break_the_guardrails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _repo(tmp_path, MANIFESTS.replace("names: [billing-bot]", "names: [break-glass]"))
    argv = ["iam-policy", "--repo", str(repo), "--guardrails", str(tmp_path / "g.yaml")]
    assert main([*argv, "--account-id", ACCOUNT, "--region", REGION]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "manifests/p.yaml:19:13: spec.users.names[0]: user 'break-glass' may never" in (
        captured.err
    )
