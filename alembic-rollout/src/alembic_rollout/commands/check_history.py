"""`make check-history` (`alembic-rollout check-history`, part of `make
lint`): fail unless the history has one head and head_revision.txt names it.
"""

from alembic_rollout.revision_history import (
    check_head_record,
    run_command,
    script_directory,
)


def check() -> list[str]:
    return [check_head_record(script_directory())]


if __name__ == "__main__":
    run_command("make check-history", check)
