"""The names of the benchmark's runs, shared by the runner and the table."""

from __future__ import annotations

from typing import Final

BASELINE: Final = "per-user scan (baseline)"
NEW_COLD: Final = "keyrotor reader alone: report generated"
NEW_WARM: Final = "keyrotor reader alone: report cached"
REPORT_ONLY_COLD: Final = "keyrotor reader alone, no listing: report generated"
REPORT_ONLY_WARM: Final = "keyrotor reader alone, no listing: report cached"
TODAY_PLAN: Final = "keyrotor plan: no-op"
TODAY_APPLY: Final = "keyrotor apply: no-op"
NEW_DUE: Final = "keyrotor reader alone: 1% due, +7d"
TODAY_PLAN_DUE: Final = "keyrotor plan: 1% due, +7d"
TODAY_ROTATE: Final = "keyrotor apply: rotate 1%, +7d"
