"""Judge an IAM identity policy where moto cannot: Conditions, NotResource, NotAction.

moto's authorization (even with `controller.sandbox.scoping`) does not evaluate Conditions of
identity policies (a statement with one denies), and treats a statement without `Resource` as
matching everything. This evaluator follows AWS's documented logic for one identity's
policies: an explicit Deny wins, else an Allow is needed. It knows each action's resource types
and condition keys from parliament's copy of the IAM service definitions, so

- a request whose resource is not of a type the action acts on is a mistake in the test (raised);
- a context key the action does not have (say `iam:ResourceTag/...` for `iam:ListUsers`) is
  dropped, as AWS would not send it, so a condition on it does not match.

Supported condition operators: String(Not)Equals, String(Not)Like, ArnLike, ArnEquals, Bool, Null,
with `ForAnyValue:` / `ForAllValues:`. Any other raises, so a policy using one cannot pass
unjudged. `moto_judgeable(document)` is the part of a document moto can evaluate (see there).
"""

from __future__ import annotations

import copy
import enum
import importlib.util
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

ContextValue = str | Sequence[str]


class Decision(enum.Enum):
    ALLOWED = "allowed"
    IMPLICIT_DENY = "implicit-deny"
    EXPLICIT_DENY = "explicit-deny"


@dataclass(frozen=True)
class Request:
    """One API call as IAM sees it: `iam:CreateAccessKey` on an ARN, with its context keys."""

    action: str
    resource: str = "*"
    context: Mapping[str, ContextValue] = field(default_factory=dict)


@cache
def _definitions() -> dict[str, Any]:
    # Found without importing parliament, whose import leaves files open.
    spec = importlib.util.find_spec("parliament")
    assert spec is not None and spec.submodule_search_locations, "parliament is not installed"
    path = Path(next(iter(spec.submodule_search_locations))) / "iam_definition.json"
    text = path.read_text(encoding="utf-8")
    return {service["prefix"]: service for service in json.loads(text)}


def _privilege(action: str) -> dict[str, Any]:
    prefix, _, name = action.partition(":")
    service = _definitions()[prefix]
    for privilege in service["privileges"]:
        if privilege["privilege"].lower() == name.lower():
            return dict(privilege)
    raise KeyError(f"{action} is not an IAM action")


def _arn_regex(template: str) -> re.Pattern[str]:
    """`arn:${Partition}:iam::${Account}:user/${UserNameWithPath}` as a regex."""
    parts = re.split(r"\$\{[^}]+\}", template)
    return re.compile(".+".join(re.escape(p) for p in parts))


def resource_types(action: str) -> list[str]:
    """The resource types (`user`, `Secret`, ...) an action acts on; empty for account-wide."""
    return [
        r["resource_type"].rstrip("*")
        for r in _privilege(action)["resource_types"]
        if r["resource_type"]
    ]


def resource_condition_keys(action: str) -> list[str]:
    """The condition keys of the resource types an action acts on (`iam:ResourceTag/${TagKey}`
    for IAM users), which parliament's own linter does not consult."""
    prefix = action.partition(":")[0]
    kinds = resource_types(action)
    return [
        key
        for definition in _definitions()[prefix]["resources"]
        if definition["resource"] in kinds
        for key in definition["condition_keys"]
    ]


def access_level(action: str) -> str:
    """`Read`, `List`, `Write`, `Tagging` or `Permissions management`."""
    return str(_privilege(action)["access_level"])


def _resource_type_of(action: str, resource: str) -> dict[str, Any] | None:
    prefix = action.partition(":")[0]
    service = _definitions()[prefix]
    kinds = resource_types(action)
    if resource == "*":
        if kinds and all(
            r["resource_type"].endswith("*") for r in _privilege(action)["resource_types"]
        ):
            raise ValueError(f"{action} needs a resource of type {kinds}, not *")
        return None
    for definition in service["resources"]:
        if definition["resource"] in kinds and _arn_regex(definition["arn"]).fullmatch(resource):
            return dict(definition)
    raise ValueError(f"{resource} is not a resource {action} acts on ({kinds})")


def _applicable_keys(action: str, resource: str) -> list[str]:
    keys: list[str] = ["aws:*"]  # global keys are always possible
    kind = _resource_type_of(action, resource)
    if kind is not None:
        keys += kind["condition_keys"]
    for r in _privilege(action)["resource_types"]:
        keys += r["condition_keys"]
    return keys


_PER_ACTION_AWS_KEYS = ("aws:ResourceTag", "aws:RequestTag", "aws:TagKeys")


