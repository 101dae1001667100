"""The part of AWS authentication that keyrotor's correctness depends on, which moto leaves out.

moto 5 answers requests signed with an Inactive access key as if the key were Active, and (with
auth enforcement off, as here) also those signed with a deleted key. Rotation is only safe if
deactivating the old key breaks its users, so a sandbox that let them keep working would hide
the very failures keyrotor exists to prevent. This middleware refuses such requests before moto
sees them, with the error each protocol family really returns.

Everything not in moto's `AKIA` key format (the harness's admin identity, anything made up by a
test) passes: a real account cannot be modelled here, only the keys IAM itself issued.
"""

from __future__ import annotations

import enum
import json
import re
import uuid
from collections.abc import Iterable
from urllib.parse import parse_qs
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from moto.iam.models import iam_backends

from controller.sandbox.config import ADMIN_ACCESS_KEY_ID

INVALID_TOKEN_MESSAGE = "The security token included in the request is invalid."

# `Credential=AKIA.../20260101/us-east-1/iam/aws4_request` in the SigV4 Authorization header.
_HEADER_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
# What moto's IAM hands out: `AKIA` and 16 upper-case alphanumerics.
_ISSUED_KEY_ID = re.compile(r"AKIA[A-Z0-9]{16}")


class KeyState(enum.Enum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    UNKNOWN = "unknown"


def access_key_id_of(environ: WSGIEnvironment) -> str | None:
    """The key a request is signed with: header-signed, or presigned (`X-Amz-Credential`)."""
    match = _HEADER_CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    if match:
        key_id: str = match.group(1)
        return key_id
    query: str = environ.get("QUERY_STRING", "")
    presigned = parse_qs(query).get("X-Amz-Credential")
    if presigned:
        return presigned[0].split("/", 1)[0]
    return None


def key_state(access_key_id: str) -> KeyState:
    """Looks in every account and partition, as AWS resolves a key id to its account itself.

    Only backends that already exist are visited: indexing moto's per-account dictionaries
    creates backends on demand, which would be wasted work on every request.
    """
    for account in list(iam_backends.values()):
        for backend in list(account.values()):
            key = backend.access_keys.get(access_key_id)
            if key is None:
                continue
            if key.user_name is not None:
                # moto's DeleteUser leaves the user's keys in the backend (AWS refuses to delete
                # a user that has keys); a key whose user is gone is as dead as a deleted one.
                user = backend.users.get(key.user_name)
                if user is None or key not in user.access_keys:
                    return KeyState.UNKNOWN
            return KeyState.ACTIVE if key.status == "Active" else KeyState.INACTIVE
    return KeyState.UNKNOWN


def is_refused(access_key_id: str | None) -> bool:
    if access_key_id is None or access_key_id == ADMIN_ACCESS_KEY_ID:
        return False
    state = key_state(access_key_id)
    if state is KeyState.ACTIVE:
        return False
    if state is KeyState.INACTIVE:
        return True
    return _ISSUED_KEY_ID.fullmatch(access_key_id) is not None


class AccessKeyAuth:
    """WSGI middleware: refuse requests signed with an Inactive or no-longer-existing IAM key."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not is_refused(access_key_id_of(environ)):
            return self.app(environ, start_response)
        _drain_body(environ)
        request_id = str(uuid.uuid4())
        if environ.get("HTTP_X_AMZ_TARGET"):
            # JSON-protocol services (Secrets Manager, SSM) name the operation in X-Amz-Target.
            body = json.dumps(
                {"__type": "UnrecognizedClientException", "message": INVALID_TOKEN_MESSAGE}
            ).encode()
            status = "400 Bad Request"
            content_type = "application/x-amz-json-1.1"
        else:
            # Query-protocol services (IAM, STS) answer with an XML ErrorResponse.
            body = (
                "<ErrorResponse><Error><Type>Sender</Type>"
                "<Code>InvalidClientTokenId</Code>"
                f"<Message>{INVALID_TOKEN_MESSAGE}</Message>"
                f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
            ).encode()
            status = "403 Forbidden"
            content_type = "text/xml"
        start_response(
            status,
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("x-amzn-RequestId", request_id),
            ],
        )
        return [body]


def _drain_body(environ: WSGIEnvironment) -> None:
    """Read the unread request body, so a kept-alive connection stays in step for its next call."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > 0:
        environ["wsgi.input"].read(length)
