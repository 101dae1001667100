"""`keyrotor history`: the rotation history, from the git trailers of status commits."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from controller.gitops.history import format_history_text, history_to_json, read_history


def run(args: argparse.Namespace) -> int:
    entries = read_history(Path(args.repo), users=args.user, policies=args.policy)
    if args.format == "json":
        print(json.dumps(history_to_json(entries), indent=2))
    else:
        print(format_history_text(entries), end="")
    return 0
