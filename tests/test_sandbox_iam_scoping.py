"""With IAM authorization on, the sandbox judges Resource: least privilege can be tested.

moto alone evaluates nearly every request against resource `*`; `controller.sandbox.scoping`
resolves IAM user, Secrets Manager and SSM parameter requests to their ARNs. Each test turns
authorization on for the shared server and off again however it ends (`iam_enforced`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from controller.sandbox import AccessKeyPair, Sandbox
from controller.sandbox.scoping import iam_glob_match

ACCOUNT = "123456789012"

CI_ONLY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "iam:ListAccessKeys",
                "iam:CreateAccessKey",
                "iam:TagUser",
                "iam:GetAccessKeyLastUsed",
            ],
            "Resource": f"arn:aws:iam::{ACCOUNT}:user/ci/*",
        },
        {
            "Effect": "Allow",
            "Action": [
                "secretsmanager:CreateSecret",
                "secretsmanager:PutSecretValue",
                "secretsmanager:DescribeSecret",
            ],
            "Resource": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:ci/*-??????",
        },
        {
            "Effect": "Allow",
            "Action": ["ssm:PutParameter", "ssm:ListTagsForResource"],
            "Resource": f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/ci/*",
        },
    ],
}


def _restricted(aws: Sandbox, policy: dict[str, Any]) -> AccessKeyPair:
    iam = aws.client("iam")
    key = aws.create_user_with_key("restricted", path="/keyrotor/")
    iam.put_user_policy(
        UserName="restricted", PolicyName="only-ci", PolicyDocument=json.dumps(policy)
    )
    return key


def _denied(call: Callable[[], object]) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return str(caught.value.response["Error"].get("Code"))


@pytest.fixture
def ci_and_admin_users(aws: Sandbox) -> None:
    aws.create_user_with_key("x", path="/ci/")
    aws.create_user_with_key("y", path="/admin/")


def test_iam_user_actions_are_allowed_inside_the_resource_and_denied_outside(
    aws: Sandbox, ci_and_admin_users: None
) -> None:
    key = _restricted(aws, CI_ONLY)
    iam = aws.client("iam", key.access_key_id, key.secret_access_key)
    with aws.iam_enforced():
        assert len(iam.list_access_keys(UserName="x")["AccessKeyMetadata"]) == 1
        iam.tag_user(UserName="x", Tags=[{"Key": "keyrotor.dev/policy", "Value": "ci"}])
        assert _denied(lambda: iam.list_access_keys(UserName="y")) == "AccessDenied"
        assert _denied(lambda: iam.create_access_key(UserName="y")) == "AccessDenied"
    assert len(aws.client("iam").list_access_keys(UserName="y")["AccessKeyMetadata"]) == 1


def test_get_access_key_last_used_is_judged_on_the_key_owner(
    aws: Sandbox, ci_and_admin_users: None
) -> None:
    key = _restricted(aws, CI_ONLY)
    admin = aws.client("iam")
    (x_key,) = admin.list_access_keys(UserName="x")["AccessKeyMetadata"]
    (y_key,) = admin.list_access_keys(UserName="y")["AccessKeyMetadata"]
    iam = aws.client("iam", key.access_key_id, key.secret_access_key)
    with aws.iam_enforced():
        iam.get_access_key_last_used(AccessKeyId=x_key["AccessKeyId"])
        denied = _denied(lambda: iam.get_access_key_last_used(AccessKeyId=y_key["AccessKeyId"]))
        assert denied == "AccessDenied"


def test_secrets_are_judged_on_their_arn(aws: Sandbox) -> None:
    key = _restricted(aws, CI_ONLY)
    aws.client("secretsmanager").create_secret(Name="admin/b", SecretString="{}")
    sm = aws.client("secretsmanager", key.access_key_id, key.secret_access_key)
    with aws.iam_enforced():
        sm.create_secret(Name="ci/a/aws", SecretString="{}")
        sm.put_secret_value(SecretId="ci/a/aws", SecretString='{"v": 2}')
        sm.describe_secret(SecretId="ci/a/aws")
        assert _denied(lambda: sm.create_secret(Name="admin/c", SecretString="{}")) != ""
        assert _denied(lambda: sm.describe_secret(SecretId="admin/b")) != ""
        assert _denied(lambda: sm.put_secret_value(SecretId="admin/b", SecretString="x")) != ""


def test_parameters_are_judged_on_their_arn(aws: Sandbox) -> None:
    key = _restricted(aws, CI_ONLY)
    aws.client("ssm").put_parameter(Name="/admin/p", Value="v", Type="SecureString")
    ssm = aws.client("ssm", key.access_key_id, key.secret_access_key)
    with aws.iam_enforced():
        ssm.put_parameter(Name="/ci/p", Value="v", Type="SecureString")
        ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId="/ci/p")
        assert _denied(lambda: ssm.put_parameter(Name="/admin/q", Value="v", Type="String")) != ""
        denied = _denied(
            lambda: ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId="/admin/p")
        )
        assert denied != ""


def test_the_admin_identity_keeps_working_while_authorization_is_enforced(aws: Sandbox) -> None:
    with aws.iam_enforced():
        aws.create_user_with_key("z", path="/admin/")
        aws.client("secretsmanager").create_secret(Name="admin/z", SecretString="{}")


def test_enforcement_is_off_by_default_and_after_the_block(aws: Sandbox) -> None:
    assert not aws.iam_enforcement()
    with aws.iam_enforced():
        assert aws.iam_enforcement()
    assert not aws.iam_enforcement()
    key = aws.create_user_with_key("nobody-granted-anything")
    # Without enforcement a user with no policy may do anything, as moto does by default.
    aws.client("iam", key.access_key_id, key.secret_access_key).list_users()


def test_a_reset_turns_enforcement_off(aws: Sandbox) -> None:
    aws.set_iam_enforcement(True)
    aws.reset()
    assert not aws.iam_enforcement()


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("arn:aws:iam::1:user/ci/*", "arn:aws:iam::1:user/ci/a/b", True),
        ("arn:aws:iam::1:user/ci/*", "arn:aws:iam::1:user/admin/y", False),
        ("secret:ci/x-??????", "secret:ci/x-AbCdEf", True),
        ("secret:ci/x-??????", "secret:ci/x-AbCdE", False),
        ("a.b", "axb", False),  # a dot is literal, not a regex wildcard
    ],
)
def test_resource_patterns_match_as_iam_globs(pattern: str, value: str, expected: bool) -> None:
    assert iam_glob_match(pattern, value) is expected
