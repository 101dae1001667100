"""The fault proxy presents each fault to boto3 as AWS would, and only where a rule names it.

These pin the harness: a fault test built on a proxy whose "close after" never reached moto, or
whose throttle botocore did not recognise, would pass for the wrong reason.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from types import SimpleNamespace
from typing import Any

import boto3
import botocore.endpoint
import pytest
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from controller.sandbox import Sandbox
from tests.support.faultproxy import (
    REDACTED,
    Fault,
    FaultProxy,
    FaultProxyError,
    Rule,
    fault_points,
    run_fault_proxy,
    start_fault_proxy,
)

NO_RETRY = Config(retries={"mode": "standard", "total_max_attempts": 1})
RETRY = Config(retries={"mode": "standard", "total_max_attempts": 3})


@pytest.fixture
def proxy(aws: Sandbox) -> Iterator[FaultProxy]:
    yield from run_fault_proxy(aws)


@pytest.fixture
def backoffs(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry delays, recorded instead of slept (its endpoint's only use of `time`)."""
    delays: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=delays.append))
    return delays


def _error(call: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _user_exists(aws: Sandbox, name: str) -> bool:
    try:
        aws.client("iam").get_user(UserName=name)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "NoSuchEntity"
        return False
    return True


# One read per protocol family: IAM and STS speak the query protocol, the others JSON.
READS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "iam": ("ListUsers", lambda c: c.list_users()),
    "sts": ("GetCallerIdentity", lambda c: c.get_caller_identity()),
    "secretsmanager": ("ListSecrets", lambda c: c.list_secrets()),
    "ssm": ("DescribeParameters", lambda c: c.describe_parameters()),
}
THROTTLE_CODES = {
    "iam": "Throttling",
    "sts": "Throttling",
    "secretsmanager": "ThrottlingException",
    "ssm": "ThrottlingException",
}


# --- each fault as a client meets it -----------------------------------------------------------


@pytest.mark.parametrize("service", sorted(READS))
def test_a_throttle_is_the_services_own_throttling_error(proxy: FaultProxy, service: str) -> None:
    action, call = READS[service]
    client = proxy.client(service, config=NO_RETRY)
    with proxy.faults(Rule(Fault.THROTTLE, action)):
        assert _error(lambda: call(client)) == (THROTTLE_CODES[service], 400)


@pytest.mark.parametrize("service", sorted(READS))
def test_botocore_retries_a_throttled_call_and_it_then_succeeds(
    proxy: FaultProxy, backoffs: list[float], service: str
) -> None:
    action, call = READS[service]
    client = proxy.client(service, config=RETRY)
    with proxy.faults(Rule(Fault.THROTTLE, action, nth=1)):
        response = call(client)
    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert [(c.fault, c.forwarded) for c in proxy.calls(action)] == [
        (Fault.THROTTLE, False),
        (None, True),
    ]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [(Fault.ERROR_500, ("InternalFailure", 500)), (Fault.ERROR_503, ("ServiceUnavailable", 503))],
)
@pytest.mark.parametrize("service", ["iam", "ssm"])
def test_a_server_error_is_answered_without_reaching_aws(
    aws: Sandbox, proxy: FaultProxy, fault: Fault, expected: tuple[str, int], service: str
) -> None:
    action, call = READS[service]
    with proxy.faults(Rule(fault, action)):
        assert _error(lambda: call(proxy.client(service, config=NO_RETRY))) == expected
    assert not proxy.calls(action)[0].forwarded
    assert aws.requests() == []


def test_close_before_forwarding_loses_the_request(aws: Sandbox, proxy: FaultProxy) -> None:
    iam = proxy.client("iam", config=NO_RETRY)
    with proxy.faults(Rule(Fault.CLOSE_BEFORE, "CreateUser")), pytest.raises(ConnectionClosedError):
        iam.create_user(UserName="web")
    assert not _user_exists(aws, "web")


def test_close_after_forwarding_loses_the_answer_of_an_applied_request(
    aws: Sandbox, proxy: FaultProxy
) -> None:
    iam = proxy.client("iam", config=NO_RETRY)
    with proxy.faults(Rule(Fault.CLOSE_AFTER, "CreateUser")), pytest.raises(ConnectionClosedError):
        iam.create_user(UserName="web")
    assert _user_exists(aws, "web")
    [call] = proxy.calls("CreateUser")
    assert (call.fault, call.forwarded, call.status) == (Fault.CLOSE_AFTER, True, 200)


