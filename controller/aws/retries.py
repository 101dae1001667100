"""Which AWS calls may be sent again, and the retry handler every keyrotor client uses.

botocore's retry modes resend any call whose answer did not arrive: a connection closed or reset
after the request went out, a read timeout, a 5xx. For most calls that is harmless, but when AWS
had already applied the request the resend acts a second time. keyrotor therefore decides per
call what a resend would do:

`REPEATABLE`: retried as botocore's standard mode retries (throttling, transient errors and
5xx, connection errors, read timeouts), up to the maximum number of attempts.

`ONCE`: retried only when AWS certainly did not apply the request: it answered with a
throttling error (AWS processes no throttled request), or the connection could not even be
opened. Any other failure (a 5xx, a connection closed after sending, a read timeout) is raised
as it is: the answer is lost, and the caller treats it as the crash case it is (for
CreateAccessKey: the intent tag tells the next run that it owns the key it may find).

The calls keyrotor makes, and why each is in its class:

- iam:CreateAccessKey: ONCE. Every success creates another key and returns its secret once; a
  resend after a lost answer is a third-key attempt (`LimitExceeded`) or, for a user with one
  key, a second new key whose secret was never seen.
- iam:UpdateAccessKey: REPEATABLE. It sets a status; the second send sets the same one.
- iam:DeleteAccessKey: REPEATABLE in effect. A resend after a lost success answers
  `NoSuchEntity`, which the caller must treat as "deleted" (the executor's concern).
- iam:TagUser, iam:UntagUser: REPEATABLE. They set or remove the same values again.
- secretsmanager:PutSecretValue, secretsmanager:CreateSecret: REPEATABLE. botocore fills in
  `ClientRequestToken` once per call, so its resends carry the same token, and Secrets Manager
  ignores a request whose token and value match an existing version (callers that pass their own
  token get the same across runs, not only within one call's resends).
- secretsmanager:TagResource, ssm:AddTagsToResource: REPEATABLE. Same tags, same result.
- ssm:PutParameter (with `Overwrite`): REPEATABLE in effect. A resend writes the same value
  again as one more version; the version the answer names is the latest, so tags stay right.
- sts:AssumeRole, sts:GetCallerIdentity, iam:GenerateCredentialReport and every read (Get*,
  List*, Describe*): REPEATABLE. They change nothing, or nothing a second call would undo.

A call missing from `CALLS` is REPEATABLE if its name starts with a read verb, else ONCE: a
mutation added later stays safe until someone classifies it.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import botocore.config
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ProxyConnectionError
from botocore.retries import standard

from controller.errors import KeyrotorError


class Repeat(enum.Enum):
    REPEATABLE = "repeatable"
    ONCE = "once"


#: `service:Action` of every AWS call keyrotor makes, with what a resend after a lost answer
#: would do (the module docstring gives the reasons).
CALLS: Final[Mapping[str, Repeat]] = {
    "iam:CreateAccessKey": Repeat.ONCE,
    "iam:UpdateAccessKey": Repeat.REPEATABLE,
    "iam:DeleteAccessKey": Repeat.REPEATABLE,
    "iam:TagUser": Repeat.REPEATABLE,
    "iam:UntagUser": Repeat.REPEATABLE,
    "iam:GenerateCredentialReport": Repeat.REPEATABLE,
    "secretsmanager:PutSecretValue": Repeat.REPEATABLE,
    "secretsmanager:CreateSecret": Repeat.REPEATABLE,
    "secretsmanager:TagResource": Repeat.REPEATABLE,
    "ssm:PutParameter": Repeat.REPEATABLE,
    "ssm:AddTagsToResource": Repeat.REPEATABLE,
    "sts:AssumeRole": Repeat.REPEATABLE,
}

_READ_VERBS: Final = ("Get", "List", "Describe")

#: Failures that prove the request never left: nothing was applied, so any call may be resent.
_NOT_SENT: Final = (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError)

#: Attempts per call, the first included, unless `--aws-max-attempts` or AWS_MAX_ATTEMPTS says.
DEFAULT_MAX_ATTEMPTS: Final = 8
MAX_ATTEMPTS_ENV: Final = "AWS_MAX_ATTEMPTS"
RETRY_MODE_ENV: Final = "AWS_RETRY_MODE"
_MAX_BACKOFF = 20.0
_THROTTLING_BASE = 1.0
_TRANSIENT_BASE = 0.05


def repeat_of(service: str, action: str) -> Repeat:
    """What a resend of `service:action` after a lost answer would do."""
    known = CALLS.get(f"{service}:{action}")
    if known is not None:
        return known
    return Repeat.REPEATABLE if action.startswith(_READ_VERBS) else Repeat.ONCE


class RetrySettingsError(KeyrotorError):
    """The retry settings (maximum attempts, retry mode) given to keyrotor are not valid."""


def parse_max_attempts(text: str, source: str) -> int:
    """`source` names where `text` came from (`--aws-max-attempts`, `AWS_MAX_ATTEMPTS`)."""
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise RetrySettingsError(
            f"{source}: {text!r} is not a number of attempts; give a whole number of at least 1,"
            f" e.g. {DEFAULT_MAX_ATTEMPTS} (1 turns retries off)"
        )
    return value


def max_attempts_from(environ: Mapping[str, str]) -> int:
    """The SDK's own variable, AWS_MAX_ATTEMPTS (attempts, the first included), else the default."""
    text = environ.get(MAX_ATTEMPTS_ENV)
    return DEFAULT_MAX_ATTEMPTS if text is None else parse_max_attempts(text, MAX_ATTEMPTS_ENV)


