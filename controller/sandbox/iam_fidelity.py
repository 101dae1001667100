"""IAM behaviours moto 5 leaves out that keyrotor's bulk inventory depends on, put back.

Installed in the sandbox server process only (it patches moto's IAM response class):

- **Paging.** moto answers `ListUsers` and `GetAccountAuthorizationDetails` in one page whatever
  `MaxItems` and `Marker` say. Here both serve pages of `MaxItems` (default 100, at most 1000,
  as in AWS) in user-name order, with an opaque `Marker` naming where the next page starts, so a
  client that does not follow `IsTruncated`/`Marker` sees only the first page, as it would in AWS.
- **A credential report that ages.** moto computes the report afresh on every
  `GetCredentialReport` and dates it 2015-02-02. Here `GenerateCredentialReport` takes a
  snapshot at the sandbox clock and answers `STARTED`; until the next Generate call (which
  answers `COMPLETE`), `GetCredentialReport` fails with `ReportInProgress`. While the snapshot is
  younger than four hours of sandbox time, Generate answers `COMPLETE` and keeps it, so keys
  created or used since then are missing from the report, exactly the staleness AWS has. (Once
  the clock is moved back before a snapshot, the next Generate makes a new one.)
- **Per-key lookups in constant time.** moto's `GetAccessKeyLastUsed` walks every key of every
  user of every account to find one key, so a per-user scan of N users costs O(N^2) on moto and
  looks ever slower than it is on AWS as N grows. Here it looks the key up in the account's index
  first (same answers: a key must still belong to an existing user), falling back to moto's walk.
"""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from moto.core.responses import ActionResult
from moto.iam.exceptions import IAMException, ReportNotPresentException, ValidationError
from moto.iam.models import IAMBackend
from moto.iam.responses import IamResponse

DEFAULT_PAGE: Final = 100
MAX_PAGE: Final = 1000
REPORT_CACHE_AGE: Final = timedelta(hours=4)

_REPORT_ATTRIBUTE: Final = "_keyrotor_credential_report"


class ReportInProgress(IAMException):
    code = "ReportInProgress"


@dataclass
class _Report:
    content: str
    generated_at: datetime
    complete: bool = False


_clock: Callable[[], datetime] | None = None


def install(now: Callable[[], datetime]) -> None:
    """Patch moto's IAM responses in this process; `now` is the sandbox clock (aware, UTC)."""
    global _clock
    _clock = now
    patches: dict[str, Callable[[Any], ActionResult]] = {
        "list_users": _list_users,
        "get_account_authorization_details": _get_account_authorization_details,
        "generate_credential_report": _generate_credential_report,
        "get_credential_report": _get_credential_report,
    }
    for name, method in patches.items():
        setattr(IamResponse, name, method)
    if not getattr(IAMBackend.get_access_key_last_used, "keyrotor_indexed", False):
        indexed = _indexed(IAMBackend.get_access_key_last_used)
        setattr(IAMBackend, "get_access_key_last_used", indexed)  # noqa: B010 (mypy: method)


def _now() -> datetime:
    if _clock is None:
        raise RuntimeError("iam_fidelity.install() was not called")
    return _clock()


def _indexed(walk: Callable[[Any, str], dict[str, Any]]) -> Callable[[Any, str], dict[str, Any]]:
    def get_access_key_last_used(self: Any, access_key_id: str) -> dict[str, Any]:
        key = self.access_keys.get(access_key_id)
        if key is not None and key.user_name is not None:
            user = self.users.get(key.user_name)
            if user is not None and key in user.access_keys:
                return {"user_name": key.user_name, "last_used": key.last_used}
        return walk(self, access_key_id)

    get_access_key_last_used.keyrotor_indexed = True  # type: ignore[attr-defined]
    return get_access_key_last_used


# --- paging ------------------------------------------------------------------------------------


def encode_marker(sort_key: str) -> str:
    return base64.urlsafe_b64encode(f"v1\0{sort_key}".encode()).decode()


def decode_marker(marker: str) -> str:
    try:
        version, _, sort_key = base64.urlsafe_b64decode(marker.encode()).decode().partition("\0")
    except (binascii.Error, UnicodeError, ValueError):
        version, sort_key = "", ""
    if version != "v1":
        raise ValidationError("Invalid Marker.")
    return sort_key


