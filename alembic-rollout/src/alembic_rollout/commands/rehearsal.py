"""`make rehearse [base=REF]`: the revisions that REF does not have, applied
one at a time under synthetic traffic, and measured rather than predicted.

Where: a scratch database on the configured server, migrated to REF's head
and seeded with REHEARSAL_ROWS rows per table (alembic_rollout.seeding). Or,
when REHEARSAL_DATABASE_URL is set, that database (a restored copy of
production) as it is: nothing is seeded, and it is left migrated.

How: while a few clients read and update single rows by key on every
table, every 10 ms, each revision is applied with the lock retries of a
deploy. The report gives, per revision: how long it took; each table lock
it held, and for how long (sampled every 10 ms); the tables it rewrote
(their files changed); the rows it wrote; and the longest that a traffic
query took while it ran. A revision that makes traffic wait longer than
REHEARSAL_MAX_WAIT_MS fails the rehearsal.
"""

import asyncio
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import DBAPIError, NotSupportedError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from alembic_rollout.live_reads import (
    database_name,
    read_live,
    recorded_heads,
    refuse_unknown_heads,
)
from alembic_rollout.revision_history import (
    UNREACHABLE,
    HistoryError,
    add_base_argument,
    alembic_config,
    ancestry,
    command_parser,
    default_base,
    heads_at,
    in_git_repository,
    new_revisions,
    script_directory,
    unreachable,
)
from alembic_rollout.schema_catalog import USER_SCHEMAS
from alembic_rollout.scratch_server import (
    configured_settings,
    migrate,
    run,
    scratch_database,
)
from alembic_rollout.seeding import Seeded, SeedingError, seed
from alembic_rollout.service import Settings, create_direct_engine, in_readme
from alembic_rollout.table_stats import StatsError, TableStats, read_stats

CLIENTS = 3
PAUSE_SECONDS = 0.01
SAMPLE_SECONDS = 0.01
KEYS_PER_TABLE = 100
# A traffic query stuck longer than this is counted as this long.
TRAFFIC_STATEMENT_TIMEOUT_MS = 60_000
QUERY_CANCELED = "57014"

