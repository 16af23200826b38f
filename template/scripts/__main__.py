"""The service's migration tooling, started one way by make, pre-commit and
the post-write hook in alembic.ini alike:

    uv run python -m scripts <command> [arguments]

Each command is a module with one job. Only the module of the command that
runs is imported: `record-head` also runs inside `make squash`'s temporary
copy of the project, which has no package to import.
"""

import runpy
import sys

COMMANDS = {
    "db": "scripts.local_postgres",
    "lint-migrations": "scripts.lint_migrations",
    "check-history": "scripts.check_history",
    "record-head": "scripts.record_head",
    "rebase-revision": "scripts.rebase_revision",
    "squash": "scripts.squash_history",
    "rehearse": "scripts.rehearsal",
    "check-compat": "scripts.check_compat",
    "check-released": "scripts.check_released",
    "revision-log": "scripts.show_revision_log",
    "accept-revision": "scripts.accept_revision",
    "template-source": "scripts.template_source",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        usage = "usage: python -m scripts COMMAND [ARGUMENTS]"
        sys.exit(f"{usage}; commands: {', '.join(COMMANDS)}")
    command, *arguments = sys.argv[1:]
    sys.argv = [f"python -m scripts {command}", *arguments]
    runpy.run_module(COMMANDS[command], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
