"""The one type that holds a secret access key.

Its repr and str name the key id only, so a secret cannot reach a log line, an exception message
or a plan by accident; code that needs the secret asks for `.secret_access_key` by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AccessKeySecret:
    access_key_id: str
    secret_access_key: str = field(repr=False)

    def __str__(self) -> str:
        return f"access key {self.access_key_id}"
