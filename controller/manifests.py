"""Load RotationPolicy manifests: YAML, then the JSON Schema, then the semantic rules.

Every problem becomes a `Diagnostic` (`path:line:column: message`) pointing at the offending
YAML node, and all problems of all files are collected in one pass. To keep positions, YAML is
composed into nodes (never constructed by PyYAML) and turned into plain values here, while a map
from each JSON path to its line and column is recorded.

The schema (`schemas/rotation-policy.schema.json`, shipped as `controller/schemas/`) holds every
structural rule; this module adds only what a schema cannot say: unique names across files, the
order of durations, the placeholders of target names, and valid cron schedules and time zones.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import yaml
from jsonschema import (
    Draft202012Validator,
    ValidationError,
    validators,
)
from jsonschema.exceptions import best_match

from controller.durations import parse_duration
from controller.errors import Diagnostic, KeyrotorError, ManifestError
from controller.namepatterns import Pattern, overlaps, template_pattern
from controller.policy import (
    API_VERSION,
    KIND,
    PLACEHOLDERS,
    Account,
    Approval,
    Check,
    CommandCheck,
    GithubActionsSecretTarget,
    HttpCheck,
    JsonFields,
    NewKeyUsedCheck,
    OldKeyIdleCheck,
    OnOverdue,
    Policy,
    SecretsManagerTarget,
    Source,
    SsmParameterTarget,
    Target,
    UserSelection,
    Window,
    WindowKind,
)
from controller.windows import schedule_problem, time_zone_problem

__all__ = [
    "MANIFEST_SUFFIXES",
    "SCHEMA_ID",
    "ManifestPathError",
    "discover",
    "display_path",
    "git_blob_id",
    "load_policies",
    "load_schema",
    "validate_manifests",
]

SCHEMA_ID = "https://keyrotor.dev/schemas/rotation-policy.schema.json"
MANIFEST_SUFFIXES = (".yaml", ".yml")

JsonPath = tuple[str | int, ...]
Position = tuple[int, int]


class ManifestPathError(KeyrotorError):
    """A manifest path given on the command line does not exist."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"{path}: no such file or directory")


# --- files -------------------------------------------------------------------------------------


def display_path(path: Path) -> str:
    """How a path is printed: relative to the working directory when under it, else as given."""
    try:
        return str(Path(os.path.abspath(path)).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def discover(paths: Sequence[Path]) -> list[Path]:
    """The manifest files among `paths`: files as given, directories searched recursively.

    Inside directories only `*.yaml` and `*.yml` count, and hidden files and directories are
    skipped. Symbolic links are not followed: a linked manifest file, or a linked directory of
    any name, is returned as it is, so that reading it reports it as refused. The result is
    sorted and free of duplicates. A missing path raises `ManifestPathError`.
    """
    found: dict[str, Path] = {}
    for given in paths:
        if given.is_dir() and not given.is_symlink():
            for folder, dirs, files in os.walk(given, followlinks=False):
                here = Path(folder)
                for name in sorted(dirs):
                    if name.startswith(".") or not (here / name).is_symlink():
                        continue
                    found.setdefault(os.path.abspath(here / name), here / name)
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for name in files:
                    candidate = here / name
                    if candidate.suffix in MANIFEST_SUFFIXES and not name.startswith("."):
                        found.setdefault(os.path.abspath(candidate), candidate)
        elif given.exists() or given.is_symlink():
            found.setdefault(os.path.abspath(given), given)
        else:
            raise ManifestPathError(display_path(given))
    return sorted(found.values())


#: A manifest is a few kilobytes; anything much larger is refused before it is parsed.
MAX_MANIFEST_BYTES = 1024 * 1024


def _read_manifest(path: Path, display: str, root: Path | None) -> bytes | Diagnostic:
    """The bytes of a manifest file, or why it is refused; a refused file's content is never
    read, so it cannot reach a message.

    Refused: a symbolic link (the file or, when it was found in a directory, the directory
    itself), a file outside `root` (the repository) when `root` is given, anything that is not a
    regular file, and a file larger than `MAX_MANIFEST_BYTES`.
    """
    if path.is_symlink():
        kind = "directory" if path.is_dir() else "file"
        return Diagnostic(
            display,
            1,
            1,
            f"refused: the {kind} is a symbolic link; keyrotor reads only regular files in the "
            f"repository, so replace the link with the {kind} itself",
        )
    if root is not None:
        real, real_root = os.path.realpath(path), os.path.realpath(root)
        if os.path.commonpath([real, real_root]) != real_root:
            return Diagnostic(
                display, 1, 1, f"refused: the file is outside the repository ({root})"
            )
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        return Diagnostic(display, 1, 1, f"cannot read the file: {exc.strerror}")
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return Diagnostic(display, 1, 1, "refused: not a regular file")
        data = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        return Diagnostic(
            display, 1, 1, f"refused: the file is larger than {MAX_MANIFEST_BYTES // 1024} KiB"
        )
    return data


def git_blob_id(data: bytes) -> str:
    """The id git gives a blob with this content (`git hash-object`), without needing git."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


# --- schema ------------------------------------------------------------------------------------


@cache
def load_schema() -> dict[str, Any]:
    """The RotationPolicy JSON Schema shipped with the package."""
    text = (resources.files("controller") / "schemas" / "rotation-policy.schema.json").read_text(
        encoding="utf-8"
    )
    return cast(dict[str, Any], json.loads(text))


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    """`pattern` as JSON Schema means it: Python's `$` also matches before a final newline."""
    if not validator.is_type(instance, "string"):
        return
    if re.search(pattern, instance) and not (pattern.endswith("$") and instance.endswith("\n")):
        return
    yield ValidationError(f"{instance!r} does not match {pattern!r}")


def schema_validator(schema: Mapping[str, Any]) -> Any:
    """A 2020-12 validator for `schema` whose `pattern` means what JSON Schema says."""
    cls = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})  # type: ignore[no-untyped-call]
    return cls(schema)