PRIMARY_KEYS_SQL = f"""
SELECT c.oid::regclass::text,
       array_agg(a.attname::text ORDER BY k.position)
FROM pg_class c
JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY
    AS k(attnum, position)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE c.relnamespace IN ({USER_SCHEMAS}) AND c.relkind IN ('r', 'p')
    AND NOT c.relispartition AND c.relname !~ '^alembic_version'
GROUP BY c.oid
ORDER BY 1
"""
TABLE_FILES_SQL = f"""
SELECT oid::regclass::text, relfilenode FROM pg_class
WHERE relnamespace IN ({USER_SCHEMAS}) AND relkind IN ('r', 'm')
    AND relname !~ '^alembic_version'
"""
# Table locks granted to sessions other than the traffic's: the migration's.
BACKEND_PID = text("SELECT pg_backend_pid()")
LOCKS_SQL = text(f"""
SELECT l.relation::regclass::text, l.mode, l.virtualtransaction
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
WHERE l.locktype = 'relation' AND l.granted AND l.pid <> ALL(:ours)
    AND l.database = (SELECT oid FROM pg_database
                      WHERE datname = current_database())
    AND c.relkind IN ('r', 'p', 'm') AND c.relnamespace IN ({USER_SCHEMAS})
    AND c.relname !~ '^alembic_version'
""")
WRITES = re.compile(r"^\s*(INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE)


@dataclass
class TableTraffic:
    """Reads and updates of one table's rows, by key."""

    table: str
    read: str
    write: str
    keys: list[dict[str, Any]]


@dataclass
class Query:
    table: str
    started: float
    ended: float

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def overlaps(self, started: float, ended: float) -> bool:
        return self.started < ended and started < self.ended


# A table lock's holders: {transaction: [first seen, last seen]}.
Holds = dict[str, list[float]]


@dataclass
class Traffic:
    """CLIENTS sessions reading, then updating, one row by key of every
    table in turn, and one session sampling the migration's table locks;
    in a thread of their own, with their own event loop."""

    connect: Callable[[], AsyncEngine]
    tables: list[TableTraffic]
    queries: list[Query] = field(default_factory=list)
    in_flight: dict[int, float] = field(default_factory=dict)
    locks: dict[tuple[str, str], Holds] = field(default_factory=dict)
    stopped_tables: dict[str, str] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)
    failure: BaseException | None = None

    @contextmanager
    def running(self) -> Iterator["Traffic"]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        self.ready.wait(timeout=60)
        if self.failure is not None or not self.ready.is_set():
            self.stop.set()
            raise HistoryError(f"the traffic could not start: {self.failure}")
        try:
            yield self
        finally:
            self.stop.set()
            thread.join(timeout=TRAFFIC_STATEMENT_TIMEOUT_MS / 1000 + 30)

    def _run(self) -> None:
        try:
            asyncio.run(self._sessions())
        except BaseException as error:  # noqa: BLE001  (running() reports it)
            self.failure = error
            self.ready.set()

    async def _sessions(self) -> None:
        engine = self.connect()
        connections: list[AsyncConnection] = []
        try:
            for _ in range(CLIENTS + 1):
                connections.append(await self._session(engine))
            ours = [await c.scalar(BACKEND_PID) for c in connections]
            self.ready.set()
            sampler, *clients = connections
            await asyncio.gather(
                self._sample_locks(sampler, ours),
                *(self._client(n, c) for n, c in enumerate(clients)),
            )
        finally:
            for connection in connections:
                await connection.close()
            await engine.dispose()

    @staticmethod
    async def _session(engine: AsyncEngine) -> AsyncConnection:
        connection = await engine.connect()
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        limit = TRAFFIC_STATEMENT_TIMEOUT_MS
        await connection.execute(text(f"SET statement_timeout = {limit}"))
        return connection

    async def _client(self, number: int, session: AsyncConnection) -> None:
        pick = random.Random(number)
        while not self.stop.is_set():
            for table in self.tables:
                if table.table in self.stopped_tables:
                    continue
                for sql in (table.read, table.write):
                    await self._query(number, session, table, sql, pick)
            await asyncio.sleep(PAUSE_SECONDS)

    async def _query(
        self,
        number: int,
        session: AsyncConnection,
        table: TableTraffic,
        sql: str,
        pick: random.Random,
    ) -> None:
        started = time.monotonic()
        self.in_flight[number] = started
        try:
            await session.execute(text(sql), pick.choice(table.keys))
        except DBAPIError as error:
            await session.rollback()
            # Errors that the next query does not repeat: stuck past the
            # timeout, or a prepared statement whose columns a revision
            # changed (feature_not_supported; the driver prepares it again).
            sqlstate = getattr(error.orig, "sqlstate", None)
            canceled = sqlstate == QUERY_CANCELED
            if not (canceled or isinstance(error, NotSupportedError)):
                # The revision dropped or changed what the query uses.
                cause = str(error.orig).strip().splitlines()[0]
                self.stopped_tables.setdefault(table.table, cause)
        finally:
            del self.in_flight[number]
        self.queries.append(Query(table.table, started, time.monotonic()))

    async def _sample_locks(
        self,
        connection: AsyncConnection,
        ours: list[int],
    ) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            held = await connection.execute(LOCKS_SQL, {"ours": ours})
            for relation, mode, transaction in held:
                holds = self.locks.setdefault((relation, mode), {})
                holds.setdefault(transaction, [now, now])[1] = now
            await asyncio.sleep(SAMPLE_SECONDS)

    def settle(self, ended: float) -> None:
        """Wait for the queries that started before `ended` to finish."""
        deadline = time.monotonic() + TRAFFIC_STATEMENT_TIMEOUT_MS / 1000
        while time.monotonic() < deadline:
            if all(started > ended for started in self.in_flight.values()):
                return
            time.sleep(PAUSE_SECONDS)

    def worst(self, started: float, ended: float) -> Query | None:
        """The longest query that ran between `started` and `ended`."""
        during = [q for q in list(self.queries) if q.overlaps(started, ended)]
        return max(during, key=lambda query: query.seconds, default=None)


@dataclass(order=True)
class LockHeld:
    """A table lock, its longest hold, and how many transactions took it
    from the first to the last (a batched backfill takes it in each)."""

    table: str
    mode: str
    longest: float
    transactions: int
    first: float
    last: float

    @classmethod
    def sampled(
        cls,
        table: str,
        mode: str,
        holds: Holds,
    ) -> "LockHeld":
        spans = list(holds.values())
        return cls(
            table,
            mode,
            longest=max(last - first for first, last in spans),
            transactions=len(spans),
            first=min(first for first, _ in spans),
            last=max(last for _, last in spans),
        )

    def __str__(self) -> str:
        held = round(self.longest * 1000)
        shown = f"{held:,} ms" if held else "under 10 ms"
        if self.transactions > 1:
            span = round((self.last - self.first) * 1000)
            seen = f"{self.transactions} transactions seen over {span:,} ms"
            shown = f"{shown} at most, in {seen}"
        return f"lock {lock_mode(self.mode)} on {self.table}, {shown}"


