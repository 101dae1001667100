"""Bulk seeding straight into moto's backends, for benchmarks and large-account tests.

Creating 10,000 users with a key each through the API takes minutes (~10 ms a call); written
into moto's in-process objects it takes a second or two. Served by the sandbox server at
`POST /_sandbox/seed` (see `Sandbox.seed_users`), so it runs in the process that owns moto.

A seeded user looks like one keyrotor adopted: one access key with the given CreateDate, and
optionally its `keyrotor.dev/keys` tag and a Secrets Manager secret holding the key (tagged with
`keyrotor.dev/key-id`). Secret access keys never leave the server process.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any, Final

from controller.sandbox.config import REGION, format_instant, parse_instant

OWNED_KEYS_TAG: Final = "keyrotor.dev/keys"
KEY_ID_TAG: Final = "keyrotor.dev/key-id"
VERSION_TAG: Final = "keyrotor.dev/version"


def seed(request: Mapping[str, Any]) -> dict[str, Any]:
    """Create the users `request` describes; answer their key ids and CreateDates.

    `request` = {"account_id": "123456789012", "users": [{"name", "path"?, "tags"?,
    "key_created"? (ISO, default: no key), "own_key"? (bool: tag the key as keyrotor's),
    "secret_id"? (create a secret holding the key)}]}
    """
    from moto.iam.models import iam_backends
    from moto.secretsmanager.models import secretsmanager_backends

    account_id = str(request["account_id"])
    iam = iam_backends[account_id]["global"]
    secrets = secretsmanager_backends[account_id][REGION]
    created: list[dict[str, str | None]] = []
    for spec in _users(request):
        name = str(spec["name"])
        tags = [{"Key": str(k), "Value": str(v)} for k, v in dict(spec.get("tags", {})).items()]
        iam.create_user(REGION, name, path=str(spec.get("path", "/")), tags=tags)
        if not spec.get("key_created"):
            created.append({"name": name, "access_key_id": None, "created": None})
            continue
        at = parse_instant(str(spec["key_created"])).replace(microsecond=0)
        key = iam.create_access_key(name)
        key.create_date = at.astimezone(UTC).replace(tzinfo=None)  # moto keeps naive UTC
        if spec.get("own_key"):
            iam.tag_user(
                name,
                [{"Key": OWNED_KEYS_TAG, "Value": f"{key.access_key_id}@{format_instant(at)}"}],
            )
        if spec.get("secret_id"):
            value = {"AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret_access_key}
            version = str(uuid.uuid4())  # recorded as keyrotor records what it writes
            secrets.create_secret(
                name=str(spec["secret_id"]),
                secret_string=json.dumps(value),
                secret_binary=None,
                description=None,
                tags=[
                    {"Key": KEY_ID_TAG, "Value": key.access_key_id},
                    {"Key": VERSION_TAG, "Value": version},
                ],
                kms_key_id=None,
                client_request_token=version,
                replica_regions=[],
                force_overwrite=False,
            )
        created.append(
            {"name": name, "access_key_id": key.access_key_id, "created": format_instant(at)}
        )
    return {"users": created}


def _users(request: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    users = request.get("users")
    if not isinstance(users, list) or not all(isinstance(u, dict) and "name" in u for u in users):
        raise ValueError('expected {"account_id": ..., "users": [{"name": ...}, ...]}')
    return users
