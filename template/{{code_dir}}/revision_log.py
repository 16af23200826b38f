"""What the database ran: `alembic_version_log`, one row per applied step.

Alembic keeps only the current head. The log keeps, append-only, each step
of every run (upgrade, downgrade, stamp) with the checksum of what its
revision does, when it ran, how long it took and who ran it. Rows are
written in the step's own transaction, so a step rolled back leaves none.

Before each run, the revisions the database has applied are checked against
the log: one whose file now does something else was edited after it ran
here, and the run is refused, unchanged. A database migrated before the log
existed has its applied revisions recorded at its first run, as `adopt`.
`accept` records a deliberate edit (`python -m scripts accept-revision`).
"""

import ast
import hashlib
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

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

LOG_TABLE = "alembic_version_log"
# Which rows say what an applied revision's file held when it last ran or
# was accepted; a downgrade's row says the revision is no longer applied.
APPLIED = ("upgrade", "adopt", "accept", "squash", "stamp")
# Lint declarations, not what the revision does.
NOT_WHAT_IT_DOES = {"contract_step", "squashed_checksum"}

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
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


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
    return checksum(Path(revision.path).read_text(encoding="utf-8"))


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


def logged_checksums(connection: Connection) -> dict[str, str]:
    """Each revision's checksum as the log last recorded it applied."""
    log = revision_log.c
    applied = log.direction.in_(APPLIED)
    query = select(log.revision, log.checksum).where(applied).order_by(log.id)
    # Later rows replace earlier ones: the last one recorded counts.
    return dict(connection.execute(query).tuples().all())


def has_log(connection: Connection) -> bool:
    return inspect(connection).has_table(LOG_TABLE)


def edited_revisions(
    script: ScriptDirectory,
    connection: Connection,
    heads: Iterable[str],
) -> list[tuple[Script, str, str]]:
    """Applied revisions whose file no longer does what the log recorded:
    (revision, recorded checksum, current checksum). A squash baseline that
    the database ran as the revision it replaced is not one of them."""
    recorded = logged_checksums(connection)
    edited = []
    for revision in applied_revisions(script, heads):
        logged = recorded.get(revision.revision)
        now = revision_checksum(revision)
        if logged not in (None, now, squashed_checksum(revision)):
            edited.append((revision, logged, now))
    return edited


def squashed_checksum(revision: Script) -> str | None:
    """What the revision of a squash baseline's id did before the squash
    (written into the baseline by scripts/squash_history.py)."""
    return getattr(revision.module, "squashed_checksum", None)


def refuse_edited_revisions(
    script: ScriptDirectory,
    connection: Connection,
    heads: Iterable[str],
) -> None:
    """A run on a database whose applied revisions were edited is refused."""
    if not has_log(connection):
        return
    edited = edited_revisions(script, connection, heads)
    if not edited:
        return
    lines = []
    for revision, logged, now in edited:
        sums = f"recorded {logged[:12]}, the file now {now[:12]}"
        lines.append(f"  {revision.revision} ({_shown(revision)}): {sums}")
    listed = "\n".join(lines)
    first = edited[0][0].revision
    raise CommandError(
        "Refused: the database is unchanged. These revisions were applied "
        f"here, and their files have been edited since ({LOG_TABLE} "
        f"holds the checksum of what each did when it ran):\n{listed}\n"
        "Restore each file as it was (`git log -p -- <file>` shows the "
        "change). Or, if the change is deliberate and every database that "
        "ran it was fixed by hand, record it: make accept-revision "
        f'rev={first} reason="..."'
    )


def _shown(revision: Script) -> str:
    assert revision.path is not None
    path = Path(revision.path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def record_unlogged_revisions(
    script: ScriptDirectory,
    connection: Connection,
    heads: Iterable[str],
) -> None:
    """Create the log if it is missing, and record what it lacks of the
    applied revisions: `adopt` for one it has no row of (a database migrated
    before the log existed, or stamped), `squash` for a baseline that the
    database ran as the revision it replaced. Earlier rows stay."""
    revision_log.create(connection, checkfirst=True)
    recorded = logged_checksums(connection)
    rows = []
    for revision in applied_revisions(script, heads):
        logged = recorded.get(revision.revision)
        now = revision_checksum(revision)
        if logged is None:
            direction = "adopt"
        elif logged != now and logged == squashed_checksum(revision):
            direction = "squash"
        else:
            continue
        rows.append(
            {
                "revision": revision.revision,
                "direction": direction,
                "checksum": now,
            }
        )
    if rows:
        connection.execute(revision_log.insert(), rows)


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


def accept_revision(
    script: ScriptDirectory,
    connection: Connection,
    revision_id: str,
    reason: str,
) -> str:
    """Record the current checksum of an applied, edited revision."""
    revision = script.get_revision(revision_id)
    if revision is None:
        raise CommandError(f"no revision {revision_id} in this history")
    if not reason.strip():
        raise CommandError('say why the edit is safe: reason="..."')
    heads = MigrationContext.configure(connection).get_current_heads()
    applied = {r.revision for r in applied_revisions(script, heads)}
    name = revision.revision
    if name not in applied:
        raise CommandError(f"{name} is not applied to this database")
    revision_log.create(connection, checkfirst=True)
    connection.execute(
        revision_log.insert().values(
            revision=revision.revision,
            direction="accept",
            checksum=revision_checksum(revision),
            reason=reason.strip(),
        )
    )
    return revision.revision
