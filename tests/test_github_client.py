"""The GitHub client against the stand-in, which checks every exchange against GitHub's
OpenAPI description (a test fails at teardown on any contract violation)."""

from __future__ import annotations

import copy
from base64 import b64decode
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import git
import httpx
import pytest
from openapi_core import OpenAPI

from controller.errors import KeyrotorError
from controller.github import GitHubClient, GitHubError
from tests.support.github_standin import GitHubStandIn, run_standin, spec_document
from tests.support.gitremote import GitRemote, push_commit

REPO = "acme/gitops"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def github() -> Iterator[GitHubStandIn]:
    # Two items a page, so every list below spans several pages.
    yield from run_standin(max_per_page=2, now=lambda: NOW)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(github: GitHubStandIn, sleeps: list[float]) -> Iterator[GitHubClient]:
    with GitHubClient(
        github.url, github.token, REPO, sleep=sleeps.append, clock=NOW.timestamp
    ) as client:
        yield client


def gets(github: GitHubStandIn, path: str) -> int:
    return sum(1 for r in github.requests if r.method == "GET" and r.path == path)


# --- requests ----------------------------------------------------------------------------------


def test_requests_carry_githubs_versioned_headers(
    github: GitHubStandIn, client: GitHubClient
) -> None:
    client.list_pulls()
    headers = {k.lower(): v for k, v in github.requests[0].headers.items()}
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert headers["authorization"] == f"Bearer {github.token}"
    assert headers["user-agent"].startswith("keyrotor/")


