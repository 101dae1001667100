"""keyrotor's AWS clients resend a call only when a resend cannot act twice (issues 12 and 13).

Each test runs boto3 through the fault proxy in front of the sandbox, so what a client does
after a fault is seen on the wire: how many times a call reached AWS and what AWS answered.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import boto3
import botocore.endpoint
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from controller.aws import CLIENT_CONFIG, AwsSessions
from controller.aws.retries import (
    CALLS,
    DEFAULT_MAX_ATTEMPTS,
    Repeat,
    RetrySettingsError,
    adaptive_from,
    max_attempts_from,
    parse_max_attempts,
    repeat_of,
)
from controller.policy import Account
from controller.sandbox import AccessKeyPair, Sandbox
from tests.support.faultproxy import Fault, FaultProxy, Rule, run_fault_proxy

ACCOUNT = Account()


@pytest.fixture
def faults(aws: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The fault proxy, with AWS_ENDPOINT_URL pointing at it as keyrotor would be configured."""
    yield from run_fault_proxy(aws, monkeypatch)


@pytest.fixture
def botocore_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Delays botocore's endpoint would sleep, recorded instead (its only use of `time`)."""
    delays: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=delays.append))
    return delays


@pytest.fixture
def user(aws: Sandbox) -> AccessKeyPair:
    """A user with one key: a second CreateAccessKey succeeds, a third meets the limit."""
    return aws.create_user_with_key("deploy-bot")


def _sessions(
    *, max_attempts: int = DEFAULT_MAX_ATTEMPTS, sleep: Callable[[float], object] = lambda _: None
) -> AwsSessions:
    """Sessions that wait no real time: backoffs go to `sleep`, and the adaptive rate limiter
    (which after a throttle waits in real time) is off."""
    return AwsSessions(boto3.Session(), max_attempts=max_attempts, sleep=sleep, adaptive=False)


def _keys(aws: Sandbox, user: str) -> list[str]:
    metas = aws.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
    return [m["AccessKeyId"] for m in metas]


def _code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


# --- issue 12, defect 3: a lost answer to CreateAccessKey ---------------------------------------


def test_a_lost_answer_to_create_access_key_is_not_resent(
    aws: Sandbox, faults: FaultProxy, user: AccessKeyPair, botocore_sleeps: list[float]
) -> None:
    iam = AwsSessions(boto3.Session()).client(ACCOUNT, "iam")
    with (
        faults.faults(Rule(Fault.CLOSE_AFTER, "CreateAccessKey", nth=1)),
        pytest.raises(ConnectionClosedError),
    ):
        iam.create_access_key(UserName=user.user_name)
    assert faults.answered("LimitExceeded") == []
    assert faults.count("CreateAccessKey") == 1
    assert len(_keys(aws, user.user_name)) == 2  # the one created, whose answer was lost


def test_botocores_own_retry_modes_resend_a_lost_create_access_key(
    faults: FaultProxy, user: AccessKeyPair, botocore_sleeps: list[float]
) -> None:
    """Why keyrotor does not leave resending to botocore: the resend is a third-key attempt."""
    iam = boto3.client("iam", config=CLIENT_CONFIG)
    with (
        faults.faults(Rule(Fault.CLOSE_AFTER, "CreateAccessKey", nth=1)),
        pytest.raises(ClientError) as caught,
    ):
        iam.create_access_key(UserName=user.user_name)
    assert _code(caught.value) == "LimitExceeded"
    assert [c.error for c in faults.calls("CreateAccessKey")] == [None, "LimitExceeded"]


