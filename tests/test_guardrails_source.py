"""Guardrails from an SSM parameter (`ssm:NAME`), read from the embedded AWS."""

from __future__ import annotations

import pytest

from controller.guardrails import GuardrailsSourceError, read_guardrails
from controller.guardrails.source import ssm_reader
from controller.sandbox import Sandbox

DOCUMENT = "apiVersion: keyrotor.dev/v1\nkind: Guardrails\nmaxChangesPerRun: 5\n"


def test_a_string_parameter_holds_the_guardrails(aws: Sandbox) -> None:
    ssm = aws.client("ssm")
    ssm.put_parameter(Name="/keyrotor/guardrails", Value=DOCUMENT, Type="String")
    g = read_guardrails("ssm:/keyrotor/guardrails", read_parameter=ssm_reader(ssm))
    assert g.max_changes_per_run == 5
    assert str(g.source) == "ssm:/keyrotor/guardrails:1:1"


def test_a_missing_parameter_says_how_to_create_it(aws: Sandbox) -> None:
    with pytest.raises(GuardrailsSourceError, match="no such SSM parameter; create it"):
        read_guardrails("ssm:/keyrotor/guardrails", read_parameter=ssm_reader(aws.client("ssm")))


def test_a_secure_string_parameter_is_refused(aws: Sandbox) -> None:
    ssm = aws.client("ssm")
    ssm.put_parameter(Name="/keyrotor/guardrails", Value=DOCUMENT, Type="SecureString")
    with pytest.raises(GuardrailsSourceError, match="is a SecureString"):
        read_guardrails("ssm:/keyrotor/guardrails", read_parameter=ssm_reader(ssm))