def test_botocore_resends_a_request_whose_answer_was_lost(
    aws: Sandbox, proxy: FaultProxy, backoffs: list[float]
) -> None:
    """Why non-idempotent calls need retries off: the resend meets what the first one did."""
    iam = proxy.client("iam", config=RETRY)
    with proxy.faults(Rule(Fault.CLOSE_AFTER, "CreateUser", nth=1)):
        assert _error(lambda: iam.create_user(UserName="web")) == ("EntityAlreadyExists", 409)
    assert [c.error for c in proxy.calls("CreateUser")] == [None, "EntityAlreadyExists"]


def test_a_slow_answer_comes_after_the_injected_delay(aws: Sandbox) -> None:
    waited: list[float] = []
    with (
        start_fault_proxy(aws, sleep=waited.append) as proxy,
        proxy.faults(Rule(Fault.SLOW, "CreateUser", delay=30.0)),
    ):
        proxy.client("iam", config=NO_RETRY).create_user(UserName="web")
    assert waited == [30.0]


def test_a_slow_answer_times_out_a_client_after_aws_applied_the_request(aws: Sandbox) -> None:
    released = threading.Event()
    with start_fault_proxy(aws, sleep=lambda _: released.wait()) as proxy:
        # The only real wait in these tests: the client's own read timeout, kept tiny.
        impatient = Config(read_timeout=0.2, retries={"mode": "standard", "total_max_attempts": 1})
        iam = proxy.client("iam", config=impatient)
        try:
            with (
                proxy.faults(Rule(Fault.SLOW, "CreateUser", delay=60.0)),
                pytest.raises(ReadTimeoutError),
            ):
                iam.create_user(UserName="web")
        finally:
            released.set()
    assert _user_exists(aws, "web")


def test_stopping_interrupts_a_slow_answer_that_is_still_waiting(aws: Sandbox) -> None:
    proxy = FaultProxy(aws.endpoint_url).start()
    proxy.add(Rule(Fault.SLOW, "ListUsers", delay=3600.0))
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            proxy.client("iam", config=NO_RETRY).list_users()
        except ConnectionClosedError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    _await(lambda: bool(proxy.calls("ListUsers")))  # recorded right before the wait starts
    proxy.stop()
    caller.join()
    assert len(outcome) == 1


def _await(condition: Callable[[], bool]) -> None:
    """Synchronise with the proxy's handler thread (not a wait for time to pass)."""
    poll = threading.Event()
    for _ in range(1000):
        if condition():
            return
        poll.wait(0.01)
    raise AssertionError("the condition never held")


# --- rules select only what they name ----------------------------------------------------------


def test_a_rule_leaves_other_actions_alone(proxy: FaultProxy) -> None:
    iam = proxy.client("iam", config=NO_RETRY)
    with proxy.faults(Rule(Fault.ERROR_500, "CreateUser")):
        iam.list_users()
    assert [c.fault for c in proxy.calls()] == [None]


def test_a_rule_for_a_service_leaves_other_services_alone(proxy: FaultProxy) -> None:
    with proxy.faults(Rule(Fault.THROTTLE, service="sts")):
        proxy.client("iam", config=NO_RETRY).list_users()
        assert _error(lambda: proxy.client("sts", config=NO_RETRY).get_caller_identity())[0] == (
            "Throttling"
        )


def test_a_rule_with_where_selects_by_request_parameter(aws: Sandbox, proxy: FaultProxy) -> None:
    iam = proxy.client("iam", config=NO_RETRY)
    with proxy.faults(Rule(Fault.ERROR_503, "CreateUser", where={"UserName": "b"})):
        iam.create_user(UserName="a")
        assert _error(lambda: iam.create_user(UserName="b"))[1] == 503
    assert _user_exists(aws, "a")
    assert not _user_exists(aws, "b")


