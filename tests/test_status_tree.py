"""The status tree: per-user files parsed once, before the plan needs them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import KeyrotorError
from controller.status import Phase, UserStatus
from controller.statusfiles import StatusTree, _strings, dump_user, user_path

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


def test_a_checkout_gives_every_yaml_file_under_status_by_path_in_path_order(
    tmp_path: Path,
) -> None:
    for rel in ("status/ci/2/b.yaml", "status/ci/1/a.yaml", "status/ci.yaml", "status/x/n.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    tree = StatusTree.from_directory(tmp_path)
    assert list(tree.files) == ["status/ci/1/a.yaml", "status/ci/2/b.yaml", "status/ci.yaml"]
    assert tree.files["status/ci/2/b.yaml"] == "status/ci/2/b.yaml"


def test_a_checkout_s_symlinks_under_status_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.yaml").write_text("not keyrotor's")
    (tmp_path / "status" / "ci").mkdir(parents=True)
    (tmp_path / "status" / "ci" / "linked.yaml").symlink_to(outside / "secret.yaml")
    (tmp_path / "status" / "ci" / "folder").symlink_to(outside, target_is_directory=True)
    assert StatusTree.from_directory(tmp_path).files == {}


def test_a_checkout_without_status_has_no_files(tmp_path: Path) -> None:
    assert StatusTree.from_directory(tmp_path).files == {}


SCALARS = st.one_of(
    st.text(max_size=12),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.datetimes(),
    st.sampled_from(["yes", "no", "~", "null", "1e3", "0x1F", "2026-01-01", "<<", "a: b"]),
)
DOCS = st.dictionaries(
    st.one_of(st.text(max_size=8), st.integers(), st.sampled_from(["<<", "on", "true"])),
    st.one_of(
        SCALARS,
        st.lists(SCALARS, max_size=2),
        st.dictionaries(st.text(max_size=4), SCALARS, max_size=2),
    ),
    max_size=6,
)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(DOCS, st.booleans())
def test_the_fast_load_of_a_status_file_is_what_yaml_load_gives_or_nothing(
    doc: dict[object, object], flow: bool
) -> None:
    text = yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=True)
    fast = _strings(text)
    assert fast is None or fast == yaml.safe_load(text)


def test_the_fast_load_takes_a_status_file_of_strings() -> None:
    text = dump_user("ci", ACCOUNT, "a", UserStatus(Phase.CURRENT, old_key="AKIAA"))
    assert _strings(text) == yaml.safe_load(text)
    assert _strings(text) is not None
