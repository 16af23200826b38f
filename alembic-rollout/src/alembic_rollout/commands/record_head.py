"""`alembic-rollout record-head [REVISION_FILE]`: the post-write hook in
alembic.ini, after every `alembic revision` and `alembic merge`.

It rewrites head_revision.txt, in the migrations folder, with the head of
the history, so that two branches that each add a revision conflict in git
(commands/rebase_revision.py resolves it).

It must stay importable without the service's package: `make squash` runs
Alembic, and with it this hook, in a temporary copy of the project that has
none. So it imports Alembic and revision_history.py alone.
"""

from alembic_rollout.revision_history import (
    record_head,
    run_command,
    script_directory,
)


def record() -> list[str]:
    # The hook passes the new revision's file; the head is read from all.
    record_head(script_directory())
    return []


if __name__ == "__main__":
    run_command("record-head", record)
