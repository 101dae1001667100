"""parliament's policy linter, with its one false positive for keyrotor's policies removed.

parliament checks a Condition key only against the keys of the *action* (its `resource_types`
entries), not those of the resource type the action acts on, although its own data lists them:
`iam:ResourceTag/...` is a key of IAM's `user` resource, `kms:ResourceAliases` of KMS's `key`.
`lint` drops an UNKNOWN_CONDITION_FOR_ACTION finding only when parliament's data lists the key
for one of the action's resource types; everything else is reported.

It also opens its data files without closing them; the suite turns the ResourceWarnings that
follow into errors, so they are silenced here.
"""

from __future__ import annotations

import gc
import json
import re
import warnings
from collections.abc import Mapping
from typing import Any

from tests.support.iam_eval import resource_condition_keys

_UNKNOWN_CONDITION = re.compile(r"Unknown condition (\S+) for action (\S+)")


def _resource_level(detail: str) -> bool:
    match = _UNKNOWN_CONDITION.fullmatch(detail)
    if match is None:
        return False
    key, action = match.groups()
    return any(
        key.lower().startswith(known.split("${", 1)[0].lower())
        if "${" in known
        else key.lower() == known.lower()
        for known in resource_condition_keys(action)
    )


def lint(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    """parliament's findings for an IAM policy document, as (issue, detail) pairs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        from parliament import analyze_policy_string

        findings = analyze_policy_string(json.dumps(document)).findings
        gc.collect()
    return [
        (str(f.issue), str(f.detail))
        for f in findings
        if not (f.issue == "UNKNOWN_CONDITION_FOR_ACTION" and _resource_level(str(f.detail)))
    ]
