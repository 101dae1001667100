"""Git as keyrotor's database: the status repository and the rotation history in its trailers."""

from controller.gitops.history import (
    HistoryEntry,
    format_history_text,
    history_to_json,
    read_history,
)
from controller.gitops.repo import StatusRepo, redact

__all__ = [
    "HistoryEntry",
    "StatusRepo",
    "format_history_text",
    "history_to_json",
    "read_history",
    "redact",
]