@dataclass
class Rehearsed:
    """What one revision did, measured."""

    script: Script
    seconds: float = 0.0
    locks: list["LockHeld"] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    rows_written: int = 0
    worst: Query | None = None
    failure: str | None = None

    def waited_ms(self) -> int:
        return round(self.worst.seconds * 1000) if self.worst else 0


@dataclass
class Rehearsal:
    """Each revision that the base lacks, measured, and the verdict."""

    base: str
    where: str
    max_wait_ms: int
    results: list[Rehearsed] = field(default_factory=list)
    passed: bool = True
    # The rows seeded in each table (none on REHEARSAL_DATABASE_URL's copy),
    # and the tables that REHEARSAL_STATS_MAX_ROWS cut: (production's, seeded).
    seeded: dict[str, int] = field(default_factory=dict)
    cut: dict[str, tuple[int, int]] = field(default_factory=dict)


class RowsWritten:
    """Rows that the migration's INSERT, UPDATE, DELETE and MERGE statements
    reported, Alembic's own version table left out."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        event.listen(engine.sync_engine, "after_cursor_execute", self._counted)

    def _counted(
        self,
        connection: Any,
        cursor: Any,
        statement: str,
        *_: Any,
    ) -> None:
        if WRITES.match(statement) and "alembic_version" not in statement:
            self.count += max(cursor.rowcount, 0)


def traffic_targets(connection: Connection) -> list[TableTraffic]:
    targets = []
    for table, key_columns in connection.execute(text(PRIMARY_KEYS_SQL)):
        keyed = enumerate(key_columns)
        where = " AND ".join(f'"{column}" = :k{n}' for n, column in keyed)
        columns = ", ".join(f'"{column}"' for column in key_columns)
        sample = f"SELECT {columns} FROM {table} ORDER BY random() LIMIT :n"
        keys = [
            {f"k{number}": value for number, value in enumerate(row)}
            for row in connection.execute(text(sample), {"n": KEYS_PER_TABLE})
        ]
        if keys:
            first = f'"{key_columns[0]}"'
            targets.append(
                TableTraffic(
                    table,
                    read=f"SELECT * FROM {table} WHERE {where}",
                    write=f"UPDATE {table} SET {first} = {first} WHERE {where}",
                    keys=keys,
                )
            )
    return targets


def current_heads(connection: Connection) -> list[str]:
    return list(MigrationContext.configure(connection).get_current_heads())


def table_files(connection: Connection) -> dict[str, int]:
    files = connection.execute(text(TABLE_FILES_SQL))
    return {table: file for table, file in files}


@contextmanager
def rehearsal_database(
    settings: Settings,
) -> Iterator[tuple[AsyncEngine, str]]:
    """The database to rehearse on, and what it is."""
    if settings.rehearsal_url is not None:
        engine = create_direct_engine(settings, url=settings.rehearsal_url)
        try:
            yield engine, "REHEARSAL_DATABASE_URL, as it is"
        finally:
            asyncio.run(engine.dispose())
        return
    server = create_direct_engine(settings)
    try:
        with scratch_database(server, settings, "rehearsal") as engine:
            rows = f"{settings.rehearsal_rows:,}"
            seeded = f"a scratch database seeded with {rows} rows per table"
            stats_file, most = stats_settings(settings)
            if stats_file is not None:
                seeded = (
                    f"a scratch database seeded to production's sizes from {stats_file} "
                    f"(at most {most:,} rows per table; {rows} in a table it lacks)"
                )
            yield engine, seeded
    finally:
        asyncio.run(server.dispose())


def rehearse(base: str | None) -> Rehearsal:
    settings = configured_settings("the rehearsal")
    config = alembic_config()
    scripts = script_directory(config)
    if base is None and not in_git_repository():
        if settings.rehearsal_url is None:
            raise HistoryError(
                "this service is not in a git repository, so no release tells which "
                "revisions are new: git init and commit, or rehearse on a restored copy "
                "of production (REHEARSAL_DATABASE_URL), whose recorded revision is then "
                "the base"
            )
        # An unpacked release and a copy of production: what the copy records
        # is the release it runs, so the revisions it lacks are the new ones.
        base = "REHEARSAL_DATABASE_URL's database"
        base_heads = recorded_on_the_copy(settings, scripts)
    else:
        base = base or default_base()
        base_heads = heads_at(base, scripts)
    revisions = new_revisions(scripts, base_heads)
    if not revisions:
        print(f"Nothing to rehearse: {base} has every revision here.")
        return Rehearsal(base, "nowhere", settings.rehearsal_max_wait_ms)
    with rehearsal_database(settings) as (engine, where):
        on_a_copy = settings.rehearsal_url is not None
        at = run(engine, current_heads)
        ahead = set(at) - ancestry(scripts, base_heads)
        if on_a_copy and ahead:
            raise HistoryError(
                f"REHEARSAL_DATABASE_URL's database is at {', '.join(at)}, "
                f"which {base} does not have: it already ran revisions that "
                "this rehearsal would apply; restore the copy again"
            )
        for head in base_heads:
            migrate(config, engine, "upgrade", head)
        if on_a_copy and sorted(at) != sorted(base_heads):
            was = ", ".join(at) or "an empty history"
            print(f"Migrated the copy from {was} to {base}, not measured.")
        rows = settings.rehearsal_rows
        seeded: dict[str, Seeded] = {}
        if settings.rehearsal_url is None:
            stats, most = production_sizes(settings)
            seeded = run(engine, lambda connection: seed(connection, rows, stats, most))
        targets = run(engine, traffic_targets)
        if on_a_copy and not targets:
            raise HistoryError(
                "REHEARSAL_DATABASE_URL's database has no table with rows to "
                "put traffic on: restore a copy of production into it"
            )
        traffic = Traffic(
            lambda: create_direct_engine(settings, url=engine.url),
            targets,
        )
        written = RowsWritten(engine)
        print(
            f"Rehearsing {len(revisions)} revision(s) that {base} does not "
            f"have, on {where}, while {CLIENTS} clients read and update rows "
            f"by key on {', '.join(t.table for t in targets) or 'no table'}:",
            flush=True,
        )
        sized = [f"{t} {got.rows:,}" for t, got in seeded.items() if got.production is not None]
        if sized:
            print(f"  (rows seeded to production's sizes: {', '.join(sized)})")
        cut = {}
        for table, got in seeded.items():
            if got.rows < got.generated:
                refused = "its check constraints refused the other rows"
                print(f"  ({table}: {got.rows:,} rows; {refused})")
            if got.production is not None and got.generated < got.production:
                cut[table] = (got.production, got.rows)
                print(
                    f"  ({table}: {got.production:,} rows in production, {got.rows:,} "
                    "here: REHEARSAL_STATS_MAX_ROWS cut it, and its figures are for "
                    f"{got.rows:,} rows)"
                )
        results = []
        with traffic.running():
            for script in revisions:
                rehearsed = measure(config, engine, script, traffic, written)
                results.append(rehearsed)
                print(report(rehearsed), flush=True)
                if rehearsed.failure is not None:
                    break
        for table, cause in traffic.stopped_tables.items():
            print(f"Traffic on {table} stopped: {cause}")
    if traffic.failure is not None:
        # The waits above are those of traffic that stopped partway.
        raise HistoryError(f"the traffic stopped: {traffic.failure}")
    max_wait_ms = settings.rehearsal_max_wait_ms
    passed = verdict(results, max_wait_ms, bool(targets))
    sizes = {table: got.rows for table, got in seeded.items()}
    return Rehearsal(base, where, max_wait_ms, results, passed, sizes, cut)


def recorded_on_the_copy(settings: Settings, scripts: ScriptDirectory) -> list[str]:
    """The head revisions that REHEARSAL_DATABASE_URL's database records,
    each one this history has."""
    engine = create_direct_engine(settings, url=settings.rehearsal_url)
    try:
        heads = read_live(engine, recorded_heads) or ()
        refuse_unknown_heads(scripts, heads, database_name(engine), "restore the copy again")
    finally:
        asyncio.run(engine.dispose())
    return list(heads)


def stats_settings(settings: Settings) -> tuple[Path | None, int]:
    """REHEARSAL_STATS and REHEARSAL_STATS_MAX_ROWS; a config.py older than
    them has neither, and rehearses on REHEARSAL_ROWS."""
    stats_file = getattr(settings, "rehearsal_stats", None)
    most = int(getattr(settings, "rehearsal_stats_max_rows", 0))
    return (Path(stats_file) if stats_file is not None else None), most


def production_sizes(settings: Settings) -> tuple[dict[str, TableStats] | None, int | None]:
    """REHEARSAL_STATS' tables and REHEARSAL_STATS_MAX_ROWS, when it is set."""
    stats_file, most = stats_settings(settings)
    if stats_file is None:
        return None, None
    return read_stats(stats_file), most


