"""`make revision-log` (`alembic-rollout revision-log [--last N]`): the
configured database's revision log, newest last: when each step ran, which
revision and which way, how long it took, who ran it and from where
(alembic_rollout.revision_log).
"""

import argparse
import asyncio
from datetime import UTC
from typing import Any

from sqlalchemy import Connection, Row, select

from alembic_rollout.revision_history import run_command
from alembic_rollout.revision_log import has_log, revision_log
from alembic_rollout.scratch_server import configured_settings, run
from alembic_rollout.service import create_direct_engine

COLUMNS = ("applied at (UTC)", "revision", "step", "ms", "by", "reason")


def recent_steps(connection: Connection, last: int) -> list[Row[Any]] | None:
    if not has_log(connection):
        return None
    newest = select(revision_log).order_by(revision_log.c.id.desc())
    steps = list(connection.execute(newest.limit(last)))
    return steps[::-1]


def show() -> list[str]:
    parser = argparse.ArgumentParser(prog="alembic-rollout revision-log")
    parser.add_argument("--last", type=int, default=30, help="how many (30)")
    arguments = parser.parse_args()
    engine = create_direct_engine(configured_settings("make revision-log"))
    try:
        steps = run(engine, lambda c: recent_steps(c, arguments.last))
    finally:
        asyncio.run(engine.dispose())
    if steps is None:
        return ["No revision log yet: the next `alembic upgrade` creates it."]
    rows = [COLUMNS]
    for step in steps:
        who = step.applied_by
        if step.application_name:
            who += f" ({step.application_name})"
        if step.client_addr:
            who += f" from {step.client_addr}"
        rows.append(
            (
                f"{step.applied_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
                step.revision,
                step.direction,
                "" if step.duration_ms is None else str(step.duration_ms),
                who,
                step.reason or "",
            )
        )
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    return [aligned(row, widths) for row in rows]


def aligned(row: tuple[str, ...], widths: list[int]) -> str:
    cells = zip(row, widths, strict=True)
    return "  ".join(cell.ljust(width) for cell, width in cells).rstrip()


if __name__ == "__main__":
    run_command("make revision-log", show)
