"""`keyrotor resume --policy P --user U`: a person's decision to retry a rolled-back rotation.

keyrotor never retries a rollback by itself: the check that failed said the application broke.
The decision is committed to status, so it is in git history with its author, and the next
`apply` stores the new key in every target again and waits for the application to use it.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from controller.errors import KeyrotorError
from controller.executor import run_id
from controller.gitops.repo import StatusRepo
from controller.runtime import now_of, open_workspace, read_statuses
from controller.status import Phase, dump, status_path


def run(args: argparse.Namespace) -> int:
    now = now_of(args)
    with StatusRepo.open(Path(args.repo)) as repo:
        ws = open_workspace(repo.root, [args.policy])
        status = read_statuses(repo.root, ws.policies).get(args.policy)
        user = status.users.get(args.user) if status else None
        if status is None or user is None:
            raise KeyrotorError(f"policy {args.policy} has no status for user {args.user}")
        if user.hold:
            resumed = replace(user, hold=None, message=f"resumed by a person; {user.hold}")
        elif user.phase != Phase.ROLLED_BACK:
            raise KeyrotorError(
                f"{args.user} is {user.phase} and not held: there is nothing to resume"
            )
        elif user.resumed_at is not None:
            print(f"{args.user} was already resumed at {user.resumed_at:%Y-%m-%d %H:%M}Z")
            return 0
        else:
            resumed = replace(user, resumed_at=now, message=f"resumed by a person; {user.message}")
        repo.commit(
            {
                status_path(args.policy): dump(
                    replace(status.with_user(args.user, resumed), last_reconciled=now)
                )
            },
            f"keyrotor({args.policy}): resume rotation of {args.user}",
            [f"{args.user}: resumed by a person after: {user.hold or user.message}"],
            [
                ("Keyrotor-Policy", args.policy),
                ("Keyrotor-User", args.user),
                ("Keyrotor-Step", f"{args.user} resume {user.new_key or user.old_key}"),
                ("Keyrotor-Run", run_id()),
            ],
        )
        if not args.no_push:
            repo.push_status()
    print(f"Resumed {args.user}: the next `keyrotor apply` carries on from here.")
    return 0
