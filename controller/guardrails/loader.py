"""Load a Guardrails document: YAML with positions, then its JSON Schema, then typed values.

Problems are `path:line:column: message` diagnostics, as for manifests (the same YAML reader,
so aliases, duplicate keys and YAML 1.1 booleans are handled the same way). The document comes
from a file or from an SSM parameter (`ssm:NAME`); reading the parameter is an injected
function, so this module makes no AWS call (see `controller.guardrails.source`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from controller.durations import parse_duration
from controller.errors import Diagnostic, KeyrotorError, ManifestError
from controller.guardrails.model import (
    API_VERSION,
    KIND,
    CheckGuardrails,
    Guardrails,
    Maximums,
    Minimums,
    TargetGuardrails,
    UserGuardrails,
)
from controller.manifests import (
    MAX_MANIFEST_BYTES,
    _Document,
    _parse_documents,
    _report_schema_error,
    _show,
    render_path,
    schema_validator,
)
from controller.policy import Source

__all__ = [
    "ENV_VAR",
    "SCHEMA_ID",
    "SSM_PREFIX",
    "GuardrailsError",
    "GuardrailsSourceError",
    "guardrails_spec",
    "load_guardrails",
    "load_schema",
    "read_guardrails",
]

SCHEMA_ID = "https://keyrotor.dev/schemas/guardrails.schema.json"
#: The environment variable naming the guardrails when `--guardrails` is not given.
ENV_VAR = "KEYROTOR_GUARDRAILS"
#: `ssm:/keyrotor/guardrails` names an SSM parameter holding the document.
SSM_PREFIX = "ssm:"


class GuardrailsError(ManifestError):
    """The guardrails document is invalid; carries every diagnostic found."""


class GuardrailsSourceError(KeyrotorError):
    """The guardrails file or SSM parameter cannot be read."""


@cache
def load_schema() -> dict[str, Any]:
    """The Guardrails JSON Schema shipped with the package."""
    text = (resources.files("controller") / "schemas" / "guardrails.schema.json").read_text(
        encoding="utf-8"
    )
    return cast(dict[str, Any], json.loads(text))


@cache
def _validator() -> Any:
    return schema_validator(load_schema())


def guardrails_spec(option: str | None, environ: Mapping[str, str]) -> str | None:
    """What names the guardrails: `--guardrails`, else `KEYROTOR_GUARDRAILS`, else None."""
    return option or environ.get(ENV_VAR) or None


def read_guardrails(spec: str, *, read_parameter: Callable[[str], str] | None = None) -> Guardrails:
    """The guardrails that `spec` names: a file path, or `ssm:NAME` read with `read_parameter`
    (e.g. `controller.guardrails.source.ssm_reader(session)`).

    Raises `GuardrailsSourceError` when it cannot be read, `GuardrailsError` when it is invalid.
    """
    if spec.startswith(SSM_PREFIX):
        name = spec[len(SSM_PREFIX) :]
        if not name:
            raise GuardrailsSourceError(f"{spec!r}: name the SSM parameter, e.g. ssm:/keyrotor/g")
        if read_parameter is None:
            raise GuardrailsSourceError(f"{spec}: cannot read SSM parameters here")
        return load_guardrails(read_parameter(name), path=spec)
    path = Path(spec)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise GuardrailsSourceError(f"{spec}: cannot read the guardrails: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise GuardrailsSourceError(
            f"{spec}: the guardrails file is larger than {MAX_MANIFEST_BYTES // 1024} KiB"
        )
    return load_guardrails(data, path=spec)


def load_guardrails(text: str | bytes, *, path: str) -> Guardrails:
    """Parse and validate one Guardrails document; `path` is how its diagnostics name it.

    Raises `GuardrailsError` listing every problem (`path:line:column: message`).
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    documents, problems = _parse_documents(data, path, expected=KIND)
    if problems:
        raise GuardrailsError(problems)
    if len(documents) != 1:
        second = documents[1].start
        raise GuardrailsError(
            [Diagnostic(path, *second, "a guardrails file holds exactly one document")]
        )
    (doc,) = documents
    value = doc.value
    for key, supported in (("apiVersion", API_VERSION), ("kind", KIND)):
        if key in value and value[key] != supported:
            doc.at((key,), f"{key}: unknown {key} {_show(value[key])}; supported: {supported}")
            raise GuardrailsError(doc.diagnostics)
    defs = load_schema()["$defs"]
    for error in _validator().iter_errors(value):
        _report_schema_error(error, doc, defs)
    if doc.diagnostics:
        raise GuardrailsError(doc.diagnostics)
    return _guardrails(doc)


def _strings(raw: Any) -> tuple[str, ...] | None:
    return None if raw is None else tuple(raw)


def _duration(raw: Mapping[str, Any], key: str) -> Any:
    return parse_duration(raw[key]) if key in raw else None


def _guardrails(doc: _Document) -> Guardrails:
    value: dict[str, Any] = doc.value
    users = value.get("users", {})
    targets = value.get("targets", {})
    checks = value.get("checks", {})
    minimums = value.get("minimums", {})
    maximums = value.get("maximums", {})
    return Guardrails(
        source=Source(doc.path, *doc.values[()]),
        accounts=_strings(value.get("accounts")),
        users=UserGuardrails(
            path_prefixes=_strings(users.get("pathPrefixes")),
            deny_names=tuple(users.get("denyNames", ())),
            deny_tags=MappingProxyType(dict(users.get("denyTags", {}))),
        ),
        targets=TargetGuardrails(
            secrets_manager=_strings(targets.get("secretsManager")),
            ssm_parameters=_strings(targets.get("ssmParameters")),
            github_repositories=_strings(targets.get("githubRepositories")),
        ),
        checks=CheckGuardrails(
            command=checks.get("command", True),
            command_with_new_key=checks.get("commandWithNewKey", True),
            http=checks.get("http", True),
            required=tuple(checks.get("required", ())),
        ),
        approval=_strings(value.get("approval")),
        minimums=Minimums(
            max_key_age=_duration(minimums, "maxKeyAge"),
            deactivate_after=_duration(minimums, "deactivateAfter"),
            delete_after=_duration(minimums, "deleteAfter"),
        ),
        maximums=Maximums(max_key_age=_duration(maximums, "maxKeyAge")),
        max_changes_per_run=value.get("maxChangesPerRun"),
        positions=MappingProxyType(
            {render_path(p): Source(doc.path, *where) for p, where in doc.values.items()}
        ),
    )
