"""The AWS side of loading guardrails: read the `ssm:NAME` parameter (an adapter).

The parameter should be a plain `String` that only administrators may write (its value is not
secret, and reading it must not need KMS): keyrotor reads it without decryption, so both the
plan and the apply role can be given `ssm:GetParameter` on it alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from controller.guardrails.loader import GuardrailsSourceError

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient


def ssm_reader(client: SSMClient) -> Callable[[str], str]:
    """A `read_parameter` for `read_guardrails`: the parameter's value, or a clear error."""

    def read(name: str) -> str:
        try:
            reply = client.get_parameter(Name=name, WithDecryption=False)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ParameterNotFound":
                raise GuardrailsSourceError(
                    f"ssm:{name}: no such SSM parameter; create it with the guardrails document "
                    "(aws ssm put-parameter --type String ...), or point KEYROTOR_GUARDRAILS "
                    "elsewhere"
                ) from exc
            raise GuardrailsSourceError(
                f"ssm:{name}: cannot read the guardrails parameter ({code or 'error'})"
            ) from exc
        parameter = reply["Parameter"]
        if parameter.get("Type") == "SecureString":
            raise GuardrailsSourceError(
                f"ssm:{name}: the guardrails parameter is a SecureString; store it as a String "
                "(it holds no secret, and the plan role must not decrypt parameters)"
            )
        return parameter.get("Value", "")

    return read
