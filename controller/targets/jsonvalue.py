"""The JSON document a Secrets Manager secret or SSM parameter holds."""

from __future__ import annotations

import json

from controller.errors import TargetError
from controller.policy import JsonFields
from controller.secret import AccessKeySecret


def encode(secret: AccessKeySecret, fields: JsonFields) -> str:
    return json.dumps(
        {
            fields.access_key_id: secret.access_key_id,
            fields.secret_access_key: secret.secret_access_key,
        }
    )


def decode(text: str, fields: JsonFields, where: str) -> AccessKeySecret:
    """Parse a stored value; errors name the fields, never echo the value (it is a secret)."""
    try:
        doc = json.loads(text)
        return AccessKeySecret(str(doc[fields.access_key_id]), str(doc[fields.secret_access_key]))
    except (ValueError, KeyError, TypeError):
        raise TargetError(
            f"{where} does not hold a JSON object with {fields.access_key_id!r} and "
            f"{fields.secret_access_key!r}"
        ) from None
