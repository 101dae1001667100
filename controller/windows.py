"""Maintenance windows: when disruptive steps (deactivating and deleting an old key) may run.

Pure: every function is given `now` and reads no clock. Rollback (reactivating a key) is never
held by a window; that is the caller's rule, not this module's.

- No windows: disruptive steps may run at any time.
- With at least one `allow` window: only while an allow window is open.
- Never while a `deny` window is open; deny wins over allow. With only deny windows, steps may
  run at any time outside them.

A window opens at each fire time of its 5-field cron schedule, read as wall-clock time in its
time zone, and stays open for `duration` of elapsed time: it is open on `[start, start +
duration)`, open at exactly its start and closed at exactly its end. A window that opened
before `now` and has not yet closed counts as open.

Daylight saving time follows cron (Vixie/Debian cron, as implemented by `cronsim`): a schedule
with a fixed minute and hour whose start falls in the hour skipped in spring opens when the
clocks jump (a daily 02:30 window in Europe/Berlin opens at 03:00 CEST on that day), and one
whose start falls in the hour repeated in autumn opens once, at the first occurrence. Schedules
with a wildcard or stepped minute or hour (`0 * * * *`, `*/30 2 * * *`) fire by elapsed time and
so fire in both occurrences of the repeated hour. Because the duration is elapsed time, a 2h
window opening at 01:30 CEST on the autumn night closes at 02:30 CET.
"""

from __future__ import annotations

import difflib
import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError

from controller.policy import Window

__all__ = [
    "DEFAULT_HORIZON",
    "WindowState",
    "explain",
    "is_open",
    "next_opening",
    "schedule_problem",
    "time_zone",
    "time_zone_problem",
]

#: How far `next_opening` looks ahead: a yearly window still has a next opening.
DEFAULT_HORIZON = timedelta(days=400)

# Cron iteration starts this much before the instant asked about, and fire times before it are
# dropped: more than any DST shift, so no fire time is missed around a change.
_SLACK = timedelta(hours=3)

# Zone names that exist on some machines but do not name a place: never accepted.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})

# Any valid datetime works to construct a CronSim for validation.
_PROBE = datetime(2000, 1, 1, tzinfo=UTC)


# --- validation (used by the manifest loader) --------------------------------------------------


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones() - _NOT_ZONES) | {"UTC"}


def time_zone_problem(name: str) -> str | None:
    """None if `name` is an IANA time zone this machine knows, else what is wrong with it."""
    if name in _zone_names():
        return None
    # Suggest region names only: legacy names such as EST or CET are fixed offsets or rules
    # that a misspelled abbreviation (CEST) is unlikely to mean.
    names = sorted(n for n in _zone_names() if "/" in n or n == "UTC")
    close = [n for n in names if n.lower() == name.lower()]
    close = close or difflib.get_close_matches(name, names, n=1, cutoff=0.8)
    if close:
        return f"unknown time zone {name!r}; did you mean {close[0]!r}?"
    return (
        f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin, America/New_York "
        "or UTC"
    )


_FIELD_RANGES = {
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31 or L",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT (0 and 7 are Sunday)",
}


def schedule_problem(schedule: str) -> str | None:
    """None if `schedule` is a cron expression that fires, else what is wrong with it."""
    fields = schedule.split()
    if len(fields) != 5:
        return (
            f"it has {len(fields)} fields; write five: minute hour day-of-month month day-of-week"
        )
    try:
        next(CronSim(schedule, _PROBE))
    except CronSimError as exc:
        field = str(exc).removeprefix("Bad ")
        if field == "day-of-month" and _parses(" ".join([*fields[:3], "*", "*"])):
            return "no month it names has that day of the month, so it never fires"
        if field not in _FIELD_RANGES:  # pragma: no cover - cronsim names the field otherwise
            return str(exc)
        value = fields[list(_FIELD_RANGES).index(field)]
        return (
            f"invalid {field} {value!r}; use values {_FIELD_RANGES[field]}, lists (1,15), "
            "ranges (1-5) or steps (*/10)"
        )
    except StopIteration:
        return "it never fires"
    return None


def _parses(schedule: str) -> bool:
    try:
        CronSim(schedule, _PROBE)
    except CronSimError:
        return False
    return True


@cache
def time_zone(name: str) -> tzinfo:
    """The tzinfo of a zone name the loader accepted; UTC needs no time zone database."""
    return UTC if name == "UTC" else ZoneInfo(name)


# --- fire times and open spans -----------------------------------------------------------------


def _fires(window: Window, since: datetime) -> Iterator[datetime]:
    """The fire times of `window`'s schedule at or after `since`, in UTC, strictly ascending."""
    start = (since - _SLACK).astimezone(time_zone(window.time_zone))
    cron = CronSim(window.schedule, start)
    last: datetime | None = None
    while True:
        try:
            fire = next(cron).astimezone(UTC)
        except StopIteration:
            return
        # Around DST changes cron may hand out a local time that lies before an earlier one.
        if fire < since or (last is not None and fire <= last):
            continue
        last = fire
        yield fire


