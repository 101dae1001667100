"""boto3 clients for the sandbox, or for anything that speaks for it (the tests' fault proxy).

`AdminClients.client(service)` gives a client signed as the sandbox's admin (or with a given
key pair) for the class's `endpoint_url`, typed per service for mypy. Every client of one
object comes from one isolated session: it caches the service models, which makes a client
~10 times cheaper to build than with a session of its own, and it reads no profile, config
or credentials file.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Literal, overload

import boto3
import botocore.session

from controller.sandbox.config import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, REGION

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from botocore.config import Config
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_organizations import OrganizationsClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_sts import STSClient

# Sessions are not thread-safe (clients are): one lock guards building clients from them.
_LOCK = threading.Lock()


def isolated_session() -> boto3.session.Session:
    """A session that reads no profile, config or credentials file.

    A developer's `AWS_PROFILE` or `~/.aws/config` (a missing profile, a custom endpoint, a
    retry mode) must not change how the harness talks to the sandbox.
    """
    core = botocore.session.Session(
        session_vars={
            "profile": (None, None, None, None),
            "config_file": (None, None, os.devnull, None),
            "credentials_file": (None, None, os.devnull, None),
        }
    )
    return boto3.session.Session(botocore_session=core, region_name=REGION)


class AdminClients:
    """Mixin: `client(service)` for `self.endpoint_url`."""

    _clients_session: boto3.session.Session | None = None

    @property
    def endpoint_url(self) -> str:
        raise NotImplementedError

    @overload
    def client(
        self,
        service: Literal["iam"],
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        *,
        config: Config | None = None,
    ) -> IAMClient: ...
    @overload
    def client(
        self,
        service: Literal["sts"],
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        *,
        config: Config | None = None,
    ) -> STSClient: ...
    @overload
    def client(
        self,
        service: Literal["secretsmanager"],
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        *,
        config: Config | None = None,
    ) -> SecretsManagerClient: ...
    @overload
    def client(
        self,
        service: Literal["ssm"],
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        *,
        config: Config | None = None,
    ) -> SSMClient: ...
    @overload
    def client(
        self,
        service: Literal["organizations"],
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        *,
        config: Config | None = None,
    ) -> OrganizationsClient: ...
    @overload
    def client(
        self,
        service: str,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        *,
        config: Config | None = None,
    ) -> BaseClient: ...
    def client(
        self,
        service: str,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        *,
        config: Config | None = None,
    ) -> BaseClient:
        """A boto3 client for `endpoint_url`, signed as the admin unless a key pair is given.

        Credentials go to the client itself, so neither the environment nor boto3's default
        session (which caches the credentials it first found) can change who it signs as.
        """
        if (access_key_id is None) != (secret_access_key is None):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        endpoint = self.endpoint_url
        with _LOCK:
            if self._clients_session is None:
                self._clients_session = isolated_session()
            client: BaseClient = self._clients_session.client(  # type: ignore[call-overload]
                service,
                region_name=REGION,
                endpoint_url=endpoint,
                aws_access_key_id=access_key_id or ADMIN_ACCESS_KEY_ID,
                aws_secret_access_key=secret_access_key or ADMIN_SECRET_ACCESS_KEY,
                config=config,
            )
        return client
