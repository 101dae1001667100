"""Which accounts the reader lists, and which keys status may name in one it does not list."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from controller.aws.credential_report import Candidate
from controller.aws.inventory import StatusCandidates, needs_tags
from controller.aws.listing import ListedUser
from controller.guardrails.model import Guardrails, UserGuardrails
from controller.policy import Policy, Source, UserSelection
from controller.status import Phase, PolicyStatus, UserStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OLD, NEW = "AKIAOLD0000000000001", "AKIANEW0000000000002"
SOURCE = Source("guardrails.yaml", 1, 1)


def policy(users: UserSelection, name: str = "ci") -> Policy:
    return Policy(
        name=name,
        source=Source(f"manifests/{name}.yaml", 1, 1),
        users=users,
        max_key_age=timedelta(days=90),
        targets=(),
        approval="auto",
    )


BY_NAME = policy(UserSelection(names=("bot",)))
BY_PATH = policy(UserSelection(path_prefix="/ci/", has_selector=True))
BY_TAG = policy(UserSelection(tags={"team": "ci"}, has_selector=True), name="tagged")


def test_policies_choosing_users_by_name_or_path_need_no_listing() -> None:
    assert not needs_tags([BY_NAME, BY_PATH], None)
    assert not needs_tags([BY_NAME], Guardrails(SOURCE, users=UserGuardrails(("/ci/",))))


def test_a_tag_selector_in_any_policy_of_the_account_needs_the_listing() -> None:
    assert needs_tags([BY_PATH, BY_TAG], None)


def test_guardrails_denying_users_by_tag_need_the_listing() -> None:
    denying = Guardrails(SOURCE, users=UserGuardrails(deny_tags={"keyrotor.dev/protect": "true"}))
    assert needs_tags([BY_NAME], denying)


def listed(name: str) -> ListedUser:
    return ListedUser(name, "/ci/", f"arn:aws:iam::111122223333:user/ci/{name}", T0)


CURRENT = UserStatus(Phase.CURRENT, old_key=OLD, old_key_created=T0)


def candidates_for(users: dict[str, UserStatus]) -> tuple[StatusCandidates, list[str]]:
    asked: list[str] = []

    def hint(p: Policy, account_id: str) -> PolicyStatus:
        asked.append(f"{p.name}@{account_id}")
        return PolicyStatus(p.name, users)

    return StatusCandidates([BY_NAME], "111122223333", hint), asked


def test_status_names_the_one_key_of_a_current_user() -> None:
    candidates, _ = candidates_for({"bot": CURRENT})
    assert candidates(listed("bot")) == (Candidate(OLD, T0),)
    assert candidates(listed("someone-else")) == ()


def test_status_names_no_key_of_a_user_with_anything_in_progress() -> None:
    for status in (
        replace(CURRENT, phase=Phase.AWAITING_USE, new_key=NEW, new_key_created=T0),
        replace(CURRENT, intent_at=T0),
        replace(CURRENT, hold="a person must look"),
        replace(CURRENT, old_key_created=None),
    ):
        candidates, _ = candidates_for({"bot": status})
        assert candidates(listed("bot")) == (), status


def test_status_is_read_once_and_only_when_the_join_asks() -> None:
    candidates, asked = candidates_for({"bot": CURRENT})
    assert asked == []
    candidates(listed("bot"))
    candidates(listed("other"))
    assert asked == ["ci@111122223333"]
