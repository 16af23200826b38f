"""One comment on the pull request (GitHub) or merge request (GitLab) that a
CI run is checking, posted by the first run and edited in place by the next.

The comment carries a hidden marker, by which a later run finds it among the
others; so a branch pushed ten times has one comment, saying what its latest
push does. Only the CI run's own variables are read: on GitHub Actions,
GITHUB_API_URL, GITHUB_REPOSITORY, the event's pull request number and
GITHUB_TOKEN (the job's token, given to the step); on GitLab CI,
CI_API_V4_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID and the token in
MIGRATION_REPORT_TOKEN (a project access token with the `api` scope, as
GitLab's own job token cannot write notes). Outside a pull or merge request
nothing is posted. A token goes into a request's header and nowhere else:
no message here names it.
"""

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MARKER = "<!-- alembic-rollout: migration report -->"
GITHUB_EVENTS = ("pull_request", "pull_request_target")
GITLAB_TOKEN = "MIGRATION_REPORT_TOKEN"
# GitHub refuses a comment over 65,536 characters; GitLab takes a million.
GITHUB_LIMIT = 65_000
GITLAB_LIMIT = 1_000_000
PAGE_SIZE = 100
TIMEOUT_SECONDS = 20


class PublishError(Exception):
    """The comment could not be posted; the message says why, in a sentence."""


@dataclass
class Thread:
    """Where the comment goes: a pull or merge request's comments."""

    forge: str
    # The request's comments (to list and to post), and the prefix of one
    # comment's URL (to edit).
    comments: str
    one_comment: str
    headers: dict[str, str]
    edit_method: str
    limit: int


def review_thread(env: Mapping[str, str]) -> Thread | None:
    """The pull or merge request that this CI run checks; None when the run
    checks none (a push, a schedule, a local run)."""
    if env.get("GITHUB_ACTIONS") == "true":
        if env.get("GITHUB_EVENT_NAME") not in GITHUB_EVENTS:
            return None
        return github_thread(env)
    if env.get("GITLAB_CI") == "true" and env.get("CI_MERGE_REQUEST_IID"):
        return gitlab_thread(env)
    return None


def github_thread(env: Mapping[str, str]) -> Thread:
    token = env.get("GITHUB_TOKEN")
    if not token:
        raise PublishError(
            "GITHUB_TOKEN is not set for this step, so the report is not posted "
            "on the pull request (give the step `GITHUB_TOKEN: ${{ github.token }}` "
            "and the job `pull-requests: write`)"
        )
    try:
        with open(env["GITHUB_EVENT_PATH"], encoding="utf-8") as event:
            number = int(json.load(event)["pull_request"]["number"])
    except (KeyError, OSError, ValueError, TypeError) as error:
        raise PublishError(f"cannot read the pull request's number: {error}") from None
    api = env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    repository = env.get("GITHUB_REPOSITORY", "")
    return Thread(
        "GitHub",
        # A pull request's conversation is its issue's comments.
        f"{api}/repos/{repository}/issues/{number}/comments",
        f"{api}/repos/{repository}/issues/comments",
        {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        },
        "PATCH",
        GITHUB_LIMIT,
    )


def gitlab_thread(env: Mapping[str, str]) -> Thread:
    token = env.get(GITLAB_TOKEN)
    if not token:
        raise PublishError(
            f"{GITLAB_TOKEN} is not set, so the report is not posted on the merge "
            "request (a project access token with the `api` scope, in a masked "
            "CI/CD variable)"
        )
    api = env.get("CI_API_V4_URL", "").rstrip("/")
    project = urllib.parse.quote(env.get("CI_PROJECT_ID", ""), safe="")
    notes = f"{api}/projects/{project}/merge_requests/{env['CI_MERGE_REQUEST_IID']}/notes"
    return Thread(
        "GitLab",
        notes,
        notes,
        {"PRIVATE-TOKEN": token},
        "PUT",
        GITLAB_LIMIT,
    )


def publish(markdown: str, env: Mapping[str, str]) -> str | None:
    """Post `markdown` as the review thread's one report comment, or edit
    the comment that an earlier run posted. What was done, in a sentence;
    None outside a pull or merge request."""
    thread = review_thread(env)
    if thread is None:
        return None
    body = f"{MARKER}\n{fitted(markdown, thread.limit)}"
    earlier = earlier_comment(thread)
    if earlier is None:
        call(thread, "POST", thread.comments, {"body": body})
        return f"Posted the report on the {request_name(thread)}."
    call(thread, thread.edit_method, f"{thread.one_comment}/{earlier}", {"body": body})
    return f"Updated the report on the {request_name(thread)} (comment {earlier})."


def request_name(thread: Thread) -> str:
    return "pull request" if thread.forge == "GitHub" else "merge request"


def fitted(markdown: str, limit: int) -> str:
    """The report, cut to what the forge accepts, saying where the rest is."""
    if len(markdown) + len(MARKER) < limit:
        return markdown
    note = "\n\n(Cut here: the whole report is in the CI job's migration-report.md.)\n"
    return markdown[: limit - len(MARKER) - len(note) - 1] + note


def earlier_comment(thread: Thread) -> int | None:
    """The id of the comment that carries the marker, page by page."""
    page = 1
    while True:
        query = urllib.parse.urlencode({"per_page": PAGE_SIZE, "page": page})
        comments = call(thread, "GET", f"{thread.comments}?{query}")
        if not isinstance(comments, list):
            raise PublishError(f"{thread.forge} listed the comments as {type(comments).__name__}")
        for comment in comments:
            if MARKER in str(comment.get("body", "")):
                return int(comment["id"])
        if len(comments) < PAGE_SIZE:
            return None
        page += 1


def call(thread: Thread, method: str, url: str, payload: dict[str, str] | None = None) -> Any:
    """One request; its JSON answer. Any failure is a PublishError naming
    the method, the path and the answer, never the token."""
    data = json.dumps(payload).encode() if payload is not None else None
    headers = {**thread.headers, "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    path = urllib.parse.urlsplit(url).path
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        said = f"{error.code} {error.reason}"
        raise PublishError(f"{thread.forge} answered {said} to {method} {path}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise PublishError(f"cannot reach {thread.forge} for {method} {path}: {reason}") from None
    except ValueError:
        raise PublishError(f"{thread.forge} answered {method} {path} with no JSON") from None
