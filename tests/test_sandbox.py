"""The embedded AWS behaves as AWS does in the ways keyrotor relies on.

These pin the harness itself: if the sandbox let an inactive key through or ignored its clock,
every rotation test built on it would pass for the wrong reason.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError

from controller.sandbox import AccessKeyPair, Sandbox, start_sandbox

# Each test here starts a sandbox server process of its own.
pytestmark = pytest.mark.e2e

# The sandbox clock ticks in real time from wherever it was set; a test's own calls take
# well under this, and it is far below the days-long jumps the tests make.
SLACK = timedelta(minutes=1)


def _refusal(call: Callable[[], object]) -> tuple[str, int]:
    """Run `call` expecting AWS to refuse it; return the error code and HTTP status."""
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _deactivate(aws: Sandbox, key: AccessKeyPair) -> None:
    aws.client("iam").update_access_key(
        UserName=key.user_name, AccessKeyId=key.access_key_id, Status="Inactive"
    )


# --- the clock ---------------------------------------------------------------------------------


def test_each_test_starts_with_the_clock_at_the_sandbox_start(aws: Sandbox) -> None:
    assert aws.start <= aws.now() < aws.start + SLACK


def test_advancing_the_clock_moves_it_forward_by_that_much(aws: Sandbox) -> None:
    before = aws.now()
    after = aws.advance(timedelta(days=30))
    assert timedelta(days=30) <= after - before < timedelta(days=30) + SLACK
    assert after <= aws.now()


def test_a_new_access_key_is_created_at_the_sandbox_time(aws: Sandbox) -> None:
    moved_to = datetime(2026, 3, 15, 9, 30, tzinfo=UTC)
    aws.set_clock(moved_to)

    key = aws.create_user_with_key("alice")

    (listed,) = aws.client("iam").list_access_keys(UserName="alice")["AccessKeyMetadata"]
    assert listed["AccessKeyId"] == key.access_key_id
    assert moved_to <= listed["CreateDate"] < moved_to + SLACK


def test_a_never_used_key_has_no_last_used_date(aws: Sandbox) -> None:
    key = aws.create_user_with_key("alice")

    last_used = aws.client("iam").get_access_key_last_used(AccessKeyId=key.access_key_id)

    assert "LastUsedDate" not in last_used["AccessKeyLastUsed"]


def test_a_request_signed_with_a_key_records_its_use_at_the_sandbox_time(aws: Sandbox) -> None:
    key = aws.create_user_with_key("alice")
    used_at = datetime(2026, 1, 11, 8, 0, tzinfo=UTC)
    aws.set_clock(used_at)

    aws.client("sts", key.access_key_id, key.secret_access_key).get_caller_identity()

    last_used = aws.client("iam").get_access_key_last_used(AccessKeyId=key.access_key_id)
    recorded = last_used["AccessKeyLastUsed"]
    assert used_at <= recorded["LastUsedDate"] < used_at + SLACK
    assert recorded["ServiceName"] == "sts"


# --- which keys authenticate -------------------------------------------------------------------


def test_an_active_key_authenticates_as_its_user(aws: Sandbox) -> None:
    key = aws.create_user_with_key("alice")

    identity = aws.client("sts", key.access_key_id, key.secret_access_key).get_caller_identity()

    assert identity["Arn"].endswith(":user/alice")


@pytest.mark.parametrize(
    ("service", "operation"), [("sts", "get_caller_identity"), ("iam", "list_users")]
)
def test_an_inactive_key_is_refused_by_query_protocol_services(
    aws: Sandbox, service: str, operation: str
) -> None:
    key = aws.create_user_with_key("alice")
    _deactivate(aws, key)
    client = aws.client(service, key.access_key_id, key.secret_access_key)

    assert _refusal(getattr(client, operation)) == ("InvalidClientTokenId", 403)


@pytest.mark.parametrize(
    ("service", "operation"), [("secretsmanager", "list_secrets"), ("ssm", "describe_parameters")]
)
def test_an_inactive_key_is_refused_by_json_protocol_services(
    aws: Sandbox, service: str, operation: str
) -> None:
    key = aws.create_user_with_key("alice")
    _deactivate(aws, key)
    client = aws.client(service, key.access_key_id, key.secret_access_key)

    assert _refusal(getattr(client, operation)) == ("UnrecognizedClientException", 400)


def test_a_refused_request_has_no_effect(aws: Sandbox) -> None:
    key = aws.create_user_with_key("alice")
    _deactivate(aws, key)
    as_alice = aws.client("iam", key.access_key_id, key.secret_access_key)

    _refusal(lambda: as_alice.create_user(UserName="mallory"))

    users = aws.client("iam").list_users()["Users"]
    assert [user["UserName"] for user in users] == ["alice"]


def test_a_reactivated_key_authenticates_again(aws: Sandbox) -> None:
    key = aws.create_user_with_key("alice")
    _deactivate(aws, key)
    sts = aws.client("sts", key.access_key_id, key.secret_access_key)
    _refusal(sts.get_caller_identity)

    aws.client("iam").update_access_key(
        UserName="alice", AccessKeyId=key.access_key_id, Status="Active"
    )

    assert sts.get_caller_identity()["Arn"].endswith(":user/alice")


def test_a_deleted_key_is_refused(aws: Sandbox) -> None:
    key = aws.create_user_with_key("alice")
    aws.client("iam").delete_access_key(UserName="alice", AccessKeyId=key.access_key_id)

    sts = aws.client("sts", key.access_key_id, key.secret_access_key)

    assert _refusal(sts.get_caller_identity) == ("InvalidClientTokenId", 403)


def test_a_key_survives_the_deactivation_of_its_users_other_key(aws: Sandbox) -> None:
    old = aws.create_user_with_key("alice")
    created = aws.client("iam").create_access_key(UserName="alice")["AccessKey"]
    _deactivate(aws, old)

    sts = aws.client("sts", created["AccessKeyId"], created["SecretAccessKey"])

    assert sts.get_caller_identity()["Arn"].endswith(":user/alice")


# --- the harness -------------------------------------------------------------------------------


def test_plain_boto3_reaches_the_sandbox_as_the_admin(aws: Sandbox) -> None:
    boto3.client("iam").create_user(UserName="bob")

    users = aws.client("iam").list_users()["Users"]

    assert [user["UserName"] for user in users] == ["bob"]
    assert boto3.client("sts").get_caller_identity()["Account"]


def test_reset_forgets_every_user(aws: Sandbox) -> None:
    aws.create_user_with_key("alice")

    aws.reset()

    assert aws.client("iam").list_users()["Users"] == []


def test_reset_puts_the_clock_back(aws: Sandbox) -> None:
    aws.advance(timedelta(days=400))

    aws.reset()

    assert aws.start <= aws.now() < aws.start + SLACK


def test_stopping_the_sandbox_ends_its_server_process() -> None:
    with start_sandbox() as sandbox:
        assert sandbox.running

    assert not sandbox.running


def test_the_server_exits_when_the_process_that_started_it_dies() -> None:
    if not hasattr(os, "pidfd_open"):
        pytest.skip("needs os.pidfd_open to wait for a process that is not our child")
    launcher = (
        "import os, sys\n"
        "from controller.sandbox import Sandbox\n"
        "print(Sandbox.launch().pid, flush=True)\n"
        "os._exit(0)  # no cleanup: as if the launcher were killed\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", launcher], capture_output=True, text=True, check=True, timeout=30
    )
    server_pid = int(finished.stdout)

    try:
        pidfd = os.pidfd_open(server_pid)
    except ProcessLookupError:
        return  # already gone
    try:
        readable, _, _ = select.select([pidfd], [], [], 10)
    finally:
        os.close(pidfd)
    assert readable, f"sandbox server {server_pid} outlived its launcher"


def test_the_request_log_names_each_operation_and_its_signing_key(aws: Sandbox) -> None:
    pair = aws.create_user_with_key("logged")
    aws.client("sts", pair.access_key_id, pair.secret_access_key).get_caller_identity()
    aws.client("secretsmanager").create_secret(Name="s", SecretString="x")
    calls = [(c.service, c.action, c.key) for c in aws.requests()]
    assert calls == [
        ("iam", "CreateUser", "AKIDSANDBOXADMIN"),
        ("iam", "CreateAccessKey", "AKIDSANDBOXADMIN"),
        ("sts", "GetCallerIdentity", pair.access_key_id),
        ("secretsmanager", "CreateSecret", "AKIDSANDBOXADMIN"),
    ]


def test_reset_clears_the_request_log(aws: Sandbox) -> None:
    aws.client("iam").list_users()
    aws.reset()
    assert aws.requests() == []
