"""boto3 sessions per policy account, with retries suited to IAM.

IAM's throttling limits are not published, so clients use botocore's adaptive mode (its
client-side rate limiter) and resend calls with backoff, up to a configurable number of
attempts. Which calls may be resent after a lost answer is decided per call in
`controller.aws.retries` (CreateAccessKey may not; its docstring lists every call and why).
Everything honours the standard SDK environment, including AWS_ENDPOINT_URL, which is how the
sandbox and the tests point keyrotor at a local AWS.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import botocore.loaders
import botocore.session
import botocore.utils
from botocore.exceptions import BotoCoreError, ClientError

from controller.aws.retries import (
    CALLS,
    DEFAULT_MAX_ATTEMPTS,
    Repeat,
    RetryHandler,
    adaptive_from,
    client_config,
    max_attempts_from,
    parse_max_attempts,
    repeat_of,
)
from controller.errors import AwsError
from controller.policy import Account

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_sts import STSClient

__all__ = [
    "AWS_ERRORS",
    "CALLS",
    "CLIENT_CONFIG",
    "DEFAULT_MAX_ATTEMPTS",
    "AwsSessions",
    "Repeat",
    "adaptive_from",
    "describe_error",
    "error_code",
    "max_attempts_from",
    "new_session",
    "parse_max_attempts",
    "repeat_of",
]

#: botocore's own adaptive retries, which resend EVERY call whose answer was lost, CreateAccessKey
#: included. Only for clients of repeatable calls built outside `AwsSessions`; prefer
#: `AwsSessions.client` / `AwsSessions.key_client`, which decide per call.
CLIENT_CONFIG = botocore.config.Config(
    retries={"mode": "adaptive", "total_max_attempts": DEFAULT_MAX_ATTEMPTS}
)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def describe_error(exc: BaseException) -> str:
    """A short message for a boto error; botocore messages carry no secret values."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')}".rstrip(": ")
    return str(exc)


AWS_ERRORS = (ClientError, BotoCoreError)


@cache
def _loader() -> botocore.loaders.Loader:
    return botocore.loaders.create_loader()


def parse_timestamp(value: Any) -> datetime:
    """botocore's timestamp parser, without dateutil for the ISO 8601 times AWS sends.

    botocore parses every timestamp of a response with dateutil, which is most of the time it
    takes to read a page of 1000 users; `datetime.fromisoformat` reads the same text 50x faster.
    Anything else (epoch seconds, other formats) goes to botocore's own parser.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return botocore.utils.parse_timestamp(value)


def new_session(**kwargs: Any) -> boto3.Session:
    """A boto3 session whose service models are loaded once per process, not once per session
    (building a client then costs milliseconds, however many sessions a process makes), and
    whose responses' timestamps are parsed by `parse_timestamp`."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _loader())
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp
    )
    return boto3.Session(botocore_session=core, **kwargs)


_SESSION_NAME = re.compile(r"[^\w+=,.@-]")


def session_name(run_id: str) -> str:
    """`keyrotor-<run id>`, within what STS accepts (2-64 of `\\w+=,.@-`)."""
    return ("keyrotor-" + _SESSION_NAME.sub("-", run_id))[:64]


