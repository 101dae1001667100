"""The `http` check: GET a URL; it passes when the response has the expected status (and text).

- Redirects are not followed: the status compared is that of the first response, so
  `expectStatus: 302` can be checked, and a redirect to a login page does not pass as 200.
- `timeout` bounds each phase of an attempt (connecting, and waiting for each piece of the
  response), as httpx defines it.
- A failed attempt (wrong status, missing text, timeout, connection error) is retried up to
  `retries` times, after waiting 1s, 2s, 4s, ... (at most `MAX_BACKOFF` seconds) via `sleep`.
- Only the first `MAX_BODY_BYTES` of the body are read and searched for `bodyContains`.
- Proxy settings in the environment (`HTTPS_PROXY`, `NO_PROXY`, ...) are honoured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import httpx

from controller import __version__
from controller.checks import CheckResult
from controller.durations import format_duration
from controller.policy import HttpCheck

__all__ = ["MAX_BACKOFF", "MAX_BODY_BYTES", "backoff", "run_http_check"]

MAX_BACKOFF = 30.0
MAX_BODY_BYTES = 1024 * 1024


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): 1, 2, 4, ... 30."""
    return min(2.0 ** (attempt - 1), MAX_BACKOFF)


def _duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    return format_duration(value) if seconds.is_integer() else f"{seconds:g}s"


def _read_body(response: httpx.Response) -> bytes:
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= MAX_BODY_BYTES:
            break
    return body[:MAX_BODY_BYTES]


def _attempt(client: httpx.Client, check: HttpCheck) -> tuple[bool, str]:
    """One GET: whether it passed, and what happened."""
    request = f"GET {check.url}"
    try:
        with client.stream("GET", check.url) as response:
            status = f"{response.status_code} {response.reason_phrase}".rstrip()
            if response.status_code != check.expect_status:
                return False, f"{request} answered {status}, expected {check.expect_status}"
            if check.body_contains is None:
                return True, f"{request} answered {status}"
            text = _read_body(response).decode(response.encoding or "utf-8", errors="replace")
    except httpx.TimeoutException:
        return False, f"{request} timed out after {_duration(check.timeout)}"
    except httpx.ConnectError as exc:
        return False, f"{request} failed: cannot connect ({str(exc) or type(exc).__name__})"
    except httpx.HTTPError as exc:
        return False, f"{request} failed: {str(exc) or type(exc).__name__}"
    if check.body_contains in text:
        return True, f"{request} answered {status} containing {check.body_contains!r}"
    return (
        False,
        f"{request} answered {status}, but the body does not contain {check.body_contains!r}",
    )


def run_http_check(
    check: HttpCheck,
    *,
    sleep: Callable[[float], None] = time.sleep,
    transport: httpx.BaseTransport | None = None,
) -> CheckResult:
    """GET `check.url` until it passes or `check.retries` retries have failed."""
    attempts = check.retries + 1
    with httpx.Client(
        timeout=check.timeout.total_seconds(),
        follow_redirects=False,
        headers={"User-Agent": f"keyrotor/{__version__}"},
        transport=transport,
    ) as client:
        for attempt in range(1, attempts + 1):
            passed, message = _attempt(client, check)
            if passed or attempt == attempts:
                break
            sleep(backoff(attempt))
    if attempt > 1:
        message += f" (attempt {attempt} of {attempts})"
    return CheckResult("http", passed, message)