def measure(
    config: Config,
    engine: AsyncEngine,
    script: Script,
    traffic: Traffic,
    written: RowsWritten,
) -> Rehearsed:
    """`alembic upgrade` to this one revision, under the traffic."""
    files_before = run(engine, table_files)
    written.count = 0
    traffic.locks = {}
    rehearsed = Rehearsed(script)
    started = time.monotonic()
    try:
        migrate(config, engine, "upgrade", script.revision)
    except CommandError as error:
        rehearsed.failure = str(error)
    ended = time.monotonic()
    traffic.settle(ended)
    rehearsed.seconds = ended - started
    rehearsed.rows_written = written.count
    rehearsed.worst = traffic.worst(started, ended)
    held = traffic.locks.items()
    rehearsed.locks = sorted(LockHeld.sampled(t, m, h) for (t, m), h in held)
    files_after = run(engine, table_files)
    rehearsed.rewritten = rewritten(files_before, files_after)
    return rehearsed


def rewritten(before: dict[str, int], after: dict[str, int]) -> list[str]:
    """The tables whose file changed: every row was copied to a new one."""
    changed = [t for t, file in before.items() if after.get(t, file) != file]
    return sorted(changed)


def lock_mode(mode: str) -> str:
    """AccessExclusiveLock -> ACCESS EXCLUSIVE, as PostgreSQL's docs say."""
    words = re.findall(r"[A-Z][a-z]+", mode.removesuffix("Lock"))
    return " ".join(words).upper()


