"""`keyrotor status`: where every user's rotation stands, from the status files alone.

It needs no AWS access, so anyone with a clone can see which keys are overdue at a glance.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.commands import now_of
from controller.durations import format_duration
from controller.status import UserStatus
from controller.statusfiles import StatusTree, UserRecord
from controller.timefmt import to_iso


def _age(created: datetime | None, now: datetime) -> str:
    return format_duration(now - created) if created else "-"


def _rows(tree: StatusTree, policies: list[str]) -> list[UserRecord]:
    return [r for r in tree.records() if not policies or r.policy in policies]


def _overdue(st: UserStatus, now: datetime) -> bool:
    return st.overdue(now)


def run(args: argparse.Namespace) -> int:
    now = now_of(args)
    records = _rows(StatusTree.from_directory(Path(args.repo)), args.policy)
    rows = [(r.policy, r.user, r.status) for r in records]
    if args.format == "json":
        users: list[dict[str, Any]] = [
            {
                "policy": r.policy,
                "account": r.account or None,
                "user": r.user,
                "phase": str(st.phase),
                "oldKey": st.old_key,
                "newKey": st.new_key,
                "overdue": _overdue(st, now),
                "nextStep": st.next_step,
                "nextAt": to_iso(st.next_at) if st.next_at else None,
                "reason": str(st.reason) if st.reason else None,
                "message": st.message,
                "checks": [
                    {
                        "check": c.check,
                        "state": str(c.state),
                        "message": c.message,
                        "since": to_iso(c.since),
                    }
                    for c in st.checks
                ],
            }
            for r in records
            for st in (r.status,)
        ]
        print(json.dumps({"users": users}, indent=2))
        return 0
    if not rows:
        print("No status yet: run `keyrotor apply` first.")
        return 0
    header = ("POLICY", "USER", "PHASE", "OLD KEY", "AGE", "NEW KEY", "AGE", "NEXT")
    table = [header]
    for policy, user, st in rows:
        nxt = f"{st.next_step} {st.next_at:%Y-%m-%d %H:%M}Z" if st.next_step and st.next_at else "-"
        phase = str(st.phase) + (" OVERDUE" if _overdue(st, now) else "")
        table.append(
            (
                policy,
                user,
                phase,
                st.old_key or "-",
                _age(st.old_key_created, now),
                st.new_key or "-",
                _age(st.new_key_created, now),
                nxt,
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    details = [(policy, user, st) for policy, user, st in rows if st.message or st.checks]
    if details:
        print()
    for policy, user, st in details:
        print(f"{policy}/{user}: {st.message}")
        for c in st.checks:
            print(f"    {c.check:<14} {c.state:<8} since {c.since:%Y-%m-%d %H:%M}Z  {c.message}")
    overdue = sum(1 for _, _, st in rows if _overdue(st, now))
    print(f"\n{len(rows)} users, {overdue} overdue.")
    return 0
