"""The databases of the base's tests, migrated by this checkout: one per line
of stdin, to this checkout's head, all in this one process.

`make check-compat` (commands/check_compat.py) runs the base's tests, and each
of them wants a fresh database at the head; the base's process asks this one
(compat_plugin/check_compat_plugin.py). One Alembic run per database, without a
new Python process each time, keeps a test's wait to tens of milliseconds.
"""

import os
import sys

from alembic import command

from alembic_rollout.revision_history import alembic_config
from alembic_rollout.service import clear_settings

# Begins each answer, apart from whatever else a run prints.
ANSWER = "check-compat-migrated:"


def main() -> None:
    config = alembic_config()
    for line in sys.stdin:
        os.environ["MIGRATION_DATABASE_URL"] = line.strip()
        clear_settings()
        try:
            command.upgrade(config, "head")
        except Exception as error:  # noqa: BLE001  (told to the base's test)
            answer = " ".join(f"failed: {error}".split())
        else:
            answer = "ok"
        print(ANSWER, answer, flush=True)


if __name__ == "__main__":
    main()
