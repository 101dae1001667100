"""Least privilege, proven against the embedded AWS with IAM authorization enforced.

An IAM user holding only the generated `apply` policy makes every AWS call of the design's list
(notes: "AWS calls keyrotor makes") for a managed user: read it, mark an intent, create a key,
store it in Secrets Manager and SSM with their metadata tags, deactivate, roll back, deactivate
again, delete. A user holding only the `plan` policy makes the read calls and none of the
others. And a manifest edited to reach a user outside the guardrails gets AccessDenied from IAM
itself, even when keyrotor's own guardrail check is bypassed (boto3 is driven directly).

moto judges Action and Resource (with `controller.sandbox.scoping`); it cannot judge Conditions,
so it is given `moto_judgeable(document)` and every call is also judged by the tests' evaluator
on the whole document, which must agree with moto. Where only the evaluator can decide (a user
protected by tag, keyrotor's own tag keys) it alone is asserted.

The calls are boto3's here; keyrotor's real executor replaces them once it makes these calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from controller.guardrails import Guardrails, iam_policy, load_guardrails
from controller.manifests import load_policies
from controller.policy import Policy
from controller.sandbox import AccessKeyPair, Sandbox
from tests.support.iam_eval import Decision, Request, evaluate, moto_judgeable

ACCOUNT = "123456789012"
REGION = "us-east-1"
USERS = f"arn:aws:iam::{ACCOUNT}:user"
PARAMETERS = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter"
PROTECT = {"keyrotor.dev/protect": "true"}

MANIFEST = """\
apiVersion: keyrotor.dev/v1
kind: RotationPolicy
metadata:
  name: ci
spec:
  users:
    selector: {pathPrefix: /ci/}
  maxKeyAge: 90d
  approval: auto
  targets:
    - {type: aws-secrets-manager, secretId: "ci/{user}/aws"}
    - {type: aws-ssm-parameter, name: "/ci/{user}/aws"}
"""

GUARDRAILS = """\
apiVersion: keyrotor.dev/v1
kind: Guardrails
users:
  pathPrefixes: [/ci/]
  denyNames: [break-glass]
  denyTags: {keyrotor.dev/protect: "true"}
targets:
  secretsManager: ["ci/*"]
  ssmParameters: ["/ci/*"]
