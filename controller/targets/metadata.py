"""What keyrotor records next to a value it writes: which key id, and which version it wrote.

Tags on the Secrets Manager secret and the SSM parameter, readable with metadata-only calls
(`DescribeSecret`; `DescribeParameters` and `ListTagsForResource`), so that `plan`, whose role
may read no secret value, still learns which key a target holds, and notices when the target
was written since (its current version is not the one keyrotor wrote).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

KEY_ID_TAG: Final = "keyrotor.dev/key-id"
VERSION_TAG: Final = "keyrotor.dev/version"


@dataclass(frozen=True)
class TargetMetadata:
    """A target as its metadata describes it."""

    exists: bool
    # From the tags keyrotor wrote (None: never recorded).
    key_id: str | None = None
    written_version: str | None = None
    # The version the target serves now.
    current_version: str | None = None

    @property
    def recorded(self) -> bool:
        return self.key_id is not None and self.written_version is not None

    @property
    def moved(self) -> bool:
        """Written since keyrotor wrote it (by a person, a script, another tool)."""
        return self.recorded and self.written_version != self.current_version


def tags_for(key_id: str, version: str) -> dict[str, str]:
    return {KEY_ID_TAG: key_id, VERSION_TAG: version}
