"""`make squash upto=REV` (`alembic-rollout squash REV`): the revisions up
to REV become one baseline.

The baseline keeps REV's id, so a database at REV or later needs nothing,
and it is written from the schema the history builds at REV, not from
today's models. Nothing is written until it is proven: one scratch
database is migrated through the old history, another through the
baseline, and their catalogs (alembic_rollout.schema_catalog) must be equal;
the baseline's downgrade must leave nothing; the migration lint must pass.
A revision that changes data cannot be proven by a schema comparison, so
it is refused; a `backfill()` is left out, since it fills only the rows
that exist when it runs.
"""

import asyncio
import re
import shutil
import tempfile
from pathlib import Path

from alembic.autogenerate import produce_migrations, render_python_code
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection, MetaData

from alembic_rollout.commands.lint_migrations import lint, revision_bodies
from alembic_rollout.revision_history import (
    HistoryError,
    alembic_config,
    ancestry,
    builds_on,
    check_head_record,
    command_parser,
    record_head,
    refuse_uncommitted,
    run_command,
    script_directory,
    shown,
)
from alembic_rollout.revision_log import revision_checksum
from alembic_rollout.schema_catalog import catalog, differences
from alembic_rollout.scratch_server import (
    configured_settings,
    migrate,
    run,
    scratch_database,
)
from alembic_rollout.service import (
    create_direct_engine,
    load_revision_writing,
    project_root,
)

# What a baseline's history may run: schema changes, and Alembic's own
# bookkeeping.
DDL = re.compile(
    r"^(CREATE|ALTER|DROP|COMMENT|GRANT|REVOKE|SET|RESET|BEGIN|COMMIT)\b"
    r"|^(INSERT INTO|UPDATE|DELETE FROM) alembic_version(_log)?\b",
    re.IGNORECASE,
)
STATEMENT_END = re.compile(r";\s*$", re.MULTILINE)
# What `backfill()` writes in a script (revision_operations.BACKFILL_SCRIPT).
BACKFILL_BLOCK = re.compile(
    r"^DO \$\$\n-- backfill\(\) of (?P<table>\S+)\n.*?^\$\$;$",
    re.MULTILINE | re.DOTALL,
)


def squash(upto: str) -> list[str]:
    """Prove and write the baseline; return what to tell the user."""
    config = alembic_config()
    scripts = script_directory(config)
    refuse_uncommitted(scripts, staged_too=True)
    check_head_record(scripts)
    target = find_revision(scripts, upto)
    below_target = ancestry(scripts, [target.revision])
    oldest_first = reversed(list(scripts.walk_revisions()))
    squashed = [one for one in oldest_first if one.revision in below_target]
    if len(squashed) == 1:
        first = f"{target.revision} is the first revision: nothing to squash"
        raise HistoryError(first)
    refuse_branches_into(scripts, squashed, target)
    found, backfills = data_steps(config, squashed)
    if found:
        raise HistoryError(
            "these revisions change data, which a schema comparison cannot "
            "prove; nothing was changed:\n  " + "\n  ".join(found)
        )
    replaced = [script.revision for script in squashed if script is not target]
    with tempfile.TemporaryDirectory(prefix="squash-") as folder:
        baseline_config = scripts_copy(config, Path(folder))
        baseline = prove(config, baseline_config, target, replaced)
        report = lint(config=baseline_config)
        if report.findings:
            found_by_lint = str(report)
            failed = "the baseline fails the lint, so nothing was changed"
            raise HistoryError(f"{failed}:\n{found_by_lint}")
        for script in squashed:
            Path(script.path).unlink()
        written = Path(scripts.versions) / baseline.name
        shutil.copyfile(baseline, written)
    record_head(script_directory(config))
    written_as = (
        f"Squashed {len(squashed)} revisions into {shown(written)}, which keeps"
        f" the id {target.revision}: databases at it or later need nothing."
    )
    proven = (
        "Proven on scratch databases: the old history and the baseline build"
        " the same catalog, its downgrade leaves nothing, the lint passes."
    )
    deploy = (
        "Commit it (git add -A), and deploy it only where every database is"
        f" at {target.revision} or later: an older one is refused by env.py."
    )
    left_out = (
        f"Left out: {', '.join(backfills)}. A backfill fills only the rows"
        " that exist when it runs: a database at the squash point has run"
        " it, and a new one has none to fill."
    )
    return [written_as, proven, *([left_out] if backfills else []), deploy]


def find_revision(scripts: ScriptDirectory, revision: str) -> Script:
    try:
        script = scripts.get_revision(revision)
    except (RevisionError, CommandError) as error:
        raise HistoryError(str(error)) from None
    if script is None:
        raise HistoryError(f"no revision {revision!r}")
    return script


def refuse_branches_into(
    scripts: ScriptDirectory,
    squashed: list[Script],
    target: Script,
) -> None:
    """Only REV may be the parent of a revision that stays."""
    inside = {script.revision for script in squashed} - {target.revision}
    for script in scripts.walk_revisions():
        if script.revision in inside or script is target:
            continue
        linked = set(builds_on(scripts, script.revision)) & inside
        if linked:
            raise HistoryError(
                f"{shown(Path(script.path))} builds on {', '.join(sorted(linked))}, "
                f"below {target.revision}; squash up to a revision that every "
                "later one builds on"
            )


