"""Git as keyrotor's database: the status repository and the rotation history in its trailers.

`store.GitStore` (`sync`, `publish`, `read_files`) is the status repository's API;
`repo.StatusRepo` adds the approval side branches and the older whole-commit API;
`runner.run_git` is the one way any of them runs git; `history` reads the trailers back.
"""

from controller.gitops.history import (
    HistoryEntry,
    format_history_text,
    history_to_json,
    read_history,
)
from controller.gitops.repo import StatusRepo
from controller.gitops.runner import redact
from controller.gitops.store import (
    DetachedHead,
    Diverged,
    FileUpdate,
    GitStore,
    IntentConflict,
    NotPublished,
    SyncResult,
    WouldOverwrite,
)

__all__ = [
    "DetachedHead",
    "Diverged",
    "FileUpdate",
    "GitStore",
    "HistoryEntry",
    "IntentConflict",
    "NotPublished",
    "StatusRepo",
    "SyncResult",
    "WouldOverwrite",
    "format_history_text",
    "history_to_json",
    "read_history",
    "redact",
]
