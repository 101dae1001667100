"""`keyrotor validate [PATH ...]`: check manifests against the schema and the semantic rules.

Offline and read-only: it reads the manifest files and nothing else (no AWS, no Git).
`--guardrails FILE` also checks every policy against the guardrails (`ssm:NAME` reads the
parameter, the one AWS call validate can make).
Exit 0 when every manifest is valid, 1 otherwise. Text output goes to stdout when valid and to
stderr, one `path:line:column: message` line per problem, when not; `--format json` writes one
JSON object to stdout instead. Under GitHub Actions (`GITHUB_ACTIONS=true`) the text format
also prints `::error` workflow commands, so problems show as annotations on the pull request.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from controller.errors import Diagnostic
from controller.guardrails import GuardrailsError, check_policy, read_guardrails
from controller.manifests import ManifestPathError, discover, validate_manifests
from controller.policy import Policy


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotation(diagnostic: Diagnostic) -> str:
    """The `::error` workflow command that shows a diagnostic on the pull request diff."""
    return (
        f"::error file={_escape_property(diagnostic.path)},line={diagnostic.line},"
        f"col={diagnostic.column}::{_escape_data(diagnostic.message)}"
    )


def _emit_json(valid: bool, policies: list[str], errors: list[Diagnostic]) -> None:
    document = {
        "valid": valid,
        "policies": policies,
        "errors": [
            {"path": d.path, "line": d.line, "column": d.column, "message": d.message}
            for d in errors
        ],
    }
    print(json.dumps(document, indent=2))


def _check_guardrails(
    spec: str, policies: list[Policy], problems: list[Diagnostic]
) -> tuple[list[Policy], list[Diagnostic]]:
    """The policies that also keep the guardrails, and every problem (offline: the ambient
    account and region are unknown, so only what the manifests themselves say is judged)."""
    try:
        guardrails = read_guardrails(spec, read_parameter=_ssm_reader())
    except GuardrailsError as exc:
        return [], sorted(set(problems) | set(exc.diagnostics))
    kept = []
    found = list(problems)
    for policy in policies:
        broken = check_policy(policy, guardrails)
        found.extend(broken)
        if not broken:
            kept.append(policy)
    return kept, sorted(set(found))


def _ssm_reader() -> Callable[[str], str]:
    """`--guardrails ssm:NAME` is the one case in which validate calls AWS (one read)."""

    def read(name: str) -> str:
        import boto3

        from controller.guardrails.source import ssm_reader

        return ssm_reader(boto3.client("ssm"))(name)

    return read


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths] or [Path(args.repo) / "manifests"]
    as_json = args.format == "json"
    annotate = os.environ.get("GITHUB_ACTIONS") == "true" and not as_json
    try:
        files = discover(paths)
    except ManifestPathError as exc:
        if as_json:
            missing = Diagnostic(exc.path, 0, 0, "no such file or directory")
            _emit_json(False, [], [missing])
            return 1
        if annotate:
            print(f"::error::{_escape_data(str(exc))}")
        raise

    # Without explicit paths, manifests/ of the repository: nothing outside it is read.
    policies, problems = validate_manifests(files, root=None if args.paths else Path(args.repo))
    if args.guardrails:
        policies, problems = _check_guardrails(args.guardrails, policies, problems)
    names = [policy.name for policy in policies]
    if as_json:
        _emit_json(not problems, names, problems)
        return 1 if problems else 0

    if not problems:
        if not files:
            where = ", ".join(str(p) for p in paths)
            print(f"no manifest files found in {where}; nothing to validate")
        else:
            verb = "is" if len(policies) == 1 else "are"
            print(
                f"{_plural(len(policies), 'policy', 'policies')} in "
                f"{_plural(len(files), 'file', 'files')} {verb} valid"
            )
        return 0

    for problem in problems:
        print(problem, file=sys.stderr)
    if annotate:
        for problem in problems:
            print(github_annotation(problem))
    bad_files = len({problem.path for problem in problems})
    print(
        f"found {_plural(len(problems), 'error', 'errors')} in {bad_files} of "
        f"{_plural(len(files) + (1 if args.guardrails else 0), 'file', 'files')}",
        file=sys.stderr,
    )
    return 1