@cache
def _validator() -> Any:
    return schema_validator(load_schema())


# --- YAML to values, keeping positions ---------------------------------------------------------

_TAG = "tag:yaml.org,2002:"
_SCALARS = yaml.constructor.SafeConstructor()


def _pos(mark: yaml.Mark) -> Position:
    return (mark.line + 1, mark.column + 1)


def render_path(path: JsonPath) -> str:
    """`("spec", "targets", 0, "secretId")` -> `spec.targets[0].secretId`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _prefix(path: JsonPath) -> str:
    return f"{render_path(path)}: " if path else ""


#: How many values aliases may expand to in one document. PyYAML composes an alias as a second
#: reference to the anchored node, so a few hundred bytes of nested aliases (a "billion laughs")
#: stand for billions of values; turning them into plain values is where the time would go.
MAX_ALIASED_VALUES = 10_000


class _Alias(yaml.Node):
    """A use of an anchor (`*name`), kept apart from the anchored node so its use is counted."""

    def __init__(self, target: yaml.Node, mark: yaml.Mark) -> None:
        super().__init__(target.tag, target.value, mark, mark)
        self.target = target


class _TooManyAliases(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__()
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """A SafeLoader that remembers where each document starts (its `---`, if any) and composes
    each alias as an `_Alias`, so the values an alias stands for can be bounded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.document_starts: list[Position] = []

    def compose_document(self) -> yaml.Node | None:
        self.document_starts.append(_pos(self.peek_event().start_mark))  # type: ignore[no-untyped-call]
        return super().compose_document()

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            target = super().compose_node(parent, index)
            assert target is not None  # an alias always names a node
            return _Alias(target, mark)
        return super().compose_node(parent, index)


def _unalias(node: yaml.Node) -> yaml.Node:
    return node.target if isinstance(node, _Alias) else node


