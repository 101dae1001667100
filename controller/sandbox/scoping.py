"""Make moto's IAM authorization judge `Resource`, so least-privilege policies can be tested.

With authorization enforced (`POST /moto-api/reset-auth` with `0`), moto 5 still evaluates almost
every request against resource `*`: a policy scoped to `arn:aws:iam::...:user/ci/*` is denied
everything, and one allowing `/ci/*` could never be shown to refuse `/admin/y`. When scoping is
enabled (`POST /_sandbox/resource-scoping {"enabled": true}`, off by default), this module:

- resolves the resource of IAM user requests (`UserName`; the caller for a self-service call;
  the key's owner for `GetAccessKeyLastUsed`), Secrets Manager requests (`SecretId` / `Name`)
  and SSM parameter requests (`Name`, `Names`, or `ResourceId` of a Parameter) to its ARN;
- matches `Resource` patterns as IAM does (`*` and `?` wildcards, everything else literal),
  where moto would read them as regular expressions.

And always, whether scoping is on or not: the harness's admin identity (`ADMIN_ACCESS_KEY_ID`,
not an IAM key) is let through when authorization is enforced, as an account's administrator
would be. Modelling it as an IAM user instead would add a user to every listing keyrotor reads.

moto still does not evaluate `Condition`s of identity policies (a statement with one is an
explicit deny), and treats a statement without `Resource` (e.g. `NotResource`) as matching
everything: tests judge those with their own evaluator (`tests/support/iam_eval.py`).

Runs inside the sandbox server process only (it imports moto).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.iam.access_control import IAMPolicyStatement
from moto.iam.models import iam_backends
from moto.iam.responses import IamResponse
from moto.secretsmanager.models import secretsmanager_backends
from moto.secretsmanager.responses import SecretsManagerResponse
from moto.ssm.responses import SimpleSystemManagerResponse
from moto.utilities.utils import get_partition

from controller.sandbox.config import ADMIN_ACCESS_KEY_ID

_lock = threading.Lock()
_enabled = False

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")

# IAM actions whose resource is a user; without `UserName` they act on the caller itself.
_SELF_SERVICE_USER_ACTIONS = frozenset(
    {
        "CreateAccessKey",
        "DeleteAccessKey",
        "GetUser",
        "ListAccessKeys",
        "UpdateAccessKey",
    }
)
# A secret that does not exist yet (CreateSecret) has this ARN suffix instead of a random one.
NEW_SECRET_SUFFIX = "-??????"


def set_enabled(enabled: bool) -> None:
    global _enabled
    with _lock:
        _enabled = enabled


def enabled() -> bool:
    return _enabled


def _auth_enforced() -> bool:
    return bool(ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT)


def _signing_key(response: Any) -> str | None:
    match = _CREDENTIAL.search(response.headers.get("Authorization", "") or "")
    return match.group(1) if match else None


def iam_glob_match(pattern: str, value: str) -> bool:
    """IAM's `ArnLike`/`StringLike` matching: `*` any run, `?` one character, rest literal."""
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


# --- resources -----------------------------------------------------------------------------------


def _user_arn(response: Any, user_name: str) -> str:
    backend = iam_backends[response.current_account][get_partition(response.region)]
    user = backend.users.get(user_name)
    if user is not None:
        return str(user.arn)
    partition = get_partition(response.region)
    return f"arn:{partition}:iam::{response.current_account}:user/{user_name}"


def _key_owner(response: Any, access_key_id: str) -> str | None:
    backend = iam_backends[response.current_account][get_partition(response.region)]
    key = backend.access_keys.get(access_key_id)
    return None if key is None else key.user_name


def _iam_resource(response: Any, original: Any) -> str:
    data = response.data or {}

    def first(name: str) -> str | None:
        value = data.get(name)
        if isinstance(value, list):
            return str(value[0]) if value else None
        return None if value is None else str(value)

    action = first("Action") or ""
    user_name = first("UserName")
    if user_name is None and action == "GetAccessKeyLastUsed":
        key_id = first("AccessKeyId")
        user_name = _key_owner(response, key_id) if key_id else None
    if user_name is None and action in _SELF_SERVICE_USER_ACTIONS:
        caller = _signing_key(response)
        user_name = _key_owner(response, caller) if caller else None
    if user_name is not None:
        return _user_arn(response, user_name)
    return str(original(response))


def _json_body(response: Any) -> dict[str, Any]:
    try:
        body = json.loads(response.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _secret_resource(response: Any) -> str:
    body = _json_body(response)
    secret_id = body.get("SecretId") or body.get("Name")
    if not isinstance(secret_id, str):
        return "*"
    store = secretsmanager_backends[response.current_account][response.region].secrets
    secret = store.get(secret_id)
    if secret is not None:
        return str(secret.arn)
    if secret_id.startswith("arn:"):
        return secret_id
    partition = get_partition(response.region)
    return (
        f"arn:{partition}:secretsmanager:{response.region}:{response.current_account}:"
        f"secret:{secret_id}{NEW_SECRET_SUFFIX}"
    )


def _parameter_resource(response: Any) -> str:
    body = _json_body(response)
    name = body.get("Name")
    if name is None and body.get("ResourceType") == "Parameter":
        name = body.get("ResourceId")
    if name is None and isinstance(body.get("Names"), list) and len(body["Names"]) == 1:
        name = body["Names"][0]
    if not isinstance(name, str):
        return "*"
    if name.startswith("arn:"):
        return name
    partition = get_partition(response.region)
    return (
        f"arn:{partition}:ssm:{response.region}:{response.current_account}:"
        f"parameter/{name.lstrip('/')}"
    )


# --- installing --------------------------------------------------------------------------------

_installed = False


def install() -> None:
    """Patch moto (idempotent); the patches do nothing until `set_enabled(True)`, except the
    admin identity's pass, which matters only while authorization is enforced."""
    global _installed
    if _installed:
        return
    _installed = True

    authorize = ActionAuthenticatorMixin._authenticate_and_authorize_action

    def authorize_unless_admin(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        if _auth_enforced() and _signing_key(self) == ADMIN_ACCESS_KEY_ID:
            return
        authorize(self, iam_request_cls, resource)

    ActionAuthenticatorMixin._authenticate_and_authorize_action = authorize_unless_admin  # type: ignore[method-assign]

    iam_original = IamResponse._determine_resource

    def iam_resource(self: Any) -> str:
        return _iam_resource(self, iam_original) if _enabled else str(iam_original(self))

    IamResponse._determine_resource = iam_resource  # type: ignore[method-assign]

    def secret_resource(self: Any) -> str:
        return _secret_resource(self) if _enabled else "*"

    def parameter_resource(self: Any) -> str:
        return _parameter_resource(self) if _enabled else "*"

    SecretsManagerResponse._determine_resource = secret_resource  # type: ignore[attr-defined]
    SimpleSystemManagerResponse._determine_resource = parameter_resource  # type: ignore[attr-defined]

    match = IAMPolicyStatement._match

    def glob_match(pattern: str, string: str) -> Any:
        if not _enabled:
            return match(pattern, string)
        return iam_glob_match(pattern, string) or None

    IAMPolicyStatement._match = staticmethod(glob_match)  # type: ignore[method-assign]
