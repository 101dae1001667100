"""The approvals file: each entry names the proposal it came from and the manifest it was for."""

from __future__ import annotations

from controller.approvals import Approval, dump, load

MANIFEST_BLOB = "3b18e512dba79e4c8300dd08aeb37f8e728b8dad"


def test_an_entry_carries_its_proposal_and_manifest_through_the_file() -> None:
    approval = Approval("ci", "bot", "AKIAOLD", "sha256:abc", "1234567890", MANIFEST_BLOB)
    text = dump("ci", {"bot": approval})
    assert text is not None
    assert "proposal: '1234567890'" in text and f"manifest: {MANIFEST_BLOB}" in text
    assert load(text, path="approvals/ci.yaml") == {"bot": approval}


def test_a_file_written_before_verification_reads_without_proposal_or_manifest() -> None:
    text = (
        "apiVersion: keyrotor.dev/v1\nkind: RotationApproval\npolicy: ci\n"
        "users:\n  bot:\n    oldKey: AKIAOLD\n    digest: sha256:abc\n"
    )
    (approval,) = load(text, path="approvals/ci.yaml").values()
    assert (approval.proposal, approval.manifest) == (None, None)


def test_an_entry_without_them_is_written_as_before() -> None:
    text = dump("ci", {"bot": Approval("ci", "bot", "AKIAOLD", "sha256:abc")})
    assert text is not None and "proposal" not in text and "manifest" not in text


def test_an_unquoted_numeric_proposal_id_reads_as_text() -> None:
    text = (
        "policy: ci\nusers:\n  bot:\n    oldKey: AKIAOLD\n    digest: sha256:abc\n"
        "    proposal: 1234567890\n    manifest: abc\n"
    )
    assert load(text, path="approvals/ci.yaml")["bot"].proposal == "1234567890"