def test_the_sdks_retry_settings_cannot_bring_the_resend_back(
    faults: FaultProxy, user: AccessKeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_RETRY_MODE", "legacy")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "5")
    iam = AwsSessions(boto3.Session()).client(ACCOUNT, "iam")
    with (
        faults.faults(Rule(Fault.CLOSE_AFTER, "CreateAccessKey", nth=1)),
        pytest.raises(ConnectionClosedError),
    ):
        iam.create_access_key(UserName=user.user_name)
    assert faults.count("CreateAccessKey") == 1


def test_a_connection_closed_before_create_access_key_was_forwarded_is_not_resent_either(
    aws: Sandbox, faults: FaultProxy, user: AccessKeyPair
) -> None:
    """A client cannot tell it from a lost answer: both are a closed connection."""
    iam = AwsSessions(boto3.Session()).client(ACCOUNT, "iam")
    with (
        faults.faults(Rule(Fault.CLOSE_BEFORE, "CreateAccessKey", nth=1)),
        pytest.raises(ConnectionClosedError),
    ):
        iam.create_access_key(UserName=user.user_name)
    assert faults.count("CreateAccessKey") == 1
    assert _keys(aws, user.user_name) == [user.access_key_id]


@pytest.mark.parametrize("fault", [Fault.ERROR_500, Fault.ERROR_503])
def test_a_server_error_answer_to_create_access_key_is_raised_not_resent(
    faults: FaultProxy, user: AccessKeyPair, fault: Fault
) -> None:
    iam = AwsSessions(boto3.Session()).client(ACCOUNT, "iam")
    with faults.faults(Rule(fault, "CreateAccessKey", nth=1)), pytest.raises(ClientError):
        iam.create_access_key(UserName=user.user_name)
    assert faults.count("CreateAccessKey") == 1


def test_a_throttled_create_access_key_is_resent_and_creates_one_key(
    aws: Sandbox, faults: FaultProxy, user: AccessKeyPair
) -> None:
    """AWS applies no throttled request, so resending one cannot act twice."""
    waits: list[float] = []
    iam = _sessions(sleep=waits.append).client(ACCOUNT, "iam")
    with faults.faults(Rule(Fault.THROTTLE, "CreateAccessKey", limit=2)):
        created = iam.create_access_key(UserName=user.user_name)["AccessKey"]
    assert [c.fault for c in faults.calls("CreateAccessKey")] == [
        Fault.THROTTLE,
        Fault.THROTTLE,
        None,
    ]
    assert len(waits) == 2
    assert sorted(_keys(aws, user.user_name)) == sorted(
        [user.access_key_id, created["AccessKeyId"]]
    )


def test_a_create_access_key_that_could_not_connect_is_resent(
    user: AccessKeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection never opened carried no request: resending it is safe for any call."""
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        closed_port = placeholder.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port}")
    waits: list[float] = []
    iam = _sessions(max_attempts=3, sleep=waits.append).client(ACCOUNT, "iam")
    with pytest.raises(EndpointConnectionError):
        iam.create_access_key(UserName=user.user_name)
    assert len(waits) == 2


# --- repeatable calls and the maximum (issue 13) -----------------------------------------------


def test_a_repeatable_call_whose_answer_was_lost_is_resent(
    faults: FaultProxy, user: AccessKeyPair
) -> None:
    waits: list[float] = []
    iam = _sessions(sleep=waits.append).client(ACCOUNT, "iam")
    with faults.faults(Rule(Fault.CLOSE_AFTER, "UpdateAccessKey", nth=1)):
        iam.update_access_key(
            UserName=user.user_name, AccessKeyId=user.access_key_id, Status="Inactive"
        )
    assert faults.count("UpdateAccessKey") == 2
    assert len(waits) == 1


@pytest.mark.parametrize("fault", [Fault.THROTTLE, Fault.ERROR_500, Fault.ERROR_503])
def test_a_read_is_resent_after_a_refusal_or_server_error(faults: FaultProxy, fault: Fault) -> None:
    ssm = _sessions().client(ACCOUNT, "ssm")
    with faults.faults(Rule(fault, "DescribeParameters", nth=1)):
        ssm.describe_parameters()
    assert faults.count("DescribeParameters") == 2


def test_max_attempts_caps_the_attempts_per_call(faults: FaultProxy) -> None:
    waits: list[float] = []
    sessions = _sessions(max_attempts=3, sleep=waits.append)
    with faults.faults(Rule(Fault.THROTTLE, "ListUsers")), pytest.raises(ClientError) as caught:
        sessions.client(ACCOUNT, "iam").list_users()
    assert _code(caught.value) == "Throttling"
    assert faults.count("ListUsers") == 3
    assert len(waits) == 2


def test_a_throttling_backoff_starts_below_a_second_and_grows(faults: FaultProxy) -> None:
    waits: list[float] = []
    sessions = _sessions(max_attempts=5, sleep=waits.append)
    with faults.faults(Rule(Fault.THROTTLE, "ListUsers")), pytest.raises(ClientError):
        sessions.client(ACCOUNT, "iam").list_users()
    assert len(waits) == 4
    assert all(0 <= wait <= 2**i for i, wait in enumerate(waits))


def test_the_default_is_eight_attempts(faults: FaultProxy) -> None:
    sessions = _sessions()
    with faults.faults(Rule(Fault.THROTTLE, "ListUsers")), pytest.raises(ClientError):
        sessions.client(ACCOUNT, "iam").list_users()
    assert faults.count("ListUsers") == DEFAULT_MAX_ATTEMPTS == 8


def test_a_client_without_retries_makes_one_attempt(faults: FaultProxy) -> None:
    sessions = _sessions()
    with faults.faults(Rule(Fault.THROTTLE, "ListUsers", nth=1)), pytest.raises(ClientError):
        sessions.client(ACCOUNT, "iam", retries=False).list_users()
    assert faults.count("ListUsers") == 1


def test_a_key_client_signs_with_its_key_and_retries_the_same_way(
    faults: FaultProxy, user: AccessKeyPair
) -> None:
    sessions = _sessions()
    sts = sessions.key_client(user.access_key_id, user.secret_access_key, "sts", "us-east-1")
    with faults.faults(Rule(Fault.THROTTLE, "GetCallerIdentity", nth=1)):
        sts.get_caller_identity()
    assert [c.key for c in faults.calls("GetCallerIdentity")] == [user.access_key_id] * 2


def test_clients_keep_botocores_adaptive_rate_limiter_by_default() -> None:
    sessions = AwsSessions(boto3.Session(region_name="us-east-1"))
    assert sessions.client(ACCOUNT, "iam").meta.config.retries["mode"] == "adaptive"


def test_max_attempts_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AwsSessions(boto3.Session(region_name="us-east-1"), max_attempts=0)


# --- what a resend does to each repeatable mutation (the reasons in controller.aws.retries) ---


def test_a_resent_delete_access_key_answers_no_such_entity(
    aws: Sandbox, faults: FaultProxy, user: AccessKeyPair
) -> None:
    """The caller must read NoSuchEntity after a resend as "deleted"."""
    iam = _sessions().client(ACCOUNT, "iam")
    with (
        faults.faults(Rule(Fault.CLOSE_AFTER, "DeleteAccessKey", nth=1)),
        pytest.raises(ClientError) as caught,
    ):
        iam.delete_access_key(UserName=user.user_name, AccessKeyId=user.access_key_id)
    assert _code(caught.value) == "NoSuchEntity"
    assert _keys(aws, user.user_name) == []


def test_a_resent_put_secret_value_carries_the_same_token_and_adds_one_version(
    aws: Sandbox, faults: FaultProxy
) -> None:
    aws.client("secretsmanager").create_secret(Name="ci/web", SecretString="old")
    secrets = _sessions().client(ACCOUNT, "secretsmanager")
    with faults.faults(Rule(Fault.CLOSE_AFTER, "PutSecretValue", nth=1)):
        secrets.put_secret_value(SecretId="ci/web", SecretString="new")
    tokens = {c.params["ClientRequestToken"] for c in faults.calls("PutSecretValue")}
    assert faults.count("PutSecretValue") == 2
    assert len(tokens) == 1
    versions = aws.client("secretsmanager").list_secret_version_ids(SecretId="ci/web")["Versions"]
    assert len(versions) == 2


def test_a_resent_create_secret_carries_the_same_token_and_creates_one_version(
    aws: Sandbox, faults: FaultProxy
) -> None:
    secrets = _sessions().client(ACCOUNT, "secretsmanager")
    with faults.faults(Rule(Fault.CLOSE_AFTER, "CreateSecret", nth=1)):
        secrets.create_secret(Name="ci/web", SecretString="new")
    tokens = {c.params["ClientRequestToken"] for c in faults.calls("CreateSecret")}
    assert (faults.count("CreateSecret"), len(tokens)) == (2, 1)
    versions = aws.client("secretsmanager").list_secret_version_ids(SecretId="ci/web")["Versions"]
    assert len(versions) == 1


def test_a_resent_put_parameter_writes_the_value_again_as_a_new_version(
    aws: Sandbox, faults: FaultProxy
) -> None:
    ssm = _sessions().client(ACCOUNT, "ssm")
    with faults.faults(Rule(Fault.CLOSE_AFTER, "PutParameter", nth=1)):
        answer = ssm.put_parameter(Name="/ci/web", Value="v", Type="SecureString", Overwrite=True)
    assert answer["Version"] == 2
    parameter = aws.client("ssm").get_parameter(Name="/ci/web", WithDecryption=True)["Parameter"]
    assert (parameter["Version"], parameter["Value"]) == (2, "v")


def test_a_resent_tag_user_leaves_the_same_tags(
    aws: Sandbox, faults: FaultProxy, user: AccessKeyPair
) -> None:
    iam = _sessions().client(ACCOUNT, "iam")
    tags = [{"Key": "keyrotor.dev/intent", "Value": "run-1 2026-01-01T00:00:00Z"}]
    with faults.faults(Rule(Fault.CLOSE_AFTER, "TagUser", nth=1)):
        iam.tag_user(UserName=user.user_name, Tags=tags)
    assert faults.count("TagUser") == 2
    assert aws.client("iam").list_user_tags(UserName=user.user_name)["Tags"] == tags


# --- the decision table ------------------------------------------------------------------------

#: The apply role's calls (docs: the design contract's list), each of which must be classified.
APPLY_CALLS = [
    "iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:DeleteAccessKey", "iam:TagUser",
    "iam:UntagUser", "secretsmanager:PutSecretValue", "secretsmanager:CreateSecret",
    "secretsmanager:TagResource", "ssm:PutParameter", "ssm:AddTagsToResource", "sts:AssumeRole",
    "iam:GenerateCredentialReport",
]  # fmt: skip


def test_create_access_key_is_the_one_call_that_is_never_resent_after_a_lost_answer() -> None:
    assert [call for call in APPLY_CALLS if CALLS[call] is Repeat.ONCE] == ["iam:CreateAccessKey"]


def test_an_unclassified_mutation_is_never_resent_after_a_lost_answer() -> None:
    assert repeat_of("iam", "CreateLoginProfile") is Repeat.ONCE


def test_an_unclassified_read_is_repeatable() -> None:
    assert repeat_of("iam", "GetAccountAuthorizationDetails") is Repeat.REPEATABLE


def test_max_attempts_come_from_the_sdks_variable() -> None:
    assert max_attempts_from({"AWS_MAX_ATTEMPTS": "3"}) == 3
    assert max_attempts_from({}) == DEFAULT_MAX_ATTEMPTS


@pytest.mark.parametrize(
    ("mode", "adaptive"), [(None, True), ("adaptive", True), ("standard", False), ("legacy", False)]
)
def test_the_retry_mode_comes_from_the_sdks_variable(mode: str | None, adaptive: bool) -> None:
    assert adaptive_from({} if mode is None else {"AWS_RETRY_MODE": mode}) is adaptive


def test_an_unknown_retry_mode_is_refused() -> None:
    with pytest.raises(RetrySettingsError, match=r"^AWS_RETRY_MODE: 'fast' is not a retry mode"):
        adaptive_from({"AWS_RETRY_MODE": "fast"})


@pytest.mark.parametrize("text", ["0", "-1", "three", ""])
def test_a_bad_max_attempts_names_its_source(text: str) -> None:
    with pytest.raises(RetrySettingsError, match=r"^--aws-max-attempts: "):
        parse_max_attempts(text, "--aws-max-attempts")
