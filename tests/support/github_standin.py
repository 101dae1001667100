"""A stand-in for GitHub's REST API on 127.0.0.1, checked against GitHub's own OpenAPI description.

It keeps state (pull requests, issues, comments, labels, Actions secrets) and copies the parts of
GitHub's behaviour that keyrotor depends on:

- `POST /pulls` answers 422 "A pull request already exists for owner:branch." while an open pull
  request has the same head and base; `GET /pulls?head=` filters only in the `owner:branch`
  form and, like GitHub, ignores a bare branch name (and so lists everything);
- pull requests are issues: they share numbers, comments and labels, and the issues list
  includes them (with a `pull_request` key);
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
import threading
from base64 import b64decode, b64encode
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from traceback import format_exc
from typing import Any
from urllib.parse import urlencode

import pytest
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_schema_validator import OAS30Validator
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
    """A request as the description's server sees it: the stand-in listens elsewhere."""

    @property
    def host_url(self) -> str:
        return SPEC_SERVER


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
class _Pull:
    head_owner: str
    head_ref: str
    base_ref: str
    draft: bool
    head_sha: str
    merged_at: str | None = None
    merge_commit_sha: str | None = None


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
    """Raised by a handler to answer with an error body."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors


@dataclass
class _Repo:
    name: str
    issues: dict[int, _Issue] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    environments: set[str] = field(default_factory=set)


class GitHubStandIn:
    """The stand-in's state and controls; `start()` serves it, `url` is its API root."""

    def __init__(
        self,
        *,
        token: str = "ghp_standin-token",
        login: str = "keyrotor-bot",
        max_per_page: int = 100,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.token, self.login, self.max_per_page, self._now = token, login, max_per_page, now
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
        self._routes = Map(
            [
                Rule(path.replace("{", "<").replace("}", ">"), endpoint=path)
                for path in spec_document()["paths"]
            ]
        )
        self._handlers: dict[str, Callable[..., Response]] = {
            "pulls/list": self._list_pulls,
            "pulls/create": self._create_pull,
            "pulls/get": self._get_pull,
            "pulls/update": self._update_pull,
            "issues/list-for-repo": self._list_issues,
            "issues/create": self._create_issue,
            "issues/get": self._get_issue,
            "issues/update": self._update_issue,
            "issues/list-comments": self._list_comments,
            "issues/create-comment": self._create_comment,
            "issues/update-comment": self._update_comment,
            "issues/add-labels": self._add_labels,
            "actions/get-repo-public-key": self._get_public_key,
            "actions/get-environment-public-key": self._get_public_key,
            "actions/get-repo-secret": self._get_secret,
            "actions/get-environment-secret": self._get_secret,
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

    def open_pull(
        self, repo: str, *, head: str, base: str = "main", title: str = "a pull request"
    ) -> int:
        """Seed a pull request as if someone else had opened it; returns its number."""
        with self._lock:
            return self._new_pull(self._repo(repo), title, None, head, base, False).number

    def merge_pull(self, repo: str, number: int) -> None:
        """Merge an open pull request, as a reviewer would."""
        with self._lock:
            issue = self._repo(repo).issues[number]
            if issue.pull is None or issue.state != "open":
                raise ValueError(f"{repo}#{number} is not an open pull request")
            now = _timestamp(self._now())
            issue.state, issue.closed_at, issue.updated_at = "closed", now, now
            issue.pull.merged_at = now
            issue.pull.merge_commit_sha = f"{issue.number:040x}"

    def pull_state(self, repo: str, number: int) -> str:
        """ "open", "closed" or "merged"."""
        with self._lock:
            issue = self._repo(repo).issues[number]
        if issue.pull is not None and issue.pull.merged_at is not None:
            return "merged"
        return issue.state

    # --- WSGI ----------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._respond(request)
        return response(environ, start_response)

    def _respond(self, request: Request) -> Response:
        spec_request = _SpecRequest(request)
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

    def _user(self) -> dict[str, Any]:
        user: dict[str, Any] = _example("issue-comment")["user"]
        user["login"] = self.login
        user["type"] = "Bot"
        return user

    def _label_json(self, repo: str, name: str, base_url: str) -> dict[str, Any]:
        label: dict[str, Any] = _example("label-items")[0]
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
            user=self._user(),
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
        for side in ("head", "base"):
            data[side]["user"] = self._user()
            data[side]["repo"]["full_name"] = repo
            data[side]["repo"]["name"] = repo.split("/")[1]
        if full:
            data.update(
                merged=pull.merged_at is not None,
                merged_by=self._user() if pull.merged_at else None,
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
            user=self._user(),
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
            closed_by=self._user() if issue.state == "closed" else None,
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
        self, repo: _Repo, title: str, body: str | None, head: str, base: str, draft: bool
    ) -> _Issue:
        head_owner, _, head_ref = head.rpartition(":")
        head_owner = head_owner or repo.name.split("/")[0]
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
        issue.pull = _Pull(head_owner, head_ref, base, draft, f"{issue.number:040x}")
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
        self._update(issue, body)
        return self._json(self._pull_json(name, issue, request.host_url, full=True))

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

    def _get_issue(
        self, request: Request, body: Any, owner: str, repo: str, issue_number: str
    ) -> Response:
        name = f"{owner}/{repo}"
        return self._json(
            self._issue_json(name, self._issue(name, int(issue_number)), request.host_url)
        )

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

    def _update_comment(
        self, request: Request, body: Any, owner: str, repo: str, comment_id: str
    ) -> Response:
        name = f"{owner}/{repo}"
        comment = self._comments.get(int(comment_id))
        if comment is None or comment.repo != name:
            raise _Answer(404, "Not Found")
        comment.body = str(body["body"])
        comment.updated_at = _timestamp(self._now())
        return self._json(self._comment_json(comment, request.host_url))

    def _add_labels(
        self, request: Request, body: Any, owner: str, repo: str, issue_number: str
    ) -> Response:
        name = f"{owner}/{repo}"
        issue = self._issue(name, int(issue_number))
        for label in body.get("labels", []):
            label_name = _label_name(label)
            if label_name not in issue.labels:
                issue.labels.append(label_name)
        return self._json(
            [self._label_json(name, label, request.host_url) for label in issue.labels]
        )

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

    def _get_secret(
        self,
        request: Request,
        body: Any,
        owner: str,
        repo: str,
        secret_name: str,
        environment_name: str | None = None,
    ) -> Response:
        name = f"{owner}/{repo}"
        self._key(name, environment_name)
        stored = self._secrets.get((name, environment_name, secret_name.upper()))
        if stored is None:
            raise _Answer(404, "Not Found")
        return self._json(
            {
                "name": secret_name.upper(),
                "created_at": stored.created_at,
                "updated_at": stored.updated_at,
            }
        )

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