def test_settings_come_from_the_environment(
    github: GitHubStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    monkeypatch.setenv("GITHUB_TOKEN", github.token)
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/from-env")
    with GitHubClient() as client:
        client.create_issue(title="hello")
    assert github.requests[-1].path == "/repos/acme/from-env/issues"


# --- pull requests -----------------------------------------------------------------------------


def test_list_follows_link_headers_to_the_last_page(
    github: GitHubStandIn, client: GitHubClient
) -> None:
    for n in range(5):
        github.open_pull(REPO, head=f"rotate/{n}")
    pulls = client.list_pulls()
    assert [p.number for p in pulls] == [5, 4, 3, 2, 1]
    assert gets(github, f"/repos/{REPO}/pulls") == 3


def test_head_filter_finds_the_branchs_pull_request(
    github: GitHubStandIn, client: GitHubClient
) -> None:
    github.open_pull(REPO, head="rotate/alice")
    wanted = github.open_pull(REPO, head="rotate/bob")
    github.open_pull(REPO, head="other:rotate/bob")  # same branch name in a fork
    found = client.list_pulls(head="acme:rotate/bob")
    assert [(p.number, p.head_label) for p in found] == [(wanted, "acme:rotate/bob")]


def test_bare_head_branch_gets_the_owner_because_github_would_ignore_it(
    github: GitHubStandIn, client: GitHubClient
) -> None:
    github.open_pull(REPO, head="rotate/alice")
    wanted = github.open_pull(REPO, head="rotate/bob")
    assert [p.number for p in client.list_pulls(head="rotate/bob")] == [wanted]
    assert github.requests[-1].query["head"] == "acme:rotate/bob"
    # What the prefix avoids: GitHub, and the stand-in, ignore a head without an owner.
    raw = httpx.get(
        f"{github.url}/repos/{REPO}/pulls",
        params={"head": "rotate/bob"},
        headers={"Authorization": f"Bearer {github.token}"},
    )
    assert len(raw.json()) == 2


def test_state_filter_and_merged_pull_requests(github: GitHubStandIn, client: GitHubClient) -> None:
    merged = github.open_pull(REPO, head="rotate/a")
    closed = github.open_pull(REPO, head="rotate/b")
    still_open = github.open_pull(REPO, head="rotate/c")
    github.merge_pull(REPO, merged)
    client.update_pull(closed, state="closed")
    assert [p.number for p in client.list_pulls()] == [still_open]
    done = {p.number: p for p in client.list_pulls(state="closed")}
    assert sorted(done) == [merged, closed]
    assert done[merged].merged and not done[closed].merged
    assert client.get_pull(merged).merged
    assert len(client.list_pulls(state="all")) == 3


def test_create_update_and_get_a_pull_request(client: GitHubClient) -> None:
    created = client.create_pull(
        title="Rotate alice", head="rotate/alice", base="main", body="plan"
    )
    assert (created.state, created.head_ref, created.base_ref) == ("open", "rotate/alice", "main")
    assert created.html_url == f"https://github.com/{REPO}/pull/{created.number}"
    client.update_pull(created.number, title="Rotate alice (2)", body="new plan")
    fetched = client.get_pull(created.number)
    assert (fetched.title, fetched.body) == ("Rotate alice (2)", "new plan")


def test_duplicate_pull_request_is_githubs_422(client: GitHubClient) -> None:
    client.create_pull(title="Rotate alice", head="rotate/alice", base="main")
    with pytest.raises(GitHubError) as caught:
        client.create_pull(title="Rotate alice again", head="rotate/alice", base="main")
    error = caught.value
    assert error.status == 422
    assert error.message == "Validation Failed"
    assert error.errors == ("A pull request already exists for acme:rotate/alice.",)
    assert "A pull request already exists for acme:rotate/alice." in str(error)
    assert isinstance(error, KeyrotorError)


# --- pull requests backed by Git: heads, mergers, files, reviews, contents ----------------------


@pytest.fixture
def person(github: GitHubStandIn, git_remote: GitRemote, tmp_path: Path) -> git.Repo:
    """A person's clone of the repository, whose bare origin the stand-in serves."""
    github.attach_git(REPO, git_remote.bare)
    return git_remote.second_clone(tmp_path / "person")


def origin_sha(git_remote: GitRemote, ref: str) -> str:
    with git.Repo(git_remote.bare) as origin:
        return str(origin.git.rev_parse(ref))


def test_pull_request_names_its_author_head_and_merger(
    github: GitHubStandIn, client: GitHubClient, person: git.Repo, git_remote: GitRemote
) -> None:
    head = push_commit(person, "rotate/a", {"approvals/a.yaml": "a: 1\n"})
    number = client.create_pull(title="Rotate a", head="rotate/a", base="main").number
    github.merge_pull(REPO, number, by="alice")
    merged = client.get_pull(number)
    assert (merged.author, merged.head_sha, merged.merged_by) == (github.login, head, "alice")
    assert merged.merged and merged.merged_at == "2026-01-01T12:00:00Z"
    assert not merged.merged_by_bot
    (listed,) = client.list_pulls(state="closed")
    assert listed.merged and listed.merged_by is None  # lists do not name the merger


def test_merging_makes_githubs_merge_commit_on_the_base_branch(
    github: GitHubStandIn, client: GitHubClient, person: git.Repo, git_remote: GitRemote
) -> None:
    base = origin_sha(git_remote, "main")
    head = push_commit(person, "rotate/a", {"approvals/a.yaml": "a: 1\n"})
    number = client.create_pull(title="Rotate a", head="rotate/a", base="main").number
    github.merge_pull(REPO, number, by="alice")
    with git.Repo(git_remote.bare) as origin:
        merge = origin.commit("main")
    assert [p.hexsha for p in merge.parents] == [base, head]
    assert (merge.author.name, merge.committer.name) == ("alice", "GitHub")
    assert client.get_pull(number).raw["merge_commit_sha"] == merge.hexsha


def test_the_head_follows_the_branch_until_the_merge(
    github: GitHubStandIn, client: GitHubClient, person: git.Repo
) -> None:
    first = push_commit(person, "rotate/a", {"a.txt": "1\n"})
    number = client.create_pull(title="Rotate a", head="rotate/a", base="main").number
    second = push_commit(person, "rotate/a", {"a.txt": "2\n"}, start="origin/rotate/a")
    assert first != second and client.get_pull(number).head_sha == second
    github.merge_pull(REPO, number, by="alice")
    push_commit(person, "rotate/a", {"a.txt": "3\n"}, start="origin/rotate/a")
    assert client.get_pull(number).head_sha == second


def test_a_pull_request_needs_commits_on_a_branch_that_exists(
    client: GitHubClient, person: git.Repo
) -> None:
    with pytest.raises(GitHubError) as missing:
        client.create_pull(title="nothing", head="no-such-branch", base="main")
    assert missing.value.status == 422
    person.git.push("origin", "origin/main:refs/heads/same-as-main")
    with pytest.raises(GitHubError, match="No commits between main and same-as-main"):
        client.create_pull(title="nothing new", head="same-as-main", base="main")


def test_changed_files_are_listed_across_pages_with_their_status(
    github: GitHubStandIn, client: GitHubClient, person: git.Repo
) -> None:
    push_commit(person, "main", {"old.txt": "old\n", "keep.txt": "keep\n", "gone.txt": "x\n"})
    person.git.mv("old.txt", "new.txt")
    push_commit(
        person,
        "change",
        {"added.txt": "new\n", "keep.txt": "changed\n", "gone.txt": None},
        start="HEAD",
    )
    number = github.open_pull(REPO, head="change")
    files = {f.filename: (f.status, f.previous_filename) for f in client.list_pull_files(number)}
    assert files == {
        "added.txt": ("added", None),
        "keep.txt": ("modified", None),
        "gone.txt": ("removed", None),
        "new.txt": ("renamed", "old.txt"),
    }
    assert gets(github, f"/repos/{REPO}/pulls/{number}/files") == 2


def test_a_merged_pull_request_keeps_its_changed_files(
    github: GitHubStandIn, client: GitHubClient, person: git.Repo
) -> None:
    push_commit(person, "rotate/a", {"approvals/a.yaml": "a: 1\n"})
    number = github.open_pull(REPO, head="rotate/a")
    github.merge_pull(REPO, number, by="alice")
    push_commit(person, "main", {"later.txt": "later\n"})
    assert [(f.filename, f.status) for f in client.list_pull_files(number)] == [
        ("approvals/a.yaml", "added")
    ]


def test_reviews_name_reviewer_state_and_commit_in_order(
    github: GitHubStandIn, client: GitHubClient, person: git.Repo
) -> None:
    first = push_commit(person, "rotate/a", {"a.txt": "1\n"})
    number = client.create_pull(title="Rotate a", head="rotate/a", base="main").number
    github.review_pull(REPO, number, by="bob", state="CHANGES_REQUESTED", body="not yet")
    second = push_commit(person, "rotate/a", {"a.txt": "2\n"}, start="origin/rotate/a")
    own = client.create_review(number, event="COMMENT", body="pushed", commit_id=first)
    github.review_pull(REPO, number, by="alice")
    reviews = client.list_reviews(number)
    assert [(r.login, r.bot, r.state, r.commit_id) for r in reviews] == [
        ("bob", False, "CHANGES_REQUESTED", first),
        (github.login, True, "COMMENTED", first),
        ("alice", False, "APPROVED", second),
    ]
    assert reviews[1].id == own.id and reviews[1].body == "pushed"
    assert reviews[2].submitted_at == "2026-01-01T12:00:00Z"
    assert gets(github, f"/repos/{REPO}/pulls/{number}/reviews") == 2


def test_nobody_approves_their_own_pull_request(
    github: GitHubStandIn, client: GitHubClient, person: git.Repo
) -> None:
    push_commit(person, "rotate/a", {"a.txt": "1\n"})
    number = client.create_pull(title="Rotate a", head="rotate/a", base="main").number
    with pytest.raises(GitHubError) as caught:
        client.create_review(number, event="APPROVE", body="self-approved")
    assert (caught.value.status, caught.value.errors) == (
        422,
        ("Can not approve your own pull request",),
    )
    push_commit(person, "rotate/b", {"b.txt": "1\n"})
    carols = github.open_pull(REPO, head="rotate/b", by="carol")
    with pytest.raises(ValueError, match="refuses"):
        github.review_pull(REPO, carols, by="carol")


def test_a_review_on_an_unknown_commit_is_refused(
    github: GitHubStandIn, client: GitHubClient, person: git.Repo
) -> None:
    push_commit(person, "rotate/a", {"a.txt": "1\n"})
    number = github.open_pull(REPO, head="rotate/a")
    with pytest.raises(GitHubError, match="No commit found for SHA"):
        client.create_review(number, event="COMMENT", body="x", commit_id="0" * 40)


def test_a_files_blob_id_at_a_ref_is_its_git_blob_id(
    client: GitHubClient, person: git.Repo, git_remote: GitRemote
) -> None:
    first = push_commit(person, "main", {"approvals/p.yaml": "one\n"})
    push_commit(person, "main", {"approvals/p.yaml": "two\n"})
    at_first = client.get_content_blob_sha("approvals/p.yaml", first)
    assert at_first == origin_sha(git_remote, f"{first}:approvals/p.yaml")
    now = client.get_content_blob_sha("approvals/p.yaml", "main")
    assert now == origin_sha(git_remote, "main:approvals/p.yaml") != at_first


def test_no_blob_id_for_a_missing_file_a_directory_or_an_unknown_ref(
    client: GitHubClient, person: git.Repo
) -> None:
    push_commit(person, "main", {"approvals/p.yaml": "one\n"})
    assert client.get_content_blob_sha("approvals/q.yaml", "main") is None
    assert client.get_content_blob_sha("approvals", "main") is None
    assert client.get_content_blob_sha("approvals/p.yaml", "no-such-branch") is None


def test_a_file_is_served_as_githubs_base64_content(
    github: GitHubStandIn, person: git.Repo
) -> None:
    text = "approved: " + "x" * 100 + "\n"
    push_commit(person, "main", {"approvals/p.yaml": text})
    answer = httpx.get(
        f"{github.url}/repos/{REPO}/contents/approvals/p.yaml",
        params={"ref": "main"},
        headers={"Authorization": f"Bearer {github.token}"},
    ).json()
    assert (answer["type"], answer["path"], answer["size"]) == ("file", "approvals/p.yaml", 111)
    assert all(len(line) <= 60 for line in answer["content"].splitlines())
    assert b64decode(answer["content"]).decode() == text


# --- issues and comments ------------------------------------------------------------------


def test_issues_by_label_and_state_include_pull_requests(
    github: GitHubStandIn, client: GitHubClient
) -> None:
    stuck = client.create_issue(title="alice is stuck", body="why", labels=["keyrotor"])
    client.create_issue(title="unrelated")
    pull = github.open_pull(REPO, head="rotate/alice")
    labelled = client.update_issue(pull, labels=["keyrotor", "rotation"])
    assert labelled.labels == ("keyrotor", "rotation") and labelled.is_pull_request
    found = client.list_issues(labels=["keyrotor"])
    assert [(i.number, i.is_pull_request) for i in found] == [(pull, True), (stuck.number, False)]
    assert [i.number for i in client.list_issues(labels=["keyrotor", "rotation"])] == [pull]
    client.update_issue(stuck.number, state="closed")
    closed = client.list_issues(labels=["keyrotor"], state="closed")
    assert [(i.number, i.state) for i in closed] == [(stuck.number, "closed")]


def test_comments_are_created_and_listed_across_pages(
    github: GitHubStandIn, client: GitHubClient
) -> None:
    pull = github.open_pull(REPO, head="rotate/alice")
    ids = [client.create_comment(pull, f"comment {n}").id for n in range(3)]
    comments = client.list_comments(pull)
    assert [(c.id, c.body) for c in comments] == [
        (ids[0], "comment 0"),
        (ids[1], "comment 1"),
        (ids[2], "comment 2"),
    ]
    assert comments[0].author == github.login
    assert gets(github, f"/repos/{REPO}/issues/{pull}/comments") == 2


def test_overlong_comment_is_refused(github: GitHubStandIn, client: GitHubClient) -> None:
    issue = client.create_issue(title="report")
    client.create_comment(issue.number, "x" * 65536)
    with pytest.raises(GitHubError, match="body is too long"):
        client.create_comment(issue.number, "x" * 65537)


# --- rate limits -------------------------------------------------------------------------------


def test_retry_after_is_waited_out(
    github: GitHubStandIn, client: GitHubClient, sleeps: list[float]
) -> None:
    github.open_pull(REPO, head="rotate/a")
    github.rate_limit(1, status=429, retry_after=7)
    assert len(client.list_pulls()) == 1
    assert sleeps == [7.0]


def test_exhausted_primary_limit_waits_until_the_reset(
    github: GitHubStandIn, client: GitHubClient, sleeps: list[float]
) -> None:
    github.rate_limit(1, status=403, reset_after=30)
    client.create_issue(title="after the reset")
    assert sleeps == [31.0]  # to the reset time, plus a second of margin
    assert client.list_issues()[0].title == "after the reset"


def test_secondary_limit_without_headers_backs_off_from_a_minute(
    github: GitHubStandIn, client: GitHubClient, sleeps: list[float]
) -> None:
    github.rate_limit(2, status=403)
    client.list_pulls()
    assert sleeps == [60.0, 120.0]


def test_gives_up_after_max_attempts(github: GitHubStandIn, sleeps: list[float]) -> None:
    github.rate_limit(5, status=429, retry_after=1)
    with (
        GitHubClient(github.url, github.token, REPO, sleep=sleeps.append, max_attempts=3) as c,
        pytest.raises(GitHubError, match="gave up after 3 attempts") as caught,
    ):
        c.list_pulls()
    assert caught.value.status == 429
    assert sleeps == [1.0, 1.0]
    assert gets(github, f"/repos/{REPO}/pulls") == 3


def test_gives_up_at_once_when_the_wait_exceeds_the_budget(
    github: GitHubStandIn, sleeps: list[float]
) -> None:
    github.rate_limit(1, status=429, retry_after=3600)
    with (
        GitHubClient(
            github.url, github.token, REPO, sleep=sleeps.append, max_wait_seconds=300
        ) as c,
        pytest.raises(GitHubError, match="next wait would be 3600s"),
    ):
        c.create_issue(title="never")
    assert sleeps == []


def test_a_plain_403_is_not_retried(github: GitHubStandIn, sleeps: list[float]) -> None:
    github.rate_limit(1, status=403, message="Resource not accessible by integration")
    with (
        GitHubClient(github.url, github.token, REPO, sleep=sleeps.append) as c,
        pytest.raises(GitHubError, match="Resource not accessible by integration"),
    ):
        c.list_pulls()
    assert sleeps == []


# --- the token ---------------------------------------------------------------------------------


def test_the_token_never_appears_in_errors_or_reprs(github: GitHubStandIn) -> None:
    token = "ghp_Sup3rSecretTokenValue0123456789"
    errors: list[GitHubError] = []
    with GitHubClient(github.url, token, REPO, sleep=lambda _: None) as client:
        assert token not in repr(client)
        with pytest.raises(GitHubError) as bad_credentials:
            client.list_pulls()
        errors.append(bad_credentials.value)
    assert bad_credentials.value.status == 401
    assert bad_credentials.value.message == "Bad credentials"
    with GitHubClient("http://127.0.0.1:9", token, REPO) as unreachable:
        with pytest.raises(GitHubError) as refused:
            unreachable.put_secret("X", "value")
        errors.append(refused.value)
    assert refused.value.status is None
    for error in errors:
        for text in (str(error), repr(error), *map(str, error.args), error.message):
            assert token not in text


def test_pagination_refuses_a_link_to_another_host(client: GitHubClient) -> None:
    response = httpx.Response(
        200,
        headers={"Link": '<https://elsewhere.example/repos/acme/gitops/pulls?page=2>; rel="next"'},
        request=httpx.Request("GET", f"{client.api_url}/repos/{REPO}/pulls"),
    )
    with pytest.raises(GitHubError, match="another host"):
        client._next_link(response, f"/repos/{REPO}/pulls")


# --- Actions secrets ---------------------------------------------------------------------------


def test_secret_is_created_then_updated(github: GitHubStandIn, client: GitHubClient) -> None:
    assert client.put_secret("AWS_ACCESS_KEY_ID", "AKIAOLD") == "created"
    assert client.put_secret("AWS_ACCESS_KEY_ID", "AKIANEW") == "updated"
    assert github.secret(REPO, "AWS_ACCESS_KEY_ID") == "AKIANEW"
    assert github.secret_writes(REPO, "AWS_ACCESS_KEY_ID") == 2


def test_sealed_box_round_trip(github: GitHubStandIn, client: GitHubClient) -> None:
    plaintext = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY+/=é"
    client.put_secret("AWS_SECRET_ACCESS_KEY", plaintext, repo="acme/web")
    assert github.secret("acme/web", "AWS_SECRET_ACCESS_KEY") == plaintext
    assert github.secret(REPO, "AWS_SECRET_ACCESS_KEY") is None
    sent = github.requests[-1].json
    assert plaintext not in str(sent)
    assert set(sent) == {"encrypted_value", "key_id"}


def test_environment_secrets_use_the_environments_own_key(
    github: GitHubStandIn, client: GitHubClient
) -> None:
    github.add_environment("acme/web", "prod")
    env_key = client.public_key("prod", repo="acme/web")
    repo_key = client.public_key(repo="acme/web")
    assert env_key.key != repo_key.key
    assert client.put_secret("AWS_ACCESS_KEY_ID", "AKIAPROD", "prod", repo="acme/web") == (
        "created"
    )
    assert github.secret("acme/web", "AWS_ACCESS_KEY_ID", "prod") == "AKIAPROD"
    assert github.secret("acme/web", "AWS_ACCESS_KEY_ID") is None


def test_secret_in_a_missing_environment_is_404(client: GitHubClient) -> None:
    with pytest.raises(GitHubError) as caught:
        client.put_secret("AWS_ACCESS_KEY_ID", "AKIA", "staging", repo="acme/web")
    assert caught.value.status == 404


# --- the contract check itself -----------------------------------------------------------------


def test_a_request_that_breaks_the_contract_is_recorded(github: GitHubStandIn) -> None:
    answer = httpx.put(
        f"{github.url}/repos/{REPO}/actions/secrets/AWS_ACCESS_KEY_ID",
        json={"encrypted_value": "c2VjcmV0"},  # no key_id
        headers={"Authorization": f"Bearer {github.token}"},
    )
    assert answer.status_code == 422
    violations = github.take_violations()
    assert len(violations) == 1
    assert "'key_id' is a required property" in violations[0]


def test_an_answer_that_breaks_the_contract_is_recorded(
    github: GitHubStandIn, client: GitHubClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def wrong(*args: object, **kwargs: object) -> object:
        return github._json({"key_id": 1234})  # key_id must be a string, key is required

    monkeypatch.setitem(github._handlers, "actions/get-repo-public-key", wrong)
    with pytest.raises(KeyError):
        client.public_key()
    violations = github.take_violations()
    assert len(violations) == 1
    assert violations[0].startswith("response 200 to GET /repos/acme/gitops/actions/secrets/")


def test_a_crash_in_the_standin_is_recorded(
    github: GitHubStandIn, client: GitHubClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("stand-in bug")

    monkeypatch.setitem(github._handlers, "pulls/list", broken)
    with pytest.raises(GitHubError) as caught:
        client.list_pulls()
    assert caught.value.status == 500
    assert any("RuntimeError: stand-in bug" in v for v in github.take_violations())


def test_violations_fail_the_test_at_teardown() -> None:
    fixture = run_standin()
    standin = next(fixture)
    standin.violations.append("request GET /x: made up")
    with pytest.raises(pytest.fail.Exception, match="made up"):
        next(fixture)


def test_the_trimmed_description_passes_the_full_openapi_validation() -> None:
    document = copy.deepcopy(spec_document())
    OpenAPI.from_dict(document)  # with openapi-spec-validator's full check: raises if invalid
