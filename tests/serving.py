"""The service's app served by uvicorn as in production, and load on it, for the tests
and the benchmarks."""

import asyncio
import collections
import json
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import URL

from tests.alembic_cli import Alembic

# The production options of the service's README ("The web application").
SERVE_OPTIONS = ["--timeout-keep-alive", "75"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served(
    project: Path,
    code_dir: str,
    database_url: URL,
    command: Sequence[str] | None = None,
    **settings: str,
) -> Iterator[tuple[str, Any]]:
    """uvicorn serving the app (the production command, no reload), and its log.

    `command` replaces `python -m uvicorn ...` (its `--port` value is replaced);
    `settings` are more of the service's variables.
    """
    port = free_port()
    env = {**Alembic(project, database_url).env, "DB_CONNECT_TIMEOUT": "3", **settings}
    if command is None:
        command = [sys.executable, "-m", "uvicorn", f"{code_dir}.main:app", "--port", "0"]
        command += SERVE_OPTIONS
    command = list(command)
    command[command.index("--port") + 1] = str(port)
    with tempfile.TemporaryFile(mode="w+") as log:
        server = subprocess.Popen(
            command,
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "no uvicorn"
                time.sleep(0.2)
        try:
            yield base, (server, log)
        finally:
            if server.poll() is None:
                server.terminate()
                server.wait(timeout=30)


def dockerfile_command(dockerfile: Path) -> list[str]:
    (command,) = [line for line in dockerfile.read_text().splitlines() if line.startswith("CMD")]
    return list(json.loads(command.removeprefix("CMD")))


def dockerfile_env(dockerfile: Path) -> dict[str, str]:
    """The final stage's `ENV NAME=value ...` settings, but PATH (the image's venv)."""
    final_stage = dockerfile.read_text().rsplit("\nFROM ", 1)[1]
    settings = {}
    for line in final_stage.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line.removeprefix("ENV ")):
                name, value = pair.split("=", 1)
                settings[name] = value
    settings.pop("PATH", None)
    return settings


def read_log(handle: tuple[Any, Any]) -> str:
    log = handle[1]
    log.flush()
    log.seek(0)
    return str(log.read())


async def mixed_load(base: str, clients: int, requests: int) -> collections.Counter[str]:
    """`clients` concurrent clients sharing `requests` creates, lists and gets: how many
    got each status, and how many a 2xx whose body is not the one asked for."""
    outcomes: collections.Counter[str] = collections.Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(requests):
        queue.put_nowait(number)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def one_client() -> None:
            while not queue.empty():
                number = queue.get_nowait()
                try:
                    if number % 3 == 0:
                        hotel = {"title": f"Hotel {number}", "location": "Load"}
                        reply = await client.post("/hotels", json=hotel)
                        right = reply.is_success and reply.json()["title"] == hotel["title"]
                    elif number % 3 == 1:
                        reply = await client.get("/hotels?limit=20")
                        right = reply.is_success and len(reply.json()) <= 20
                    else:
                        hotel_id = number // 3 + 1
                        reply = await client.get(f"/hotels/{hotel_id}")
                        right = reply.is_success and reply.json()["id"] == hotel_id
                    wrong = reply.is_success and not right
                    outcomes[f"{reply.status_code}{' wrong body' if wrong else ''}"] += 1
                except httpx.TransportError as error:
                    outcomes[type(error).__name__] += 1

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return outcomes