@dataclass
class _Document:
    """One YAML document of a manifest file, as values plus the positions of its nodes."""

    path: str
    start: Position
    values: dict[JsonPath, Position] = field(default_factory=dict)
    keys: dict[JsonPath, Position] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    value: Any = None
    _active: set[int] = field(default_factory=set)
    # Values built so far on behalf of an alias, and the outermost alias being expanded.
    _aliased: int = 0
    _alias: yaml.Mark | None = None

    def at(self, path: JsonPath, message: str, *, key: bool = False) -> None:
        """Report a problem at the node of `path` (its key if `key`), else at the closest parent."""
        position = self.keys.get(path) if key else None
        probe = path
        while position is None:
            position = self.values.get(probe)
            if not probe:
                break
            probe = probe[:-1]
        line, column = position or self.start
        self.diagnostics.append(Diagnostic(self.path, line, column, message))

    def build(self, node: yaml.Node, path: JsonPath) -> Any:
        if isinstance(node, _Alias):
            if self._alias is not None:
                return self.build(node.target, path)
            self._alias = node.start_mark
            try:
                return self.build(node.target, path)
            finally:
                self._alias = None
        if self._alias is not None:
            self._aliased += 1
            if self._aliased > MAX_ALIASED_VALUES:
                raise _TooManyAliases(self._alias)
        self.values[path] = _pos(node.start_mark)
        if id(node) in self._active:
            self.at(path, f"{_prefix(path)}an alias refers to a node that contains it")
            return None
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                self._check_tag(node, "seq", path)
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                self._check_tag(node, "map", path)
                return self._mapping(node, path)
        finally:
            self._active.discard(id(node))
        raise TypeError(f"unexpected YAML node {node!r}")  # pragma: no cover

    def _check_tag(self, node: yaml.Node, expected: str, path: JsonPath) -> None:
        if node.tag != _TAG + expected:
            self.at(path, f"{_prefix(path)}unsupported YAML tag {node.tag!r}; remove it")

    def _scalar(self, node: yaml.ScalarNode, path: JsonPath) -> Any:
        tag = node.tag
        if tag == _TAG + "null":
            return None
        if tag == _TAG + "bool":
            # YAML 1.2, as editors and Kubernetes read it: only true/false are booleans.
            lowered = node.value.lower()
            return lowered == "true" if lowered in ("true", "false") else node.value
        if tag == _TAG + "int":
            return _SCALARS.construct_yaml_int(node)
        if tag == _TAG + "float":
            return _SCALARS.construct_yaml_float(node)
        if not tag.startswith(_TAG):
            self.at(path, f"{_prefix(path)}unsupported YAML tag {tag!r}; remove it")
        return node.value  # str, timestamps and the rest stay text

    def _mapping(self, node: yaml.MappingNode, path: JsonPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merges = [value for key, value in node.value if key.tag == _TAG + "merge"]
        # `<<: [*a, *b]`: keys of *a win over those of *b, explicit keys over both.
        for merge in reversed(merges):
            unaliased = _unalias(merge)
            sources = unaliased.value if isinstance(unaliased, yaml.SequenceNode) else [merge]
            for source in reversed(sources):
                merged = self.build(source, path)
                if isinstance(merged, dict):
                    result.update(merged)
                else:
                    self.at(path, f"{_prefix(path)}'<<' can only merge mappings")
        self.values[path] = _pos(node.start_mark)
        seen: dict[str, Position] = {}
        for aliased_key, value_node in node.value:
            key_node = _unalias(aliased_key)
            if key_node.tag == _TAG + "merge":
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.values[(*path, "?")] = _pos(key_node.start_mark)
                self.at(
                    (*path, "?"),
                    f"{_prefix(path)}a key must be a plain name, not a "
                    f"{'list' if isinstance(key_node, yaml.SequenceNode) else 'mapping'}",
                )
                continue
            key = key_node.value
            here = _pos(key_node.start_mark)
            if key in seen:
                line, column = seen[key]
                self.diagnostics.append(
                    Diagnostic(
                        self.path,
                        *here,
                        f"{render_path((*path, key))}: duplicate key (first at line {line}, column "
                        f"{column}); YAML would silently keep only the last one",
                    )
                )
            seen[key] = here
            self.keys[(*path, key)] = here
            result[key] = self.build(value_node, (*path, key))
        return result


# --- schema errors to messages -----------------------------------------------------------------

_TYPE_NAMES = {
    "string": "a string",
    "array": "a list",
    "object": "a mapping",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}

# What a value of a named `$defs` entry is, and how to write one.
_DEF_MESSAGES = {
    "duration": ("a duration", "write a whole number and a unit (s, m, h, d or w), e.g. 90d"),
    "policyName": (
        "a valid policy name",
        "use a lowercase DNS label: at most 63 characters of a-z, 0-9 and '-', starting and "
        "ending with a letter or digit",
    ),
    "iamUserName": ("a valid IAM user name", "use 1 to 64 letters, digits and +=,.@_-"),
    "awsRegion": ("an AWS region", "write a region code, e.g. us-east-1"),
    "roleArn": ("an IAM role ARN", "write e.g. arn:aws:iam::123456789012:role/keyrotor"),
    "iamPathPrefix": ("an IAM path prefix", "start and end it with '/', e.g. /ci/"),
    "ssmParameterName": (
        "a valid SSM parameter name",
        "use letters, digits, '_', '.', '-', '/' and placeholders, e.g. /ci/{user}/aws",
    ),
    "githubRepository": ("a GitHub repository", "write owner/name, e.g. acme/web"),
    "githubSecretName": (
        "a valid GitHub secret name",
        "use letters, digits, '_' and placeholders, not starting with a digit, e.g. "
        "AWS_ACCESS_KEY_ID",
    ),
    "jsonFieldName": (
        "a valid JSON field name",
        "start with a letter or '_' and use letters, digits, '_' and '-', e.g. AccessKeyId",
    ),
    "accountId": ("an AWS account id", "write the 12 digits in quotes, e.g. '123456789012'"),
    "namePattern": (
        "a name pattern",
        "write a name or ARN in which '*' matches any text, without spaces, '?' or braces, "
        "e.g. ci/*",
    ),
    "httpUrl": ("an http(s) URL", "write an absolute URL, e.g. https://app.example.com/healthz"),
    "cronSchedule": (
        "a cron schedule",
        "write five fields: minute hour day-of-month month day-of-week, e.g. '0 2 * * 6'",
    ),
}

_DISCRIMINATED = {"targets": "target", "checks": "check"}


def _show(value: Any) -> str:
    """A value as the user wrote it, for messages."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return str(value)


def _got(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, bool | int | float):
        return f"the number {value}" if not isinstance(value, bool) else _show(value)
    return _show(value)


def _def_name(schema: Any, defs: Mapping[str, Any]) -> str | None:
    for name, definition in defs.items():
        if schema is definition or schema == definition:
            return name
    return None


def _discriminator(path: JsonPath) -> str | None:
    """`target` for `spec.targets[i]`, `check` for `spec.checks[i]`, else None."""
    if len(path) >= 2 and isinstance(path[-1], int) and path[-2] in _DISCRIMINATED:
        return _DISCRIMINATED[path[-2]]
    return None


def _report_schema_error(error: Any, doc: _Document, defs: Mapping[str, Any] | None = None) -> None:
    """Turn one jsonschema error into diagnostics that say what is wrong and what is expected.

    `defs` are the `$defs` of the schema the error comes from (default: RotationPolicy's).
    """
    defs = load_schema()["$defs"] if defs is None else defs
    path: JsonPath = tuple(error.absolute_path)
    keyword: str = error.validator
    schema: Any = error.schema
    instance: Any = error.instance
    expected: Any = error.validator_value
    where = _prefix(path)

    named = _def_name(schema, defs)
    if named in _DEF_MESSAGES and keyword in ("type", "pattern", "minLength", "maxLength"):
        noun, hint = _DEF_MESSAGES[named]
        doc.at(path, f"{where}{_show(instance)} is not {noun}; {hint}")
    elif keyword == "required":
        for name in expected:
            if isinstance(instance, dict) and name not in instance:
                doc.at(path, f"{where}missing required property {name!r}")
    elif keyword == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        kind = _discriminator(path)
        of_type = f" for type {instance['type']}" if kind and "type" in instance else ""
        for name in instance:
            if name in allowed:
                continue
            close = [a for a in allowed if a.lower() == str(name).lower()]
            close = close or difflib.get_close_matches(str(name), allowed, n=1, cutoff=0.75)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else f"expected one of {', '.join(allowed)}"
                if len(allowed) > 1
                else f"the only property allowed here is {allowed[0]!r}"
            )
            doc.at((*path, name), f"{where}unknown property {name!r}{of_type}; {hint}", key=True)
    elif keyword == "enum" and path and path[-1] == "type" and _discriminator(path[:-1]):
        kind = _discriminator(path[:-1])
        doc.at(
            path,
            f"{_prefix(path[:-1])}"
            + (f"unknown {kind} type {_show(instance)}" if instance is not None else "no type")
            + f"; expected one of {', '.join(expected)}",
        )
    elif keyword == "enum":
        doc.at(
            path,
            f"{where}{_show(instance)} is not a valid value; "
            f"expected one of {', '.join(str(e) for e in expected)}",
        )
    elif keyword == "const":
        doc.at(path, f"{where}{_show(instance)} is not a valid value; expected {expected}")
    elif keyword == "type":
        wanted = " or ".join(
            _TYPE_NAMES.get(t, t) for t in ([expected] if isinstance(expected, str) else expected)
        )
        hint = ""
        if expected == "string" and isinstance(instance, bool | int | float):
            hint = "; put it in quotes if it is meant as text"
        doc.at(path, f"{where}expected {wanted}, got {_got(instance)}{hint}")
    elif keyword == "minItems":
        if path and path[-1] == "checks":
            doc.at(
                path,
                f"{where}must not be empty; list at least one check, or leave checks "
                "out to use the default (new-key-used)",
            )
        elif path and path[-1] == "windows":
            doc.at(
                path,
                f"{where}must not be empty; list at least one window, or leave windows "
                "out to allow deactivation and deletion at any time",
            )
        else:
            noun = {"targets": "target", "names": "user name", "run": "program"}.get(
                str(path[-1]) if path else "", "item"
            )
            doc.at(path, f"{where}must not be empty; list at least one {noun}")
    elif keyword == "minProperties":
        names = sorted(schema.get("properties", {}))
        hint = f"give at least one of {', '.join(names)}" if names else "give at least one entry"
        doc.at(path, f"{where}must not be empty; {hint}")
    elif keyword == "uniqueItems":
        seen: set[str] = set()
        for index, item in enumerate(instance):
            fingerprint = json.dumps(item, sort_keys=True)
            if fingerprint in seen:
                doc.at((*path, index), f"{_prefix((*path, index))}{_show(item)} is listed twice")
            seen.add(fingerprint)
    elif keyword in ("minimum", "maximum"):
        low, high = schema.get("minimum"), schema.get("maximum")
        bounds = (
            f"{low} to {high}"
            if low is not None and high is not None
            else (f"at least {low}" if low is not None else f"at most {high}")
        )
        doc.at(path, f"{where}{_show(instance)} is out of range; expected {bounds}")
    elif keyword == "minLength":
        doc.at(
            path,
            f"{where}must not be empty"
            if expected == 1
            else f"{where}{_show(instance)} is too short; at least {expected} characters",
        )
    elif keyword == "maxLength":
        doc.at(path, f"{where}is too long ({len(instance)} characters); at most {expected}")
    elif keyword == "anyOf" and all(set(s) == {"required"} for s in expected):
        names = [n for s in expected for n in s["required"]]
        doc.at(path, f"{where}give at least one of {', '.join(names)}")
    elif keyword in ("anyOf", "oneOf") and error.context:
        _report_schema_error(best_match(error.context), doc, defs)
    elif keyword == "pattern":
        doc.at(path, f"{where}{_show(instance)} does not match the pattern {expected}")
    else:  # pragma: no cover - every keyword the schema uses is handled above
        doc.at(path, f"{where}{error.message}")


# --- documents to policies ---------------------------------------------------------------------


def _fields(raw: Mapping[str, Any] | None) -> JsonFields:
    return JsonFields(
        **{
            attr: raw[key]
            for key, attr in (
                ("accessKeyId", "access_key_id"),
                ("secretAccessKey", "secret_access_key"),
            )
            if raw and key in raw
        }
    )


def _target(raw: Mapping[str, Any]) -> Target:
    kind = raw["type"]
    if kind == "aws-secrets-manager":
        return SecretsManagerTarget(
            secret_id=raw["secretId"],
            region=raw.get("region"),
            kms_key_id=raw.get("kmsKeyId"),
            fields=_fields(raw.get("fields")),
        )
    if kind == "aws-ssm-parameter":
        return SsmParameterTarget(
            name=raw["name"],
            region=raw.get("region"),
            kms_key_id=raw.get("kmsKeyId"),
            fields=_fields(raw.get("fields")),
        )
    names = raw.get("names", {})
    kwargs: dict[str, Any] = {}
    if "accessKeyId" in names:
        kwargs["access_key_id_name"] = names["accessKeyId"]
    if "secretAccessKey" in names:
        kwargs["secret_access_key_name"] = names["secretAccessKey"]
    return GithubActionsSecretTarget(
        repository=raw["repository"], environment=raw.get("environment"), **kwargs
    )


def _check(raw: Mapping[str, Any]) -> Check:
    kind = raw["type"]
    kwargs: dict[str, Any] = {}
    if kind == "new-key-used":
        return NewKeyUsedCheck()
    if kind == "old-key-idle":
        return OldKeyIdleCheck(idle_for=parse_duration(raw["for"]))
    if "timeout" in raw:
        kwargs["timeout"] = parse_duration(raw["timeout"])
    if kind == "command":
        if "withNewKey" in raw:
            kwargs["with_new_key"] = raw["withNewKey"]
        return CommandCheck(run=tuple(raw["run"]), **kwargs)
    for key, attr in (
        ("expectStatus", "expect_status"),
        ("bodyContains", "body_contains"),
        ("retries", "retries"),
    ):
        if key in raw:
            kwargs[attr] = raw[key]
    return HttpCheck(url=raw["url"], **kwargs)


def _window(raw: Mapping[str, Any]) -> Window:
    return Window(
        kind=cast(WindowKind, raw["kind"]),
        schedule=raw["schedule"],
        duration=parse_duration(raw["duration"]),
        time_zone=raw.get("timeZone", "UTC"),
    )


def _policy(doc: _Document, generation: str) -> Policy:
    value = doc.value
    spec = value["spec"]
    users = spec["users"]
    selector = users.get("selector", {})
    account = spec.get("account", {})
    kwargs: dict[str, Any] = {}
    for key, attr in (
        ("rotateBefore", "rotate_before"),
        ("deactivateAfter", "deactivate_after"),
        ("deleteAfter", "delete_after"),
    ):
        if key in spec:
            kwargs[attr] = parse_duration(spec[key])
    if "checks" in spec:
        kwargs["checks"] = tuple(_check(c) for c in spec["checks"])
    if "windows" in spec:
        kwargs["windows"] = tuple(_window(w) for w in spec["windows"])
    return Policy(
        name=value["metadata"]["name"],
        source=Source(doc.path, *doc.values[()]),
        users=UserSelection(
            names=tuple(users.get("names", ())),
            path_prefix=selector.get("pathPrefix"),
            tags=dict(selector.get("tags", {})),
            exclude=tuple(users.get("exclude", ())),
            has_selector="selector" in users,
        ),
        max_key_age=parse_duration(spec["maxKeyAge"]),
        targets=tuple(_target(t) for t in spec["targets"]),
        account=Account(
            role_arn=account.get("roleArn"),
            external_id=account.get("externalId"),
            region=account.get("region"),
            organizational_unit=account.get("organizationalUnit"),
            role_name=account.get("roleName"),
        ),
        approval=cast(Approval, spec.get("approval", "pull-request")),
        on_overdue=cast(OnOverdue, spec.get("onOverdue", "report")),
        suspend=spec.get("suspend", False),
        generation=generation,
        positions=MappingProxyType(
            {render_path(path): Source(doc.path, *where) for path, where in doc.values.items()}
        ),
        **kwargs,
    )


# --- semantic rules ----------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def _spec_default(name: str) -> str:
    return cast(str, load_schema()["properties"]["spec"]["properties"][name]["default"])


def _check_durations(doc: _Document, policy: Policy) -> None:
    spec = doc.value["spec"]
    max_age = spec["maxKeyAge"]
    rotate = spec.get("rotateBefore", _spec_default("rotateBefore"))
    deactivate = spec.get("deactivateAfter", _spec_default("deactivateAfter"))
    if policy.rotate_before >= policy.max_key_age:
        if "rotateBefore" in spec:
            doc.at(
                ("spec", "rotateBefore"),
                f"spec.rotateBefore: {rotate} must be shorter than maxKeyAge ({max_age}); "
                "rotation starts when a key is maxKeyAge - rotateBefore old",
            )
        else:
            doc.at(
                ("spec", "maxKeyAge"),
                f"spec.maxKeyAge: {max_age} must be longer than rotateBefore (default "
                f"{rotate}); rotation starts when a key is maxKeyAge - rotateBefore old, so "
                "set a shorter rotateBefore",
            )
    if policy.deactivate_after >= policy.rotate_before:
        reason = (
            "otherwise the old key is overdue (older than maxKeyAge) before it may be deactivated"
        )
        if "deactivateAfter" in spec or "rotateBefore" not in spec:
            doc.at(
                ("spec", "deactivateAfter"),
                f"spec.deactivateAfter: {deactivate} must be shorter than rotateBefore "
                f"({rotate}{'' if 'rotateBefore' in spec else ', the default'}); {reason}",
            )
        else:
            doc.at(
                ("spec", "rotateBefore"),
                f"spec.rotateBefore: {rotate} must be longer than deactivateAfter (default "
                f"{deactivate}); {reason}",
            )


def _template_fields(raw: Mapping[str, Any]) -> list[tuple[JsonPath, str]]:
    """The template-valued fields of one target, as (path inside the target, template)."""
    candidates: list[JsonPath] = [
        ("secretId",),
        ("name",),
        ("repository",),
        ("environment",),
        ("names", "accessKeyId"),
        ("names", "secretAccessKey"),
    ]
    found = []
    for sub in candidates:
        node: Any = raw
        for part in sub:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, str):
            found.append((sub, node))
    return found


def _check_targets(doc: _Document, policy: Policy) -> None:
    users = policy.users
    why = "it has a selector" if users.has_selector else f"it names {len(users.names)} users"
    for index, raw in enumerate(doc.value["spec"]["targets"]):
        base: JsonPath = ("spec", "targets", index)
        fields = _template_fields(raw)
        for sub, template in fields:
            path = (*base, *sub)
            for placeholder in _PLACEHOLDER.findall(template):
                if placeholder not in PLACEHOLDERS:
                    doc.at(
                        path,
                        f"{render_path(path)}: unknown placeholder {placeholder!r}; "
                        "use {user}, {policy} or {account}",
                    )
            if "{" in _PLACEHOLDER.sub("", template) or "}" in _PLACEHOLDER.sub("", template):
                doc.at(
                    path,
                    f"{render_path(path)}: unbalanced brace in {template!r}; placeholders "
                    "are written {user}, {policy} or {account}",
                )
        _check_fields(doc, base, raw, policy.targets[index])
        if not users.may_select_many:
            continue
        if raw["type"] == "github-actions-secret":
            names = raw.get("names", {})
            if not (
                "{user}" in raw["repository"]
                or "{user}" in raw.get("environment", "")
                or (
                    "{user}" in names.get("accessKeyId", "")
                    and "{user}" in names.get("secretAccessKey", "")
                )
            ):
                doc.at(
                    base,
                    f"{render_path(base)}: put {{user}} in the environment or in both secret "
                    f"names, because this policy may select several users ({why}); otherwise "
                    "every user's key is written to the same secrets",
                )
        else:
            sub = ("secretId",) if raw["type"] == "aws-secrets-manager" else ("name",)
            template = raw[sub[0]]
            if "{user}" not in template:
                doc.at(
                    (*base, *sub),
                    f"{render_path((*base, *sub))}: {template!r} must contain {{user}}, because "
                    f"this policy may select several users ({why}); otherwise every user's "
                    "key is written to the same place",
                )


def _check_fields(doc: _Document, base: JsonPath, raw: Mapping[str, Any], target: Target) -> None:
    """The key id and the secret key go to two different JSON fields."""
    if isinstance(target, GithubActionsSecretTarget):
        return
    fields = target.fields
    if fields.access_key_id != fields.secret_access_key:
        return
    given = raw.get("fields", {})
    key = "secretAccessKey" if "secretAccessKey" in given else "accessKeyId"
    other = "accessKeyId" if key == "secretAccessKey" else "secretAccessKey"
    path = (*base, "fields", key)
    default = "" if other in given else ", by default"
    doc.at(
        path,
        f"{render_path(path)}: {given[key]!r} is also the name of the {other} field{default}; "
        "the key id and the secret key need different field names",
    )


def _check_users(doc: _Document, policy: Policy) -> None:
    names = set(policy.users.names)
    for index, name in enumerate(policy.users.exclude):
        if name in names:
            path: JsonPath = ("spec", "users", "exclude", index)
            doc.at(
                path,
                f"{render_path(path)}: {name!r} is also listed in spec.users.names; a "
                "user cannot be both named and excluded",
            )


def _check_windows(doc: _Document, policy: Policy) -> None:
    for index, window in enumerate(policy.windows):
        base: JsonPath = ("spec", "windows", index)
        problem = schedule_problem(window.schedule)
        if problem:
            path = (*base, "schedule")
            doc.at(
                path,
                f"{render_path(path)}: {window.schedule!r} is not a valid cron schedule: {problem}",
            )
        problem = time_zone_problem(window.time_zone)
        if problem:
            path = (*base, "timeZone")
            doc.at(path, f"{render_path(path)}: {problem}")
        if window.duration <= timedelta(0):
            path = (*base, "duration")
            raw = doc.value["spec"]["windows"][index]["duration"]
            doc.at(
                path,
                f"{render_path(path)}: a window of {raw} is never open; give a positive "
                "duration, e.g. 2h",
            )


# --- files to documents ------------------------------------------------------------------------


@dataclass
class _Candidate:
    """What the cross-file rules need from a document, even when it has other problems."""

    doc: _Document
    name: str | None
    users: list[tuple[int, str]]
    policy: Policy | None = None


def _read_documents(
    path: Path, display: str, root: Path | None = None
) -> tuple[list[_Document], list[Diagnostic], bytes]:
    data = _read_manifest(path, display, root)
    if isinstance(data, Diagnostic):
        return [], [data], b""
    documents, problems = _parse_documents(data, display)
    return documents, problems, data


def _parse_documents(
    data: bytes, display: str, *, expected: str = "RotationPolicy"
) -> tuple[list[_Document], list[Diagnostic]]:
    """YAML bytes to documents with positions (`expected` names the kind of document)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return [], [Diagnostic(display, line, 1, "the file is not UTF-8 text")]
    problems: list[Diagnostic] = []
    nodes: list[yaml.Node | None] = []
    unprintable = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if unprintable:
        before = text[: unprintable.start()]
        line, column = before.count("\n") + 1, unprintable.start() - before.rfind("\n")
        code = f"U+{ord(unprintable.group()):04X}"
        message = f"the file contains the control character {code}, which YAML does not allow"
        return [], [Diagnostic(display, line, column, message)]
    loader = _Loader(text)
    try:
        while loader.check_node():
            nodes.append(loader.get_node())
    except RecursionError:
        problems.append(Diagnostic(display, 1, 1, "the YAML is nested too deeply"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = _pos(mark) if mark else (1, 1)
        problem = exc.problem or exc.context or "cannot be parsed"
        context = ""
        if exc.context and exc.problem:
            context = f" ({exc.context}"
            if exc.context_mark:
                context += " that starts at line {}, column {}".format(*_pos(exc.context_mark))
            context += ")"
        problems.append(Diagnostic(display, line, column, f"invalid YAML: {problem}{context}"))
    except yaml.YAMLError as exc:  # pragma: no cover - reader errors are checked above
        problems.append(Diagnostic(display, 1, 1, f"invalid YAML: {exc}"))
    finally:
        loader.dispose()

    starts = loader.document_starts
    if not problems and (not nodes or (len(nodes) == 1 and _is_null(nodes[0]))):
        problems.append(
            Diagnostic(
                display,
                1,
                1,
                "the file is empty; a manifest holds one or more RotationPolicy documents"
                if expected == "RotationPolicy"
                else f"the file is empty; expected a {expected} document",
            )
        )
        return [], problems
    documents = []
    for number, (node, start) in enumerate(zip(nodes, starts, strict=False), start=1):
        if node is None or _is_null(node):
            problems.append(
                Diagnostic(
                    display, *start, f"document {number} is empty; remove the extra '---' separator"
                )
            )
            continue
        if not isinstance(node, yaml.MappingNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else f"the text {node.value!r}"
            line, column = _pos(node.start_mark)
            problems.append(
                Diagnostic(
                    display,
                    line,
                    column,
                    f"document {number} is {kind}; expected a mapping with apiVersion, kind"
                    + (", metadata and spec" if expected == "RotationPolicy" else " and the rest"),
                )
            )
            continue
        doc = _Document(path=display, start=start)
        try:
            doc.value = doc.build(node, ())
        except RecursionError:
            problems.append(Diagnostic(display, *start, "the YAML is nested too deeply"))
            continue
        except _TooManyAliases as exc:
            problems.append(
                Diagnostic(
                    display,
                    *_pos(exc.mark),
                    f"too many aliases: they expand to more than {MAX_ALIASED_VALUES} values; "
                    "write the values out instead of nesting aliases",
                )
            )
            continue
        documents.append(doc)
    return documents, problems


def _is_null(node: yaml.Node | None) -> bool:
    return node is None or (
        isinstance(node, yaml.ScalarNode)
        and node.tag == _TAG + "null"
        and node.value in ("", "~", "null", "Null", "NULL")
    )


def _check_document(doc: _Document, generation: str) -> _Candidate:
    value: dict[str, Any] = doc.value
    for key, supported in (("apiVersion", API_VERSION), ("kind", KIND)):
        if key in value and value[key] != supported:
            doc.at((key,), f"{key}: unknown {key} {_show(value[key])}; supported: {supported}")
            return _Candidate(doc, None, [])
    for error in _validator().iter_errors(value):
        _report_schema_error(error, doc)

    metadata = value.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    spec = value.get("spec")
    users = spec.get("users") if isinstance(spec, dict) else None
    names = users.get("names") if isinstance(users, dict) else None
    candidate = _Candidate(
        doc,
        name if isinstance(name, str) else None,
        [(i, n) for i, n in enumerate(names) if isinstance(n, str)]
        if isinstance(names, list)
        else [],
    )
    if doc.diagnostics:
        return candidate
    policy = _policy(doc, generation)
    _check_durations(doc, policy)
    _check_targets(doc, policy)
    _check_users(doc, policy)
    _check_windows(doc, policy)
    if not doc.diagnostics:
        candidate.policy = policy
    return candidate


def _check_across(candidates: list[_Candidate]) -> None:
    """Policy names are unique; a user is named by one policy only."""
    names: dict[str, Source] = {}
    users: dict[str, tuple[_Candidate, Source]] = {}
    for candidate in candidates:
        doc = candidate.doc
        if candidate.name is not None:
            line, column = doc.values[("metadata", "name")]
            here = Source(doc.path, line, column)
            first = names.setdefault(candidate.name, here)
            if first != here:
                doc.at(
                    ("metadata", "name"),
                    f"metadata.name: policy name {candidate.name!r} is already used by {first}",
                )
                candidate.policy = None
        for index, user in candidate.users:
            path: JsonPath = ("spec", "users", "names", index)
            line, column = doc.values[path]
            here = Source(doc.path, line, column)
            owner, where = users.setdefault(user, (candidate, here))
            if owner is not candidate:
                doc.at(
                    path,
                    f"{render_path(path)}: user {user!r} is already managed by policy "
                    f"{owner.name or '(unnamed)'!r} ({where}); a user may be named by "
                    "one policy only",
                )
                candidate.policy = None


@dataclass(frozen=True)
class _Written:
    """The names one target of one policy can write: what two policies must never share."""

    candidate: _Candidate
    path: JsonPath  # the target's name field, or the target itself for GitHub
    kind: str  # a noun for messages: "secret", "parameter", "GitHub secret"
    account: str | None  # None: the ambient account, which may be any
    region: str | None  # None: a default region, which may be any
    patterns: tuple[Pattern, ...]


def _account_of(policy: Policy) -> str | None:
    arn = policy.account.role_arn
    return arn.split(":")[4] if arn else None


def _written(candidate: _Candidate) -> list[_Written]:
    policy = candidate.policy
    assert policy is not None
    account = _account_of(policy)
    users: tuple[str | None, ...] = (
        (None,) if policy.users.has_selector or not policy.users.names else policy.users.names
    )

    def patterns(template: str, *, fold: bool = False) -> tuple[Pattern, ...]:
        return tuple(
            template_pattern(
                template.lower() if fold else template,
                policy=policy.name,
                account=account,
                user=None if user is None else (user.lower() if fold else user),
            )
            for user in users
        )

    out = []
    for index, target in enumerate(policy.targets):
        base: JsonPath = ("spec", "targets", index)
        region = target.region if not isinstance(target, GithubActionsSecretTarget) else None
        region = region or policy.account.region
        if isinstance(target, SecretsManagerTarget):
            name, where, here = target.secret_id, account, region
            if name.startswith("arn:") and ":secret:" in name:
                parts = name.split(":", 6)
                where, here, name = parts[4] or where, parts[3] or here, parts[6]
            out.append(
                _Written(candidate, (*base, "secretId"), "secret", where, here, patterns(name))
            )
        elif isinstance(target, SsmParameterTarget):
            out.append(
                _Written(
                    candidate,
                    (*base, "name"),
                    "parameter",
                    account,
                    region,
                    patterns(target.name),
                )
            )
        else:
            # GitHub compares repository, environment and secret names without regard to case.
            prefix = f"{target.repository}\0{target.environment or ''}\0"
            both = patterns(prefix + target.access_key_id_name, fold=True) + patterns(
                prefix + target.secret_access_key_name, fold=True
            )
            out.append(_Written(candidate, base, "GitHub secret", None, None, both))
    return out


def _may_meet(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a == b


def _check_shared_targets(candidates: list[_Candidate]) -> None:
    """No two policies write to the same target: one policy must not point at another's."""
    earlier: list[_Written] = []
    for candidate in candidates:
        if candidate.policy is None:
            continue
        mine = _written(candidate)
        clash = False
        for target in mine:
            for other in earlier:
                if not (
                    other.kind == target.kind
                    and _may_meet(other.account, target.account)
                    and _may_meet(other.region, target.region)
                    and any(overlaps(a, b) for a in target.patterns for b in other.patterns)
                ):
                    continue
                doc, first = candidate.doc, other.candidate
                line, column = first.doc.values[other.path]
                doc.at(
                    target.path,
                    f"{render_path(target.path)}: may write the same {target.kind} as "
                    f"{render_path(other.path)} of policy {first.name!r} "
                    f"({Source(first.doc.path, line, column)}); two policies may never share a "
                    "target",
                )
                clash = True
                break
        if clash:
            candidate.policy = None
        earlier.extend(mine)


def validate_manifests(
    paths: Sequence[Path], *, root: Path | None = None
) -> tuple[list[Policy], list[Diagnostic]]:
    """Check every manifest under `paths`; return the valid policies and every problem found.

    A policy is returned only if its document has no problem; diagnostics come sorted by file,
    line and column. With `root` (the repository), a manifest that resolves outside it is
    refused; symbolic links are refused always. Raises `ManifestPathError` for a path that does
    not exist.
    """
    candidates: list[_Candidate] = []
    problems: list[Diagnostic] = []
    for path in discover(paths):
        display = display_path(path)
        documents, file_problems, data = _read_documents(path, display, root)
        problems.extend(file_problems)
        generation = git_blob_id(data)
        candidates.extend(_check_document(doc, generation) for doc in documents)
    _check_across(candidates)
    _check_shared_targets(candidates)
    for candidate in candidates:
        problems.extend(candidate.doc.diagnostics)
    policies = [c.policy for c in candidates if c.policy is not None]
    return policies, sorted(set(problems))


def load_policies(paths: Sequence[Path], *, root: Path | None = None) -> list[Policy]:
    """The policies of all manifests under `paths`; `ManifestError` lists every problem found.

    Pass the repository as `root` so that nothing outside it is read (see `validate_manifests`).
    """
    policies, problems = validate_manifests(paths, root=root)
    if problems:
        raise ManifestError(problems)
    return policies
