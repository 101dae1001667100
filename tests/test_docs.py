"""The README's manifest reference is generated from the schema, never written twice."""

from __future__ import annotations

from pathlib import Path

from controller.docs import generate, lifecycle_diagram, reference
from controller.lifecycle import LIFECYCLE

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_manifest_reference_matches_the_schema() -> None:
    text = README.read_text()
    assert generate(text) == text, "run: python -m controller.docs README.md"


def test_the_readme_state_diagram_is_the_lifecycle_table() -> None:
    diagram = lifecycle_diagram()
    assert diagram in README.read_text()
    for transition in LIFECYCLE:
        assert f"--> {transition.target}: {transition.label}" in diagram
        assert ":" not in transition.label, "mermaid ends a label at its first colon"


def test_every_schema_field_appears_in_the_reference() -> None:
    generated = reference()
    for field in ("spec.maxKeyAge", "spec.users.selector", "`secretId`", "`withNewKey`", "`for`"):
        assert field in generated
