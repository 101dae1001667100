"""A stand-in for GitHub's REST API on 127.0.0.1, checked against GitHub's own OpenAPI description.

It keeps state (pull requests and their reviews, issues, comments, labels, Actions secrets) and
copies the parts of GitHub's behaviour that keyrotor depends on:

- `POST /pulls` answers 422 "A pull request already exists for owner:branch." while an open pull
  request has the same head and base; `GET /pulls?head=` filters only in the `owner:branch`
  form and, like GitHub, ignores a bare branch name (and so lists everything);
- pull requests are issues: they share numbers, comments and labels, and the issues list
  includes them (with a `pull_request` key);
- requests act as the token's account (`login`, a bot); tests act as people through controls:
  `open_pull(by=)`, `review_pull(by=)`, `merge_pull(by=)`. A pull request's `user` is whoever
  opened it, `merged_by` whoever merged it, a review's `user` its reviewer; as on GitHub, nobody
  may approve or request changes on their own pull request;
- with a bare Git repository attached (`attach_git`), pull requests follow real Git: the head sha
  is the head branch's tip while the pull request is open (frozen when it is closed or merged),
  `merge_pull` makes GitHub's merge commit (or, when the head is already in the base, as after a
  merge by hand, only records it), the changed files are `git diff` from the merge base, and the
  contents API answers from the repository (a file's `sha` is its Git blob id);
- lists paginate with `Link` headers (`per_page` is capped by `max_per_page`, 100 on GitHub;
  tests lower it to exercise pagination);
- each repository and each environment has its own Curve25519 key pair: a secret PUT must be a
  sealed box for the current key and `key_id`, is decrypted, answers 201 when new and 204 when
  it replaces a value; secret names are case-insensitive (stored upper-case);
- requests need `Authorization: Bearer <token>` (401 "Bad credentials" otherwise);
- `rate_limit()` makes the next requests answer 403/429 with `Retry-After` or with
  `x-ratelimit-remaining: 0` and `x-ratelimit-reset`.

Every request and every response is validated against tests/support/github_openapi (openapi-core).
Anything that does not match is recorded in `violations`, and `run_standin()` (the body of the
tests' fixture) fails the test when any was recorded. Answers with a status an operation does
not declare are allowed only for the statuses GitHub documents for all endpoints (401, 403,
404, 422, 429), and their body must still be a `basic-error`.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import os
import subprocess
import threading
from base64 import b64decode, b64encode
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from traceback import format_exc
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_schema_validator import OAS30Validator
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

SPEC_PATH = Path(__file__).parent / "github_openapi" / "api.github.com.trimmed.json"
SPEC_SERVER = "https://api.github.com"
DOCS = "https://docs.github.com/rest"
#: Statuses GitHub may answer on any endpoint, declared or not (its docs list them globally).
GENERIC_STATUSES = frozenset({401, 403, 404, 422, 429})
#: GitHub's cap on the body of an issue, pull request or comment, in characters.
MAX_BODY = 65536
#: Review events as `create-review` takes them -> the review states GitHub reports.
REVIEW_EVENTS = {
    "APPROVE": "APPROVED",
    "REQUEST_CHANGES": "CHANGES_REQUESTED",
    "COMMENT": "COMMENTED",
}
#: What `git diff --name-status` letters are in GitHub's `diff-entry.status`.
DIFF_STATUS = {
    "A": "added",
    "M": "modified",
    "D": "removed",
    "R": "renamed",
    "C": "copied",
    "T": "changed",
}


@functools.cache
def spec_document() -> dict[str, Any]:
    """The trimmed OpenAPI description as parsed JSON; callers must not modify it."""
    document: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    return document


@functools.cache
def openapi() -> OpenAPI:
    """The description loaded (and itself validated) once per test run."""
    return OpenAPI.from_dict(copy.deepcopy(spec_document()))


def _example(name: str) -> Any:
    return copy.deepcopy(spec_document()["components"]["examples"][name]["value"])


def _label_name(label: Any) -> str:
    return label if isinstance(label, str) else str(label["name"])


def _check_body(resource: str, body: str | None) -> None:
    if body is not None and len(body) > MAX_BODY:
        message = f"body is too long (maximum is {MAX_BODY} characters)"
        raise _invalid(resource, message, field="body")


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_errors(errors: Sequence[Exception]) -> str:
    """openapi-core errors with the schema messages it keeps in their causes."""
    parts = []
    for error in errors:
        text = f"{type(error).__name__}: {error}"
        cause = error.__cause__
        schema_errors = getattr(cause, "schema_errors", None)
        if schema_errors:
            text += " [" + "; ".join(e.message for e in schema_errors) + "]"
        elif cause is not None:
            text += f" [{cause}]"
        parts.append(text)
    return "; ".join(parts)


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: `GitHubStandIn.requests` records every request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _SpecRequest(WerkzeugOpenAPIRequest):
    """A request as the description's server sees it: the stand-in listens elsewhere.

    GitHub marks a path parameter that spans several segments (a file's path in the contents
    API) with `x-multi-segment`; openapi-core matches a parameter within one segment only, so
    the slashes inside such a parameter are shown to it percent-encoded.
    """

    def __init__(self, request: Request, path: str | None = None) -> None:
        super().__init__(request)
        self._spec_path = path

    @property
    def host_url(self) -> str:
        return SPEC_SERVER

    @property
    def path(self) -> str:
        return self._spec_path if self._spec_path is not None else super().path


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


@dataclass
class StoredSecret:
    plaintext: str
    created_at: str
    updated_at: str
    writes: int = 1


@dataclass
class _Review:
    id: int
    login: str
    state: str  # APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED or PENDING
    body: str
    commit_id: str
    submitted_at: str | None


@dataclass
class _Pull:
    head_owner: str
    head_ref: str
    base_ref: str
    draft: bool
    head_sha: str
    author: str
    base_sha: str | None = None
    merged_at: str | None = None
    merge_commit_sha: str | None = None
    merged_by: str | None = None
    reviews: list[_Review] = field(default_factory=list)


@dataclass
class _Issue:
    number: int
    title: str
    body: str | None
    created_at: str
    updated_at: str
    labels: list[str] = field(default_factory=list)
    state: str = "open"
    closed_at: str | None = None
    comments: int = 0
    pull: _Pull | None = None


@dataclass
class _Comment:
    id: int
    repo: str
    issue_number: int
    body: str
    created_at: str
    updated_at: str


@dataclass
class _Fault:
    status: int
    retry_after: int | None
    reset_after: int | None
    message: str


def _invalid(resource: str, message: str | None = None, **fields: str) -> _Answer:
    """GitHub's 422 "Validation Failed" with one entry in `errors`."""
    error: dict[str, Any] = {"resource": resource, "code": "custom", **fields}
    if message is not None:
        error["message"] = message
    return _Answer(422, "Validation Failed", [error])


