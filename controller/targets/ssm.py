"""SSM Parameter Store: a SecureString overwritten in place; SSM keeps earlier versions.

After each write keyrotor tags the parameter with the key id and the version number it wrote;
`describe` reads them with `DescribeParameters` and `ListTagsForResource`, never the value
(`GetParameterHistory` is no metadata call: it returns SecureString values decrypted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.aws import AWS_ERRORS, describe_error, error_code
from controller.errors import TargetError
from controller.policy import SsmParameterTarget
from controller.secret import AccessKeySecret
from controller.targets import jsonvalue

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

from controller.targets.metadata import KEY_ID_TAG, VERSION_TAG, TargetMetadata, tags_for


class SsmParameter:
    readable = True

    def __init__(self, spec: SsmParameterTarget, name: str, user: str, client: SSMClient) -> None:
        self.spec, self.name, self.user, self._client = spec, name, user, client
        self.description = f"aws-ssm-parameter {name}"

    def read(self) -> AccessKeySecret | None:
        try:
            value = self._client.get_parameter(Name=self.name, WithDecryption=True)
        except AWS_ERRORS as exc:
            if error_code(exc) == "ParameterNotFound":
                return None
            raise TargetError(f"cannot read {self.description}: {describe_error(exc)}") from None
        return jsonvalue.decode(value["Parameter"]["Value"], self.spec.fields, self.description)

    def find(self, key_id: str) -> AccessKeySecret | None:
        """Looks through the parameter's history, newest version first."""
        history = []
        try:
            pages = self._client.get_paginator("get_parameter_history").paginate(
                Name=self.name, WithDecryption=True
            )
            for page in pages:
                history.extend(page["Parameters"])
        except AWS_ERRORS as exc:
            if error_code(exc) == "ParameterNotFound":
                return None
            raise TargetError(f"cannot read {self.description}: {describe_error(exc)}") from None
        for entry in sorted(history, key=lambda p: p.get("Version", 0), reverse=True):
            try:
                found = jsonvalue.decode(entry["Value"], self.spec.fields, "")
            except TargetError:
                continue
            if found.access_key_id == key_id:
                return found
        return None

    def describe(self) -> TargetMetadata:
        """Which key keyrotor last wrote here and whether that version is still current."""
        try:
            found = self._client.describe_parameters(
                ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [self.name]}]
            )["Parameters"]
            if not found:
                return TargetMetadata(exists=False)
            listed = self._client.list_tags_for_resource(
                ResourceType="Parameter", ResourceId=self.name
            )["TagList"]
        except AWS_ERRORS as exc:
            raise TargetError(
                f"cannot describe {self.description}: {describe_error(exc)}"
            ) from None
        tags = {t["Key"]: t["Value"] for t in listed}
        current = str(found[0].get("Version", ""))
        return TargetMetadata(True, tags.get(KEY_ID_TAG), tags.get(VERSION_TAG), current)

    def record(self, key_id: str) -> None:
        meta = self.describe()
        if meta.current_version is None:
            raise TargetError(f"cannot record {self.description}: it has no current version")
        try:
            self._client.add_tags_to_resource(
                ResourceType="Parameter",
                ResourceId=self.name,
                Tags=[
                    {"Key": k, "Value": v}
                    for k, v in tags_for(key_id, meta.current_version).items()
                ],
            )
        except AWS_ERRORS as exc:
            raise TargetError(f"cannot record {self.description}: {describe_error(exc)}") from None

    def write(self, secret: AccessKeySecret) -> None:
        params: dict[str, Any] = {
            "Name": self.name,
            "Value": jsonvalue.encode(secret, self.spec.fields),
            "Type": "SecureString",
            "Overwrite": True,
        }
        if self.spec.kms_key_id:
            params["KeyId"] = self.spec.kms_key_id
        try:
            version = self._client.put_parameter(**params)["Version"]
            recorded = tags_for(secret.access_key_id, str(version))
            self._client.add_tags_to_resource(
                ResourceType="Parameter",
                ResourceId=self.name,
                Tags=[{"Key": k, "Value": v} for k, v in recorded.items()],
            )
        except AWS_ERRORS as exc:
            raise TargetError(f"cannot write {self.description}: {describe_error(exc)}") from None
