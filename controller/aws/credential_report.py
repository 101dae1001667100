"""The IAM credential report: fetch it, parse its CSV, and join its key columns to key ids.

One report answers, for every IAM user of an account in two or three calls, what a per-user scan
needs two calls a user for: how many access keys the user has, whether each is active, when it
was created (`access_key_N_last_rotated` is the key's CreateDate) and when it was last used.

It names no key ids, so a row is joined to the ids keyrotor knows (from the `keyrotor.dev/keys`
user tag or from its status) by creation time, to the second, as Cloud Custodian does. When that
cannot be done with certainty the join says so (`JoinOutcome.AMBIGUOUS` or `UNKNOWN`) and the
caller reads that user live. The report can be up to four hours old (IAM hands out the cached one
until then): it is evidence for deciding what to look at, never for a destructive step.

`parse` and `join_keys` are pure; `fetch_report` is the only function here that calls AWS.
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from controller.aws import AWS_ERRORS, error_code
from controller.errors import AwsError

#: IAM serves the report it has until it is this old; only then does Generate make a new one.
REPORT_CACHE_AGE: Final = timedelta(hours=4)

#: The name the report gives the account's root user: not an IAM user, never returned as a row.
ROOT_ROW: Final = "<root_account>"

#: Values that mean "no such date" in a report's date columns.
_NO_DATE: Final = frozenset({"N/A", "no_information", "not_supported", ""})

_SLOT_COLUMNS: Final = tuple(
    f"access_key_{slot}_{column}"
    for slot in (1, 2)
    for column in ("active", "last_rotated", "last_used_date")
)
REQUIRED_COLUMNS: Final = ("user", "arn", "user_creation_time", *_SLOT_COLUMNS)

#: Error codes after which asking again later can succeed. botocore's own retries have already
#: been spent on throttling when one of those reaches us, so these get our slower backoff.
RETRYABLE_CODES: Final = frozenset(
    {
        "ReportInProgress",  # GetCredentialReport before generation finished
        "ReportNotPresent",  # no report yet (or it was dropped): generate again
        "ReportExpired",  # too old to be served: generate again
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "ServiceFailure",
        "ServiceUnavailable",
    }
)


class CredentialReportError(AwsError):
    """The credential report could not be obtained or read; the message says what to do."""


class ReportNotReady(CredentialReportError):
    """IAM kept generating (or throttling) for longer than the caller was willing to wait."""


@dataclass(frozen=True, slots=True)
class KeySlot:
    """One of a row's two access-key column groups; `last_rotated` None means no key there."""

    active: bool = False
    last_rotated: datetime | None = None
    last_used: datetime | None = None

    @property
    def present(self) -> bool:
        return self.last_rotated is not None


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One IAM user as the report saw it when it was generated."""

    user: str
    arn: str
    user_creation_time: datetime | None
    key_1: KeySlot = KeySlot()
    key_2: KeySlot = KeySlot()

    @property
    def keys(self) -> tuple[KeySlot, ...]:
        """The slots that hold a key, in column order (0, 1 or 2 of them)."""
        return tuple(slot for slot in (self.key_1, self.key_2) if slot.present)


@dataclass(frozen=True)
class CredentialReport:
    """A parsed report: one row per IAM user (the root row left out), and when IAM made it."""

    generated_at: datetime
    rows: Mapping[str, ReportRow]

    def row(self, user: str) -> ReportRow | None:
        return self.rows.get(user)

    def age(self, now: datetime) -> timedelta:
        return now - self.generated_at

    def __len__(self) -> int:
        return len(self.rows)


# --- parsing -----------------------------------------------------------------------------------


def parse(content: bytes | str, *, generated_at: datetime) -> CredentialReport:
    """Parse the CSV `GetCredentialReport` returns (boto3 has already base64-decoded it).

    Dates are read as UTC to the second; `N/A`, `no_information` and `not_supported` read as
    None. A missing column or a value that is neither raises `CredentialReportError` naming the
    line and column, so a format change at AWS shows up as an error, not as wrong decisions.
    """
    text = content.decode("utf-8-sig") if isinstance(content, bytes) else content
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, [])
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        if missing:
            raise CredentialReportError(
                f"the credential report lacks the column(s) {', '.join(missing)}; "
                "keyrotor cannot read this report format"
            )
        columns = _Columns({name: header.index(name) for name in REQUIRED_COLUMNS})
        rows: dict[str, ReportRow] = {}
        for record in reader:
            row = columns.row(record, line=reader.line_num)
            if row is None:
                continue
            if row.user in rows:
                raise CredentialReportError(
                    f"credential report line {reader.line_num}: user {row.user!r} appears twice"
                )
            rows[row.user] = row
    except csv.Error as exc:
        raise CredentialReportError(
            f"credential report line {reader.line_num}: not valid CSV ({exc})"
        ) from None
    return CredentialReport(_utc_second(generated_at), rows)


class _Columns:
    """Reads the report's rows by the positions its header gave the columns keyrotor needs."""

    def __init__(self, at: Mapping[str, int]) -> None:
        self.at = at
        self.width = max(at.values()) + 1

    def row(self, record: list[str], *, line: int) -> ReportRow | None:
        if len(record) < self.width:
            short = min((i, n) for n, i in self.at.items() if i >= len(record))[1]
            raise CredentialReportError(f"credential report line {line}: {short} is missing")
        at = self.at
        user = record[at["user"]]
        if user == ROOT_ROW:
            return None

        def date(name: str) -> datetime | None:
            value = record[at[name]]
            if value in _NO_DATE:
                return None
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                parsed = None
            if parsed is None or parsed.tzinfo is None:
                raise CredentialReportError(
                    f"credential report line {line}: {name} is {value!r}, not a date with a zone"
                )
            return _utc_second(parsed)

        def flag(name: str) -> bool:
            value = record[at[name]]
            lowered = value.lower()
            if lowered not in ("true", "false"):
                raise CredentialReportError(
                    f"credential report line {line}: {name} is {value!r}, not true or false"
                )
            return lowered == "true"

        def slot(n: int) -> KeySlot:
            rotated = date(f"access_key_{n}_last_rotated")
            active = flag(f"access_key_{n}_active")
            if rotated is None and not active:
                used = date(f"access_key_{n}_last_used_date")
                return _NO_KEY if used is None else KeySlot(False, None, used)
            return KeySlot(active, rotated, date(f"access_key_{n}_last_used_date"))

        return ReportRow(
            user=user,
            arn=record[at["arn"]],
            user_creation_time=date("user_creation_time"),
            key_1=slot(1),
            key_2=slot(2),
        )


