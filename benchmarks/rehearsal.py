"""How long `make rehearse` takes, and what it measures, at two row counts.

    uv run python -m benchmarks.rehearsal        # prints the table

The four revisions of tests/rehearsal_revisions.py on a branch of the default service:
a nullable column on `hotels`, its batched backfill, a column with a volatile default,
and a column filled by one UPDATE of every row. Each rehearsal seeds a scratch database
(REHEARSAL_ROWS per table), applies them under traffic from 3 clients, and drops it.
"""

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.run import ROOT, as_env, render
from tests.git_repository import init_repository
from tests.postgres import postgres_server
from tests.rehearsal_revisions import revision_files

ROW_COUNTS = (100_000, 400_000)  # 400,000 is the default


def main() -> None:
    lines = [
        "| rows per table | rehearsal (s) | worst wait per revision (ms): nullable column, "
        "batched backfill, volatile default, one-statement backfill | exit |",
        "|---:|---:|---|---:|",
    ]
    with (
        tempfile.TemporaryDirectory(prefix="bench-rehearsal-") as folder,
        postgres_server() as server,
    ):
        project = render(Path(folder) / "service")
        init_repository(project)
        (versions,) = project.rglob("versions")
        for name, source in revision_files().items():
            (versions / name).write_text(source)
        for rows in ROW_COUNTS:
            env = as_env(
                DATABASE_URL=server.render_as_string(hide_password=False),
                REHEARSAL_ROWS=str(rows),
            )
            started = time.monotonic()
            result = subprocess.run(
                [sys.executable, "-m", "alembic_rollout", "rehearse", "--base", "main"],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            seconds = time.monotonic() - started
            waits = re.findall(r"traffic waited at most ([\d,]+) ms", result.stdout)
            if len(waits) != 4:
                raise SystemExit(result.stdout + result.stderr)
            lines.append(f"| {rows:,} | {seconds:.1f} | {', '.join(waits)} | {result.returncode} |")
    print("REHEARSAL_MAX_WAIT_MS=500 (the default); 3 clients read and update rows by key")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