def _key_applies(key: str, applicable: Iterable[str]) -> bool:
    for pattern in applicable:
        if pattern == "aws:*":
            # Global keys (aws:PrincipalArn, aws:SourceIp, ...); the tag keys are per action.
            if key.startswith("aws:") and not key.startswith(_PER_ACTION_AWS_KEYS):
                return True
            continue
        base = pattern.split("${", 1)[0]
        if ("${" in pattern and key.lower().startswith(base.lower())) or (
            key.lower() == pattern.lower()
        ):
            return True
    return False


def glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.fullmatch(regex, value, flags) is not None


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda want, have: want == have,
    "StringNotEquals": lambda want, have: want != have,
    "StringLike": lambda want, have: glob(want, have),
    "StringNotLike": lambda want, have: not glob(want, have),
    "ArnLike": lambda want, have: glob(want, have),
    "ArnEquals": lambda want, have: glob(want, have),
    "Bool": lambda want, have: want.lower() == have.lower(),
}


def _condition_holds(operator: str, key: str, wanted: Any, context: Mapping[str, Any]) -> bool:
    qualifier, _, op = operator.rpartition(":")
    present = {k.lower(): v for k, v in context.items()}
    have = present.get(key.lower())
    wants = _as_list(wanted)
    if op == "Null":
        is_null = have is None
        return any((w.lower() == "true") == is_null for w in wants)
    if op not in _OPERATORS:
        raise NotImplementedError(f"condition operator {operator} is not supported")
    test = _OPERATORS[op]
    negated = "Not" in op
    if qualifier == "ForAllValues":
        return all(any(test(w, h) for w in wants) for h in _as_list(have or []))
    if qualifier == "ForAnyValue":
        return any(any(test(w, h) for w in wants) for h in _as_list(have or []))
    if qualifier:
        raise NotImplementedError(f"condition qualifier {qualifier} is not supported")
    if have is None:
        # A missing key matches no positive operator; negated ones would need care, unused here.
        if negated:
            raise NotImplementedError(f"{operator} with the key {key} missing")
        return False
    values = _as_list(have)
    if negated:
        return all(test(w, h) for w in wants for h in values)
    return any(test(w, h) for w in wants for h in values)


def _matches(statement: Mapping[str, Any], request: Request, context: Mapping[str, Any]) -> bool:
    if "Action" in statement:
        action_ok = any(
            glob(a, request.action, ignore_case=True) for a in _as_list(statement["Action"])
        )
    else:
        action_ok = not any(
            glob(a, request.action, ignore_case=True) for a in _as_list(statement["NotAction"])
        )
    if not action_ok:
        return False
    if "Resource" in statement:
        resource_ok = any(glob(r, request.resource) for r in _as_list(statement["Resource"]))
    else:
        resource_ok = not any(glob(r, request.resource) for r in _as_list(statement["NotResource"]))
    if not resource_ok:
        return False
    for operator, tests in statement.get("Condition", {}).items():
        for key, wanted in tests.items():
            if not _condition_holds(operator, key, wanted, context):
                return False
    return True


def evaluate(documents: Sequence[Mapping[str, Any]], request: Request) -> Decision:
    """The decision for `request` under these identity policies (no SCPs, boundaries, or
    resource policies)."""
    applicable = _applicable_keys(request.action, request.resource)
    context = {k: v for k, v in request.context.items() if _key_applies(k, applicable)}
    allowed = False
    for document in documents:
        statements = document["Statement"]
        for statement in [statements] if isinstance(statements, dict) else statements:
            if not _matches(statement, request, context):
                continue
            if statement["Effect"] == "Deny":
                return Decision.EXPLICIT_DENY
            allowed = True
    return Decision.ALLOWED if allowed else Decision.IMPLICIT_DENY


def moto_judgeable(document: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The document moto can evaluate, and the statements it leaves to `evaluate`.

    moto treats a Condition as failed (an explicit deny, even in an Allow). So an Allow loses its
    Condition (moto then allows at least what AWS would) and a conditional Deny is set aside (moto
    then denies at most what AWS would): moto's verdict bounds AWS's, and `evaluate` on the whole
    document gives it exactly.
    """
    kept: list[dict[str, Any]] = []
    set_aside: list[dict[str, Any]] = []
    for statement in document["Statement"]:
        if "Condition" not in statement:
            kept.append(copy.deepcopy(statement))
        elif statement["Effect"] == "Allow":
            loosened = copy.deepcopy(statement)
            del loosened["Condition"]
            kept.append(loosened)
            set_aside.append(copy.deepcopy(statement))
        else:
            set_aside.append(copy.deepcopy(statement))
    return {"Version": document["Version"], "Statement": kept}, set_aside