_NO_KEY: Final = KeySlot()


def _utc_second(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


# --- fetching ----------------------------------------------------------------------------------


def fetch_report(
    iam: Any,
    *,
    sleep: Callable[[float], None],
    first_delay: float = 0.5,
    max_delay: float = 8.0,
    max_wait: float = 120.0,
) -> CredentialReport:
    """Generate the account's report until IAM says COMPLETE, then get and parse it.

    Between attempts it waits `first_delay`, doubling up to `max_delay`, through `sleep` (tests
    inject a fake); once waiting more would exceed `max_wait` seconds in all it raises
    `ReportNotReady`. STARTED/INPROGRESS answers and the error codes in `RETRYABLE_CODES` are
    waited out; any other AWS error propagates unchanged (AccessDenied is the caller's to
    handle). With a cached report that IAM still serves, this is two calls; otherwise three.
    """
    waited = 0.0
    delay = first_delay
    last: str = "STARTED"
    while True:
        try:
            state = str(iam.generate_credential_report()["State"])
            if state == "COMPLETE":
                reply = iam.get_credential_report()
                return parse(reply["Content"], generated_at=reply["GeneratedTime"])
            last = state
        except AWS_ERRORS as exc:
            code = error_code(exc)
            if code not in RETRYABLE_CODES:
                raise
            last = code
        if waited + delay > max_wait:
            raise ReportNotReady(
                f"the IAM credential report was still not available after {waited:g}s "
                f"(last answer: {last}); run again later"
            )
        sleep(delay)
        waited += delay
        delay = min(delay * 2, max_delay)


# --- joining the report to key ids -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """A key id keyrotor knows for a user, with its CreateDate (from its tag or its status)."""

    key_id: str
    created: datetime


@dataclass(frozen=True, slots=True)
class JoinedKey:
    """One access key with its id: the report's facts about it under the id of a candidate."""

    id: str
    active: bool
    created: datetime
    last_used: datetime | None

    @property
    def status(self) -> str:
        """IAM's spelling, as in ListAccessKeys."""
        return "Active" if self.active else "Inactive"


class JoinOutcome(enum.Enum):
    JOINED = "joined"  # every key in the row has its id, and every candidate its key
    AMBIGUOUS = "ambiguous"  # a creation second fits more than one key or candidate
    UNKNOWN = "unknown"  # the row and the candidates disagree: read this user live


class JoinProblem(enum.Enum):
    NOT_IN_REPORT = "not-in-report"  # no row: the user is younger than the report (or gone)
    KEYS_SAME_SECOND = "keys-same-second"  # the row's two keys were created in one second
    CANDIDATES_SAME_SECOND = "candidates-same-second"  # two known ids share a creation second
    CANDIDATE_TWO_DATES = "candidate-two-dates"  # one known id is given two creation times
    UNMATCHED_KEY = "unmatched-key"  # a key in the row has no known id (e.g. made by hand)
    UNMATCHED_CANDIDATE = "unmatched-candidate"  # a known key is not in the row (newer or gone)


@dataclass(frozen=True, slots=True)
class KeyJoin:
    """The result of `join_keys`: the keys with ids when `outcome` is JOINED, else `problem`."""

    outcome: JoinOutcome
    keys: tuple[JoinedKey, ...] = ()
    problem: JoinProblem | None = None

    @property
    def joined(self) -> bool:
        return self.outcome is JoinOutcome.JOINED


def join_keys(row: ReportRow | None, candidates: Iterable[Candidate]) -> KeyJoin:
    """Give each key in `row` the id of the candidate created in the same second (UTC).

    The result is JOINED only when that pairing is one-to-one and complete: every key in the row
    matches exactly one candidate and every candidate one key. Otherwise it is AMBIGUOUS (two
    keys, or two candidates, share a second) or UNKNOWN (a key nobody recorded, a recorded key
    the report does not show because it is newer than the report or was deleted, or no row at
    all), and the caller must read the user's keys live. Pass only the keys believed to exist
    now: a deleted key among the candidates makes the join UNKNOWN, which is the safe answer.
    """
    if row is None:
        return KeyJoin(JoinOutcome.UNKNOWN, problem=JoinProblem.NOT_IN_REPORT)
    slots = row.keys
    if len(slots) == 2 and slots[0].last_rotated == slots[1].last_rotated:
        return KeyJoin(JoinOutcome.AMBIGUOUS, problem=JoinProblem.KEYS_SAME_SECOND)
    by_second: dict[datetime, set[str]] = {}
    second_of: dict[str, datetime] = {}
    for candidate in candidates:
        second = _utc_second(candidate.created)
        if second_of.setdefault(candidate.key_id, second) != second:
            return KeyJoin(JoinOutcome.AMBIGUOUS, problem=JoinProblem.CANDIDATE_TWO_DATES)
        by_second.setdefault(second, set()).add(candidate.key_id)
    joined: list[JoinedKey] = []
    for slot in slots:
        assert slot.last_rotated is not None  # `keys` holds present slots only
        ids = by_second.pop(slot.last_rotated, set())
        if not ids:
            return KeyJoin(JoinOutcome.UNKNOWN, problem=JoinProblem.UNMATCHED_KEY)
        if len(ids) > 1:
            return KeyJoin(JoinOutcome.AMBIGUOUS, problem=JoinProblem.CANDIDATES_SAME_SECOND)
        (key_id,) = ids
        joined.append(JoinedKey(key_id, slot.active, slot.last_rotated, slot.last_used))
    if by_second:
        return KeyJoin(JoinOutcome.UNKNOWN, problem=JoinProblem.UNMATCHED_CANDIDATE)
    return KeyJoin(JoinOutcome.JOINED, tuple(sorted(joined, key=lambda k: (k.created, k.id))))
