"""One module per CLI command; each exposes `run(args) -> exit code`.

This package is the edge: it is where the environment is read, once, into a `RunContext`.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime

from controller.aws import AwsSessions
from controller.context import CiEnvironment, RunContext


def now_of(args: argparse.Namespace) -> datetime:
    return args.now if getattr(args, "now", None) else datetime.now(UTC)


def run_context(args: argparse.Namespace) -> RunContext:
    """The context of one CLI run: `--now`, AWS from the SDK environment, CI from os.environ."""
    return RunContext(
        now=now_of(args),
        sessions=AwsSessions(),
        ci=CiEnvironment.from_environ(os.environ),
        push=not getattr(args, "no_push", False),
    )
