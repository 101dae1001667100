"""The status tree: per-user files parsed once, before the plan needs them."""

from __future__ import annotations

import pytest

from controller.errors import KeyrotorError
from controller.status import Phase, UserStatus
from controller.statusfiles import StatusTree, dump_user, user_path

ACCOUNT = "123456789012"


def tree_of(**users: UserStatus) -> StatusTree:
    return StatusTree(
        {user_path("ci", ACCOUNT, u): dump_user("ci", ACCOUNT, u, st) for u, st in users.items()}
    )


def test_a_preloaded_tree_gives_the_same_records_as_one_parsed_on_demand() -> None:
    users = {"a": UserStatus(Phase.CURRENT, old_key="AKIAA"), "b": UserStatus(Phase.BLOCKED)}
    preloaded = tree_of(**users)
    preloaded.preload()
    assert preloaded.policy("ci", ACCOUNT).status == tree_of(**users).policy("ci", ACCOUNT).status
    assert preloaded.policy("ci", ACCOUNT).status.users["a"].old_key == "AKIAA"


def test_preloading_a_damaged_file_names_it() -> None:
    path = user_path("ci", ACCOUNT, "a")
    with pytest.raises(KeyrotorError, match=f"{path}: not a keyrotor status file"):
        StatusTree({path: "kind: Something\n"}).preload()
