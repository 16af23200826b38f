"""What the database ran: `alembic_version_log`, one row per applied step.

Alembic keeps only the current head. The log keeps, append-only, each step
of every run (upgrade, downgrade, stamp) with the checksum of what its
revision does, when it ran, how long it took and who ran it. Rows are
written in the step's own transaction, so a step rolled back leaves none.

Before each run, the revisions the database has applied are checked against
the log: one whose file now does something else was edited after it ran
here, and the run is refused, unchanged. A database migrated before the log
existed has its applied revisions recorded at its first run, as `adopt`;
one that ran the revisions a squash replaced, its baseline, as `squash`,
and the replaced revision again, as `squash`, when a checkout from before
the squash migrates it (`make squash` proved both build the same catalog).
`accept` records a deliberate edit (`make accept-revision`).
"""

import ast
import hashlib
import logging
import subprocess
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from alembic.runtime.migration import MigrationContext, MigrationInfo
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Identity,
    MetaData,
    Table,
    Text,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import INET

# One line per step that ran (alembic.ini's [logger_alembic_rollout]).
log = logging.getLogger(__name__)

LOG_TABLE = "alembic_version_log"
# Which rows say what an applied revision's file held when it last ran or
# was accepted; a downgrade's row says the revision is no longer applied.
APPLIED = ("upgrade", "adopt", "accept", "squash", "stamp")
# What a revision says about itself, not what it does: the lint's contract
# steps, and what a squash baseline replaced.
NOT_WHAT_IT_DOES = {"contract_step", "squashed_checksum"}
# Syntax tree fields that say nothing about what the code does: Load/Store,
# a string's `u` prefix, type comments.
IGNORED_FIELDS = {"ctx", "kind", "type_comment"}

revision_log = Table(
    LOG_TABLE,
    MetaData(),
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("revision", Text, nullable=False),
    Column("direction", Text, nullable=False),
    Column("checksum", Text, nullable=False),
    Column(
        "applied_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.clock_timestamp(),
    ),
    Column("duration_ms", BigInteger),
    Column(
        "applied_by",
        Text,
        nullable=False,
        server_default=text("current_user"),
    ),
    Column(
        "application_name",
        Text,
        nullable=False,
        server_default=func.current_setting("application_name"),
    ),
    Column("client_addr", INET, server_default=func.inet_client_addr()),
    Column("reason", Text),
)


def checksum(source: str) -> str:
    """The SHA-256 of what a revision's source does: its syntax tree without
    docstrings, comments, layout or lint declarations. Reformatting changes
    nothing; a changed operation, argument or SQL string does."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list) or not body:
            continue
        first = body[0]
        if _is_docstring(first):
            body[:] = body[1:] or [ast.Pass()]
    tree.body = [s for s in tree.body if not _assigns(s, NOT_WHAT_IT_DOES)]
    parts: list[str] = []
    _write_canonical(tree, parts)
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def _write_canonical(node: object, parts: list[str]) -> None:
    """The tree as text that stays the same across Python versions: no
    fields that are empty (3.12 added `type_params=[]`) or that say nothing
    about what the code does (Load/Store, string prefixes, type comments).
    `ast.dump` changed its output in 3.13."""
    if isinstance(node, ast.AST):
        parts += (type(node).__name__, "(")
        for name, value in ast.iter_fields(node):
            if name in IGNORED_FIELDS or value is None or value == []:
                continue
            parts += (name, "=")
            _write_canonical(value, parts)
            parts.append(",")
        parts.append(")")
    elif isinstance(node, list):
        parts.append("[")
        for item in node:
            _write_canonical(item, parts)
            parts.append(",")
        parts.append("]")
    else:
        parts.append(repr(node))


def _is_docstring(statement: ast.stmt) -> bool:
    if not isinstance(statement, ast.Expr):
        return False
    value = statement.value
    return isinstance(value, ast.Constant) and isinstance(value.value, str)


def _assigns(statement: ast.stmt, names: set[str]) -> bool:
    if not isinstance(statement, ast.Assign):
        return False
    targets = statement.targets
    return all(isinstance(t, ast.Name) and t.id in names for t in targets)


def revision_checksum(revision: Script) -> str:
    assert revision.path is not None
    stat = Path(revision.path).stat()
    return _file_checksum(revision.path, stat.st_mtime_ns, stat.st_size)


@cache
def _file_checksum(path: str, mtime_ns: int, size: int) -> str:
    # Once per version of a file in a process: a run checks each applied
    # revision, then logs each step; a test suite migrates up and down many
    # times, and may edit a revision between two runs.
    return checksum(Path(path).read_text(encoding="utf-8"))


def applied_revisions(
    script: ScriptDirectory,
    heads: Iterable[str],
) -> list[Script]:
    """The revisions a database at `heads` has applied, oldest first."""
    heads = tuple(heads)
    if not heads:
        return []
    found = script.iterate_revisions(heads, "base")
    return [revision for revision in reversed(list(found)) if revision]


class LoggedStep(NamedTuple):
    """A row of the log that says what an applied revision's file held."""

    direction: str
    checksum: str
    applied_at: datetime
    applied_by: str


