"""A small client for the parts of GitHub's REST API that keyrotor uses.

Pull requests with their changed files and reviews, file contents, issues and their comments
(the approval flow and its verification), and Actions secrets (a credential target). Requests
carry GitHub's versioned media type; list calls follow `Link: rel="next"` to the end;
rate-limited answers (403/429 with `Retry-After`, or with `x-ratelimit-remaining: 0` and
`x-ratelimit-reset`) are waited out and retried, within a bound on attempts and on total
waiting, after which the call fails with `GitHubError`.

The token is sent in the Authorization header only. It is kept out of every message, repr and
exception this module makes, and the client refuses to follow a `Link` to another origin.
"""

from __future__ import annotations

import os
import time
from base64 import b64decode, b64encode
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx
from nacl.public import PublicKey as _NaclPublicKey
from nacl.public import SealedBox

from controller import __version__
from controller.errors import KeyrotorError

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
#: GitHub's answer when a rate limit has no `Retry-After` or reset time: "wait at least a minute".
SECONDARY_RATE_LIMIT_WAIT = 60.0

State = Literal["open", "closed"]
StateFilter = Literal["open", "closed", "all"]
SecretWrite = Literal["created", "updated"]
#: GitHub's review states; PENDING reviews are not submitted and are seen by their author only.
ReviewState = Literal["APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED", "PENDING"]
ReviewEvent = Literal["APPROVE", "REQUEST_CHANGES", "COMMENT"]


class GitHubError(KeyrotorError):
    """GitHub refused a request or could not be reached.

    `status` is the HTTP status (None when no answer came), `message` GitHub's own `message`
    field, `errors` the `message` (or `code`) of each entry of its `errors` list (422 answers).
    """

    def __init__(
        self,
        method: str,
        path: str,
        status: int | None,
        message: str,
        errors: Sequence[str] = (),
        documentation_url: str | None = None,
    ) -> None:
        self.method, self.path, self.status = method, path, status
        self.message, self.errors = message, tuple(errors)
        self.documentation_url = documentation_url
        answer = f"{status} {message}" if status is not None else message
        detail = "".join(f": {e}" for e in self.errors)
        where = f" {method} {path}" if method else ""
        super().__init__(f"GitHub{where}: {answer}{detail}")


@dataclass(frozen=True)
class PublicKey:
    """The key GitHub wants Actions secrets encrypted to, with the id to send along."""

    key_id: str
    key: str

    def seal(self, plaintext: str) -> str:
        """`plaintext` in a libsodium sealed box for this key, base64 as GitHub expects."""
        box = SealedBox(_NaclPublicKey(b64decode(self.key)))
        return b64encode(box.encrypt(plaintext.encode("utf-8"))).decode("ascii")


@dataclass(frozen=True)
class PullRequest:
    """A pull request. `author` and `merged_by` are GitHub accounts (the token that opened or
    merged it), never git metadata. `merged_by` is only in a single pull request's answer
    (`get_pull`), not in lists: there it is None even when `merged` is true."""

    number: int
    state: State
    title: str
    body: str | None
    head_ref: str
    head_label: str
    head_sha: str
    base_ref: str
    html_url: str
    merged: bool
    merged_at: str | None
    merged_by: str | None
    #: The merger's account is a bot (GitHub's `type: Bot`), not a person.
    merged_by_bot: bool
    author: str | None
    draft: bool
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PullRequest:
        merger = data.get("merged_by") or {}
        return cls(
            number=data["number"],
            state=data["state"],
            title=data["title"],
            body=data.get("body"),
            head_ref=data["head"]["ref"],
            head_label=data["head"]["label"],
            head_sha=data["head"]["sha"],
            base_ref=data["base"]["ref"],
            html_url=data["html_url"],
            # The list endpoint has no `merged`; `merged_at` is set exactly when it was merged.
            merged=bool(data.get("merged")) or data.get("merged_at") is not None,
            merged_at=data.get("merged_at"),
            merged_by=merger.get("login"),
            merged_by_bot=merger.get("type") == "Bot",
            author=(data.get("user") or {}).get("login"),
            draft=bool(data.get("draft")),
            raw=data,
        )


@dataclass(frozen=True)
class PullFile:
    """One file a pull request changes (against the merge base of its base and head)."""

    filename: str
    #: added, removed, modified, renamed, copied, changed or unchanged
    status: str
    previous_filename: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PullFile:
        return cls(data["filename"], data["status"], data.get("previous_filename"))