def test_nth_faults_only_that_occurrence(proxy: FaultProxy) -> None:
    iam = proxy.client("iam", config=NO_RETRY)
    with proxy.faults(Rule(Fault.THROTTLE, "ListUsers", nth=2)):
        iam.list_users()
        with pytest.raises(ClientError):
            iam.list_users()
        iam.list_users()
    assert [c.fault for c in proxy.calls("ListUsers")] == [None, Fault.THROTTLE, None]


def test_limit_caps_how_often_a_rule_fires(proxy: FaultProxy, backoffs: list[float]) -> None:
    rule = Rule(Fault.THROTTLE, "ListUsers", limit=2)
    with proxy.faults(rule):
        response = proxy.client("iam", config=RETRY).list_users()
    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert proxy.fired(rule) == 2


def test_the_first_rule_that_fires_wins(proxy: FaultProxy) -> None:
    iam = proxy.client("iam", config=NO_RETRY)
    with proxy.faults(Rule(Fault.ERROR_503, "ListUsers"), Rule(Fault.ERROR_500)):
        assert _error(iam.list_users)[1] == 503


def test_rules_outside_their_with_block_are_gone(proxy: FaultProxy) -> None:
    iam = proxy.client("iam", config=NO_RETRY)
    with proxy.faults(Rule(Fault.THROTTLE)):
        pass
    iam.list_users()
    assert [c.fault for c in proxy.calls()] == [None]


def _storm(aws: Sandbox, seed: int) -> list[Fault | None]:
    with start_fault_proxy(aws, seed=seed) as proxy:
        proxy.add(Rule((Fault.THROTTLE, Fault.ERROR_500), probability=0.3))
        iam = proxy.client("iam", config=NO_RETRY)
        for _ in range(30):
            with suppress(ClientError):
                iam.list_users()
        return [c.fault for c in proxy.calls()]


def test_a_random_storm_is_the_same_for_the_same_seed(aws: Sandbox) -> None:
    first, again, other = _storm(aws, 7), _storm(aws, 7), _storm(aws, 8)
    assert first == again
    assert first != other
    assert {Fault.THROTTLE, Fault.ERROR_500, None} == set(first)


# --- what is recorded --------------------------------------------------------------------------


def test_request_parameters_are_recorded_so_decrypting_reads_can_be_counted(
    aws: Sandbox, proxy: FaultProxy
) -> None:
    aws.client("ssm").put_parameter(Name="/p", Value="v", Type="SecureString")
    ssm = proxy.client("ssm", config=NO_RETRY)
    ssm.get_parameter(Name="/p")
    ssm.get_parameter(Name="/p", WithDecryption=True)
    assert proxy.count("GetParameter") == 2
    assert proxy.count("GetParameter", WithDecryption=True) == 1
    assert proxy.count("GetParameter", service="ssm", Name="/p") == 2


def test_query_protocol_parameters_are_recorded(proxy: FaultProxy) -> None:
    proxy.client("iam", config=NO_RETRY).create_user(UserName="web", Path="/ci/")
    [call] = proxy.calls("CreateUser")
    assert (call.service, dict(call.params)) == ("iam", {"UserName": "web", "Path": "/ci/"})


def test_secret_values_are_never_recorded(proxy: FaultProxy) -> None:
    proxy.client("ssm", config=NO_RETRY).put_parameter(
        Name="/p", Value="s3cr3t", Type="SecureString"
    )
    proxy.client("secretsmanager", config=NO_RETRY).create_secret(Name="s", SecretString="s3cr3t")
    assert "s3cr3t" not in repr(proxy.calls())
    assert proxy.calls("PutParameter")[0].params["Value"] == REDACTED
    assert proxy.calls("CreateSecret")[0].params["SecretString"] == REDACTED


def test_reads_of_secret_values_are_told_apart_from_metadata_reads(
    aws: Sandbox, proxy: FaultProxy
) -> None:
    aws.client("ssm").put_parameter(Name="/p", Value="v", Type="SecureString")
    aws.client("secretsmanager").create_secret(Name="s", SecretString="v")
    ssm = proxy.client("ssm", config=NO_RETRY)
    secrets = proxy.client("secretsmanager", config=NO_RETRY)
    ssm.describe_parameters()
    ssm.get_parameter(Name="/p")
    ssm.get_parameters(Names=["/p"], WithDecryption=False)
    secrets.describe_secret(SecretId="s")
    assert proxy.secret_value_reads() == []
    ssm.get_parameter(Name="/p", WithDecryption=True)
    ssm.get_parameters(Names=["/p"], WithDecryption=True)
    ssm.get_parameter_history(Name="/p")
    secrets.get_secret_value(SecretId="s")
    assert [c.action for c in proxy.secret_value_reads()] == [
        "GetParameter",
        "GetParameters",
        "GetParameterHistory",
        "GetSecretValue",
    ]