def logged_steps(connection: Connection) -> dict[str, list[LoggedStep]]:
    """Each applied revision's rows, oldest first: the last one counts."""
    log = revision_log.c
    query = (
        select(log.revision, log.direction, log.checksum, log.applied_at, log.applied_by)
        .where(log.direction.in_(APPLIED))
        .order_by(log.id)
    )
    steps: dict[str, list[LoggedStep]] = {}
    for revision, *step in connection.execute(query):
        steps.setdefault(revision, []).append(LoggedStep(*step))
    return steps


def logged_checksums(connection: Connection) -> dict[str, str]:
    """Each revision's checksum as the log last recorded it applied."""
    return {revision: steps[-1].checksum for revision, steps in logged_steps(connection).items()}


def has_log(connection: Connection) -> bool:
    return inspect(connection).has_table(LOG_TABLE)


def check_applied_revisions(
    script: ScriptDirectory,
    connection: Connection,
    heads: Iterable[str],
) -> None:
    """Before a run: refuse it, changing nothing, if a revision the database
    has applied was edited since it ran there. Otherwise create the log if
    it is missing, and record what it lacks of the applied revisions:
    `adopt` for one it has no row of (a database migrated before the log
    existed, or stamped), `squash` for a baseline that the database ran as
    the revision it replaced. Earlier rows stay."""
    recorded = logged_steps(connection) if has_log(connection) else None
    edited, rows = [], []
    for revision in applied_revisions(script, heads):
        now = revision_checksum(revision)
        steps = (recorded or {}).get(revision.revision, [])
        if steps and steps[-1].checksum == now:
            continue
        if not steps:
            direction = "adopt"
        elif steps[-1].checksum == squashed_checksum(revision) or _unsquashed(steps, now):
            direction = "squash"
        else:
            edited.append((revision, steps[-1], now))
            continue
        rows.append(
            {
                "revision": revision.revision,
                "direction": direction,
                "checksum": now,
            },
        )
    if edited:
        raise CommandError(_refusal(edited))
    if recorded is None:
        revision_log.create(connection)
    if rows:
        connection.execute(revision_log.insert(), rows)
    for row in rows:
        log.info(
            "%s %s recorded: %s",
            row["direction"],
            row["revision"],
            WHY_RECORDED[row["direction"]],
            extra={"revision": row["revision"], "direction": row["direction"]},
        )


WHY_RECORDED = {
    "adopt": "applied before this database had the revision log",
    "squash": "its file here and the one that ran build the same schema (make squash)",
}


def _unsquashed(steps: list[LoggedStep], now: str) -> bool:
    """The revision that a squash baseline replaced, back in a checkout from
    before the squash: the last row is the baseline's, and the one before it
    this very file's."""
    return len(steps) > 1 and steps[-1].direction == "squash" and steps[-2].checksum == now


def squashed_checksum(revision: Script) -> str | None:
    """What the revision of a squash baseline's id did before the squash
    (written into the baseline by the service's `make squash`)."""
    return getattr(revision.module, "squashed_checksum", None)


RECORDED_BY = {
    "upgrade": "an upgrade",
    "adopt": "the log's first run, which adopted it",
    "accept": "make accept-revision",
    "squash": "a run across `make squash`",
    "stamp": "a stamp",
}


def _refusal(edited: list[tuple[Script, LoggedStep, str]]) -> str:
    lines = []
    for revision, step, now in edited:
        when = step.applied_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        recorded = (
            f"the database ran another version of it (checksum {step.checksum[:12]}, "
            f"recorded by {RECORDED_BY[step.direction]}, {when}, as {step.applied_by}); "
            f"this file does something else ({now[:12]})"
        )
        lines.append(
            f"  {revision.revision} ({shown_path(revision)}): {recorded}{_in_git(revision)}."
        )
    listed = "\n".join(lines)
    first = edited[0][0].revision
    return (
        "Refused: the database is unchanged. These revisions were applied "
        f"here, and their files no longer do what ran here ({LOG_TABLE}):\n"
        f"{listed}\nMigrate this database from the checkout that ran them, "
        "or put the files back as they were then. If the change is deliberate "
        "and this database was fixed by hand to match, record it: "
        f'make accept-revision rev={first} reason="..."'
    )


