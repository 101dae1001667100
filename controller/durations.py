"""Durations as written in manifests: a whole number and one unit, `90d`, `24h`, `2w`."""

from __future__ import annotations

import re
from datetime import timedelta

PATTERN = r"^[0-9]+(s|m|h|d|w)$"
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_RE = re.compile(PATTERN)


def parse_duration(text: str) -> timedelta:
    """Parse `90d` into a timedelta; raises ValueError naming the accepted form."""
    if not _RE.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a duration: write a whole number and one of s, m, h, d, w"
        )
    return timedelta(**{_UNITS[text[-1]]: int(text[:-1])})


def format_duration(delta: timedelta) -> str:
    """Render a timedelta compactly for people: `3d 4h`, `15m`, `0s`."""
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return sign + (" ".join(parts) or "0s")
