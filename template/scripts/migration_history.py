"""`python -m scripts.migration_history record-head|check|rebase|squash REV`:
how the history commands were started before `python -m scripts <command>`;
kept for an alembic.ini, Makefile or CI file that still says so.
"""

import sys

from alembic_rollout.__main__ import main

NAMES_BEFORE = {"check": "check-history", "rebase": "rebase-revision"}

if __name__ == "__main__":
    command, *arguments = sys.argv[1:] or [""]
    sys.argv = [sys.argv[0], NAMES_BEFORE.get(command, command), *arguments]
    main()
