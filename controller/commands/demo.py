"""`keyrotor demo`: run the whole rotation lifecycle on an embedded AWS and Git; no account.

Exits 0 only if every expected transition happened and no application call failed, so CI can
run it as a smoke test.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from controller.errors import KeyrotorError


def run(args: argparse.Namespace) -> int:
    missing = [m for m in ("moto", "freezegun") if importlib.util.find_spec(m) is None]
    if missing:  # the `sandbox` extra
        raise KeyrotorError(
            f"keyrotor demo needs the embedded AWS ({', '.join(missing)} missing): "
            "pip install 'keyrotor[sandbox]'"
        )
    from controller.demo import run_demo

    result = run_demo(
        getattr(args, "scenario", "happy"),
        seed=args.seed,
        keep=Path(args.keep) if args.keep else None,
    )
    return 0 if result.ok else 1
