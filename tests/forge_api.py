"""A stand-in for the comments API of GitHub and GitLab, on loopback: it keeps
comments as the real ones do, records every request, and answers a chosen
status instead when told to."""

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

# .../issues/7/comments (GitHub) or .../merge_requests/7/notes (GitLab), and
# the URL of one comment: GitHub's /issues/comments/<id>, GitLab's /notes/<id>.
LIST = re.compile(r"/(?:issues/\d+/comments|merge_requests/\d+/notes)$")
ONE = re.compile(r"/(?:issues/comments|merge_requests/\d+/notes)/(\d+)$")


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: dict[str, Any] | None


@dataclass
class ForgeApi:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    # Answered to every POST, PATCH and PUT instead of doing it, when set.
    failing_status: int | None = None

    def writes(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests if r.method != "GET"]


@contextmanager
def forge_api() -> Iterator[ForgeApi]:
    api = ForgeApi()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def answer(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            url = urlsplit(self.path)
            headers = {name.lower(): value for name, value in self.headers.items()}
            api.requests.append(Recorded(self.command, url.path, headers, body))
            if self.command == "GET" and LIST.search(url.path):
                query = parse_qs(url.query)
                size, page = int(query["per_page"][0]), int(query["page"][0])
                self.answer(200, api.comments[(page - 1) * size : page * size])
            elif api.failing_status is not None:
                self.answer(api.failing_status, {"message": "stand-in failure"})
            elif self.command == "POST" and LIST.search(url.path) and body:
                comment = {"id": 1000 + len(api.comments), "body": body["body"]}
                api.comments.append(comment)
                self.answer(201, comment)
            elif self.command in ("PATCH", "PUT") and (one := ONE.search(url.path)) and body:
                (comment,) = [c for c in api.comments if c["id"] == int(one.group(1))]
                comment["body"] = body["body"]
                self.answer(200, comment)
            else:
                self.answer(404, {"message": "Not Found"})

        do_GET = do_POST = do_PATCH = do_PUT = handle_any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def github_pull_request_env(api: ForgeApi, folder: Path, token: str) -> dict[str, str]:
    """What GitHub Actions gives a job of pull request 7 of team/hotels, with
    `token` as the step's GITHUB_TOKEN and `api` as GitHub's API."""
    event = folder / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7}}))
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_API_URL": api.url,
        "GITHUB_REPOSITORY": "team/hotels",
        "GITHUB_TOKEN": token,
    }
