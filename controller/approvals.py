"""`approvals/<policy>.yaml`: what a person approved by merging keyrotor's pull request.

Each entry names the old key whose rotation is approved and a digest of the user's keys (ids and
statuses) when the plan was made. The digest makes an approval specific: if the keys changed
before the merge took effect (a person added a key, another run rotated), the approval is stale
and refused, and a fresh pull request shows the new situation. Once the new key exists, the
approval covers the rest of that old key's rotation; the status commit that deletes the old key
removes the entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.errors import KeyrotorError
from controller.inventory import ObservedKey

APPROVALS_DIR = "approvals"
HEADER = (
    "# Approved rotations: keyrotor proposes this file in a pull request; merging it approves\n"
    "# the rotation of each old key named here. keyrotor removes an entry when it is done.\n"
)


@dataclass(frozen=True)
class Approval:
    policy: str
    user: str
    old_key: str
    digest: str


def key_digest(keys: Iterable[ObservedKey]) -> str:
    """Identifies a user's set of keys and their statuses, not their ages or last use."""
    text = ",".join(sorted(f"{k.id}:{k.status}" for k in keys))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def approvals_path(policy: str) -> str:
    return f"{APPROVALS_DIR}/{policy}.yaml"


def dump(policy: str, approvals: Mapping[str, Approval]) -> str | None:
    """The file's text, or None when nothing is approved (the file is then deleted)."""
    if not approvals:
        return None
    doc: dict[str, Any] = {
        "apiVersion": "keyrotor.dev/v1",
        "kind": "RotationApproval",
        "policy": policy,
        "users": {
            user: {"oldKey": a.old_key, "digest": a.digest} for user, a in sorted(approvals.items())
        },
    }
    return HEADER + yaml.safe_dump(doc, sort_keys=False)


def load(text: str, *, path: str) -> dict[str, Approval]:
    try:
        doc = yaml.safe_load(text) or {}
        policy = str(doc["policy"])
        return {
            str(user): Approval(policy, str(user), str(entry["oldKey"]), str(entry["digest"]))
            for user, entry in (doc.get("users") or {}).items()
        }
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise KeyrotorError(
            f"{path}: not a keyrotor approvals file ({exc}); it is written by keyrotor's pull "
            "requests: restore it from git history"
        ) from None


def read_approvals(root: Path, policies: Iterable[str]) -> dict[tuple[str, str], Approval]:
    found: dict[tuple[str, str], Approval] = {}
    for policy in policies:
        path = root / approvals_path(policy)
        if path.is_file():
            for user, approval in load(path.read_text(), path=approvals_path(policy)).items():
                found[(policy, user)] = approval
    return found
