"""The tests' IAM policy evaluator follows AWS's evaluation logic (it judges what moto cannot)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.iam_eval import Decision, Request, evaluate, moto_judgeable

USER = "arn:aws:iam::123456789012:user"


def _doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


ALLOW_CI = {"Effect": "Allow", "Action": "iam:CreateAccessKey", "Resource": f"{USER}/ci/*"}


def test_an_allow_is_needed() -> None:
    assert evaluate([_doc(ALLOW_CI)], Request("iam:CreateAccessKey", f"{USER}/ci/x")) is (
        Decision.ALLOWED
    )
    assert evaluate([_doc(ALLOW_CI)], Request("iam:CreateAccessKey", f"{USER}/admin/x")) is (
        Decision.IMPLICIT_DENY
    )
    assert evaluate([_doc(ALLOW_CI)], Request("iam:DeleteAccessKey", f"{USER}/ci/x")) is (
        Decision.IMPLICIT_DENY
    )


def test_an_explicit_deny_wins_across_documents() -> None:
    deny = {"Effect": "Deny", "Action": "iam:*", "Resource": f"{USER}/ci/x"}
    assert (
        evaluate([_doc(ALLOW_CI), _doc(deny)], Request("iam:CreateAccessKey", f"{USER}/ci/x"))
        is Decision.EXPLICIT_DENY
    )


def test_not_resource_excludes_only_what_it_names() -> None:
    allow = {"Effect": "Allow", "Action": "iam:CreateAccessKey", "NotResource": f"{USER}/admin/*"}
    assert evaluate([_doc(allow)], Request("iam:CreateAccessKey", f"{USER}/ci/x")) is (
        Decision.ALLOWED
    )
    assert evaluate([_doc(allow)], Request("iam:CreateAccessKey", f"{USER}/admin/x")) is (
        Decision.IMPLICIT_DENY
    )


def test_a_conditional_deny_applies_only_when_its_condition_holds() -> None:
    deny = {
        "Effect": "Deny",
        "Action": "iam:CreateAccessKey",
        "Resource": f"{USER}/*",
        "Condition": {"StringEquals": {"iam:ResourceTag/protect": "true"}},
    }
    docs = [_doc(ALLOW_CI, deny)]
    tagged = Request("iam:CreateAccessKey", f"{USER}/ci/x", {"iam:ResourceTag/protect": "true"})
    assert evaluate(docs, tagged) is Decision.EXPLICIT_DENY
    other = Request("iam:CreateAccessKey", f"{USER}/ci/x", {"iam:ResourceTag/protect": "no"})
    assert evaluate(docs, other) is Decision.ALLOWED
    assert evaluate(docs, Request("iam:CreateAccessKey", f"{USER}/ci/x")) is Decision.ALLOWED


def test_a_context_key_the_action_does_not_have_is_dropped() -> None:
    allow = {
        "Effect": "Allow",
        "Action": "iam:ListUsers",
        "Resource": "*",
        "Condition": {"StringEquals": {"iam:ResourceTag/team": "a"}},
    }
    request = Request("iam:ListUsers", "*", {"iam:ResourceTag/team": "a"})
    assert evaluate([_doc(allow)], request) is Decision.IMPLICIT_DENY


def test_for_all_values_bounds_every_tag_key() -> None:
    allow = {
        "Effect": "Allow",
        "Action": "iam:TagUser",
        "Resource": f"{USER}/*",
        "Condition": {"ForAllValues:StringLike": {"aws:TagKeys": ["keyrotor.dev/*"]}},
    }
    ours = Request("iam:TagUser", f"{USER}/x", {"aws:TagKeys": ["keyrotor.dev/keys"]})
    theirs = Request("iam:TagUser", f"{USER}/x", {"aws:TagKeys": ["keyrotor.dev/a", "owner"]})
    assert evaluate([_doc(allow)], ours) is Decision.ALLOWED
    assert evaluate([_doc(allow)], theirs) is Decision.IMPLICIT_DENY


def test_a_request_on_the_wrong_kind_of_resource_is_a_mistake_in_the_test() -> None:
    with pytest.raises(ValueError, match="is not a resource"):
        evaluate([_doc(ALLOW_CI)], Request("iam:CreateAccessKey", "arn:aws:s3:::bucket"))
    with pytest.raises(ValueError, match="needs a resource"):
        evaluate([_doc(ALLOW_CI)], Request("iam:CreateAccessKey", "*"))


def test_an_unsupported_operator_is_refused_rather_than_guessed() -> None:
    allow = {**ALLOW_CI, "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01"}}}
    with pytest.raises(NotImplementedError):
        evaluate([_doc(allow)], Request("iam:CreateAccessKey", f"{USER}/ci/x"))


def test_moto_gets_allows_without_conditions_and_no_conditional_denies() -> None:
    conditional_allow = {**ALLOW_CI, "Condition": {"Bool": {"aws:SecureTransport": "true"}}}
    conditional_deny = {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {}}
    conditional_deny["Condition"] = {"StringEquals": {"aws:username": "x"}}
    kept, aside = moto_judgeable(_doc(conditional_allow, conditional_deny))
    assert kept["Statement"] == [ALLOW_CI]
    assert aside == [conditional_allow, conditional_deny]