def report(rehearsed: Rehearsed) -> str:
    script = rehearsed.script
    title = (script.doc or "").strip().splitlines()[0] if script.doc else ""
    worst = rehearsed.worst
    waited = (
        f"traffic waited at most {rehearsed.waited_ms():,} ms ({worst.table})"
        if worst
        else "no traffic query ran meanwhile"
    )
    took = f"{rehearsed.seconds:.2f} s, {rehearsed.rows_written:,} rows"
    lines = [f"  {script.revision}  {title}", f"    {took} written, {waited}"]
    lines.extend(f"    {lock}" for lock in rehearsed.locks)
    for table in rehearsed.rewritten:
        lines.append(f"    rewrote {table} (a new file: every row copied)")
    if rehearsed.failure is not None:
        failure = rehearsed.failure.replace("\n", "\n    ")
        lines.append(f"    FAILED: {failure}")
    return "\n".join(lines)


def verdict(
    results: list[Rehearsed],
    max_wait_ms: int,
    had_traffic: bool,
) -> bool:
    slow = [result for result in results if result.waited_ms() > max_wait_ms]
    failed = [result for result in results if result.failure is not None]
    for result in slow:
        assert result.worst is not None
        print(
            f"Too slow for live traffic: {result.script.revision} made a "
            f"query on {result.worst.table} wait {result.waited_ms():,} ms, "
            f"more than REHEARSAL_MAX_WAIT_MS ({max_wait_ms:,} ms); the "
            "README says how to split such work "
            + in_readme('("Rehearsing a deploy").', "(«Репетиция развёртывания»).")
        )
    for result in failed:
        print(f"Failed: {result.script.revision} did not apply (above).")
    if slow or failed:
        return False
    if not had_traffic:
        print("Rehearsal passed, without traffic: no table had rows.")
        return True
    print(f"Rehearsal passed: traffic never waited over {max_wait_ms:,} ms.")
    return True


def main() -> None:
    parser = command_parser("rehearse", __doc__)
    add_base_argument(parser, "to compare with")
    arguments = parser.parse_args()
    # Ctrl-C or a CI job's SIGTERM unwinds as an exception, so the scratch
    # database is dropped; a second signal does not cut that short.
    signal.signal(signal.SIGTERM, stop_once)
    signal.signal(signal.SIGINT, stop_once)
    try:
        passed = rehearse(arguments.base).passed
    except (HistoryError, SeedingError, StatsError, CommandError) as error:
        sys.exit(f"make rehearse: {error}")
    except UNREACHABLE as error:
        sys.exit(f"make rehearse: {unreachable(error)}")
    except KeyboardInterrupt:
        sys.exit("make rehearse: interrupted; its scratch database is dropped")
    sys.exit(0 if passed else 1)


def stop_once(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
