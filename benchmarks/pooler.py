"""Requests per second of the rendered web service straight to PostgreSQL and through a
real PgBouncer in transaction pooling (DB_POOLER=transaction), for both drivers.

    uv run python -m benchmarks.pooler        # prints the table; needs `pgbouncer`

One uvicorn worker per run, 16 concurrent clients for 8 s on `GET /hotels/500`, the same
database (1,000 hotels). PgBouncer has 4 server connections, fewer
than the app's pool, as in production.
"""

import asyncio
import sys
import tempfile
from pathlib import Path

from benchmarks.run import ROOT, as_env, bench_database, render, run
from benchmarks.web import SECONDS, load, serve
from tests.pgbouncer import NOT_INSTALLED, PGBOUNCER, pgbouncer
from tests.postgres import drop_database, execute, postgres_server
from tests.serving import free_port

PATH = "/hotels/500"


def main() -> None:
    if PGBOUNCER is None:
        raise SystemExit(NOT_INSTALLED)
    lines = [
        "| driver | direct (req/s) | through PgBouncer (req/s) | ratio |",
        "|---|---:|---:|---:|",
    ]
    with (
        tempfile.TemporaryDirectory(prefix="bench-pooler-") as folder,
        postgres_server() as server,
    ):
        database = bench_database(server, "pooler")
        try:
            for driver in ("asyncpg", "psycopg"):
                project = render(
                    Path(folder) / driver,
                    "--data",
                    "web_framework=fastapi",
                    "--data",
                    f"db_driver={driver}",
                )
                direct = as_env(DATABASE_URL=database.render_as_string(hide_password=False))
                if driver == "asyncpg":  # the first: migrate and fill the database once
                    run([sys.executable, "-m", "alembic", "upgrade", "head"], project, direct)
                    hotels = ", ".join(f"('Hotel {n}', 'Town {n}')" for n in range(1000))
                    execute(database, f"INSERT INTO hotels (title, location) VALUES {hotels}")
                with pgbouncer(database, server_connections=4) as (pooled_url, _):
                    pooled = as_env(
                        DATABASE_URL=pooled_url.render_as_string(hide_password=False),
                        DB_POOLER="transaction",
                    )
                    throughput = []
                    for env in (direct, pooled):
                        port = free_port()
                        process = serve(project, "src.main:app", env, port)
                        try:
                            base = f"http://127.0.0.1:{port}"
                            throughput.append(asyncio.run(load(base, PATH, SECONDS))[0])
                        finally:
                            process.terminate()
                            process.wait(timeout=30)
                direct_rate, pooled_rate = throughput
                lines.append(
                    f"| {driver} | {direct_rate:.0f} | {pooled_rate:.0f} "
                    f"| {pooled_rate / direct_rate:.2f} |"
                )
        finally:
            drop_database(server, str(database.database))
    print(f"`GET {PATH}`, one worker, 16 clients, {SECONDS:.0f} s each")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
