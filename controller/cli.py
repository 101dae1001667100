"""Command-line entry point: `keyrotor` and `python -m controller`.

Exit codes, as Terraform users expect them:
  0  success (for `plan --detailed-exitcode`: nothing to do)
  1  user error: bad manifest, bad flag, failed precondition, or a failed action in `apply`
  2  `plan --detailed-exitcode` only: changes pending
  3  unexpected internal error (a bug): a short message and the path of the full traceback
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from controller import __version__
from controller.errors import KeyrotorError
from controller.hardening import Hardening, HardeningError, harden_process

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_CHANGES = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130

#: Commands that run `command` checks or hold credentials that may write: they warn when the
#: process could not be hardened (off Linux).
_RUNS_CHECKS = frozenset({"plan", "apply", "reconcile", "resume"})


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a bad flag; keyrotor reserves 2 for "changes pending"."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}\n")


def parse_now(text: str) -> datetime:
    """`--now` accepts ISO-8601; a time without a zone is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 time (e.g. 2026-05-01T12:00:00Z)"
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _common(sub: argparse.ArgumentParser, *, now: bool = True, policy: bool = True) -> None:
    sub.add_argument("--repo", default=".", help="Git checkout holding manifests/ (default: .)")
    if policy:
        sub.add_argument(
            "--policy",
            action="append",
            default=[],
            metavar="NAME",
            help="only this policy (repeatable)",
        )
    if now:
        sub.add_argument(
            "--now",
            type=parse_now,
            default=None,
            metavar="ISO-8601",
            help="the time decisions are made at (default: the real clock)",
        )


def _accounts(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--parallel",
        type=_positive,
        default=4,
        metavar="N",
        help="accounts observed and applied at once (default: 4)",
    )
    sub.add_argument(
        "--list-users",
        action="store_true",
        help="list every account's users with their tags (GetAccountAuthorizationDetails, "
        "1000 a page), not only where a selector or the guardrails choose users by tag",
    )
    sub.add_argument(
        "--shard",
        metavar="I/N",
        help="only the accounts of shard I of N (a GitHub Actions matrix; see `keyrotor accounts`)",
    )