def _in_git(revision: Script) -> str:
    """What git says of the file, where there is a git (an image has none)."""
    assert revision.path is not None
    path = Path(revision.path)
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    if status.returncode != 0:
        return ""
    shown = shown_path(revision)
    if status.stdout.startswith("??"):
        return "; the file is not committed, so git cannot show the version that ran"
    if status.stdout.strip():
        return f"; this checkout changes it (`git diff -- {shown}`)"
    # As committed: the version that ran came from elsewhere.
    return (
        "; the file is as this checkout's commit has it, so the version that "
        "ran came from another branch, commit or working copy "
        f"(`git log --all -p -- {shown}` shows the committed ones)"
    )


def shown_path(revision: Script) -> str:
    """The revision's file, relative to the working directory where it can be."""
    assert revision.path is not None
    path = Path(revision.path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class StepRecorder:
    """Writes each step's row, in the step's transaction (Alembic calls
    `on_version_apply` before it commits the step). `step_started` gives the
    monotonic time at which the step's attempt began."""

    def __init__(self, step_started: Callable[[], float]) -> None:
        self.step_started = step_started

    def __call__(
        self,
        ctx: MigrationContext,
        step: MigrationInfo,
        **_: Any,
    ) -> None:
        revision = step.up_revision
        if not isinstance(revision, Script):
            return  # A stamp to base: no revision to record.
        if not step.is_migration:
            direction = "stamp"
        else:
            direction = "upgrade" if step.is_upgrade else "downgrade"
        duration = None
        if not ctx.as_sql:
            seconds = time.monotonic() - self.step_started()
            duration = round(seconds * 1000)
        row = {
            "revision": revision.revision,
            "direction": direction,
            "checksum": revision_checksum(revision),
            "duration_ms": duration,
        }
        # Inline: no RETURNING, which `alembic upgrade --sql` cannot use.
        ctx.execute(revision_log.insert().inline().values(row))
        if duration is not None:
            _trace_step(row, started_ns=time.time_ns() - duration * 1_000_000)
            # Before Alembic commits the step: "ran", not "committed".
            log.info(
                "%s %s ran in %d ms",
                direction,
                revision.revision,
                duration,
                extra={
                    "revision": revision.revision,
                    "direction": direction,
                    "duration_ms": duration,
                },
            )


def _trace_step(row: dict[str, Any], started_ns: int) -> None:
    """A span for the step, when OpenTelemetry is installed; it is exported
    only where the service set up a tracer provider (else a no-op)."""
    try:
        from opentelemetry import trace
    except ImportError:
        return
    tracer = trace.get_tracer("alembic_rollout")
    name = f"alembic {row['direction']} {row['revision']}"
    attributes = {f"alembic.{key}": value for key, value in row.items()}
    tracer.start_span(name, start_time=started_ns, attributes=attributes).end()


def accept_revision(
    script: ScriptDirectory,
    connection: Connection,
    revision_id: str,
    reason: str,
) -> str:
    """Record the current checksum of an applied revision whose file no
    longer does what the log recorded, with the reason."""
    if not reason.strip():
        raise CommandError('say why the edit is safe: reason="..."')
    revision = script.get_revision(revision_id)
    if revision is None:
        raise CommandError(f"no revision {revision_id} in this history")
    name = revision.revision
    heads = MigrationContext.configure(connection).get_current_heads()
    if name not in {r.revision for r in applied_revisions(script, heads)}:
        raise CommandError(f"{name} is not applied to this database")
    recorded = logged_checksums(connection) if has_log(connection) else {}
    logged, now = recorded.get(name), revision_checksum(revision)
    if logged is None:
        raise CommandError(
            f"the revision log has no row of {name} yet: the next `alembic "
            "upgrade` records it as its file is now; nothing to accept"
        )
    if logged == now:
        raise CommandError(f"{name} is as the revision log has it: no edit")
    connection.execute(
        revision_log.insert().values(
            revision=name,
            direction="accept",
            checksum=now,
            reason=reason.strip(),
        )
    )
    return name
