"""Status in git, one file per user: `status/<policy>/<account id>/<user>.yaml`.

One file a user keeps each commit's diff proportional to what changed (10,000 users make
10,000 small files, not one file of megabytes rewritten on every change), lets two runs that
act on different users publish without touching each other's records, and lets shards of a
GitHub Actions matrix, which own different accounts, never write the same file.

The first release wrote `status/<policy>.yaml` for a whole policy. Such a file is still read
(for the account whose users it lists) and is removed by the first commit that writes the
policy's users in the new layout, which is how existing repositories migrate.

Pure: texts in, texts out. Reading the texts from git or the work tree is the caller's.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controller.errors import KeyrotorError
from controller.status import HEADER, STATUS_DIR, PolicyStatus, UserStatus
from controller.status import load as load_legacy

KIND = "UserRotationStatus"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def user_path(policy: str, account: str, user: str) -> str:
    return f"{STATUS_DIR}/{policy}/{account}/{user}.yaml"


def legacy_path(policy: str) -> str:
    return f"{STATUS_DIR}/{policy}.yaml"


def dump_user(policy: str, account: str, user: str, status: UserStatus) -> str:
    doc: dict[str, Any] = {
        "apiVersion": "keyrotor.dev/v1",
        "kind": KIND,
        "policy": policy,
        "account": account,
        "user": user,
        **status.to_dict(),
    }
    return HEADER + yaml.dump(doc, Dumper=_DUMPER, sort_keys=False, default_flow_style=False)


_STR = "tag:yaml.org,2002:str"


def _strings(text: str) -> dict[str, str] | None:
    """A document that is one mapping of strings to strings, as most status files are, or None.

    It is what `yaml.load` gives, without PyYAML's Python-level constructor: the C parser
    composes the nodes and resolves each scalar's tag, and a mapping whose keys and values are
    all `str` scalars is taken as it stands. Anything else (a list of checks, a number, an
    alias, several documents) is None, for `yaml.load` to construct. Half the time of a load,
    which for 10,000 users is a second of a no-op plan.
    """
    node = yaml.compose(text, Loader=_LOADER)
    if not isinstance(node, yaml.MappingNode):
        return None
    doc: dict[str, str] = {}
    for key, value in node.value:
        if not (
            isinstance(key, yaml.ScalarNode)
            and isinstance(value, yaml.ScalarNode)
            and key.tag == _STR
            and value.tag == _STR
        ):
            return None
        doc[key.value] = value.value
    return doc


def load_user(text: str, *, path: str) -> UserStatus:
    try:
        doc = _strings(text)
        if doc is None:
            doc = yaml.load(text, Loader=_LOADER)
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            raise ValueError(f"kind is not {KIND}")
        return UserStatus.from_dict(doc)
    except (yaml.YAMLError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise KeyrotorError(
            f"{path}: not a keyrotor status file ({exc}); it is owned by keyrotor: restore it "
            f"from git history (`git log -p -- {path}`) or delete it to re-adopt the key"
        ) from None


@dataclass(frozen=True)
class UserRecord:
    policy: str
    account: str
    user: str
    status: UserStatus
    path: str


@dataclass(frozen=True)
class PolicyRecords:
    """One policy's users in one account, and the texts they were read from."""

    status: PolicyStatus
    account: str
    # path -> text, for every file these records came from (the bases of later updates).
    texts: Mapping[str, str] = field(default_factory=dict)
    # The first release's whole-policy file, when the users were read from it, and its text.
    legacy: str | None = None
    legacy_text: str | None = None

    def path_of(self, user: str) -> str:
        return user_path(self.status.policy, self.account, user)


@dataclass(frozen=True)
class StatusTree:
    """Every status file of a checkout, by path (as `GitStore.read_files("status")` gives)."""

    files: Mapping[str, str]
    # Parsed files by path (`preload`, or as `policy` parses them): parsing thousands of files
    # is most of a no-op plan's own time, so the service does it while AWS is being read.
    _parsed: dict[str, UserStatus] = field(default_factory=dict, compare=False, repr=False)

    def preload(self) -> None:
        """Parse every per-user status file now (a bad one raises, as `policy` would)."""
        for path, text in self.files.items():
            if path.count("/") == 3 and path not in self._parsed:
                self._parsed[path] = load_user(text, path=path)

    def _user(self, path: str, text: str) -> UserStatus:
        found = self._parsed.get(path)
        if found is None:
            found = self._parsed[path] = load_user(text, path=path)
        return found

    @classmethod
    def from_directory(cls, root: Path) -> StatusTree:
        """Every regular `*.yaml` file under `root/status`, by its path from `root`, in path
        order. Symlinks, to files or folders, are not followed. (A walk of plain strings: for
        10,000 users, `Path.rglob` took longer than reading the files.)"""
        folder = root / STATUS_DIR
        if not folder.is_dir() or folder.is_symlink():
            return cls({})
        found: list[tuple[list[str], str]] = []
        for where, _, names in os.walk(folder):
            rel = os.path.relpath(where, root).replace(os.sep, "/")
            for name in names:
                full = os.path.join(where, name)
                if name.endswith(".yaml") and stat.S_ISREG(os.lstat(full).st_mode):
                    found.append(((rel + "/" + name).split("/"), full))
        files = {}
        for parts, full in sorted(found):
            with open(full, encoding="utf-8") as handle:
                files["/".join(parts)] = handle.read()
        return cls(files)

    def accounts(self, policy: str) -> list[str]:
        prefix = f"{STATUS_DIR}/{policy}/"
        return sorted({p[len(prefix) :].split("/")[0] for p in self.files if p.startswith(prefix)})

    def policy(self, policy: str, account: str | None) -> PolicyRecords:
        """The records of `policy` in `account` (None: the one account it has records for)."""
        if account is None:
            known = self.accounts(policy)
            account = known[0] if len(known) == 1 else ""
        prefix = f"{STATUS_DIR}/{policy}/{account}/"
        texts = {p: t for p, t in self.files.items() if account and p.startswith(prefix)}
        if texts:
            users = {p[len(prefix) : -len(".yaml")]: self._user(p, t) for p, t in texts.items()}
            return PolicyRecords(PolicyStatus(policy, users), account, texts)
        old = legacy_path(policy)
        if old in self.files:
            text = self.files[old]
            return PolicyRecords(load_legacy(text, path=old), account, {}, old, text)
        return PolicyRecords(PolicyStatus(policy), account)

    def records(self) -> Iterator[UserRecord]:
        """Every user record, legacy files included, sorted by policy, account and user."""
        found: dict[tuple[str, str, str], UserRecord] = {}
        for path, text in sorted(self.files.items()):
            parts = path.split("/")
            if len(parts) == 4 and parts[3].endswith(".yaml"):
                _, policy, account, name = parts
                user = name[: -len(".yaml")]
                found[(policy, account, user)] = UserRecord(
                    policy, account, user, load_user(text, path=path), path
                )
        for path, text in sorted(self.files.items()):
            parts = path.split("/")
            if len(parts) == 2:
                legacy = load_legacy(text, path=path)
                if any(key[0] == legacy.policy for key in found):
                    continue  # migrated: the new layout wins
                for user, status in legacy.users.items():
                    found[(legacy.policy, "", user)] = UserRecord(
                        legacy.policy, "", user, status, path
                    )
        yield from (found[key] for key in sorted(found))
