"""Templates and globs as sets of names: overlap (shared targets) and coverage (guardrails)."""

from __future__ import annotations

import pytest

from controller.namepatterns import (
    Pattern,
    covers,
    glob_pattern,
    overlaps,
    template_pattern,
    to_glob,
)


def _t(template: str, *, user: str | None = None, account: str | None = None) -> Pattern:
    return template_pattern(template, policy="ci", user=user, account=account)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("ci/{user}/aws", "ci/billing-bot/aws", True),
        ("ci/{user}/aws", "ci/team/deploy/aws", False),  # a user name holds no '/'
        ("ci/{user}/aws", "ci/{user}/aws", True),
        ("ci/{user}/aws", "cd/{user}/aws", False),
        ("{policy}/{user}", "ci/x", True),
        ("{account}/k", "12345/k", True),
        ("{account}/k", "abc/k", False),
        ("a{user}", "a", False),  # a user name is never empty
        ("/ci/{user}", "/ci/{user}/aws", False),
    ],
)
def test_two_templates_overlap_only_when_one_name_fits_both(a: str, b: str, expected: bool) -> None:
    assert overlaps(_t(a), _t(b)) is expected
    assert overlaps(_t(b), _t(a)) is expected


@pytest.mark.parametrize(
    ("glob", "template", "expected"),
    [
        ("ci/*", "ci/{user}/aws", True),
        ("ci/*", "ci", False),
        ("ci/*", "{user}/aws", False),
        ("*", "{user}", True),
        ("/ci/*/aws", "/ci/{user}/aws", True),
        ("/ci/*/aws", "/ci/{user}/gcp", False),
        ("ci/{policy}", "ci/{policy}", False),  # a glob has no placeholders: literal braces
        ("ci/ci/*", "{policy}/{policy}/x", True),
    ],
)
def test_a_glob_covers_a_template_when_every_name_matches(
    glob: str, template: str, expected: bool
) -> None:
    assert covers(glob, _t(template)) is expected


def test_slots_become_single_stars_in_an_arn_glob() -> None:
    assert to_glob(_t("ci/{user}{account}/aws")) == "ci/*/aws"
    assert to_glob(glob_pattern("a**b")) == "a*b"


def test_long_names_are_compared_correctly() -> None:
    long = "x" * 2000
    assert overlaps(_t(long + "{user}"), _t(long + "y"))
    assert not covers(long + "*", _t("y" + long))
