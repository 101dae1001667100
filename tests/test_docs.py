"""The README's manifest reference is generated from the schema, never written twice."""

from __future__ import annotations

from pathlib import Path

from controller.docs import reference, splice

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_manifest_reference_matches_the_schema() -> None:
    text = README.read_text()
    assert splice(text, reference()) == text, "run: python -m controller.docs README.md"


def test_every_schema_field_appears_in_the_reference() -> None:
    generated = reference()
    for field in ("spec.maxKeyAge", "spec.users.selector", "`secretId`", "`withNewKey`", "`for`"):
        assert field in generated
