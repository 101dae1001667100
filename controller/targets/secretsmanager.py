"""AWS Secrets Manager: each write is a new version staged AWSCURRENT; the previous becomes
AWSPREVIOUS, which is what a rollback restores."""

from __future__ import annotations

from typing import Any

from controller.aws import AWS_ERRORS, describe_error, error_code
from controller.errors import TargetError
from controller.policy import SecretsManagerTarget
from controller.secret import AccessKeySecret
from controller.targets import jsonvalue


class SecretsManagerSecret:
    readable = True

    def __init__(self, spec: SecretsManagerTarget, secret_id: str, user: str, client: Any) -> None:
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

    def write(self, secret: AccessKeySecret) -> None:
        body = jsonvalue.encode(secret, self.spec.fields)
        try:
            try:
                self._client.put_secret_value(SecretId=self.secret_id, SecretString=body)
            except AWS_ERRORS as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
                params: dict[str, Any] = {
                    "Name": self.secret_id,
                    "SecretString": body,
                    "Description": f"AWS access key of IAM user {self.user}, rotated by keyrotor",
                    "Tags": [{"Key": "managed-by", "Value": "keyrotor"}],
                }
                if self.spec.kms_key_id:
                    params["KmsKeyId"] = self.spec.kms_key_id
                self._client.create_secret(**params)
        except AWS_ERRORS as exc:
            raise TargetError(f"cannot write {self.description}: {describe_error(exc)}") from None
