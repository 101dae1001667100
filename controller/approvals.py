"""`approvals/<policy>.yaml`: what a person approved by merging keyrotor's pull request.

Each entry names the old key whose rotation is approved and a digest of the user's keys (ids and
statuses) when the plan was made. The digest makes an approval specific: if the keys changed
before the merge took effect (a person added a key, another run rotated), the approval is stale
and refused, and a fresh pull request shows the new situation. Once the new key exists, the
approval covers the rest of that old key's rotation. The file stays exactly as merged while any
of its rotations is under way (an approval is verified by comparing the whole file with the pull
request's), and the status commit that deletes the last of its old keys removes it.

Two more fields bind an entry to the one pull request that proposed it
(see controller/github/approval_verify.py):

- `proposal`: the id of the proposal (the run that proposed it). keyrotor stamps every entry of
  the file it proposes with it, so each proposal's file is unique: a fresh proposal never equals
  a copy of an older one pushed to main, and the file on main names the pull request it came from.
- `manifest`: the Git blob id of the manifest file that defined the policy when it was
  proposed. Editing the manifest after the approval changes its blob id and so invalidates it.

An entry without them (written before approvals were verified) still reads, but is never
verified: keyrotor refuses it and proposes it afresh.

```yaml
users:
  deploy-bot:
    oldKey: AKIA...
    digest: sha256:...
    proposal: "1234567890"
    manifest: 3b18e512dba79e4c8300dd08aeb37f8e728b8dad
```
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
    "# the rotation of each old key named here. keyrotor removes it when they are all done.\n"
)


@dataclass(frozen=True)
class Approval:
    policy: str
    user: str
    old_key: str
    digest: str
    #: The proposal (run) id the entry was proposed under; None in files written before it.
    proposal: str | None = None
    #: Git blob id of the policy's manifest file when it was proposed; None in older files.
    manifest: str | None = None


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
        "users": {user: _entry(a) for user, a in sorted(approvals.items())},
    }
    return HEADER + yaml.safe_dump(doc, sort_keys=False)


def _entry(approval: Approval) -> dict[str, str]:
    entry = {"oldKey": approval.old_key, "digest": approval.digest}
    if approval.proposal is not None:
        entry["proposal"] = approval.proposal
    if approval.manifest is not None:
        entry["manifest"] = approval.manifest
    return entry


def load(text: str, *, path: str) -> dict[str, Approval]:
    try:
        doc = yaml.safe_load(text) or {}
        policy = str(doc["policy"])
        return {
            str(user): Approval(
                policy,
                str(user),
                str(entry["oldKey"]),
                str(entry["digest"]),
                _optional(entry, "proposal"),
                _optional(entry, "manifest"),
            )
            for user, entry in (doc.get("users") or {}).items()
        }
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise KeyrotorError(
            f"{path}: not a keyrotor approvals file ({exc}); it is written by keyrotor's pull "
            "requests: restore it from git history"
        ) from None


def _optional(entry: Mapping[str, Any], name: str) -> str | None:
    value = entry.get(name)
    return None if value is None else str(value)


def read_approvals(root: Path, policies: Iterable[str]) -> dict[tuple[str, str], Approval]:
    found: dict[tuple[str, str], Approval] = {}
    for policy in policies:
        path = root / approvals_path(policy)
        if path.is_file():
            for user, approval in load(path.read_text(), path=approvals_path(policy)).items():
                found[(policy, user)] = approval
    return found
