"""The demo's output: a compact timeline, live progress on a terminal, plain lines otherwise."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

#: Event kinds, as the timeline's change column shows them.
PHASE = "phase"
WAITING = "waiting"
OPERATOR = "operator"
FAILURE = "failure"

_KEY_ID = re.compile(r"\bAKIA[A-Z0-9]{16}\b")


@dataclass(frozen=True)
class Event:
    """One line of the timeline: at `at`, `user` went from state `before` to `after`, because."""

    at: datetime
    user: str
    kind: str
    before: str
    after: str
    reason: str

    def change(self) -> str:
        if self.kind == PHASE:
            if self.before.split()[0] == self.after.split()[0]:
                return self.after  # the same phase, now overdue
            return f"{self.before} -> {self.after}"
        if self.kind == WAITING:
            return f"{self.after}, waiting"
        if self.kind == OPERATOR:
            return "operator"
        return "CALL FAILED"

    def day(self, start: datetime) -> str:
        delta = self.at - start
        return f"{delta.days:>3} {self.at:%H:%M}"

    def line(self, start: datetime) -> str:
        return f"  {self.day(start)}  {self.user:<14}  {self.change():<34}  {self.reason}"

    def normalized(self) -> tuple[str, str, str, str, str, str]:
        """The event with key ids (random in every run) replaced, for comparing runs."""
        return (
            self.at.isoformat(),
            self.user,
            self.kind,
            self.before,
            self.after,
            _KEY_ID.sub("AKIA*", self.reason),
        )


class Console:
    """Writes the demo's output; on a terminal, a progress line sits under the last line."""

    def __init__(self, out: TextIO, start: datetime, *, tty: bool | None = None) -> None:
        self.out = out
        self.start = start
        self.tty = _isatty(out) if tty is None else tty
        self._progress = False

    def line(self, text: str = "") -> None:
        self._clear()
        self.out.write(text + "\n")
        self.out.flush()

    def block(self, text: str, indent: str = "    ") -> None:
        for row in text.rstrip("\n").splitlines():
            self.line((indent + row).rstrip())

    def heading(self, text: str) -> None:
        self.line()
        self.line(text)

    def event(self, event: Event) -> None:
        self.line(event.line(self.start))

    def timeline_header(self) -> None:
        self.line(f"  {'DAY':>3} {'TIME':<5}  {'USER':<14}  {'CHANGE':<34}  WHY")

    def progress(self, text: str) -> None:
        """Live status on a terminal, overwritten by the next line; nothing otherwise."""
        if not self.tty:
            return
        self.out.write("\r\x1b[2K" + text)
        self.out.flush()
        self._progress = True

    def finish(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self._progress:
            self.out.write("\r\x1b[2K")
            self._progress = False


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False
