"""The revisions that a squash replaced, read from the baselines that
replaced them (`squashes`, written by the service's `make squash`).

env.py refuses a database at such a revision; `/ready` reports one.
"""

from collections.abc import Iterable

from alembic.script import ScriptDirectory
from alembic.util import CommandError

from alembic_rollout.revision_log import shown_path


def squashed_revisions(script: ScriptDirectory) -> dict[str, str]:
    """Each revision a squash replaced, and the baseline that replaced it."""
    replaced = {}
    for base in script.get_bases():
        baseline = script.get_revision(base)
        assert baseline is not None
        for revision in getattr(baseline.module, "squashes", ()):
            replaced[revision] = baseline.revision
    return replaced


def refuse_squashed_heads(
    script: ScriptDirectory,
    current_heads: Iterable[str],
) -> None:
    """A database at a revision that a squash replaced cannot go on here."""
    squashed = squashed_revisions(script)
    for head in current_heads:
        if head in squashed:
            baseline = squashed[head]
            raise CommandError(
                f"The database is at {head}, which the history no longer "
                f"has: it was squashed into the baseline {baseline}. The "
                "database is unchanged. Upgrade it to "
                f"{baseline} with a checkout from before the squash: the "
                "parent of the commit that added the baseline, which "
                f"`git log --diff-filter=A --format=%h -- {_file_of(script, baseline)}` "
                "names. Then run this again."
            )


def _file_of(script: ScriptDirectory, revision_id: str) -> str:
    revision = script.get_revision(revision_id)
    assert revision is not None
    return shown_path(revision)
