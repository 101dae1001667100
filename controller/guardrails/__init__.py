"""Guardrails: limits outside the manifests on what keyrotor may do, and least privilege.

The API for the rest of keyrotor (all pure except `source`):

- `load_guardrails(text, path=...) -> Guardrails`, `read_guardrails(spec, read_parameter=...)`
  for a path or `ssm:NAME`, `guardrails_spec(option, environ)` (`--guardrails` or
  `KEYROTOR_GUARDRAILS`); errors are `GuardrailsError` (diagnostics) / `GuardrailsSourceError`.
- `source.ssm_reader(ssm_client)`: the `read_parameter` that reads an SSM parameter (boto3).
- `check_policy(policy, guardrails, ambient_account_id=..., ambient_region=...) ->
  list[Diagnostic]`; `violations(...) -> list[Violation]` is the same as data (`Rule` enum).
  A policy with any is refused: no AWS mutation for it; the others go on; the run exits 1.
- `exclusion(guardrails, account_id=..., user_name=..., path=..., tags=...) ->
  ExclusionReason | None` per selected IAM user; `exclusion_message(...)` says it in English.
- `Guardrails.max_changes_per_run` (None: no limit), `.minimums`, `.maximums`,
  `.allowed_accounts(ambient)`.
- `iam_policy(policies, guardrails, role=..., account_id=..., region=...) -> dict` and
  `trust_policy(repository, role=..., account_id=...) -> dict`.
- `NO_GUARDRAILS_WARNING`: the line `plan` / `apply` print when none are in force.
"""

from controller.guardrails.evaluate import check_policy, exclusion, violations
from controller.guardrails.iam import iam_policy, trust_policy
from controller.guardrails.loader import (
    ENV_VAR,
    GuardrailsError,
    GuardrailsSourceError,
    guardrails_spec,
    load_guardrails,
    read_guardrails,
)
from controller.guardrails.messages import (
    NO_GUARDRAILS_WARNING,
    exclusion_message,
    violation_message,
)
from controller.guardrails.model import (
    CheckGuardrails,
    ExclusionReason,
    Guardrails,
    Maximums,
    Minimums,
    Rule,
    TargetGuardrails,
    UserGuardrails,
    Violation,
)

__all__ = [
    "ENV_VAR",
    "NO_GUARDRAILS_WARNING",
    "CheckGuardrails",
    "ExclusionReason",
    "Guardrails",
    "GuardrailsError",
    "GuardrailsSourceError",
    "Maximums",
    "Minimums",
    "Rule",
    "TargetGuardrails",
    "UserGuardrails",
    "Violation",
    "check_policy",
    "exclusion",
    "exclusion_message",
    "guardrails_spec",
    "iam_policy",
    "load_guardrails",
    "read_guardrails",
    "trust_policy",
    "violation_message",
    "violations",
]
