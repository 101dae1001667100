"""GitHub: the REST client keyrotor uses for pull requests, issues and Actions secrets."""

from controller.github.client import (
    Comment,
    GitHubClient,
    GitHubError,
    Issue,
    PublicKey,
    PullRequest,
    SecretWrite,
)

__all__ = [
    "Comment",
    "GitHubClient",
    "GitHubError",
    "Issue",
    "PublicKey",
    "PullRequest",
    "SecretWrite",
]