"""


@dataclass
class Step:
    """One AWS call as the restricted identity, and how IAM sees it."""

    name: str
    call: Callable[[], Any]
    request: Request


@pytest.fixture
def policies(tmp_path: Path) -> list[Policy]:
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "ci.yaml").write_text(MANIFEST)
    return load_policies([tmp_path / "manifests"], root=tmp_path)


@pytest.fixture
def guardrails() -> Guardrails:
    return load_guardrails(GUARDRAILS, path="guardrails.yaml")


def _document(policies: list[Policy], guardrails: Guardrails, role: str) -> dict[str, Any]:
    return iam_policy(
        policies,
        guardrails,
        role=role,  # type: ignore[arg-type]
        account_id=ACCOUNT,
        region=REGION,
    )


def _identity(aws: Sandbox, name: str, document: dict[str, Any]) -> AccessKeyPair:
    """An IAM user holding only `document` (as moto can judge it), attached as a managed policy
    (an inline user policy may not exceed 2048 characters)."""
    iam = aws.client("iam")
    installable, _ = moto_judgeable(document)
    arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(installable))["Policy"][
        "Arn"
    ]
    key = aws.create_user_with_key(name, path="/keyrotor/")
    iam.attach_user_policy(UserName=name, PolicyArn=arn)
    return key


@pytest.fixture
def enforced(aws: Sandbox) -> Iterator[Sandbox]:
    with aws.iam_enforced():
        yield aws


def _outcome(step: Step) -> Decision:
    """What moto said: ALLOWED, or a denial (moto does not tell explicit from implicit)."""
    try:
        step.call()
    except ClientError as exc:
        code = exc.response["Error"].get("Code", "")
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        if code in ("AccessDenied", "AccessDeniedException") or status == 403:
            return Decision.IMPLICIT_DENY
        raise
    return Decision.ALLOWED


def _agree(document: dict[str, Any], steps: list[Step]) -> dict[str, tuple[Decision, Decision]]:
    """Run each step; return {name: (moto's outcome, the evaluator's decision)}."""
    return {s.name: (_outcome(s), evaluate([document], s.request)) for s in steps}


def _seed(aws: Sandbox) -> dict[str, AccessKeyPair]:
    admin = aws.client("iam")
    keys = {
        "deploy-bot": aws.create_user_with_key("deploy-bot", path="/ci/"),
        "break-glass": aws.create_user_with_key("break-glass", path="/ci/"),
        "shielded": aws.create_user_with_key("shielded", path="/ci/"),
        "root-ish": aws.create_user_with_key("root-ish", path="/admin/"),
    }
    admin.tag_user(UserName="shielded", Tags=[{"Key": k, "Value": v} for k, v in PROTECT.items()])
    return keys


def _lifecycle(aws: Sandbox, key: AccessKeyPair, old: AccessKeyPair) -> list[Step]:
    """The design's calls for one rotation of `old` (deploy-bot), in a lifecycle's order."""
    iam = aws.client("iam", key.access_key_id, key.secret_access_key)
    sts = aws.client("sts", key.access_key_id, key.secret_access_key)
    sm = aws.client("secretsmanager", key.access_key_id, key.secret_access_key)
    ssm = aws.client("ssm", key.access_key_id, key.secret_access_key)
    user = old.user_name
    user_arn = f"{USERS}/ci/{user}"
    secret = f"ci/{user}/aws"
    parameter = f"/ci/{user}/aws"
    parameter_arn = f"{PARAMETERS}{parameter}"
    # A secret's ARN has a random suffix; the evaluator is given one of the same shape.
    secret_arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{secret}-AbCdEf"
    created: dict[str, str] = {}

    def create_key() -> None:
        created["id"] = iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]

    def tags(*keys: str) -> dict[str, Any]:
        return {"aws:TagKeys": list(keys)}

    def step(name: str, call: Callable[[], Any], action: str, resource: str, **ctx: Any) -> Step:
        return Step(name, call, Request(action, resource, ctx))

    metadata: Any = [{"Key": "keyrotor.dev/key-id", "Value": "AKIA"}]
    return [
        step("who am I", sts.get_caller_identity, "sts:GetCallerIdentity", "*"),
        step(
            "credential report",
            iam.generate_credential_report,
            "iam:GenerateCredentialReport",
            "*",
        ),
        step(
            "authorization details",
            lambda: iam.get_account_authorization_details(Filter=["User"]),
            "iam:GetAccountAuthorizationDetails",
            "*",
        ),
        step("list users", iam.list_users, "iam:ListUsers", "*"),
        step("get user", lambda: iam.get_user(UserName=user), "iam:GetUser", user_arn),
        step("user tags", lambda: iam.list_user_tags(UserName=user), "iam:ListUserTags", user_arn),
        step("keys", lambda: iam.list_access_keys(UserName=user), "iam:ListAccessKeys", user_arn),
        step(
            "key last used",
            lambda: iam.get_access_key_last_used(AccessKeyId=old.access_key_id),
            "iam:GetAccessKeyLastUsed",
            user_arn,
        ),
        step(
            "intent tag",
            lambda: iam.tag_user(
                UserName=user, Tags=[{"Key": "keyrotor.dev/intent", "Value": "run-1"}]
            ),
            "iam:TagUser",
            user_arn,
            **tags("keyrotor.dev/intent"),
        ),
        step("create key", create_key, "iam:CreateAccessKey", user_arn),
        step(
            "create secret",
            lambda: sm.create_secret(Name=secret, SecretString="{}", Tags=metadata),
            "secretsmanager:CreateSecret",
            secret_arn,
            **tags("keyrotor.dev/key-id"),
        ),
        step(
            "store in secret",
            lambda: sm.put_secret_value(
                SecretId=secret, SecretString='{"v": 1}', ClientRequestToken="a" * 32
            ),
            "secretsmanager:PutSecretValue",
            secret_arn,
        ),
        step(
            "secret metadata",
            lambda: sm.tag_resource(SecretId=secret, Tags=metadata),
            "secretsmanager:TagResource",
            secret_arn,
            **tags("keyrotor.dev/key-id"),
        ),
        step(
            "describe secret",
            lambda: sm.describe_secret(SecretId=secret),
            "secretsmanager:DescribeSecret",
            secret_arn,
        ),
        step(
            "secret versions",
            lambda: sm.list_secret_version_ids(SecretId=secret),
            "secretsmanager:ListSecretVersionIds",
            secret_arn,
        ),
        step(
            "read secret",
            lambda: sm.get_secret_value(SecretId=secret, VersionStage="AWSCURRENT"),
            "secretsmanager:GetSecretValue",
            secret_arn,
        ),
        step(
            "store in parameter",
            lambda: ssm.put_parameter(
                Name=parameter, Value='{"v": 1}', Type="SecureString", Overwrite=True
            ),
            "ssm:PutParameter",
            parameter_arn,
        ),
        step(
            "parameter metadata",
            lambda: ssm.add_tags_to_resource(
                ResourceType="Parameter", ResourceId=parameter, Tags=metadata
            ),
            "ssm:AddTagsToResource",
            parameter_arn,
            **tags("keyrotor.dev/key-id"),
        ),
        step(
            "describe parameters",
            lambda: ssm.describe_parameters(
                ParameterFilters=[{"Key": "Name", "Values": [parameter]}]
            ),
            "ssm:DescribeParameters",
            "*",
        ),
        step(
            "parameter tags",
            lambda: ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=parameter),
            "ssm:ListTagsForResource",
            parameter_arn,
        ),
        step(
            "read parameter",
            lambda: ssm.get_parameter(Name=parameter, WithDecryption=True),
            "ssm:GetParameter",
            parameter_arn,
        ),
        step(
            "parameter history",
            lambda: ssm.get_parameter_history(Name=parameter),
            "ssm:GetParameterHistory",
            parameter_arn,
        ),
        step(
            "record key",
            lambda: iam.tag_user(
                UserName=user, Tags=[{"Key": "keyrotor.dev/keys", "Value": created.get("id", "-")}]
            ),
            "iam:TagUser",
            user_arn,
            **tags("keyrotor.dev/keys"),
        ),
        step(
            "drop intent",
            lambda: iam.untag_user(UserName=user, TagKeys=["keyrotor.dev/intent"]),
            "iam:UntagUser",
            user_arn,
            **tags("keyrotor.dev/intent"),
        ),
        step(
            "deactivate old",
            lambda: iam.update_access_key(
                UserName=user, AccessKeyId=old.access_key_id, Status="Inactive"
            ),
            "iam:UpdateAccessKey",
            user_arn,
        ),
        step(
            "roll back",
            lambda: iam.update_access_key(
                UserName=user, AccessKeyId=old.access_key_id, Status="Active"
            ),
            "iam:UpdateAccessKey",
            user_arn,
        ),
        step(
            "deactivate again",
            lambda: iam.update_access_key(
                UserName=user, AccessKeyId=old.access_key_id, Status="Inactive"
            ),
            "iam:UpdateAccessKey",
            user_arn,
        ),
        step(
            "delete old",
            lambda: iam.delete_access_key(UserName=user, AccessKeyId=old.access_key_id),
            "iam:DeleteAccessKey",
            user_arn,
        ),
    ]


_READS = {
    "who am I",
    "credential report",
    "authorization details",
    "list users",
    "get user",
    "user tags",
    "keys",
    "key last used",
    "describe parameters",
}


def test_the_apply_policy_allows_the_whole_lifecycle_and_nothing_is_left_out(
    aws: Sandbox, policies: list[Policy], guardrails: Guardrails
) -> None:
    document = _document(policies, guardrails, "apply")
    seeded = _seed(aws)
    key = _identity(aws, "keyrotor", document)
    steps = _lifecycle(aws, key, seeded["deploy-bot"])
    with aws.iam_enforced():
        verdicts = _agree(document, steps)
    assert {name: v for name, v in verdicts.items() if v != (Decision.ALLOWED,) * 2} == {}
    # It really happened: the old key is gone, a new one is there.
    (left,) = aws.client("iam").list_access_keys(UserName="deploy-bot")["AccessKeyMetadata"]
    assert left["AccessKeyId"] != seeded["deploy-bot"].access_key_id


def test_the_plan_policy_allows_the_reads_and_refuses_every_change_and_secret(
    aws: Sandbox, policies: list[Policy], guardrails: Guardrails
) -> None:
    document = _document(policies, guardrails, "plan")
    seeded = _seed(aws)
    # The targets exist, as they would once apply ran, so that a refusal is IAM's.
    aws.client("secretsmanager").create_secret(Name="ci/deploy-bot/aws", SecretString="{}")
    aws.client("ssm").put_parameter(Name="/ci/deploy-bot/aws", Value="{}", Type="SecureString")
    key = _identity(aws, "keyrotor-plan", document)
    steps = _lifecycle(aws, key, seeded["deploy-bot"])
    reads = _READS | {"describe secret", "secret versions", "parameter tags"}
    with aws.iam_enforced():
        verdicts = _agree(document, steps)
    expected = {
        s.name: (Decision.ALLOWED, Decision.ALLOWED)
        if s.name in reads
        else (Decision.IMPLICIT_DENY, Decision.IMPLICIT_DENY)
        for s in steps
    }
    assert verdicts == expected


def _reach(aws: Sandbox, key: AccessKeyPair, user: str, path: str) -> list[Step]:
    """What a manifest edited to select `user` would make keyrotor do to it."""
    iam = aws.client("iam", key.access_key_id, key.secret_access_key)
    sm = aws.client("secretsmanager", key.access_key_id, key.secret_access_key)
    ssm = aws.client("ssm", key.access_key_id, key.secret_access_key)
    user_arn = f"{USERS}{path}{user}"
    return [
        Step(
            "create key",
            lambda: iam.create_access_key(UserName=user),
            Request("iam:CreateAccessKey", user_arn),
        ),
        Step(
            "write secret",
            lambda: sm.create_secret(Name=f"admin/{user}/aws", SecretString="{}"),
            Request(
                "secretsmanager:CreateSecret",
                f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:admin/{user}/aws-AbCdEf",
            ),
        ),
        Step(
            "write parameter",
            lambda: ssm.put_parameter(Name=f"/admin/{user}/aws", Value="{}", Type="String"),
            Request("ssm:PutParameter", f"{PARAMETERS}/admin/{user}/aws"),
        ),
    ]


@pytest.mark.parametrize(
    ("user", "path", "explicit"),
    [("root-ish", "/admin/", False), ("break-glass", "/ci/", True)],
)
def test_a_user_outside_the_guardrails_is_refused_by_iam_itself(
    aws: Sandbox,
    policies: list[Policy],
    guardrails: Guardrails,
    user: str,
    path: str,
    explicit: bool,
) -> None:
    document = _document(policies, guardrails, "apply")
    _seed(aws)
    key = _identity(aws, "keyrotor", document)
    steps = _reach(aws, key, user, path)
    with aws.iam_enforced():
        verdicts = _agree(document, steps)
    denied = Decision.EXPLICIT_DENY if explicit else Decision.IMPLICIT_DENY
    assert verdicts["create key"] == (Decision.IMPLICIT_DENY, denied)
    # Targets outside the allowed patterns are refused whoever the user is.
    assert verdicts["write secret"] == (Decision.IMPLICIT_DENY,) * 2
    assert verdicts["write parameter"] == (Decision.IMPLICIT_DENY,) * 2
    keys = aws.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
    assert len(keys) == 1


def test_a_user_protected_by_tag_is_denied_by_the_policy_document(
    policies: list[Policy], guardrails: Guardrails
) -> None:
    # moto cannot evaluate iam:ResourceTag, so this one is the evaluator's alone.
    document = _document(policies, guardrails, "apply")
    arn = f"{USERS}/ci/shielded"
    context = {f"iam:ResourceTag/{k}": v for k, v in PROTECT.items()}
    for action in ("iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:DeleteAccessKey"):
        assert evaluate([document], Request(action, arn, context)) is Decision.EXPLICIT_DENY
        assert evaluate([document], Request(action, arn)) is Decision.ALLOWED
    assert evaluate([document], Request("iam:ListAccessKeys", arn, context)) is Decision.ALLOWED