def test_moto_error_answers_are_recorded_with_their_code(proxy: FaultProxy) -> None:
    iam = proxy.client("iam", config=NO_RETRY)
    with pytest.raises(ClientError):
        iam.get_user(UserName="nobody")
    assert [(c.status, c.error) for c in proxy.calls()] == [(404, "NoSuchEntity")]
    assert proxy.answered("NoSuchEntity") == proxy.calls()


def test_the_signing_key_is_recorded(proxy: FaultProxy) -> None:
    proxy.client("sts", "AKIDSOMEONE", "secret", config=NO_RETRY).get_caller_identity()
    assert proxy.calls()[0].key == "AKIDSOMEONE"


# --- transport ---------------------------------------------------------------------------------


def test_one_client_reuses_one_connection(proxy: FaultProxy) -> None:
    iam = proxy.client("iam", config=NO_RETRY)
    for _ in range(5):
        iam.list_users()
    assert proxy.connections == 1


def test_a_client_reconnects_after_a_closed_connection(proxy: FaultProxy) -> None:
    iam = proxy.client("iam", config=NO_RETRY)
    with proxy.faults(Rule(Fault.CLOSE_AFTER, "ListUsers", nth=1)):
        with pytest.raises(ConnectionClosedError):
            iam.list_users()
        iam.list_users()
    assert proxy.connections == 2


def test_the_environment_points_boto3_at_the_proxy(
    aws: Sandbox, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in proxy.env(aws).items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    boto3.client("iam").list_users()
    assert proxy.count("ListUsers") == 1


def test_a_subprocess_goes_through_the_proxy_with_its_environment(
    aws: Sandbox, proxy: FaultProxy
) -> None:
    child = "import boto3; boto3.client('iam').list_users()"
    subprocess.run([sys.executable, "-c", child], env=proxy.environ(aws), check=True)
    assert proxy.count("ListUsers", service="iam") == 1


def test_a_stopped_proxy_refuses_connections(aws: Sandbox) -> None:
    with start_fault_proxy(aws) as proxy:
        iam = proxy.client("iam", config=NO_RETRY)
        iam.list_users()  # leaves a keep-alive connection open, which stopping must close
    with pytest.raises(EndpointConnectionError):
        iam.list_users()


def test_a_failure_of_the_proxy_itself_fails_the_block(aws: Sandbox) -> None:
    def broken_sleep(_: float) -> None:
        raise RuntimeError("harness bug")

    with pytest.raises(FaultProxyError), start_fault_proxy(aws, sleep=broken_sleep) as proxy:
        proxy.add(Rule(Fault.SLOW, "ListUsers"))
        with pytest.raises(ConnectionClosedError):
            proxy.client("iam", config=NO_RETRY).list_users()


def test_fault_points_name_each_call_of_a_run_by_its_occurrence(
    aws: Sandbox, proxy: FaultProxy
) -> None:
    def run() -> None:
        iam = proxy.client("iam", config=NO_RETRY)
        for name in ("a", "b"):
            with suppress(ConnectionClosedError):
                iam.create_user(UserName=name)
            iam.list_users()

    run()
    points = fault_points(proxy.calls(), only=lambda c: c.action == "CreateUser")
    assert [str(p) for p in points] == ["iam:CreateUser#1", "iam:CreateUser#2"]

    aws.reset()
    proxy.clear_calls()
    with proxy.faults(points[1].rule(Fault.CLOSE_BEFORE)):
        run()
    assert [c.fault for c in proxy.calls("CreateUser")] == [None, Fault.CLOSE_BEFORE]
    assert (_user_exists(aws, "a"), _user_exists(aws, "b")) == (True, False)


def test_rule_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="nth"):
        Rule(Fault.THROTTLE, nth=0)
    with pytest.raises(ValueError, match="probability"):
        Rule(Fault.THROTTLE, probability=1.5)
