"""An embedded AWS for tests and `keyrotor demo`: moto with a movable clock and real key checks.

Use `start_sandbox()` (or `Sandbox.launch()`); the server runs in its own process, see
`controller.sandbox.server` for why.
"""

from __future__ import annotations

from controller.sandbox.config import (
    ADMIN_ACCESS_KEY_ID,
    ADMIN_SECRET_ACCESS_KEY,
    DEFAULT_START,
    REGION,
)
from controller.sandbox.handle import (
    DEFAULT_ACCOUNT_ID,
    ENV_VARS_TO_CLEAR,
    AccessKeyPair,
    RecordedCall,
    Sandbox,
    SandboxError,
    SeededUser,
    UserSeed,
    apply_env,
    start_sandbox,
)

__all__ = [
    "ADMIN_ACCESS_KEY_ID",
    "ADMIN_SECRET_ACCESS_KEY",
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_START",
    "ENV_VARS_TO_CLEAR",
    "REGION",
    "AccessKeyPair",
    "RecordedCall",
    "Sandbox",
    "SandboxError",
    "SeededUser",
    "UserSeed",
    "apply_env",
    "start_sandbox",
]