def _max_items(value: Any) -> int:
    if value in (None, ""):
        return DEFAULT_PAGE
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if not 1 <= number <= MAX_PAGE:
        raise ValidationError(
            f"1 validation error detected: Value '{value}' at 'maxItems' failed to satisfy "
            f"constraint: Member must have value between 1 and {MAX_PAGE}"
        )
    return number


def page(
    items: Sequence[tuple[str, Any]], *, max_items: Any, marker: Any
) -> tuple[list[Any], str | None]:
    """One page of `items` (sort key, item) in sort-key order, and the next page's marker.

    The marker names the last key served, not an offset, so users created or deleted between
    two calls shift nothing: the next page starts after that key, whatever happened.
    """
    size = _max_items(max_items)
    ordered = sorted(items, key=lambda pair: pair[0])
    keys = [key for key, _ in ordered]
    start = bisect.bisect_right(keys, decode_marker(str(marker))) if marker else 0
    chunk = ordered[start : start + size]
    truncated = start + size < len(ordered)
    return [item for _, item in chunk], encode_marker(chunk[-1][0]) if truncated else None


def _paged(result: dict[str, Any], next_marker: str | None) -> ActionResult:
    result["IsTruncated"] = next_marker is not None
    if next_marker is not None:
        result["Marker"] = next_marker
    return ActionResult(result)


def _list_users(self: Any) -> ActionResult:
    users = self.backend.list_users(self._get_param("PathPrefix"), None, None)
    chunk, next_marker = page(
        [(user.name, user) for user in users],
        max_items=self._get_param("MaxItems"),
        marker=self._get_param("Marker"),
    )
    return _paged({"Users": chunk}, next_marker)


_DETAIL_LISTS: Final = (
    ("users", "UserDetailList"),
    ("groups", "GroupDetailList"),
    ("roles", "RoleDetailList"),
    ("managed_policies", "Policies"),
)


def _get_account_authorization_details(self: Any) -> ActionResult:
    details = self.backend.get_account_authorization_details(self._get_param("Filter", []))
    items: list[tuple[str, Any]] = []
    for order, (kind, _) in enumerate(_DETAIL_LISTS):
        for entity in details[kind]:
            name = entity.arn if kind == "managed_policies" else entity.name
            items.append((f"{order}/{name}", (kind, entity)))
    chunk, next_marker = page(
        items, max_items=self._get_param("MaxItems"), marker=self._get_param("Marker")
    )
    result: dict[str, Any] = {field: [] for _, field in _DETAIL_LISTS}
    fields = dict(_DETAIL_LISTS)
    for kind, entity in chunk:
        result[fields[kind]].append(entity)
    return _paged(result, next_marker)


# --- the credential report ---------------------------------------------------------------------


def _generate_credential_report(self: Any) -> ActionResult:
    now = _now()
    report: _Report | None = getattr(self.backend, _REPORT_ATTRIBUTE, None)
    # A report "from the future" (a test moved the clock back) is not one AWS could serve.
    if report is not None and timedelta(0) <= now - report.generated_at < REPORT_CACHE_AGE:
        report.complete = True
        return ActionResult({"State": "COMPLETE"})
    self.backend.generate_report()  # moto's flag, without which it refuses to render the CSV
    snapshot = _Report(self.backend.get_credential_report(), generated_at=now)
    setattr(self.backend, _REPORT_ATTRIBUTE, snapshot)
    description = (
        "No report exists. Starting a new report generation task"
        if report is None
        else "The report is older than 4 hours. Starting a new report generation task"
    )
    return ActionResult({"State": "STARTED", "Description": description})


def _get_credential_report(self: Any) -> ActionResult:
    report: _Report | None = getattr(self.backend, _REPORT_ATTRIBUTE, None)
    if report is None:
        raise ReportNotPresentException("Credential report not present")
    if not report.complete:
        raise ReportInProgress("Credential report is being generated")
    return ActionResult(
        {
            "Content": report.content,
            "ReportFormat": "text/csv",
            "GeneratedTime": report.generated_at,
        }
    )
