"""AWS Secrets Manager: each write is a new version staged AWSCURRENT; the previous becomes
AWSPREVIOUS, which is what a rollback restores.

Each write uses a version id keyrotor chooses (`ClientRequestToken`, so a resent request makes
no second version) and then tags the secret with the key id and that version id: `describe`
reads them back with `DescribeSecret` alone, never the value.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from controller.aws import AWS_ERRORS, describe_error, error_code
from controller.errors import TargetError
from controller.policy import SecretsManagerTarget
from controller.secret import AccessKeySecret
from controller.targets import jsonvalue

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

from controller.targets.metadata import KEY_ID_TAG, VERSION_TAG, TargetMetadata, tags_for


class SecretsManagerSecret:
    readable = True

    def __init__(
        self, spec: SecretsManagerTarget, secret_id: str, user: str, client: SecretsManagerClient
    ) -> None:
        self.spec, self.secret_id, self.user, self._client = spec, secret_id, user, client
        self.description = f"aws-secrets-manager {secret_id}"

    def read(self) -> AccessKeySecret | None:
        try:
            # moto (and AWS during stage moves) can answer a bare call with an older version:
            # ask for AWSCURRENT explicitly.
            value = self._client.get_secret_value(
                SecretId=self.secret_id, VersionStage="AWSCURRENT"
            )
        except AWS_ERRORS as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise TargetError(f"cannot read {self.description}: {describe_error(exc)}") from None
        return jsonvalue.decode(value.get("SecretString", ""), self.spec.fields, self.description)

    def find(self, key_id: str) -> AccessKeySecret | None:
        """Looks through AWSCURRENT and the versions Secrets Manager keeps (AWSPREVIOUS, ...)."""
        try:
            versions = self._client.list_secret_version_ids(
                SecretId=self.secret_id, IncludeDeprecated=True
            )["Versions"]
            for version in sorted(versions, key=lambda v: v.get("CreatedDate", 0), reverse=True):
                value = self._client.get_secret_value(
                    SecretId=self.secret_id, VersionId=version["VersionId"]
                )
                found = jsonvalue.decode(value.get("SecretString", ""), self.spec.fields, "")
                if found.access_key_id == key_id:
                    return found
        except AWS_ERRORS as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise TargetError(f"cannot read {self.description}: {describe_error(exc)}") from None
        except TargetError:
            return None
        return None

    def describe(self) -> TargetMetadata:
        """Which key keyrotor last wrote here and whether that version is still current."""
        try:
            described = self._client.describe_secret(SecretId=self.secret_id)
        except AWS_ERRORS as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return TargetMetadata(exists=False)
            raise TargetError(
                f"cannot describe {self.description}: {describe_error(exc)}"
            ) from None
        tags = {t["Key"]: t["Value"] for t in described.get("Tags") or ()}
        stages = described.get("VersionIdsToStages") or {}
        current = next((v for v, s in stages.items() if "AWSCURRENT" in s), None)
        return TargetMetadata(True, tags.get(KEY_ID_TAG), tags.get(VERSION_TAG), current)

    def record(self, key_id: str) -> None:
        meta = self.describe()
        if meta.current_version is None:
            raise TargetError(f"cannot record {self.description}: it has no current version")
        try:
            self._client.tag_resource(
                SecretId=self.secret_id,
                Tags=[
                    {"Key": k, "Value": v}
                    for k, v in tags_for(key_id, meta.current_version).items()
                ],
            )
        except AWS_ERRORS as exc:
            raise TargetError(f"cannot record {self.description}: {describe_error(exc)}") from None

    def write(self, secret: AccessKeySecret) -> None:
        body = jsonvalue.encode(secret, self.spec.fields)
        version = str(uuid.uuid4())
        try:
            try:
                self._client.put_secret_value(
                    SecretId=self.secret_id, SecretString=body, ClientRequestToken=version
                )
            except AWS_ERRORS as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
                params: dict[str, Any] = {
                    "Name": self.secret_id,
                    "SecretString": body,
                    "ClientRequestToken": version,
                    "Description": f"AWS access key of IAM user {self.user}, rotated by keyrotor",
                    "Tags": [{"Key": "managed-by", "Value": "keyrotor"}],
                }
                if self.spec.kms_key_id:
                    params["KmsKeyId"] = self.spec.kms_key_id
                self._client.create_secret(**params)
            recorded = tags_for(secret.access_key_id, version)
            self._client.tag_resource(
                SecretId=self.secret_id,
                Tags=[{"Key": k, "Value": v} for k, v in recorded.items()],
            )
        except AWS_ERRORS as exc:
            raise TargetError(f"cannot write {self.description}: {describe_error(exc)}") from None
