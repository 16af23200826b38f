"""alembic_rollout.review_comments: one report comment per pull or merge request,
posted once and edited after, against a stand-in of each forge's API."""

from pathlib import Path

import pytest
from alembic_rollout.review_comments import MARKER, PublishError, fitted, publish

from tests.forge_api import ForgeApi, forge_api, github_pull_request_env

TOKEN = "ghs_not-a-real-token-0123456789"


def github_env(api: ForgeApi, tmp_path: Path, **overrides: str) -> dict[str, str]:
    return {**github_pull_request_env(api, tmp_path, TOKEN), **overrides}


def test_the_first_run_posts_and_the_next_edit_that_comment(tmp_path: Path) -> None:
    with forge_api() as api:
        # Another page of other people's comments first: the marker is looked for
        # on every page.
        api.comments = [{"id": n, "body": f"review {n}"} for n in range(100)]
        env = github_env(api, tmp_path)
        first = publish("# Report 1", env)
        second = publish("# Report 2", env)

    comments = "/repos/team/hotels/issues/7/comments"
    assert first == "Posted the report on the pull request."
    assert second == "Updated the report on the pull request (comment 1100)."
    assert api.writes() == [
        ("POST", comments),
        ("PATCH", "/repos/team/hotels/issues/comments/1100"),
    ]
    assert api.comments[-1]["body"] == f"{MARKER}\n# Report 2"
    assert len(api.comments) == 101
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in api.requests)
    assert {r.headers["x-github-api-version"] for r in api.requests} == {"2022-11-28"}


def test_gitlab_gets_one_note_with_its_own_token(tmp_path: Path) -> None:
    with forge_api() as api:
        env = {
            "GITLAB_CI": "true",
            "CI_API_V4_URL": f"{api.url}/api/v4",
            "CI_PROJECT_ID": "42",
            "CI_MERGE_REQUEST_IID": "7",
            "MIGRATION_REPORT_TOKEN": TOKEN,
        }
        publish("# Report 1", env)
        said = publish("# Report 2", env)

    notes = "/api/v4/projects/42/merge_requests/7/notes"
    assert api.writes() == [("POST", notes), ("PUT", f"{notes}/1000")]
    assert said == "Updated the report on the merge request (comment 1000)."
    assert {r.headers["private-token"] for r in api.requests} == {TOKEN}


def test_a_failing_api_is_one_sentence_without_the_token(tmp_path: Path) -> None:
    with forge_api() as api:
        api.failing_status = 500
        with pytest.raises(PublishError) as failure:
            publish("# Report", github_env(api, tmp_path))

    said = str(failure.value)
    assert (
        said
        == "GitHub answered 500 Internal Server Error to POST /repos/team/hotels/issues/7/comments"
    )
    assert TOKEN not in said


def test_without_a_token_or_outside_a_review_nothing_is_sent(tmp_path: Path) -> None:
    with forge_api() as api:
        with pytest.raises(PublishError, match="GITHUB_TOKEN is not set for this step"):
            publish("# Report", github_env(api, tmp_path, GITHUB_TOKEN=""))
        assert publish("# Report", github_env(api, tmp_path, GITHUB_EVENT_NAME="push")) is None
        assert publish("# Report", {"GITLAB_CI": "true"}) is None
        with pytest.raises(PublishError, match="MIGRATION_REPORT_TOKEN is not set"):
            publish("# Report", {"GITLAB_CI": "true", "CI_MERGE_REQUEST_IID": "7"})
    assert api.requests == []


def test_a_report_too_long_for_a_comment_is_cut_where_it_says_so() -> None:
    cut = fitted("x" * 100_000, 65_000)
    assert len(cut) + len(MARKER) < 65_000
    assert cut.endswith("(Cut here: the whole report is in the CI job's migration-report.md.)\n")
    assert fitted("short", 65_000) == "short"