def _guardrails(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--guardrails",
        metavar="FILE",
        help="the guardrails in force: a file or ssm:NAME (default: $KEYROTOR_GUARDRAILS)",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="keyrotor", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"keyrotor {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subs.required = True

    p = subs.add_parser(
        "validate", help="check manifests against the schema and the semantic rules"
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="manifest files or directories (default: manifests/ of --repo)",
    )
    p.add_argument(
        "--repo", default=".", help="checkout whose manifests/ is validated (default: .)"
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--guardrails",
        metavar="FILE",
        help="also check the manifests against these guardrails (a file; offline)",
    )
    p.set_defaults(handler="controller.commands.validate:run")

    p = subs.add_parser("plan", help="show what apply would do; never writes")
    _common(p)
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    p.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when nothing is to do, 2 when actions are pending, 1 on error",
    )
    p.add_argument(
        "--fetch",
        action="store_true",
        help="fetch and fast-forward to the upstream branch first (apply does by default)",
    )
    _accounts(p)
    _guardrails(p)
    p.set_defaults(handler="controller.commands.plan:run")

    p = subs.add_parser(
        "apply", help="execute due actions of auto-approved policies; commit status"
    )
    _common(p)
    p.add_argument("--dry-run", action="store_true", help="plan and print, change nothing")
    p.add_argument("--no-push", action="store_true", help="commit status but do not push it")
    p.add_argument(
        "--no-fetch",
        action="store_true",
        help="do not fetch and fast-forward to the upstream branch first",
    )
    _accounts(p)
    _guardrails(p)
    p.set_defaults(handler="controller.commands.apply:run")

    p = subs.add_parser("resume", help="retry a rolled-back rotation (commits the decision)")
    p.add_argument("--repo", default=".", help="Git checkout holding manifests/ (default: .)")
    p.add_argument("--policy", required=True, metavar="NAME")
    p.add_argument("--user", required=True, metavar="NAME")
    p.add_argument("--now", type=parse_now, default=None, metavar="ISO-8601")
    p.add_argument("--account", metavar="ID", help="the account, when the user is in several")
    p.add_argument("--no-push", action="store_true", help="commit but do not push")
    p.add_argument(
        "--no-fetch",
        action="store_true",
        help="do not fetch and fast-forward to the upstream branch first",
    )
    p.set_defaults(handler="controller.commands.resume:run")

    p = subs.add_parser(
        "reconcile", help="apply, keep approval pull requests and issues in step (for CI)"
    )
    _common(p)
    p.add_argument("--no-push", action="store_true", help="commit status but do not push it")
    p.add_argument(
        "--no-fetch",
        action="store_true",
        help="do not fetch and fast-forward to the upstream branch first",
    )
    _accounts(p)
    _guardrails(p)
    p.set_defaults(handler="controller.commands.reconcile:run")

    p = subs.add_parser(
        "accounts", help="the accounts the policies act in, and their shards (for a matrix)"
    )
    _common(p, now=False)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--shards",
        type=_positive,
        default=1,
        metavar="N",
        help="split the accounts into N shards and list the shards that own any",
    )
    p.set_defaults(handler="controller.commands.accounts:run")

    p = subs.add_parser("status", help="where each user's rotation stands, from status/*.yaml")
    _common(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler="controller.commands.status:run")

    p = subs.add_parser("history", help="the rotation history, read from git commit trailers")
    _common(p, now=False)
    p.add_argument("--user", action="append", default=[], metavar="NAME")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler="controller.commands.history:run")

    p = subs.add_parser(
        "iam-policy", help="print the least-privilege IAM policy (and trust policy) for keyrotor"
    )
    from controller.commands.iam_policy import add_arguments

    add_arguments(p)
    p.set_defaults(handler="controller.commands.iam_policy:run")

    p = subs.add_parser("demo", help="run a whole rotation on an embedded AWS and Git; no account")
    p.add_argument("--keep", metavar="DIR", help="keep the demo's repositories in DIR")
    p.add_argument("--seed", type=int, default=1, help="seed for a reproducible run")
    p.add_argument(
        "--scenario",
        choices=("happy", "straggler"),
        default="happy",
        help="straggler: an application instance never refreshes its credentials",
    )
    p.set_defaults(handler="controller.commands.demo:run")
    return parser


def _resolve(handler: str) -> Callable[[argparse.Namespace], int]:
    module, _, func = handler.partition(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


def _report_internal_error(exc: BaseException) -> int:
    fd, path = tempfile.mkstemp(prefix="keyrotor-crash-", suffix=".txt")
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(traceback.format_exception(exc)))
    print(
        f"keyrotor: internal error: {type(exc).__name__}. This is a bug in keyrotor.\n"
        f"keyrotor: the full traceback is in {path}",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


def console_main() -> int:
    """The `keyrotor` console script and `python -m controller`: harden, then run `main`.

    keyrotor makes itself non-dumpable and turns core dumps off (`harden_process`) before it
    parses an argument or reads a credential, so a `command` check, which runs as keyrotor's own
    user unless keyrotor is root, cannot read keyrotor's environment or memory through /proc.
    It is done here, not in `main`, which tests call in their own process: that cannot be undone.
    """
    try:
        hardening = harden_process()
    except HardeningError as exc:
        print(f"keyrotor: {exc}", file=sys.stderr)
        return exc.exit_code
    return main(hardening=hardening)


def main(argv: Sequence[str] | None = None, *, hardening: Hardening | None = None) -> int:
    """Run one command. `hardening` is what `console_main` did to the process, if anything."""
    args = build_parser().parse_args(argv)
    if hardening is not None and not hardening.applied and args.command in _RUNS_CHECKS:
        print(f"keyrotor: warning: {hardening.message}", file=sys.stderr)
    try:
        return _resolve(args.handler)(args)
    except KeyrotorError as exc:
        print(f"keyrotor: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("keyrotor: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the one top-level handler for bugs
        return _report_internal_error(exc)
