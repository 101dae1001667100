"""A stand-in for keyrotor running one `command` check, as its own process, for isolation tests.

Usage: check_parent.py [--no-harden] [--with-new-key] [--timeout SECONDS] REPO -- ARGV...

It starts by making up credentials of its own (an AWS secret key and session token, GitHub and
Actions tokens) and re-executing itself with them in its environment, so they are in
`/proc/self/environ` as keyrotor's are, while the test process that started it never holds
them (a check could read the test process otherwise). A further credential lives only in its
memory, as boto3-resolved credentials would, and a new access key too. Then it does what
keyrotor does at its edge: reads the environment once, hardens itself (unless --no-harden),
runs the check with every secret it holds to mask, and prints one JSON object: the secrets
(so the test can look for them afterwards) and the check's outcome (`tamper`: the message of
the CheckTamperError that stopped it).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path

STAGE = "KEYROTOR_TEST_PARENT_STAGE"
ENV_SECRETS = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
)


def made_up(name: str) -> str:
    return f"{name.lower().replace('_', '')}-{secrets.token_hex(16)}"


def main() -> int:
    if os.environ.get(STAGE) != "2":
        env = dict(os.environ)
        env.update({name: made_up(name) for name in ENV_SECRETS})
        env.update(
            {
                STAGE: "2",
                "AWS_ACCESS_KEY_ID": "AKIAKEYROTOR00000001",
                "AWS_PROFILE": "keyrotor-admin",
                "AWS_REGION": "eu-west-1",
                "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
                "SSH_AUTH_SOCK": "/tmp/agent.sock",
                "KEYROTOR_TEST_MARKER": "not for checks",
            }
        )
        os.execve(sys.executable, [sys.executable, *sys.argv], env)

    parser = argparse.ArgumentParser()
    parser.add_argument("--no-harden", action="store_true")
    parser.add_argument("--with-new-key", action="store_true")
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("repo", type=Path)
    parser.add_argument("argv", nargs="+")
    args = parser.parse_args()

    from controller.checks.command import CheckTamperError, run_command_check
    from controller.hardening import harden_process, secrets_to_mask
    from controller.policy import CommandCheck
    from controller.secret import AccessKeySecret

    environ = dict(os.environ)  # read once, at the edge
    in_memory = made_up("resolved_session_token")  # e.g. what boto3 resolved from a role
    new_key = AccessKeySecret("AKIANEWKEY0000000001", made_up("new_secret"))
    hardening = None if args.no_harden else harden_process()
    check = CommandCheck(
        run=tuple(args.argv),
        timeout=timedelta(seconds=args.timeout),
        with_new_key=args.with_new_key,
    )
    report: dict[str, object] = {}
    try:
        outcome = run_command_check(
            check,
            repo=args.repo,
            new_key=new_key,
            secrets=secrets_to_mask(environ, in_memory),
            env=environ,
        )
        report.update(
            passed=outcome.result.passed, message=outcome.result.message, output=outcome.output
        )
    except CheckTamperError as exc:
        report.update(passed=False, message="", output="", tamper=str(exc))
    held = {name: environ[name] for name in ENV_SECRETS}
    held["in_memory"] = in_memory
    report.update(
        keyrotor_secrets=held,
        new_key_secret=new_key.secret_access_key,
        hardening=None if hardening is None else hardening.message,
    )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
