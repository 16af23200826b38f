"""Requests per second and latency of the rendered web service, against a bare FastAPI app.

    uv run python -m benchmarks.web            # prints the table

Both apps run on one uvicorn worker, with the same driver (asyncpg), the same database and
the same queries: the bare one is the FastAPI documentation's shape with nothing of ours
(no bounds, no error handlers, a session per request from a module-level engine). The load
is a fixed number of concurrent clients (httpx, in this process) for a fixed time, so both
share the machine's two cores with the client the same way.
"""

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.run import ROOT, as_env, bench_database, render, run, table
from tests.postgres import drop_database, execute, postgres_server
from tests.serving import free_port

BARE_APP = """\
from fastapi import FastAPI, HTTPException
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from src.config import get_settings

engine = create_async_engine(get_settings().sqlalchemy_url, pool_size=5, max_overflow=10)
app = FastAPI()


@app.get("/hotels/{hotel_id}")
async def get_hotel(hotel_id: int) -> dict:
    async with AsyncSession(engine) as session:
        row = (await session.execute(
            text("SELECT id, title, location FROM hotels WHERE id = :id"), {"id": hotel_id}
        )).one_or_none()
    if row is None:
        raise HTTPException(404)
    return dict(row._mapping)


@app.get("/hotels")
async def list_hotels(limit: int = 50, after: int = 0) -> list[dict]:
    async with AsyncSession(engine) as session:
        rows = await session.execute(
            text(
                "SELECT id, title, location FROM hotels"
                " WHERE id > :after ORDER BY id LIMIT :limit"
            ),
            {"after": after, "limit": limit},
        )
    return [dict(row._mapping) for row in rows]
"""
CLIENTS = 16
SECONDS = 8.0


async def load(base: str, path: str, seconds: float) -> tuple[float, float, float]:
    """Requests per second, p50 and p99 latency (ms) of GET `path`."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:

        async def one_client() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                reply = await client.get(path)
                latencies.append(time.perf_counter() - started)
                assert reply.status_code == 200, reply.text

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
        elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return len(latencies) / elapsed, cuts[49] * 1000, cuts[98] * 1000


def serve(project: Path, module: str, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", module, "--port", str(port), "--log-level", "warning"],
        cwd=project,
        env=env,
    )
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/hotels/1", timeout=2)
            return server
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"{module} did not start")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder, postgres_server() as server:
        work = Path(folder)
        project = render(work / "service", "--data", "web_framework=fastapi")
        (project / "src" / "bare_app.py").write_text(BARE_APP)
        database = bench_database(server, "web")
        env = as_env(DATABASE_URL=database.render_as_string(hide_password=False))
        try:
            run([sys.executable, "-m", "alembic", "upgrade", "head"], project, env)
            rows = ", ".join(f"('Hotel {n}', 'Town {n}')" for n in range(1000))
            execute(database, f"INSERT INTO hotels (title, location) VALUES {rows}")
            figures, lines = [], []
            measured: dict[str, dict[str, tuple[float, float, float]]] = {}
            for name, module in (("ours", "src.main:app"), ("bare", "src.bare_app:app")):
                port = free_port()
                process = serve(project, module, env, port)
                base = f"http://127.0.0.1:{port}"
                try:
                    measured[name] = {
                        path: asyncio.run(load(base, path, SECONDS))
                        for path in ("/hotels/500", "/hotels?limit=50&after=500")
                        + (("/ready",) if name == "ours" else ())
                    }
                finally:
                    process.terminate()
                    process.wait(timeout=30)
            for path in ("/hotels/500", "/hotels?limit=50&after=500"):
                ours, bare = measured["ours"][path], measured["bare"][path]
                # As times, so that the ratio reads like the other tables: under 1 is faster.
                figures.append(
                    (f"`GET {path}`, seconds per 1,000 requests", 1000 / ours[0], 1000 / bare[0])
                )
                ratio = ours[0] / bare[0]
                lines.append(
                    f"`GET {path}`: ours {ours[0]:.0f} req/s (p50 {ours[1]:.1f} ms, "
                    f"p99 {ours[2]:.1f} ms), bare {bare[0]:.0f} req/s (p50 {bare[1]:.1f} ms, "
                    f"p99 {bare[2]:.1f} ms): {ratio:.2f} of the bare app's throughput"
                )
            ready = measured["ours"]["/ready"]
            lines.append(
                f"`GET /ready`: {ready[0]:.0f} req/s, p50 {ready[1]:.1f} ms, p99 {ready[2]:.1f} ms"
            )
            print(table(figures))
            print("\n".join(lines))
        finally:
            drop_database(server, str(database.database))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
