"""The one type that holds a secret access key.

Its repr and str name the key id only, so a secret cannot reach a log line, an exception message
or a plan by accident; code that needs the secret asks for `.secret_access_key` by name.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AccessKeySecret:
    access_key_id: str
    secret_access_key: str = field(repr=False)

    def __str__(self) -> str:
        return f"access key {self.access_key_id}"


def announce_mask(secret: AccessKeySecret) -> None:
    """In GitHub Actions, tell the runner to mask the secret in every later line of the log.

    This one line necessarily carries the secret; the runner consumes it and never shows it.
    """
    if os.environ.get("GITHUB_ACTIONS") == "true":
        sys.stdout.write(f"::add-mask::{secret.secret_access_key}\n")
        sys.stdout.flush()