def data_steps(
    config: Config,
    revisions: list[Script],
) -> tuple[list[str], list[str]]:
    """Each statement of these revisions that is not DDL, and where it is;
    and each backfill, which the baseline leaves out."""
    _, bodies = revision_bodies(config)
    found = []
    backfills = []
    for revision in revisions:
        body = bodies[revision.revision]
        where = shown(Path(revision.path))
        for backfill in BACKFILL_BLOCK.finditer(body):
            backfills.append(f"the backfill of {backfill['table']} ({where})")
        body = BACKFILL_BLOCK.sub("", body)
        for statement in STATEMENT_END.split(body):
            lines = statement.strip().splitlines()
            lines = [line for line in lines if not line.startswith("--")]
            sql = " ".join(" ".join(lines).split())
            if sql and not DDL.match(sql):
                found.append(f"{where}: {sql[:120]}")
    return found, backfills


def scripts_copy(config: Config, folder: Path) -> Config:
    """The project's Alembic setup in `folder`, without its revisions.

    Laid out as in the project, so that `%(here)s` in alembic.ini points to
    the copy and the post-write hooks find what they find at home: the
    formatter its settings in pyproject.toml, the head record its module.
    """
    source = Path(ScriptDirectory.from_config(config).dir)
    migrations = folder / source.relative_to(project_root())
    skipped = shutil.ignore_patterns("versions", "__pycache__")
    shutil.copytree(source, migrations, ignore=skipped)
    (migrations / "versions").mkdir()
    # An alembic.ini kept from before v0.18.0 names the hook's module
    # `scripts`, the service's shim of `alembic-rollout`.
    shim = project_root() / "scripts"
    if shim.is_dir():
        shutil.copytree(shim, folder / "scripts", ignore=skipped)
    for name in ("alembic.ini", "pyproject.toml"):
        shutil.copy(project_root() / name, folder / name)
    return Config(folder / "alembic.ini")


def prove(
    config: Config,
    baseline_config: Config,
    target: Script,
    replaced: list[str],
) -> Path:
    """Write the baseline into baseline_config's folder and prove it."""
    load_revision_writing()  # enums as autogenerate writes them
    settings = configured_settings("the proof")
    server = create_direct_engine(settings)
    with (
        scratch_database(server, settings, "squash_proof") as through_history,
        scratch_database(server, settings, "squash_proof") as through_baseline,
    ):
        migrate(config, through_history, "upgrade", target.revision)
        expected = run(through_history, catalog)
        metadata = MetaData()
        run(
            through_history,
            lambda connection: metadata.reflect(
                connection,
                only=lambda name, _: not name.startswith("alembic_version"),
            ),
        )
        upgrades, downgrades = run(
            through_baseline,
            lambda connection: baseline_operations(connection, metadata),
        )
        baseline = write_baseline(
            baseline_config,
            target,
            replaced,
            upgrades,
            downgrades,
        )
        migrate(baseline_config, through_baseline, "upgrade", target.revision)
        unequal = differences(expected, run(through_baseline, catalog))
        if unequal:
            raise HistoryError(
                "the baseline would not build the schema the history builds "
                f"at {target.revision}, so nothing was changed (- history,"
                " + baseline):\n  " + "\n  ".join(unequal[:40])
            )
        migrate(baseline_config, through_baseline, "downgrade", "base")
        left = run(through_baseline, catalog)
        if left:
            raise HistoryError(
                "the baseline's downgrade leaves these objects behind, so "
                "nothing was changed:\n  " + "\n  ".join(left[:40])
            )
    asyncio.run(server.dispose())
    return baseline


def baseline_operations(
    connection: Connection,
    metadata: MetaData,
) -> tuple[str, str]:
    """What autogenerate writes to build `metadata` on an empty database."""
    context = MigrationContext.configure(
        connection,
        opts={"target_metadata": metadata, "compare_server_default": True},
    )
    script = produce_migrations(context, metadata)
    assert script.upgrade_ops is not None and script.downgrade_ops is not None
    return (
        render_python_code(script.upgrade_ops, migration_context=context),
        render_python_code(script.downgrade_ops, migration_context=context),
    )


def write_baseline(
    config: Config,
    target: Script,
    replaced: list[str],
    upgrades: str,
    downgrades: str,
) -> Path:
    """The baseline revision file, named and formatted as any revision is."""
    replaced_list = "".join(f'\n    "{revision}",' for revision in replaced)
    imports = (
        "from sqlalchemy.dialects import postgresql\n\n"
        f"# {target.revision}: {target.doc}\n"
        "# Squashed into this baseline: a database at one of them was migrated\n"
        "# by the history before it, and is refused by env.py.\n"
        f"squashes: tuple[str, ...] = ({replaced_list}\n)\n"
        "# What the revision of this id did before (revision_log.py): the\n"
        "# databases that ran it are not refused as if it had been edited.\n"
        f'squashed_checksum = "{revision_checksum(target)}"\n'
    )
    # Short enough for Alembic's 40-character slug, which it would cut and
    # end with "_".
    script = ScriptDirectory.from_config(config).generate_revision(
        target.revision,
        f"Baseline up to {target.revision}",
        head="base",
        upgrades=upgrades,
        downgrades=downgrades,
        imports=imports,
    )
    assert script is not None
    return Path(script.path)


if __name__ == "__main__":
    parser = command_parser("squash", __doc__)
    parser.add_argument(
        "upto",
        metavar="REV",
        help="the last revision to replace; the baseline keeps its id",
    )
    upto = parser.parse_args().upto
    run_command("make squash", lambda: squash(upto))