@dataclass(frozen=True)
class Review:
    """A pull request review. `login` is the reviewer's account (None for a deleted account),
    `commit_id` the commit GitHub recorded it on (None if that commit no longer exists)."""

    id: int
    login: str | None
    #: The reviewer's account is a bot (GitHub's `type: Bot`), not a person.
    bot: bool
    state: ReviewState
    commit_id: str | None
    submitted_at: str | None
    body: str
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Review:
        user = data.get("user") or {}
        return cls(
            id=data["id"],
            login=user.get("login"),
            bot=user.get("type") == "Bot",
            state=data["state"],
            commit_id=data.get("commit_id"),
            submitted_at=data.get("submitted_at"),
            body=data.get("body") or "",
            raw=data,
        )


@dataclass(frozen=True)
class Issue:
    number: int
    state: State
    title: str
    body: str | None
    labels: tuple[str, ...]
    html_url: str
    #: GitHub lists pull requests among issues; this tells them apart.
    is_pull_request: bool
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Issue:
        return cls(
            number=data["number"],
            state=data["state"],
            title=data["title"],
            body=data.get("body"),
            labels=tuple(_label_name(label) for label in data.get("labels", [])),
            html_url=data["html_url"],
            is_pull_request="pull_request" in data,
            raw=data,
        )


@dataclass(frozen=True)
class Comment:
    id: int
    body: str
    html_url: str
    author: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Comment:
        user = data.get("user") or {}
        return cls(
            id=data["id"],
            body=data.get("body") or "",
            html_url=data["html_url"],
            author=user.get("login"),
            raw=data,
        )


def _label_name(label: str | Mapping[str, Any]) -> str:
    return label if isinstance(label, str) else str(label.get("name", ""))


def _segment(value: str) -> str:
    return quote(value, safe="")


