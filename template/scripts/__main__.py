"""The service's migration tooling, started one way by make, pre-commit and
the post-write hook in alembic.ini alike:

    uv run python -m scripts <command> [arguments]

Each command is a module with one job. Only the module of the command that
runs is imported: `record-head` also runs inside `make squash`'s temporary
copy of the project, which has no package to import.
"""

import runpy
import sys

# Command -> its module, and the arguments that module is started with.
COMMANDS = {
    "db": ("scripts.local_postgres", []),
    "lint-migrations": ("scripts.lint_migrations", []),
    "check-history": ("scripts.migration_history", ["check"]),
    "record-head": ("scripts.migration_history", ["record-head"]),
    "rebase-revision": ("scripts.migration_history", ["rebase"]),
    "squash": ("scripts.migration_history", ["squash"]),
    "rehearse": ("scripts.rehearsal", []),
    "template-source": ("scripts.template_source", []),
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        usage = "usage: python -m scripts COMMAND [ARGUMENTS]"
        sys.exit(f"{usage}; commands: {', '.join(COMMANDS)}")
    command, *arguments = sys.argv[1:]
    module, leading = COMMANDS[command]
    sys.argv = [f"python -m scripts {command}", *leading, *arguments]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