class _Answer(Exception):
    """Raised by a handler to answer with an error body (`errors`: GitHub's entries, objects
    for a `validation-error`, strings for a `validation-error-simple`)."""

    def __init__(self, status: int, message: str, errors: list[Any] | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors


@dataclass
class _Repo:
    name: str
    issues: dict[int, _Issue] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    environments: set[str] = field(default_factory=set)
    git: Path | None = None


def _is_bot(login: str) -> bool:
    """GitHub Apps' accounts (github-actions, dependabot, any App) are named `<slug>[bot]`."""
    return login.endswith("[bot]")


def _multi_segment(document: dict[str, Any], path: str) -> set[str]:
    """The path parameters of `path` that GitHub marks as spanning several segments."""
    item = document["paths"][path]
    parameters = list(item.get("parameters", []))
    for operation in item.values():
        if isinstance(operation, dict):
            parameters += operation.get("parameters", [])
    return {p["name"] for p in parameters if p.get("x-multi-segment") and p.get("in") == "path"}


def _rule(document: dict[str, Any], path: str) -> str:
    rule = path
    for name in _multi_segment(document, path):
        rule = rule.replace("{" + name + "}", f"<path:{name}>")
    return rule.replace("{", "<").replace("}", ">")


class GitHubStandIn:
    """The stand-in's state and controls; `start()` serves it, `url` is its API root."""

    def __init__(
        self,
        *,
        token: str = "ghp_standin-token",
        login: str = "keyrotor-bot",
        login_is_bot: bool = True,
        max_per_page: int = 100,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.token, self.login, self.max_per_page, self._now = token, login, max_per_page, now
        #: False when the token is a person's, e.g. a machine user's personal access token.
        self.login_is_bot = login_is_bot
        self.violations: list[str] = []
        self.requests: list[RecordedRequest] = []
        self._repos: dict[str, _Repo] = {}
        self._comments: dict[int, _Comment] = {}
        self._keys: dict[tuple[str, str | None], tuple[str, PrivateKey]] = {}
        self._secrets: dict[tuple[str, str | None, str], StoredSecret] = {}
        self._faults: deque[_Fault] = deque()
        self._ids = itertools.count(1001)
        self._lock = threading.RLock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._accounts: dict[str, int] = {login: 41898282}
        self._routes = Map(
            [Rule(_rule(spec_document(), path), endpoint=path) for path in spec_document()["paths"]]
        )
        self._handlers: dict[str, Callable[..., Response]] = {
            "pulls/list": self._list_pulls,
            "pulls/create": self._create_pull,
            "pulls/get": self._get_pull,
            "pulls/update": self._update_pull,
            "pulls/list-files": self._list_pull_files,
            "pulls/list-reviews": self._list_reviews,
            "pulls/create-review": self._create_review,
            "repos/get-content": self._get_content,
            "issues/list-for-repo": self._list_issues,
            "issues/create": self._create_issue,
            "issues/update": self._update_issue,
            "issues/list-comments": self._list_comments,
            "issues/create-comment": self._create_comment,
            "actions/get-repo-public-key": self._get_public_key,
            "actions/get-environment-public-key": self._get_public_key,
            "actions/create-or-update-repo-secret": self._put_secret,
            "actions/create-or-update-environment-secret": self._put_secret,
        }

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the GitHub stand-in is not running")
        return f"http://127.0.0.1:{self._server.port}"

    def start(self) -> GitHubStandIn:
        openapi()  # load before serving, so the first request is not slow
        self._server = make_server(
            "127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},  # shutdown() waits for one poll
            name="github-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> GitHubStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- controls for tests --------------------------------------------------------------------

    def take_violations(self) -> list[str]:
        """The violations recorded so far, cleared: for tests that provoke them on purpose."""
        with self._lock:
            taken, self.violations = self.violations, []
        return taken

    def rate_limit(
        self,
        count: int = 1,
        *,
        status: int = 429,
        retry_after: int | None = None,
        reset_after: int | None = None,
        message: str | None = None,
    ) -> None:
        """Make the next `count` requests fail as rate-limited: with `Retry-After: retry_after`,
        or with `x-ratelimit-remaining: 0` and a reset `reset_after` seconds from now, or (both
        None) with neither header, as GitHub's secondary limits sometimes do."""
        if message is None:
            message = (
                "API rate limit exceeded for user ID 1."
                if reset_after is not None
                else "You have exceeded a secondary rate limit. Please wait a few minutes "
                "before you try again."
            )
        with self._lock:
            self._faults.extend(
                _Fault(status, retry_after, reset_after, message) for _ in range(count)
            )

    def add_environment(self, repo: str, environment: str) -> None:
        with self._lock:
            self._repo(repo).environments.add(environment)

    def secret(self, repo: str, name: str, environment: str | None = None) -> str | None:
        """The decrypted value of a stored Actions secret, None if there is none."""
        with self._lock:
            stored = self._secrets.get((repo, environment, name.upper()))
        return stored.plaintext if stored else None

    def secret_writes(self, repo: str, name: str, environment: str | None = None) -> int:
        with self._lock:
            stored = self._secrets.get((repo, environment, name.upper()))
        return stored.writes if stored else 0

    def attach_git(self, repo: str, bare: Path) -> None:
        """Back `repo`'s pull requests and contents with the bare Git repository at `bare`."""
        with self._lock:
            self._repo(repo).git = bare

    def open_pull(
        self,
        repo: str,
        *,
        head: str,
        base: str = "main",
        title: str = "a pull request",
        body: str | None = None,
        by: str = "octocat",
    ) -> int:
        """Seed a pull request as if the person `by` had opened it; returns its number."""
        with self._lock:
            return self._new_pull(self._repo(repo), title, body, head, base, False, by).number

    def review_pull(
        self,
        repo: str,
        number: int,
        *,
        by: str,
        state: str = "APPROVED",
        commit_id: str | None = None,
        body: str = "",
    ) -> int:
        """Submit a review as `by` (APPROVED, CHANGES_REQUESTED or COMMENTED) on `commit_id`,
        by default the pull request's head; returns the review's id."""
        if state not in REVIEW_EVENTS.values():
            raise ValueError(f"a submitted review is one of {sorted(REVIEW_EVENTS.values())}")
        with self._lock:
            issue = self._pull_issue(repo, number)
            assert issue.pull is not None
            self._sync(repo, issue)
            if by == issue.pull.author and state != "COMMENTED":
                raise ValueError(f"{by} opened {repo}#{number}: GitHub refuses their {state}")
            review = _Review(
                next(self._ids),
                by,
                state,
                body,
                commit_id or issue.pull.head_sha,
                _timestamp(self._now()),
            )
            issue.pull.reviews.append(review)
            return review.id

    def dismiss_review(self, repo: str, number: int, review_id: int) -> None:
        """What a maintainer's "Dismiss review" does: the review's state becomes DISMISSED."""
        with self._lock:
            pull = self._pull_issue(repo, number).pull
            assert pull is not None
            (review,) = [r for r in pull.reviews if r.id == review_id]
            review.state = "DISMISSED"

    def merge_pull(self, repo: str, number: int, *, by: str = "octocat") -> None:
        """Merge an open pull request as the person `by`, as GitHub's merge button does.

        With Git attached, this makes GitHub's merge commit on the base branch, unless the head
        is already in the base (someone merged it by hand and pushed), which GitHub, too, only
        records as the pull request being merged by the pusher.
        """
        with self._lock:
            issue = self._repo(repo).issues[number]
            if issue.pull is None or issue.state != "open":
                raise ValueError(f"{repo}#{number} is not an open pull request")
            pull = issue.pull
            self._sync(repo, issue)
            merge_sha = f"{issue.number:040x}"
            git = self._repo(repo).git
            if git is not None:
                merge_sha = self._git_merge(git, repo, issue, by)
            now = _timestamp(self._now())
            issue.state, issue.closed_at, issue.updated_at = "closed", now, now
            pull.merged_at, pull.merged_by, pull.merge_commit_sha = now, by, merge_sha

    def pull_state(self, repo: str, number: int) -> str:
        """ "open", "closed" or "merged"."""
        with self._lock:
            issue = self._repo(repo).issues[number]
        if issue.pull is not None and issue.pull.merged_at is not None:
            return "merged"
        return issue.state

    # --- Git -----------------------------------------------------------------------------------

    @staticmethod
    def _git(bare: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
        done = subprocess.run(
            ["git", "-C", str(bare), "-c", "core.quotePath=false", *args],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} in {bare}: {done.stderr.strip()}")
        return done.stdout.strip() if done.returncode == 0 else ""

    def _rev(self, bare: Path, rev: str) -> str | None:
        return self._git(bare, "rev-parse", "--verify", "--quiet", rev, check=False) or None

    @staticmethod
    def _is_ancestor(bare: Path, commit: str, of: str) -> bool:
        command = ["git", "-C", str(bare), "merge-base", "--is-ancestor", commit, of]
        return subprocess.run(command, check=False, capture_output=True).returncode == 0

    def _sync(self, repo: str, issue: _Issue) -> None:
        """An open pull request follows its branches; a closed one keeps what it last had."""
        pull, bare = issue.pull, self._repo(repo).git
        if pull is None or bare is None or issue.state != "open":
            return
        head = self._rev(bare, f"refs/heads/{pull.head_ref}^{{commit}}")
        base = self._rev(bare, f"refs/heads/{pull.base_ref}^{{commit}}")
        if head is not None:
            pull.head_sha = head
        if base is not None:
            pull.base_sha = base

    def _git_merge(self, bare: Path, repo: str, issue: _Issue, by: str) -> str:
        pull = issue.pull
        assert pull is not None and pull.base_sha is not None
        base, head = pull.base_sha, pull.head_sha
        if self._is_ancestor(bare, head, base):
            return base
        tree = self._git(bare, "merge-tree", "--write-tree", base, head, check=False)
        if not tree:
            raise ValueError(f"{repo}#{issue.number} has conflicts with {pull.base_ref}")
        env = {
            "GIT_AUTHOR_NAME": by,
            "GIT_AUTHOR_EMAIL": f"{self._account_id(by)}+{by}@users.noreply.github.com",
            "GIT_COMMITTER_NAME": "GitHub",
            "GIT_COMMITTER_EMAIL": "noreply@github.com",
        }
        message = f"Merge pull request #{issue.number} from {pull.head_owner}/{pull.head_ref}"
        merge = self._git(
            bare,
            "commit-tree",
            tree.splitlines()[0],
            "-p",
            base,
            "-p",
            head,
            "-m",
            message,
            "-m",
            issue.title,
            env=env,
        )
        self._git(bare, "update-ref", f"refs/heads/{pull.base_ref}", merge, base)
        return merge

    # --- WSGI ----------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._respond(request)
        return response(environ, start_response)

    def _respond(self, request: Request) -> Response:
        spec_request = _SpecRequest(request, self._spec_path(request))
        body = request.get_data()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    request.method,
                    request.path,
                    dict(request.args),
                    dict(request.headers),
                    parsed,
                )
            )
        where = f"{request.method} {request.full_path.rstrip('?')}"
        errors: list[Exception] = list(openapi().iter_request_errors(spec_request))
        if errors:
            self._violation(f"request {where}: {describe_errors(errors)}")
        response = self._answer(request, errors, parsed)
        self._check_response(where, spec_request, response)
        return response

    def _spec_path(self, request: Request) -> str | None:
        """The request's path with the slashes inside multi-segment parameters encoded."""
        try:
            template, args = self._routes.bind("api.github.com").match(request.path, method=None)
        except HTTPException:
            return None
        spread = _multi_segment(spec_document(), template)
        if not spread:
            return None
        path = str(template)
        for name, value in args.items():
            path = path.replace(
                "{" + name + "}", quote(value, safe="") if name in spread else str(value)
            )
        return path

    def _answer(self, request: Request, errors: Sequence[Exception], body: Any) -> Response:
        try:
            if any(isinstance(e, PathError) for e in errors):
                raise _Answer(404, "Not Found")
            if not self._authorized(request.headers.get("Authorization", "")):
                raise _Answer(401, "Bad credentials")
            with self._lock:
                fault = self._faults.popleft() if self._faults else None
            if fault is not None:
                return self._fault(fault)
            if errors:
                raise _Answer(422, f"Invalid request.\n\n{describe_errors(errors)}")
            adapter = self._routes.bind("api.github.com")
            path_template, args = adapter.match(request.path, method=None)
            operation = spec_document()["paths"][path_template][request.method.lower()]
            handler = self._handlers[operation["operationId"]]
            with self._lock:
                return handler(request, body if isinstance(body, dict) else {}, **args)
        except _Answer as answer:
            payload: dict[str, Any] = {"message": answer.message, "documentation_url": DOCS}
            if answer.errors is not None:
                payload["errors"] = answer.errors
            return self._json(payload, answer.status)
        except Exception:
            # A bug in the stand-in must fail the test, not pass as GitHub's 500.
            self._violation(f"stand-in crashed on {request.method} {request.path}:\n{format_exc()}")
            return self._json({"message": "Server Error", "documentation_url": DOCS}, 500)

    def _authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        return scheme.lower() in ("bearer", "token") and value == self.token

    def _fault(self, fault: _Fault) -> Response:
        response = self._json({"message": fault.message, "documentation_url": DOCS}, fault.status)
        if fault.retry_after is not None:
            response.headers["Retry-After"] = str(fault.retry_after)
        if fault.reset_after is not None:
            reset = int(self._now().timestamp()) + fault.reset_after
            response.headers["x-ratelimit-remaining"] = "0"
            response.headers["x-ratelimit-reset"] = str(reset)
        return response

    def _check_response(self, where: str, request: _SpecRequest, response: Response) -> None:
        # Validation only: unmarshalling (format conversion) costs fifteen times as much.
        answer = WerkzeugOpenAPIResponse(response)
        errors: list[Exception] = list(openapi().iter_response_errors(request, answer))
        undeclared = [e for e in errors if isinstance(e, ResponseNotFound)]
        if undeclared and response.status_code in GENERIC_STATUSES:
            errors = [e for e in errors if e not in undeclared]
            body = json.loads(response.get_data()) if response.get_data() else None
            for error in self._schema_errors(body, "#/components/schemas/basic-error"):
                errors.append(ValueError(f"undeclared {response.status_code} body: {error}"))
        if errors:
            self._violation(
                f"response {response.status_code} to {where}: {describe_errors(errors)}"
            )

    @staticmethod
    def _schema_errors(value: Any, pointer: str) -> list[str]:
        root = dict(spec_document(), **{"$ref": pointer})
        return [e.message for e in OAS30Validator(root).iter_errors(value)]

    def _violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)

    # --- helpers -------------------------------------------------------------------------------

    def _json(self, value: Any, status: int = 200) -> Response:
        response = Response(
            json.dumps(value), status=status, content_type="application/json; charset=utf-8"
        )
        response.headers["x-ratelimit-limit"] = "5000"
        response.headers["x-ratelimit-remaining"] = "4999"
        response.headers["x-github-api-version-selected"] = "2022-11-28"
        return response

    def _empty(self, status: int = 204) -> Response:
        return Response(status=status)

    def _repo(self, repo: str) -> _Repo:
        return self._repos.setdefault(repo, _Repo(repo))

    def _page(self, request: Request, items: list[Any]) -> Response:
        per_page = min(int(request.args.get("per_page", 30)), self.max_per_page)
        page = max(int(request.args.get("page", 1)), 1)
        last = max((len(items) + per_page - 1) // per_page, 1)
        response = self._json(items[(page - 1) * per_page : page * per_page])
        links = []
        query = {k: v for k, v in request.args.items() if k != "page"}

        def link(number: int, rel: str) -> str:
            url = f"{request.host_url.rstrip('/')}{request.path}?"
            return f'<{url}{urlencode({**query, "page": number})}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if links:
            response.headers["Link"] = ", ".join(links)
        return response

    def _issue(self, repo: str, number: int) -> _Issue:
        issue = self._repo(repo).issues.get(number)
        if issue is None:
            raise _Answer(404, "Not Found")
        return issue

    def _pull_issue(self, repo: str, number: int) -> _Issue:
        issue = self._issue(repo, number)
        if issue.pull is None:
            raise _Answer(404, "Not Found")
        return issue

    def _render(self, template: Any, repo: str, number: int, base_url: str) -> Any:
        text = json.dumps(template)
        text = text.replace("octocat/Hello-World", repo).replace("/1347", f"/{number}")
        text = text.replace("https://api.github.com", base_url.rstrip("/"))
        return json.loads(text)

    def _account_id(self, login: str) -> int:
        return self._accounts.setdefault(login, 583231 + len(self._accounts))

    def _user(self, login: str | None = None) -> dict[str, Any]:
        """A `simple-user`: the token's account (a bot) unless `login` names someone else."""
        login = login or self.login
        user: dict[str, Any] = _example("issue-comment")["user"]
        account_id = self._account_id(login)
        user.update(
            login=login,
            id=account_id,
            node_id=b64encode(f"04:User{account_id}".encode()).decode("ascii"),
            type="Bot" if _is_bot(login) or (login == self.login and self.login_is_bot) else "User",
        )
        for key, value in list(user.items()):
            if isinstance(value, str) and "/octocat" in value:
                user[key] = value.replace("/octocat", f"/{quote(login)}")
        return user

    def _label_json(self, repo: str, name: str, base_url: str) -> dict[str, Any]:
        label: dict[str, Any] = _example("issue")["labels"][0]
        label_id = self._repo(repo).labels.setdefault(name, next(self._ids))
        label.update(
            id=label_id,
            name=name,
            url=f"{base_url.rstrip('/')}/repos/{repo}/labels/{name}",
            description=None,
            color="ededed",
            default=False,
        )
        return label

    def _pull_json(self, repo: str, issue: _Issue, base_url: str, *, full: bool) -> Any:
        assert issue.pull is not None
        self._sync(repo, issue)
        pull = issue.pull
        if full:
            data = self._render(_example("pull-request"), repo, issue.number, base_url)
        else:
            data = self._render(
                _example("pull-request-simple-items")[0], repo, issue.number, base_url
            )
        owner = repo.split("/")[0]
        data.update(
            id=issue.number + 100000,
            number=issue.number,
            state=issue.state,
            locked=False,
            active_lock_reason=None,
            title=issue.title,
            body=issue.body,
            user=self._user(pull.author),
            labels=[self._label_json(repo, name, base_url) for name in issue.labels],
            milestone=None,
            assignee=None,
            assignees=[],
            requested_reviewers=[],
            requested_teams=[],
            created_at=issue.created_at,
            updated_at=issue.updated_at,
            closed_at=issue.closed_at,
            merged_at=pull.merged_at,
            merge_commit_sha=pull.merge_commit_sha,
            draft=pull.draft,
            auto_merge=None,
            author_association="NONE",
        )
        data["head"].update(
            label=f"{pull.head_owner}:{pull.head_ref}", ref=pull.head_ref, sha=pull.head_sha
        )
        data["base"].update(label=f"{owner}:{pull.base_ref}", ref=pull.base_ref)
        if pull.base_sha is not None:
            data["base"]["sha"] = pull.base_sha
        for side in ("head", "base"):
            data[side]["user"] = self._user(owner)
            data[side]["repo"]["full_name"] = repo
            data[side]["repo"]["name"] = repo.split("/")[1]
        if full:
            data.update(
                merged=pull.merged_at is not None,
                merged_by=self._user(pull.merged_by) if pull.merged_by else None,
                mergeable=None if pull.merged_at else True,
                mergeable_state="unknown" if pull.merged_at else "clean",
                comments=issue.comments,
            )
        return data

    def _issue_json(self, repo: str, issue: _Issue, base_url: str) -> Any:
        data = self._render(_example("issue"), repo, issue.number, base_url)
        data.update(
            id=issue.number + 200000,
            number=issue.number,
            state=issue.state,
            state_reason="completed" if issue.state == "closed" else None,
            title=issue.title,
            body=issue.body,
            user=self._user(issue.pull.author if issue.pull else None),
            labels=[self._label_json(repo, name, base_url) for name in issue.labels],
            assignee=None,
            assignees=[],
            milestone=None,
            locked=False,
            active_lock_reason=None,
            comments=issue.comments,
            created_at=issue.created_at,
            updated_at=issue.updated_at,
            closed_at=issue.closed_at,
            closed_by=self._closed_by(issue),
            author_association="NONE",
        )
        if issue.pull is None:
            data.pop("pull_request", None)
        else:
            data["html_url"] = f"https://github.com/{repo}/pull/{issue.number}"
            data["pull_request"] = {
                "url": f"{base_url.rstrip('/')}/repos/{repo}/pulls/{issue.number}",
                "html_url": f"https://github.com/{repo}/pull/{issue.number}",
                "diff_url": f"https://github.com/{repo}/pull/{issue.number}.diff",
                "patch_url": f"https://github.com/{repo}/pull/{issue.number}.patch",
                "merged_at": issue.pull.merged_at,
            }
        return data

    def _closed_by(self, issue: _Issue) -> dict[str, Any] | None:
        if issue.state != "closed":
            return None
        merger = issue.pull.merged_by if issue.pull else None
        return self._user(merger)

    def _comment_json(self, comment: _Comment, base_url: str) -> Any:
        data = self._render(_example("issue-comment"), comment.repo, comment.issue_number, base_url)
        kind = "pull" if self._repo(comment.repo).issues[comment.issue_number].pull else "issues"
        data.update(
            id=comment.id,
            body=comment.body,
            user=self._user(),
            created_at=comment.created_at,
            updated_at=comment.updated_at,
            url=f"{base_url.rstrip('/')}/repos/{comment.repo}/issues/comments/{comment.id}",
            html_url=f"https://github.com/{comment.repo}/{kind}/{comment.issue_number}"
            f"#issuecomment-{comment.id}",
            author_association="NONE",
        )
        return data

    def _new_issue(self, repo: _Repo, title: str, body: str | None) -> _Issue:
        _check_body("Issue", body)
        now = _timestamp(self._now())
        number = max(repo.issues, default=0) + 1
        issue = _Issue(number=number, title=title, body=body, created_at=now, updated_at=now)
        repo.issues[number] = issue
        return issue

    def _new_pull(
        self,
        repo: _Repo,
        title: str,
        body: str | None,
        head: str,
        base: str,
        draft: bool,
        author: str,
    ) -> _Issue:
        head_owner, _, head_ref = head.rpartition(":")
        head_owner = head_owner or repo.name.split("/")[0]
        head_sha = base_sha = None
        if repo.git is not None:
            head_sha = self._rev(repo.git, f"refs/heads/{head_ref}^{{commit}}")
            base_sha = self._rev(repo.git, f"refs/heads/{base}^{{commit}}")
            if head_sha is None or head_owner != repo.name.split("/")[0]:
                raise _Answer(
                    422,
                    "Validation Failed",
                    [{"resource": "PullRequest", "field": "head", "code": "invalid"}],
                )
            if base_sha is None:
                raise _Answer(
                    422,
                    "Validation Failed",
                    [{"resource": "PullRequest", "field": "base", "code": "invalid"}],
                )
            if self._is_ancestor(repo.git, head_sha, base_sha):
                raise _invalid("PullRequest", f"No commits between {base} and {head_ref}")
        for other in repo.issues.values():
            if (
                other.pull is not None
                and other.state == "open"
                and (other.pull.head_owner, other.pull.head_ref, other.pull.base_ref)
                == (head_owner, head_ref, base)
            ):
                message = f"A pull request already exists for {head_owner}:{head_ref}."
                raise _invalid("PullRequest", message)
        issue = self._new_issue(repo, title, body)
        issue.pull = _Pull(
            head_owner,
            head_ref,
            base,
            draft,
            head_sha or f"{issue.number:040x}",
            author,
            base_sha=base_sha,
        )
        return issue

    # --- handlers ------------------------------------------------------------------------------

    def _list_pulls(self, request: Request, body: Any, owner: str, repo: str) -> Response:
        name = f"{owner}/{repo}"
        state = request.args.get("state", "open")
        head = request.args.get("head")
        base = request.args.get("base")
        pulls = [
            i
            for i in sorted(self._repo(name).issues.values(), key=lambda i: -i.number)
            if i.pull is not None
            and (state == "all" or i.state == state)
            # GitHub ignores a head filter without "owner:".
            and (
                head is None or ":" not in head or f"{i.pull.head_owner}:{i.pull.head_ref}" == head
            )
            and (base is None or i.pull.base_ref == base)
        ]
        items = [self._pull_json(name, i, request.host_url, full=False) for i in pulls]
        return self._page(request, items)

    def _create_pull(self, request: Request, body: Any, owner: str, repo: str) -> Response:
        name = f"{owner}/{repo}"
        if not body.get("title"):
            raise _invalid("PullRequest", field="title")
        issue = self._new_pull(
            self._repo(name),
            body["title"],
            body.get("body"),
            body["head"],
            body["base"],
            bool(body.get("draft", False)),
            self.login,
        )
        response = self._json(self._pull_json(name, issue, request.host_url, full=True), 201)
        response.headers["Location"] = f"{request.host_url}repos/{name}/pulls/{issue.number}"
        return response

    def _get_pull(
        self, request: Request, body: Any, owner: str, repo: str, pull_number: str
    ) -> Response:
        name = f"{owner}/{repo}"
        issue = self._pull_issue(name, int(pull_number))
        return self._json(self._pull_json(name, issue, request.host_url, full=True))

    def _update_pull(
        self, request: Request, body: Any, owner: str, repo: str, pull_number: str
    ) -> Response:
        name = f"{owner}/{repo}"
        issue = self._pull_issue(name, int(pull_number))
        self._sync(name, issue)  # a pull request being closed keeps the head it had
        self._update(issue, body)
        return self._json(self._pull_json(name, issue, request.host_url, full=True))

    def _list_pull_files(
        self, request: Request, body: Any, owner: str, repo: str, pull_number: str
    ) -> Response:
        name = f"{owner}/{repo}"
        issue = self._pull_issue(name, int(pull_number))
        pull, bare = issue.pull, self._attached(name)
        assert pull is not None and pull.base_sha is not None
        self._sync(name, issue)
        fork_point = self._git(bare, "merge-base", pull.base_sha, pull.head_sha)
        diff = (fork_point, pull.head_sha)
        counts: dict[str, tuple[int, int]] = {}
        fields = iter(self._git(bare, "diff", "-z", "--numstat", "-M", *diff).split("\0"))
        for field_ in fields:
            if not field_:
                continue
            added, deleted, path = field_.split("\t", 2)
            if not path:  # a rename: the old and the new path follow
                next(fields)
                path = next(fields)
            counts[path] = (
                int(added) if added != "-" else 0,
                int(deleted) if deleted != "-" else 0,
            )
        entries = []
        fields = iter(self._git(bare, "diff", "-z", "--name-status", "-M", *diff).split("\0"))
        for letter in fields:
            if not letter:
                continue
            paths = [next(fields)] + ([next(fields)] if letter[0] in "RC" else [])
            path = paths[-1]
            side = diff[0] if letter[0] == "D" else diff[1]
            blob = self._rev(bare, f"{side}:{path}")
            additions, deletions = counts.get(path, (0, 0))
            ref = quote(path)
            entry: dict[str, Any] = {
                "sha": blob,
                "filename": path,
                "status": DIFF_STATUS[letter[0]],
                "additions": additions,
                "deletions": deletions,
                "changes": additions + deletions,
                "blob_url": f"https://github.com/{name}/blob/{pull.head_sha}/{ref}",
                "raw_url": f"https://github.com/{name}/raw/{pull.head_sha}/{ref}",
                "contents_url": f"{request.host_url}repos/{name}/contents/{ref}"
                f"?ref={pull.head_sha}",
            }
            if letter[0] == "R":
                entry["previous_filename"] = paths[0]
            entries.append(entry)
        return self._page(request, entries)

    def _review_json(self, repo: str, number: int, review: _Review, base_url: str) -> Any:
        data = _example("pull-request-review")
        html = f"https://github.com/{repo}/pull/{number}#pullrequestreview-{review.id}"
        api = f"{base_url.rstrip('/')}/repos/{repo}/pulls/{number}"
        data.update(
            id=review.id,
            node_id=b64encode(f"017:PullRequestReview{review.id}".encode()).decode("ascii"),
            user=self._user(review.login),
            body=review.body,
            state=review.state,
            html_url=html,
            pull_request_url=api,
            _links={"html": {"href": html}, "pull_request": {"href": api}},
            commit_id=review.commit_id,
            author_association="MEMBER" if review.login != self.login else "NONE",
        )
        if review.submitted_at is None:
            del data["submitted_at"]
        else:
            data["submitted_at"] = review.submitted_at
        return data

    def _list_reviews(
        self, request: Request, body: Any, owner: str, repo: str, pull_number: str
    ) -> Response:
        name = f"{owner}/{repo}"
        issue = self._pull_issue(name, int(pull_number))
        assert issue.pull is not None
        # Chronological; a pending review is seen by its author only.
        reviews = [
            self._review_json(name, issue.number, r, request.host_url)
            for r in issue.pull.reviews
            if r.state != "PENDING" or r.login == self.login
        ]
        return self._page(request, reviews)

    def _create_review(
        self, request: Request, body: Any, owner: str, repo: str, pull_number: str
    ) -> Response:
        name = f"{owner}/{repo}"
        issue = self._pull_issue(name, int(pull_number))
        pull = issue.pull
        assert pull is not None
        self._sync(name, issue)
        event = body.get("event")
        text = body.get("body", "")
        if event == "APPROVE" and pull.author == self.login:
            raise _Answer(422, "Unprocessable Entity", ["Can not approve your own pull request"])
        if event == "REQUEST_CHANGES" and pull.author == self.login:
            raise _Answer(
                422, "Unprocessable Entity", ["Can not request changes on your own pull request"]
            )
        if event == "REQUEST_CHANGES" and not text:
            raise _Answer(
                422,
                "Unprocessable Entity",
                ["You need to leave a comment indicating the requested changes."],
            )
        if event == "COMMENT" and not text:
            # GitHub requires the body for COMMENT; the wording of its refusal is the stand-in's.
            raise _Answer(422, "Unprocessable Entity", ["Review body is required for COMMENT"])
        if event is None and any(
            r.state == "PENDING" and r.login == self.login for r in pull.reviews
        ):
            raise _Answer(
                422,
                "Unprocessable Entity",
                ["User can only have one pending review per pull request"],
            )
        commit_id = body.get("commit_id") or pull.head_sha
        bare = self._repo(name).git
        if bare is not None and self._rev(bare, f"{commit_id}^{{commit}}") is None:
            raise _Answer(422, "Unprocessable Entity", [f"No commit found for SHA: {commit_id}"])
        state = REVIEW_EVENTS[event] if event else "PENDING"
        submitted = _timestamp(self._now()) if event else None
        review = _Review(next(self._ids), self.login, state, text, commit_id, submitted)
        pull.reviews.append(review)
        return self._json(self._review_json(name, issue.number, review, request.host_url))

    def _attached(self, repo: str) -> Path:
        bare = self._repo(repo).git
        if bare is None:
            raise RuntimeError(f"this needs Git: call attach_git({repo!r}, <bare repository>)")
        return bare

    def _get_content(
        self, request: Request, body: Any, owner: str, repo: str, path: str
    ) -> Response:
        name = f"{owner}/{repo}"
        bare = self._attached(name)
        ref = request.args.get("ref") or "HEAD"
        commit = self._rev(bare, f"{ref}^{{commit}}")
        if commit is None:
            raise _Answer(404, f"No commit found for the ref {ref}")
        path = path.strip("/")
        listing = self._git(bare, "ls-tree", "--long", commit, "--", path, check=False)
        entry = next((e for e in listing.splitlines() if e.split("\t", 1)[1] == path), None)
        if entry is None:
            raise _Answer(404, "Not Found")
        meta, _ = entry.split("\t", 1)
        mode, kind, sha, _size = meta.split(None, 3)
        if kind == "tree":
            items = self._git(bare, "ls-tree", "--long", commit, "--", f"{path}/").splitlines()
            listed = [self._content_json(request, name, ref, *self._ls_entry(i)) for i in items]
            return self._json(listed)
        if kind != "blob" or mode == "120000":
            raise _Answer(404, "Not Found")  # submodules and symlinks: not served here
        data = self._content_json(request, name, ref, "file", path, sha, int(_size))
        raw = subprocess.run(
            ["git", "-C", str(bare), "cat-file", "blob", sha], capture_output=True, check=True
        ).stdout
        encoded = b64encode(raw).decode("ascii")
        # GitHub wraps the base64 at 60 characters, each line ending in a newline.
        data["content"] = "".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60))
        data["encoding"] = "base64"
        return self._json(data)

    @staticmethod
    def _ls_entry(line: str) -> tuple[str, str, str, int]:
        meta, path = line.split("\t", 1)
        _mode, kind, sha, size = meta.split(None, 3)
        kinds = {"blob": "file", "tree": "dir", "commit": "submodule"}
        return kinds[kind], path, sha, int(size) if size.strip() != "-" else 0

    @staticmethod
    def _content_json(
        request: Request, repo: str, ref: str, kind: str, path: str, sha: str, size: int
    ) -> dict[str, Any]:
        api = request.host_url.rstrip("/")
        where = "tree" if kind == "dir" else "blob"
        git = f"{api}/repos/{repo}/git/{'trees' if kind == 'dir' else 'blobs'}/{sha}"
        html = f"https://github.com/{repo}/{where}/{ref}/{quote(path)}"
        own = f"{api}/repos/{repo}/contents/{quote(path)}?ref={quote(ref, safe='')}"
        raw = f"https://raw.githubusercontent.com/{repo}/{ref}/{quote(path)}"
        return {
            "type": kind,
            "size": size,
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "url": own,
            "git_url": git,
            "html_url": html,
            "download_url": raw if kind == "file" else None,
            "_links": {"self": own, "git": git, "html": html},
        }

    def _update(self, issue: _Issue, body: dict[str, Any]) -> None:
        now = _timestamp(self._now())
        if "title" in body:
            issue.title = body["title"]
        if "body" in body:
            _check_body("PullRequest" if issue.pull else "Issue", body["body"])
            issue.body = body["body"]
        if "labels" in body:
            issue.labels = [_label_name(label) for label in body["labels"]]
        state = body.get("state")
        if state is not None and state != issue.state:
            if state == "open" and issue.pull is not None and issue.pull.merged_at is not None:
                message = "state cannot be changed. The pull request has been merged."
                raise _invalid("PullRequest", message)
            issue.state = state
            issue.closed_at = now if state == "closed" else None
        issue.updated_at = now

    def _list_issues(self, request: Request, body: Any, owner: str, repo: str) -> Response:
        name = f"{owner}/{repo}"
        state = request.args.get("state", "open")
        wanted = [label for label in request.args.get("labels", "").split(",") if label]
        issues = [
            i
            for i in sorted(self._repo(name).issues.values(), key=lambda i: -i.number)
            if (state == "all" or i.state == state) and all(label in i.labels for label in wanted)
        ]
        return self._page(request, [self._issue_json(name, i, request.host_url) for i in issues])

    def _create_issue(self, request: Request, body: Any, owner: str, repo: str) -> Response:
        name = f"{owner}/{repo}"
        issue = self._new_issue(self._repo(name), str(body["title"]), body.get("body"))
        issue.labels = [_label_name(label) for label in body.get("labels", [])]
        response = self._json(self._issue_json(name, issue, request.host_url), 201)
        response.headers["Location"] = f"{request.host_url}repos/{name}/issues/{issue.number}"
        return response

    def _update_issue(
        self, request: Request, body: Any, owner: str, repo: str, issue_number: str
    ) -> Response:
        name = f"{owner}/{repo}"
        issue = self._issue(name, int(issue_number))
        self._update(issue, body)
        return self._json(self._issue_json(name, issue, request.host_url))

    def _list_comments(
        self, request: Request, body: Any, owner: str, repo: str, issue_number: str
    ) -> Response:
        name = f"{owner}/{repo}"
        number = int(self._issue(name, int(issue_number)).number)
        comments = [
            self._comment_json(c, request.host_url)
            for c in sorted(self._comments.values(), key=lambda c: c.id)
            if c.repo == name and c.issue_number == number
        ]
        return self._page(request, comments)

    def _create_comment(
        self, request: Request, body: Any, owner: str, repo: str, issue_number: str
    ) -> Response:
        name = f"{owner}/{repo}"
        issue = self._issue(name, int(issue_number))
        text = str(body["body"])
        _check_body("IssueComment", text)
        now = _timestamp(self._now())
        comment = _Comment(next(self._ids), name, issue.number, text, now, now)
        self._comments[comment.id] = comment
        issue.comments += 1
        response = self._json(self._comment_json(comment, request.host_url), 201)
        url = f"{request.host_url}repos/{name}/issues/comments/{comment.id}"
        response.headers["Location"] = url
        return response

    def _key(self, repo: str, environment: str | None) -> tuple[str, PrivateKey]:
        if environment is not None and environment not in self._repo(repo).environments:
            raise _Answer(404, "Not Found")
        if (repo, environment) not in self._keys:
            self._keys[repo, environment] = (str(next(self._ids) * 7919), PrivateKey.generate())
        return self._keys[repo, environment]

    def _get_public_key(
        self,
        request: Request,
        body: Any,
        owner: str,
        repo: str,
        environment_name: str | None = None,
    ) -> Response:
        key_id, private = self._key(f"{owner}/{repo}", environment_name)
        key = b64encode(bytes(private.public_key)).decode("ascii")
        return self._json({"key_id": key_id, "key": key})

    def _put_secret(
        self,
        request: Request,
        body: Any,
        owner: str,
        repo: str,
        secret_name: str,
        environment_name: str | None = None,
    ) -> Response:
        name = f"{owner}/{repo}"
        key_id, private = self._key(name, environment_name)
        if body["key_id"] != key_id:
            self._violation(f"secret {secret_name} sealed for key {body['key_id']}, not {key_id}")
            raise _Answer(422, "Bad request: key_id is not the repository's current key")
        try:
            plaintext = SealedBox(private).decrypt(b64decode(body["encrypted_value"]))
        except (CryptoError, ValueError) as exc:
            self._violation(f"secret {secret_name} is not a sealed box for key {key_id}: {exc}")
            raise _Answer(422, "Bad request: encrypted_value cannot be decrypted") from None
        now = _timestamp(self._now())
        slot = (name, environment_name, secret_name.upper())
        stored = self._secrets.get(slot)
        if stored is None:
            self._secrets[slot] = StoredSecret(plaintext.decode("utf-8"), now, now)
            return self._json({}, 201)
        stored.plaintext, stored.updated_at = plaintext.decode("utf-8"), now
        stored.writes += 1
        return self._empty(204)


def run_standin(**options: Any) -> Iterator[GitHubStandIn]:
    """The body of a pytest fixture: a running stand-in, and a failed test if GitHub's
    description was violated by a request or an answer during it."""
    standin = GitHubStandIn(**options)
    with standin:
        yield standin
    if standin.violations:
        pytest.fail(
            "GitHub API contract violations:\n" + "\n".join(f"- {v}" for v in standin.violations)
        )
