"""Trim GitHub's OpenAPI description to the operations keyrotor calls.

Usage: python scripts/trim_github_openapi.py SRC DST

SRC is `generated/api.github.com.json` from the npm package `@octokit/openapi` (13 MB). DST gets
only the operations listed in OPERATIONS, every component they reference (the `$ref` closure)
and fixes for the description's known defects (see `patch`). The output is what the tests'
GitHub stand-in validates every request and response against; see
tests/support/github_openapi/PROVENANCE.md.

The script checks its output before writing it: the trimmed description must pass
openapi-spec-validator and every example it keeps must match its schema, so a new version of the
source with a new defect fails here instead of in a test.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: (path, method) -> the operationId the source must have there, which guards against drift.
OPERATIONS: dict[tuple[str, str], str] = {
    ("/repos/{owner}/{repo}/pulls", "get"): "pulls/list",
    ("/repos/{owner}/{repo}/pulls", "post"): "pulls/create",
    ("/repos/{owner}/{repo}/pulls/{pull_number}", "get"): "pulls/get",
    ("/repos/{owner}/{repo}/pulls/{pull_number}", "patch"): "pulls/update",
    ("/repos/{owner}/{repo}/pulls/{pull_number}/files", "get"): "pulls/list-files",
    ("/repos/{owner}/{repo}/pulls/{pull_number}/reviews", "get"): "pulls/list-reviews",
    ("/repos/{owner}/{repo}/pulls/{pull_number}/reviews", "post"): "pulls/create-review",
    ("/repos/{owner}/{repo}/contents/{path}", "get"): "repos/get-content",
    ("/repos/{owner}/{repo}/issues", "get"): "issues/list-for-repo",
    ("/repos/{owner}/{repo}/issues", "post"): "issues/create",
    ("/repos/{owner}/{repo}/issues/{issue_number}", "patch"): "issues/update",
    ("/repos/{owner}/{repo}/issues/{issue_number}/comments", "get"): "issues/list-comments",
    ("/repos/{owner}/{repo}/issues/{issue_number}/comments", "post"): "issues/create-comment",
    ("/repos/{owner}/{repo}/actions/secrets/public-key", "get"): "actions/get-repo-public-key",
    (
        "/repos/{owner}/{repo}/actions/secrets/{secret_name}",
        "put",
    ): "actions/create-or-update-repo-secret",
    (
        "/repos/{owner}/{repo}/environments/{environment_name}/secrets/public-key",
        "get",
    ): "actions/get-environment-public-key",
    (
        "/repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}",
        "put",
    ): "actions/create-or-update-environment-secret",
}

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
PREFIX = "#/components/"


def refs_in(node: Any) -> Iterator[str]:
    """Every `$ref` string anywhere under `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs_in(item)


def component(doc: dict[str, Any], ref: str) -> tuple[str, str]:
    if not ref.startswith(PREFIX):
        raise SystemExit(f"unsupported $ref {ref!r}: only local component references are handled")
    kind, _, name = ref[len(PREFIX) :].partition("/")
    if "/" in name or name not in doc["components"].get(kind, {}):
        raise SystemExit(f"dangling $ref {ref!r}")
    return kind, name


def trim(src: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for (path, method), operation_id in OPERATIONS.items():
        item = src["paths"].get(path, {})
        operation = item.get(method)
        if operation is None or operation.get("operationId") != operation_id:
            raise SystemExit(f"{method.upper()} {path} is not {operation_id} in the source")
        kept = paths.setdefault(path, {k: v for k, v in item.items() if k not in HTTP_METHODS})
        kept[method] = operation

    components: dict[str, dict[str, Any]] = {}
    pending = list(refs_in(paths))
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        kind, name = component(src, ref)
        node = src["components"][kind][name]
        components.setdefault(kind, {})[name] = node
        pending.extend(refs_in(node))

    used_tags = {t for item in paths.values() for op in item.values() if isinstance(op, dict)
                 for t in op.get("tags", [])}  # fmt: skip
    out: dict[str, Any] = {
        "openapi": src["openapi"],
        "info": src["info"],
        "tags": [t for t in src.get("tags", []) if t["name"] in used_tags],
        "servers": src["servers"],
        "externalDocs": src.get("externalDocs"),
        "paths": dict(sorted(paths.items())),
        "components": {
            kind: dict(sorted(components[kind].items()))
            for kind in src["components"]
            if kind in components
        },
    }
    if out["externalDocs"] is None:
        del out["externalDocs"]
    return copy.deepcopy(out)


def _walk_dicts(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk_dicts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_dicts(item)


def patch(doc: dict[str, Any]) -> list[str]:
    """Fix the source's known defects in place; returns one line per fix, for PROVENANCE.md."""
    notes: list[str] = []
    nullable_enums = 0
    for node in _walk_dicts(doc):
        enum = node.get("enum")
        if node.get("nullable") is True and isinstance(enum, list) and None not in enum:
            # OpenAPI 3.0.3: `nullable` does not extend an `enum`; null must be listed in it.
            enum.append(None)
            nullable_enums += 1
    if nullable_enums:
        notes.append(f"appended null to {nullable_enums} `nullable: true` enums lacking it")

    examples = doc["components"].get("examples", {})
    teams_fixed = 0
    for name in ("pull-request", "pull-request-simple-items"):
        value = examples.get(name, {}).get("value")
        pulls = value if isinstance(value, list) else [value] if value else []
        for pull in pulls:
            for team in pull.get("requested_teams", []):
                # `team` and `team-simple` both require `type`; GitHub's examples predate it.
                if "type" not in team:
                    team["type"] = "organization"
                    teams_fixed += 1
    if teams_fixed:
        notes.append(
            f"added the required `type` to {teams_fixed} `requested_teams[]` items of the "
            "`pull-request` and `pull-request-simple-items` examples"
        )

    literal_refs = 0
    for node in _walk_dicts(doc["paths"]):
        content = node.get("content")
        for media in content.values() if isinstance(content, dict) else ():
            for key, example in media.get("examples", {}).items():
                value = example.get("value") if isinstance(example, dict) else None
                if isinstance(value, dict) and set(value) == {"$ref"}:
                    # `value` is a literal in OpenAPI 3.0: a `$ref` in it is not followed. GitHub
                    # meant a reference to the Example Object, which is what this makes it.
                    media["examples"][key] = {"$ref": value["$ref"]}
                    literal_refs += 1
    if literal_refs:
        notes.append(f"turned {literal_refs} example `value: {{$ref}}` literals into references")

    array_discriminators = 0
    for node in _walk_dicts(doc):
        choices = node.get("oneOf")
        if "discriminator" not in node or not isinstance(choices, list):
            continue
        kinds = {_resolve(doc, choice).get("type") for choice in choices}
        if kinds != {"object"}:
            # OpenAPI 3.0: a discriminator selects among object schemas by a property of the
            # payload; `repos/get-content` offers an array (a directory) among them, so a
            # directory answer can never validate. Without it the `oneOf` alone decides.
            del node["discriminator"]
            array_discriminators += 1
    if array_discriminators:
        notes.append(
            f"removed {array_discriminators} `discriminator` from a `oneOf` that offers a "
            "non-object schema"
        )
    return notes


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        kind, name = component(doc, node["$ref"])
        node = doc["components"][kind][name]
    return node


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def example_problems(doc: dict[str, Any]) -> list[str]:
    """Every example of a kept media type that does not match its schema."""
    from openapi_schema_validator import OAS30Validator

    problems: list[str] = []

    def check(schema_ptr: str, value: Any, where: str) -> None:
        # The whole document is the root schema, so `#/components/...` references resolve; the
        # validator ignores keywords beside `$ref`, as OpenAPI 3.0 says.
        root = dict(doc, **{"$ref": schema_ptr})
        for error in OAS30Validator(root).iter_errors(value):
            path = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"{where} at /{path}: {error.message[:200]}")

    def media_types(path: str, method: str, op: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        body = op.get("requestBody")
        if body is not None:
            for mt, media in body.get("content", {}).items():
                yield _pointer("paths", path, method, "requestBody", "content", mt), media
        for status, response in op.get("responses", {}).items():
            if "$ref" in response:
                _, name = component(doc, response["$ref"])
                for mt, media in response.get("content", {}).items():
                    yield _pointer("components", "responses", name, "content", mt), media
                continue
            for mt, media in response.get("content", {}).items():
                yield _pointer("paths", path, method, "responses", status, "content", mt), media

    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            for ptr, media in media_types(path, method, op):
                if "schema" not in media:
                    continue
                for name, example in media.get("examples", {}).items():
                    if "$ref" in example:
                        _, ex_name = component(doc, example["$ref"])
                        example = doc["components"]["examples"][ex_name]
                    if "value" not in example:
                        continue
                    value = example["value"]
                    if value is None and "nullable" not in media["schema"]:
                        # GitHub writes `null` as the example of an empty body (201 secret PUT).
                        continue
                    check(ptr + "/schema", value, f"{method.upper()} {path} example {name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="api.github.com.json from @octokit/openapi")
    parser.add_argument("dst", type=Path, help="where to write the trimmed description")
    args = parser.parse_args(argv)

    src = json.loads(args.src.read_text(encoding="utf-8"))
    doc = trim(src)
    for note in patch(doc):
        print(f"patched: {note}", file=sys.stderr)

    from openapi_spec_validator import validate

    validate(doc)
    problems = example_problems(doc)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"{len(problems)} examples do not match their schemas", file=sys.stderr)
        return 1

    args.dst.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=False) + "\n"
    args.dst.write_text(text, encoding="utf-8")
    ops = sum(1 for item in doc["paths"].values() for m in item if m in HTTP_METHODS)
    counts = ", ".join(f"{len(v)} {k}" for k, v in doc["components"].items())
    print(f"wrote {args.dst}: {ops} operations, {counts}, {len(text)} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
