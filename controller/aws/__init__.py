"""boto3 sessions per policy account, with retries suited to IAM.

IAM's throttling limits are not published, so clients use botocore's adaptive retry mode.
Everything honours the standard SDK environment, including AWS_ENDPOINT_URL, which is how the
sandbox and the tests point keyrotor at a local AWS.
"""

from __future__ import annotations

from typing import Any

import boto3
import botocore.config
from botocore.exceptions import BotoCoreError, ClientError

from controller.errors import AwsError
from controller.policy import Account

CLIENT_CONFIG = botocore.config.Config(retries={"mode": "adaptive", "max_attempts": 8})


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


class AwsSessions:
    """Caches one session per account (assuming the policy's role when it names one)."""

    def __init__(self, base: boto3.Session | None = None) -> None:
        self._base = base or boto3.Session()
        self._sessions: dict[Account, boto3.Session] = {}
        self._account_ids: dict[Account, str] = {}
        self._clients: dict[tuple[Account, str, str], Any] = {}

    def session(self, account: Account) -> boto3.Session:
        if account not in self._sessions:
            self._sessions[account] = self._assume(account) if account.role_arn else self._base
        return self._sessions[account]

    def client(self, account: Account, service: str, region: str | None = None) -> Any:
        """One client per (account, service, region): building one costs tens of milliseconds."""
        session = self.session(account)
        region = region or account.region or session.region_name or "us-east-1"
        cache_key = (account, service, region)
        if cache_key not in self._clients:
            self._clients[cache_key] = session.client(  # type: ignore[call-overload]
                service, region_name=region, config=CLIENT_CONFIG
            )
        return self._clients[cache_key]

    def account_id(self, account: Account) -> str:
        if account not in self._account_ids:
            identity = self.client(account, "sts").get_caller_identity()
            self._account_ids[account] = str(identity["Account"])
        return self._account_ids[account]

    def _assume(self, account: Account) -> boto3.Session:
        assert account.role_arn is not None
        params: dict[str, Any] = {"RoleArn": account.role_arn, "RoleSessionName": "keyrotor"}
        if account.external_id:
            params["ExternalId"] = account.external_id
        sts = self._base.client(
            "sts",
            region_name=account.region or self._base.region_name or "us-east-1",
            config=CLIENT_CONFIG,
        )
        try:
            creds = sts.assume_role(**params)["Credentials"]
        except AWS_ERRORS as exc:
            raise AwsError(
                f"cannot assume role {account.role_arn}: {describe_error(exc)}"
            ) from None
        return boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=account.region or self._base.region_name,
        )
