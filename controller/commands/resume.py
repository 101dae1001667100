"""`keyrotor resume --policy P --user U`: a person's decision to retry a rolled-back rotation.

keyrotor never retries a rollback by itself: the check that failed said the application broke.
The decision is committed to status, so it is in git history with its author, and the next
`apply` stores the new key in every target again and waits for the application to use it.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

from controller import commits, lifecycle
from controller.commands import now_of
from controller.context import CiEnvironment
from controller.errors import KeyrotorError
from controller.gitops.repo import StatusRepo
from controller.service import open_workspace, read_statuses
from controller.status import Phase, dump, status_path


def run(args: argparse.Namespace) -> int:
    now = now_of(args)
    ci = CiEnvironment.from_environ(os.environ)
    with StatusRepo.open(Path(args.repo)) as repo:
        ws = open_workspace(repo.root, [args.policy])
        status = read_statuses(repo.root, ws.policies).get(args.policy)
        user = status.users.get(args.user) if status else None
        if status is None or user is None:
            raise KeyrotorError(f"policy {args.policy} has no status for user {args.user}")
        resumed = lifecycle.on_resume(user, now)
        if resumed is None and user.phase == Phase.ROLLED_BACK and user.resumed_at is not None:
            print(f"{args.user} was already resumed at {user.resumed_at:%Y-%m-%d %H:%M}Z")
            return 0
        if resumed is None:
            raise KeyrotorError(
                f"{args.user} is {user.phase} and not held: there is nothing to resume"
            )
        message = commits.resume_commit(
            args.policy,
            args.user,
            user.new_key or user.old_key or "-",
            user.hold or user.message,
            ci.run_id or "local",
        )
        repo.commit(
            {
                status_path(args.policy): dump(
                    replace(status.with_user(args.user, resumed), last_reconciled=now)
                )
            },
            message.subject,
            message.body,
            message.trailers,
        )
        if not args.no_push:
            repo.push_status()
    print(f"Resumed {args.user}: the next `keyrotor apply` carries on from here.")
    return 0
