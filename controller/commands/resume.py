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
from controller.gitops.store import FileUpdate
from controller.service import open_workspace
from controller.status import STATUS_DIR, Phase
from controller.status import dump as dump_legacy
from controller.status import load as load_legacy
from controller.statusfiles import StatusTree, UserRecord, dump_user


def run(args: argparse.Namespace) -> int:
    now = now_of(args)
    ci = CiEnvironment.from_environ(os.environ)
    with StatusRepo.open(Path(args.repo), push_token=ci.token) as repo:
        if not args.no_fetch:
            repo.sync()
        open_workspace(repo.root, [args.policy], committed=repo)
        tree = StatusTree(repo.read_files(STATUS_DIR))
        record = _record(tree, args.policy, args.user, args.account)
        user = record.status
        resumed = lifecycle.on_resume(user, now)
        if resumed is None and user.phase == Phase.ROLLED_BACK and user.resumed_at is not None:
            print(f"{args.user} was already resumed at {user.resumed_at:%Y-%m-%d %H:%M}Z")
            return 0
        if resumed is None:
            raise KeyrotorError(
                f"{args.user} is {user.phase} and not held: there is nothing to resume"
            )
        base = tree.files[record.path]
        if record.account:
            new = dump_user(record.policy, record.account, record.user, resumed)
        else:  # a status file of the first release: the next apply migrates it
            legacy = load_legacy(base, path=record.path)
            new = dump_legacy(replace(legacy.with_user(record.user, resumed), last_reconciled=now))
        message = commits.resume_commit(
            args.policy,
            args.user,
            user.new_key or user.old_key or "-",
            user.hold or user.message,
            ci.run_id or "local",
        )
        repo.publish(
            [FileUpdate(record.path, base, new)],
            message.subject,
            message.body,
            message.trailers,
            when=now,
            push=not args.no_push,
        )
    print(f"Resumed {args.user}: the next `keyrotor apply` carries on from here.")
    return 0


def _record(tree: StatusTree, policy: str, user: str, account: str | None) -> UserRecord:
    found = [
        r
        for r in tree.records()
        if r.policy == policy and r.user == user and (account is None or r.account == account)
    ]
    if not found:
        raise KeyrotorError(f"policy {policy} has no status for user {user}")
    if len(found) > 1:
        accounts = ", ".join(r.account for r in found)
        raise KeyrotorError(
            f"user {user} of policy {policy} has status in several accounts ({accounts}): "
            "pass --account"
        )
    return found[0]