@dataclass(frozen=True)
class _Span:
    """`[start, end)` during which windows of one kind are open, and the windows that bound it."""

    start: datetime
    end: datetime
    opened_by: Window
    closed_by: Window


def _spans(window: Window, since: datetime) -> Iterator[_Span]:
    """The openings of `window` that are still open at or after `since`, by start."""
    if window.duration <= timedelta(0):
        return
    for fire in _fires(window, since - window.duration):
        end = fire + window.duration
        if end > since:
            yield _Span(fire, end, window, window)


def _merged(windows: Iterable[Window], since: datetime, until: datetime) -> Iterator[_Span]:
    """The union of the openings of `windows` as disjoint spans, by start.

    Spans that overlap or touch are joined. Only spans that start at or before `until` are
    produced, and the last one may be cut short once it reaches past `until`.
    """
    current: _Span | None = None
    streams = [_spans(window, since) for window in windows]
    for span in heapq.merge(*streams, key=lambda s: s.start):
        if span.start > until:
            break
        if current is None:
            current = span
        elif span.start <= current.end:
            if span.end > current.end:
                current = _Span(current.start, span.end, current.opened_by, span.closed_by)
        else:
            yield current
            current = span
        if current.end > until:
            break
    if current is not None:
        yield current


# --- queries -----------------------------------------------------------------------------------


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    return now.astimezone(UTC)


def _open_span(window: Window, at: datetime) -> _Span | None:
    """The opening of `window` that contains `at`, if any."""
    for span in _spans(window, at):
        return span if span.start <= at else None
    return None


def is_open(windows: Sequence[Window], now: datetime) -> bool:
    """Whether a disruptive step may run at `now`."""
    at = _utc(now)
    allows = [w for w in windows if w.kind == "allow"]
    if allows and not any(_open_span(w, at) for w in allows):
        return False
    return not any(_open_span(w, at) for w in windows if w.kind == "deny")


@dataclass(frozen=True)
class _Opening:
    at: datetime
    # The window whose boundary `at` is: an allow window opening or a deny window closing.
    cause: Window | None


def _search(windows: Sequence[Window], now: datetime, horizon: timedelta) -> _Opening | None:
    # A plan asks once per user, with the same windows and clock for every user of a policy.
    return _search_cached(tuple(windows), _utc(now), horizon)


@lru_cache(maxsize=256)
def _search_cached(
    windows: tuple[Window, ...], at: datetime, horizon: timedelta
) -> _Opening | None:
    until = at + horizon
    allows = [w for w in windows if w.kind == "allow"]
    allow_spans = _merged(allows, at, until) if allows else None
    deny_spans = _merged([w for w in windows if w.kind == "deny"], at, until)
    allow: _Span | None = None
    deny: _Span | None = None
    denies_left = True
    cause: Window | None = None
    while at <= until:
        if allow_spans is not None:
            while allow is None or allow.end <= at:
                allow = next(allow_spans, None)
                if allow is None:
                    return None
            if allow.start > at:
                at, cause = allow.start, allow.opened_by
                if at > until:
                    return None
        while denies_left and (deny is None or deny.end <= at):
            deny = next(deny_spans, None)
            denies_left = deny is not None
        if deny is None or deny.start > at:
            return _Opening(at, cause)
        at, cause = deny.end, deny.closed_by
    return None


def next_opening(
    windows: Sequence[Window], now: datetime, horizon: timedelta = DEFAULT_HORIZON
) -> datetime | None:
    """The earliest instant at or after `now` at which a disruptive step may run, in UTC.

    `now` itself when it is allowed; None when no such instant lies within `horizon`.
    """
    found = _search(windows, now, horizon)
    return found.at if found else None


@dataclass(frozen=True)
class WindowState:
    """Whether disruptive steps may run at an instant, which window decides it, and when they
    next may: the facts behind a "waiting for a maintenance window" message."""

    allowed: bool
    # The deny window open now, or (when allowed) the allow window open now.
    inside: Window | None
    # The next instant steps may run (None: allowed now, or not within `horizon`).
    opens: datetime | None
    # The zone of the window whose boundary `opens` is, for showing it in local time.
    zone: str
    horizon: timedelta
    any_windows: bool


def explain(
    windows: Sequence[Window], now: datetime, horizon: timedelta = DEFAULT_HORIZON
) -> WindowState:
    """Why a disruptive step may or may not run at `now`, and when it next may."""
    at = _utc(now)
    allows = [w for w in windows if w.kind == "allow"]
    open_allow = next((w for w in allows if _open_span(w, at)), None)
    open_deny = next((w for w in windows if w.kind == "deny" and _open_span(w, at)), None)
    if open_deny is None and (open_allow is not None or not allows):
        return WindowState(True, open_allow, None, "UTC", horizon, bool(windows))
    found = _search(windows, at, horizon)
    zone = found.cause.time_zone if found and found.cause else "UTC"
    return WindowState(False, open_deny, found.at if found else None, zone, horizon, True)