class GitHubClient:
    """One GitHub API endpoint, one token, optionally a default repository ("owner/name").

    Every repository-scoped method takes `repo=` to act elsewhere than the default: keyrotor
    opens pull requests in its GitOps repository but writes secrets wherever a policy says.
    Use it as a context manager, or call `close()`.
    """

    def __init__(
        self,
        api_url: str | None = None,
        token: str | None = None,
        repository: str | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 5,
        max_wait_seconds: float = 300.0,
        per_page: int = 100,
        timeout: float = 30.0,
    ) -> None:
        env = os.environ
        self.api_url = (api_url or env.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
        self.repository = repository or env.get("GITHUB_REPOSITORY") or None
        self.__token = token if token is not None else env.get("GITHUB_TOKEN") or None
        self._sleep, self._clock = sleep, clock
        self.max_attempts, self.max_wait_seconds = max_attempts, max_wait_seconds
        self.per_page = per_page
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": f"keyrotor/{__version__}",
        }
        if self.__token:
            headers["Authorization"] = f"Bearer {self.__token}"
        self._origin = urlsplit(self.api_url)[:2]
        self._http = httpx.Client(headers=headers, timeout=timeout, follow_redirects=False)

    def __repr__(self) -> str:
        auth = "token" if self.__token else "anonymous"
        return f"GitHubClient({self.api_url!r}, repository={self.repository!r}, {auth})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- pull requests -----------------------------------------------------------------------

    def list_pulls(
        self,
        *,
        head: str | None = None,
        state: StateFilter = "open",
        base: str | None = None,
        repo: str | None = None,
    ) -> list[PullRequest]:
        """Pull requests by state, optionally from one head branch and into one base branch.

        `head` is "owner:branch"; a bare branch name gets the repository's owner, because
        GitHub silently ignores a `head` filter without an owner and lists every pull request.
        """
        owner_repo = self._repo(repo)
        params: dict[str, str] = {"state": state}
        if head is not None:
            owner = self._repo_name(repo).split("/")[0]
            params["head"] = head if ":" in head else f"{owner}:{head}"
        if base is not None:
            params["base"] = base
        items = self._paginate(f"/repos/{owner_repo}/pulls", params)
        return [PullRequest.from_json(item) for item in items]

    def get_pull(self, number: int, *, repo: str | None = None) -> PullRequest:
        return PullRequest.from_json(self._json("GET", f"/repos/{self._repo(repo)}/pulls/{number}"))

    def create_pull(
        self,
        *,
        title: str,
        head: str,
        base: str,
        body: str | None = None,
        draft: bool = False,
        repo: str | None = None,
    ) -> PullRequest:
        """Open a pull request; GitHub answers 422 (a GitHubError) if one is open for `head`."""
        payload: dict[str, Any] = {"title": title, "head": head, "base": base, "draft": draft}
        if body is not None:
            payload["body"] = body
        data = self._json("POST", f"/repos/{self._repo(repo)}/pulls", json=payload)
        return PullRequest.from_json(data)

    def update_pull(
        self,
        number: int,
        *,
        title: str | None = None,
        body: str | None = None,
        state: State | None = None,
        repo: str | None = None,
    ) -> PullRequest:
        payload = _present(title=title, body=body, state=state)
        data = self._json("PATCH", f"/repos/{self._repo(repo)}/pulls/{number}", json=payload)
        return PullRequest.from_json(data)

    def list_pull_files(self, number: int, *, repo: str | None = None) -> list[PullFile]:
        """The files a pull request changes, as GitHub computes them from the merge base of its
        base and head (GitHub lists at most 3000)."""
        path = f"/repos/{self._repo(repo)}/pulls/{number}/files"
        return [PullFile.from_json(item) for item in self._paginate(path, {})]

    def list_reviews(self, number: int, *, repo: str | None = None) -> list[Review]:
        """A pull request's reviews, oldest first."""
        path = f"/repos/{self._repo(repo)}/pulls/{number}/reviews"
        return [Review.from_json(item) for item in self._paginate(path, {})]

    def create_review(
        self,
        number: int,
        *,
        event: ReviewEvent,
        body: str,
        commit_id: str | None = None,
        repo: str | None = None,
    ) -> Review:
        """Submit a review on `commit_id` (GitHub's default: the head). An author may only
        COMMENT on their own pull request; COMMENT and REQUEST_CHANGES need a body."""
        payload: dict[str, Any] = {"event": event, "body": body}
        if commit_id is not None:
            payload["commit_id"] = commit_id
        path = f"/repos/{self._repo(repo)}/pulls/{number}/reviews"
        return Review.from_json(self._json("POST", path, json=payload))

    # --- contents ----------------------------------------------------------------------------

    def get_content_blob_sha(self, path: str, ref: str, *, repo: str | None = None) -> str | None:
        """The Git blob id of the file at `path` in commit, branch or tag `ref`; None when
        there is no such file there (or it is a directory, symlink or submodule)."""
        url = f"/repos/{self._repo(repo)}/contents/{quote(path.strip('/'), safe='/')}"
        try:
            data = self._json("GET", url, params={"ref": ref})
        except GitHubError as exc:
            if exc.status == 404:
                return None
            raise
        if not isinstance(data, dict) or data.get("type") != "file":
            return None
        return str(data["sha"])

    # --- issues and comments ------------------------------------------------------------

    def list_issues(
        self,
        *,
        labels: Sequence[str] = (),
        state: StateFilter = "open",
        repo: str | None = None,
    ) -> list[Issue]:
        """Issues carrying every one of `labels`. GitHub includes pull requests: see
        `Issue.is_pull_request`."""
        params: dict[str, str] = {"state": state}
        if labels:
            params["labels"] = ",".join(labels)
        items = self._paginate(f"/repos/{self._repo(repo)}/issues", params)
        return [Issue.from_json(item) for item in items]

    def create_issue(
        self,
        *,
        title: str,
        body: str | None = None,
        labels: Sequence[str] = (),
        repo: str | None = None,
    ) -> Issue:
        payload: dict[str, Any] = {"title": title}
        if body is not None:
            payload["body"] = body
        if labels:
            payload["labels"] = list(labels)
        data = self._json("POST", f"/repos/{self._repo(repo)}/issues", json=payload)
        return Issue.from_json(data)

    def update_issue(
        self,
        number: int,
        *,
        title: str | None = None,
        body: str | None = None,
        state: State | None = None,
        labels: Sequence[str] | None = None,
        repo: str | None = None,
    ) -> Issue:
        payload = _present(
            title=title, body=body, state=state, labels=None if labels is None else list(labels)
        )
        data = self._json("PATCH", f"/repos/{self._repo(repo)}/issues/{number}", json=payload)
        return Issue.from_json(data)

    def list_comments(self, issue_number: int, *, repo: str | None = None) -> list[Comment]:
        """Comments on an issue or pull request (a pull request's number is its issue number)."""
        path = f"/repos/{self._repo(repo)}/issues/{issue_number}/comments"
        return [Comment.from_json(item) for item in self._paginate(path, {})]

    def create_comment(self, issue_number: int, body: str, *, repo: str | None = None) -> Comment:
        path = f"/repos/{self._repo(repo)}/issues/{issue_number}/comments"
        return Comment.from_json(self._json("POST", path, json={"body": body}))

    # --- Actions secrets ---------------------------------------------------------------------

    def public_key(self, environment: str | None = None, *, repo: str | None = None) -> PublicKey:
        """The repository's (or one environment's) key for encrypting Actions secrets."""
        data = self._json("GET", f"{self._secrets_path(repo, environment)}/public-key")
        return PublicKey(key_id=str(data["key_id"]), key=str(data["key"]))

    def put_secret(
        self,
        name: str,
        plaintext: str,
        environment: str | None = None,
        *,
        repo: str | None = None,
        key: PublicKey | None = None,
    ) -> SecretWrite:
        """Create or replace an Actions secret; "created" (201) or "updated" (204).

        The value is sealed to the public key (fetched unless `key` is given) before it leaves
        this process; GitHub never returns it.
        """
        key = key or self.public_key(environment, repo=repo)
        path = f"{self._secrets_path(repo, environment)}/{_segment(name)}"
        payload = {"encrypted_value": key.seal(plaintext), "key_id": key.key_id}
        response = self._request("PUT", path, json=payload)
        return "created" if response.status_code == 201 else "updated"

    # --- plumbing ----------------------------------------------------------------------------

    def _repo_name(self, repo: str | None) -> str:
        name = repo or self.repository
        if not name or name.count("/") != 1 or not all(name.split("/")):
            raise GitHubError(
                "", "", None, f"need a repository as owner/name, got {name!r} (GITHUB_REPOSITORY)"
            )
        return name

    def _repo(self, repo: str | None) -> str:
        """The repository as a URL path part."""
        owner, name = self._repo_name(repo).split("/")
        return f"{_segment(owner)}/{_segment(name)}"

    def _secrets_path(self, repo: str | None, environment: str | None) -> str:
        base = f"/repos/{self._repo(repo)}"
        if environment is None:
            return f"{base}/actions/secrets"
        return f"{base}/environments/{_segment(environment)}/secrets"

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def _paginate(self, path: str, params: Mapping[str, str]) -> Iterator[Any]:
        url: str | None = f"{self.api_url}{path}"
        query: dict[str, str] | None = {**params, "per_page": str(self.per_page)}
        while url is not None:
            response = self._request("GET", url, params=query)
            yield from response.json()
            url, query = self._next_link(response, path), None  # next links carry the query

    def _next_link(self, response: httpx.Response, path: str) -> str | None:
        link = response.links.get("next")
        if link is None or "url" not in link:
            return None
        url = link["url"]
        if urlsplit(url)[:2] != self._origin:
            # The Authorization header must not travel to another host.
            raise GitHubError("GET", path, None, "pagination link points to another host")
        return url

    def _request(self, method: str, path_or_url: str, **kwargs: Any) -> httpx.Response:
        url = path_or_url if "://" in path_or_url else f"{self.api_url}{path_or_url}"
        path = urlsplit(url).path
        waited = 0.0
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.HTTPError as exc:
                raise GitHubError(
                    method, path, None, self._redact(f"{type(exc).__name__}: {exc}")
                ) from None
            if response.is_success:
                return response
            wait = self._rate_limit_wait(response, attempt)
            if wait is None:
                raise self._error(method, path, response)
            if attempt == self.max_attempts or waited + wait > self.max_wait_seconds:
                error = self._error(method, path, response)
                raise GitHubError(
                    method,
                    path,
                    response.status_code,
                    f"{error.message} (rate limited: gave up after {attempt} attempts and "
                    f"{waited:g}s of waiting; the next wait would be {wait:g}s)",
                    error.errors,
                    error.documentation_url,
                )
            self._sleep(wait)
            waited += wait
        raise AssertionError("unreachable")

    def _rate_limit_wait(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying, None if `response` is not a rate limit."""
        if response.status_code not in (403, 429):
            return None
        headers = response.headers
        retry_after = headers.get("retry-after")
        if retry_after is not None:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                return SECONDARY_RATE_LIMIT_WAIT
        if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
            try:
                reset = float(headers["x-ratelimit-reset"])
            except ValueError:
                return SECONDARY_RATE_LIMIT_WAIT
            return max(0.0, reset - self._clock()) + 1.0
        if response.status_code == 429 or "rate limit" in _message(response).lower():
            return SECONDARY_RATE_LIMIT_WAIT * 2.0 ** (attempt - 1)
        return None

    def _error(self, method: str, path: str, response: httpx.Response) -> GitHubError:
        try:
            body = response.json()
        except ValueError:
            body = None
        message, errors, doc = response.reason_phrase or "error", [], None
        if isinstance(body, dict):
            message = str(body.get("message") or message)
            doc = body.get("documentation_url")
            for entry in body.get("errors") or []:
                if isinstance(entry, dict):
                    errors.append(str(entry.get("message") or entry.get("code") or entry))
                else:
                    errors.append(str(entry))
        return GitHubError(
            method,
            path,
            response.status_code,
            self._redact(message),
            [self._redact(e) for e in errors],
            doc if isinstance(doc, str) else None,
        )

    def _redact(self, text: str) -> str:
        return text.replace(self.__token, "***") if self.__token else text


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("message", "")) if isinstance(body, dict) else ""


def _present(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}