class AwsSessions:
    """Caches one session per account (assuming the policy's role when it names one).

    Every client it builds makes at most `max_attempts` attempts per call (the first included;
    read it once at the edge, e.g. `max_attempts_from(os.environ)` or `--aws-max-attempts`),
    resends only what `controller.aws.retries.repeat_of` allows, and waits out backoffs with
    `sleep`. `adaptive` keeps botocore's client-side rate limiter (`adaptive_from(os.environ)`
    reads AWS_RETRY_MODE); it waits in real time after throttling, so tests that throttle
    many calls turn it off.
    """

    def __init__(
        self,
        base: boto3.Session | None = None,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        sleep: Callable[[float], object] = time.sleep,
        adaptive: bool = True,
        run_id: str = "local",
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self._base = base or new_session()
        self.run_id = run_id
        # Accounts are observed and applied in parallel: sessions and clients are made under it.
        self._lock = threading.RLock()
        self.max_attempts = max_attempts
        self._sleep = sleep
        self.adaptive = adaptive
        self._sessions: dict[Account, boto3.Session] = {}
        self._account_ids: dict[Account, str] = {}
        self._clients: dict[tuple[Account, str, str, bool], Any] = {}

    def session(self, account: Account) -> boto3.Session:
        """The account's session, its role assumed once per run (a failure is not cached)."""
        with self._lock:
            if account not in self._sessions:
                self._sessions[account] = self._assume(account) if account.role_arn else self._base
            return self._sessions[account]

    def iam(self, account: Account, *, retries: bool = True) -> IAMClient:
        client: IAMClient = self.client(account, "iam", retries=retries)
        return client

    def sts(self, account: Account) -> STSClient:
        client: STSClient = self.client(account, "sts")
        return client

    def secretsmanager(self, account: Account, region: str | None) -> SecretsManagerClient:
        client: SecretsManagerClient = self.client(account, "secretsmanager", region)
        return client

    def ssm(self, account: Account, region: str | None) -> SSMClient:
        client: SSMClient = self.client(account, "ssm", region)
        return client

    def client(
        self, account: Account, service: str, region: str | None = None, *, retries: bool = True
    ) -> Any:
        """One client per (account, service, region, retries): building one costs ~10 ms.

        With `retries=False` the client makes exactly one attempt per call, whatever happens:
        for a caller that retries on its own terms. Non-idempotent calls need no such client:
        the default one already never resends a call whose answer may have been lost (see
        `controller.aws.retries`).
        """
        session = self.session(account)
        region = region or account.region or session.region_name or "us-east-1"
        cache_key = (account, service, region, retries)
        with self._lock:
            if cache_key not in self._clients:
                self._clients[cache_key] = self._build(session, service, region, retries)
            return self._clients[cache_key]

    def key_client(
        self,
        access_key_id: str,
        secret_access_key: str,
        service: str,
        region: str,
        *,
        retries: bool = True,
    ) -> Any:
        """A client signed with an access key of its own (e.g. a new key proving it works).

        Not cached: the caller holds it as long as it holds the key.
        """
        session = new_session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )
        return self._build(session, service, region, retries)

    def _build(self, session: boto3.Session, service: str, region: str, retries: bool) -> Any:
        client = session.client(  # type: ignore[call-overload]
            service, region_name=region, config=client_config(adaptive=self.adaptive)
        )
        attempts = self.max_attempts if retries else 1
        RetryHandler(attempts, sleep=self._sleep).install(client)
        return client

    def account_id(self, account: Account) -> str:
        with self._lock:
            if account not in self._account_ids:
                identity = self.sts(account).get_caller_identity()
                self._account_ids[account] = str(identity["Account"])
            return self._account_ids[account]

    def held_secrets(self) -> tuple[str, ...]:
        """The secret keys and session tokens of the credentials these sessions resolved (the
        base session's and every assumed role's): to mask them, never to show them."""
        with self._lock:
            sessions = [self._base, *self._sessions.values()]
        found: list[str] = []
        for session in sessions:
            try:
                creds = session.get_credentials()
            except BotoCoreError:
                continue
            if creds is not None:
                frozen = creds.get_frozen_credentials()
                found += [frozen.secret_key or "", frozen.token or ""]
        return tuple(dict.fromkeys(v for v in found if v))

    def _assume(self, account: Account) -> boto3.Session:
        assert account.role_arn is not None
        # Named for the run, with the run as SourceIdentity, so CloudTrail shows which run made
        # each call (the role's trust policy must allow sts:SetSourceIdentity).
        name = session_name(self.run_id)
        params: dict[str, Any] = {
            "RoleArn": account.role_arn,
            "RoleSessionName": name,
            "SourceIdentity": name,
        }
        if account.external_id:
            params["ExternalId"] = account.external_id
        sts = self._build(
            self._base, "sts", account.region or self._base.region_name or "us-east-1", True
        )
        try:
            creds = sts.assume_role(**params)["Credentials"]
        except AWS_ERRORS as exc:
            raise AwsError(
                f"cannot assume role {account.role_arn}: {describe_error(exc)}"
            ) from None
        return new_session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=account.region or self._base.region_name,
        )
