"""The names of the benchmark's runs, shared by the runner and the table."""

from __future__ import annotations

from typing import Final

BASELINE: Final = "per-user scan (baseline)"
NEW_COLD: Final = "keyrotor inventory (new): report generated"
NEW_WARM: Final = "keyrotor inventory (new): report cached"
REPORT_ONLY_COLD: Final = "keyrotor inventory (new, no listing): report generated"
REPORT_ONLY_WARM: Final = "keyrotor inventory (new, no listing): report cached"
TODAY_PLAN: Final = "keyrotor plan (today): no-op"
TODAY_APPLY: Final = "keyrotor apply (today): no-op"
NEW_DUE: Final = "keyrotor inventory (new): 1% due, +7d"
TODAY_PLAN_DUE: Final = "keyrotor plan (today): 1% due, +7d"
TODAY_ROTATE: Final = "keyrotor apply (today): rotate 1%, +7d"
