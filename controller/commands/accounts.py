"""`keyrotor accounts`: the accounts the policies act in, for a GitHub Actions matrix.

`--format json --shards N` prints `{"accounts": [{"account": ..., "policies": [...],
"shard": "2/4"}], "shards": ["1/4", ...]}`, listing only the shards that own an account, so
that a matrix of `keyrotor reconcile --shard ${{ matrix.shard }}` jobs has no idle job.
Organizational units are expanded and the ambient account's id is asked of STS, so this needs
the same read access as `plan`.
"""

from __future__ import annotations

import argparse
import json
import sys

from controller import accounts
from controller.commands import run_context
from controller.service import open_workspace


def run(args: argparse.Namespace) -> int:
    ctx = run_context(args)
    ws = open_workspace(args.repo, args.policy)
    groups = accounts.resolve(ctx.sessions, ws.policies)
    rows = [
        {
            "account": g.account_id,
            "policies": sorted({p.name for p in g.policies}),
            "shard": f"{accounts.shard_of(g.account_id, args.shards)}/{args.shards}",
        }
        for g in groups
        if g.error is None
    ]
    errors = [g for g in groups if g.error is not None]
    shards = sorted({r["shard"] for r in rows}, key=lambda s: int(str(s).split("/")[0]))
    if args.format == "json":
        print(json.dumps({"accounts": rows, "shards": shards}, indent=2))
    else:
        for row in rows:
            print(f"{row['account']}  shard {row['shard']}  {', '.join(row['policies'])}")
    for group in errors:
        names = ", ".join(sorted(p.name for p in group.policies))
        print(f"keyrotor: {names}: {group.error}", file=sys.stderr)
    return 1 if errors else 0