def adaptive_from(environ: Mapping[str, str]) -> bool:
    """AWS_RETRY_MODE: `adaptive` (the default) keeps botocore's client-side rate limiter.

    `standard` and `legacy` turn it off; keyrotor's resending is the same in every mode.
    """
    mode = environ.get(RETRY_MODE_ENV, "adaptive").strip()
    if mode not in ("adaptive", "standard", "legacy"):
        raise RetrySettingsError(
            f"{RETRY_MODE_ENV}: {mode!r} is not a retry mode; use adaptive, standard or legacy"
        )
    return mode == "adaptive"


def client_config(*, adaptive: bool = True) -> botocore.config.Config:
    """botocore's own resending off; adaptive mode for its client-side rate limiter.

    The rate limiter slows a client down after a throttling answer and speeds it up again as
    calls succeed (real time: a throttled client may wait seconds). Resending is
    `RetryHandler`'s job; giving botocore one attempt also makes AWS_MAX_ATTEMPTS and a profile's
    retry settings unable to bring botocore's resending back.
    """
    if adaptive:
        return botocore.config.Config(retries={"mode": "adaptive", "total_max_attempts": 1})
    return botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1})


class RetryHandler:
    """botocore's `needs-retry` handler: resends what `repeat_of` allows, with jittered backoff.

    `sleep` waits out each backoff (tests pass one that does not wait); the handler then tells
    botocore to resend after 0 seconds. `rand` is the jitter in [0, 1).
    """

    def __init__(
        self,
        max_attempts: int,
        *,
        sleep: Callable[[float], object] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._rand = rand
        self._adapter = standard.RetryEventAdapter()
        self._any_retryable = standard.StandardRetryConditions(max_attempts=max_attempts)
        self._throttled = standard.ThrottledRetryableChecker()

    def install(self, client: Any) -> None:
        service_id = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"needs-retry.{service_id}", self.needs_retry)

    def needs_retry(self, **kwargs: Any) -> float | None:
        """None: do not resend. A number: resend after that many seconds (always 0 here)."""
        context = self._adapter.create_retry_context(**kwargs)
        if context.attempt_number >= self.max_attempts or not self._may_resend(context):
            return None
        self._sleep(self._delay(context))
        return 0.0

    def _may_resend(self, context: Any) -> bool:
        operation = context.operation_model
        repeat = repeat_of(operation.service_model.service_name, operation.name)
        if repeat is Repeat.REPEATABLE:
            return bool(self._any_retryable.is_retryable(context))
        return isinstance(context.caught_exception, _NOT_SENT) or bool(
            self._throttled.is_retryable(context)
        )

    def _delay(self, context: Any) -> float:
        """Truncated binary exponential backoff with full jitter, as botocore's standard mode."""
        base = _THROTTLING_BASE if self._throttled.is_retryable(context) else _TRANSIENT_BASE
        ceiling = min(base * 2.0 ** (int(context.attempt_number) - 1), _MAX_BACKOFF)
        return self._rand() * ceiling
