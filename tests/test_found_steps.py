"""Steps a record moved through that no status commit named: found done in IAM, recorded."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller import lifecycle
from controller.plan import ActionKind
from controller.status import Phase, UserStatus

_K1, _K2 = "AKIAFOUND00000000001", "AKIAFOUND00000000002"
_CURRENT = UserStatus(Phase.CURRENT, old_key=_K1)
_AWAITING = UserStatus(Phase.AWAITING_USE, old_key=_K1, new_key=_K2)
_DEACTIVATED = UserStatus(Phase.DEACTIVATED, old_key=_K1, new_key=_K2)


@pytest.mark.parametrize(
    ("before", "after", "steps"),
    [
        (_CURRENT, _AWAITING, [(ActionKind.CREATE_KEY, _K2)]),
        (_CURRENT, _DEACTIVATED, [(ActionKind.CREATE_KEY, _K2), (ActionKind.DEACTIVATE_KEY, _K1)]),
        (_AWAITING, _DEACTIVATED, [(ActionKind.DEACTIVATE_KEY, _K1)]),
        (_DEACTIVATED, UserStatus(Phase.CURRENT, old_key=_K2), [(ActionKind.DELETE_KEY, _K1)]),
        (
            _AWAITING,
            UserStatus(Phase.CURRENT, old_key=_K2),
            [(ActionKind.DEACTIVATE_KEY, _K1), (ActionKind.DELETE_KEY, _K1)],
        ),
        (
            _DEACTIVATED,
            replace(_DEACTIVATED, phase=Phase.ROLLED_BACK),
            [(ActionKind.REACTIVATE_KEY, _K1)],
        ),
    ],
    ids=["create", "create+deactivate", "deactivate", "delete", "deactivate+delete", "rollback"],
)
def test_a_record_that_moved_on_names_the_steps_it_moved_through(
    before: UserStatus, after: UserStatus, steps: list[tuple[ActionKind, str]]
) -> None:
    assert list(lifecycle.found_steps(before, after)) == steps


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (_CURRENT, _CURRENT),
        (None, _CURRENT),
        (_CURRENT, UserStatus(Phase.CURRENT, old_key=_K2)),  # a key adopted anew: no rotation
        (_CURRENT, UserStatus(Phase.BLOCKED, old_key=_K1)),
        (_AWAITING, UserStatus(Phase.BLOCKED, old_key=_K1, new_key=_K2)),
    ],
    ids=["unchanged", "first record", "adopted anew", "blocked", "blocked midway"],
)
def test_a_record_that_did_not_move_through_a_rotation_names_no_step(
    before: UserStatus | None, after: UserStatus
) -> None:
    assert lifecycle.found_steps(before, after) == ()
