"""`alembic-rollout COMMAND [ARGUMENTS]` (or `python -m alembic_rollout`): the
tools, run from the service's folder by its Makefile, pre-commit hooks and
alembic.ini's post-write hook alike.

Each command is a module of `alembic_rollout.commands` with one job, and only
the module of the command that runs is imported: `record-head` also runs in
`make squash`'s temporary copy of the project, which has no package.
"""

import importlib
import runpy
import sys

from alembic_rollout.service import ServiceError

# Command, module, and what it does (the first line of `--help`).
COMMANDS = {
    "db": ("local_postgres", "start or stop the project's own PostgreSQL"),
    "lint-migrations": ("lint_migrations", "lint each revision's SQL with squawk"),
    "check-history": ("check_history", "one head, recorded in head_revision.txt"),
    "record-head": ("record_head", "write head_revision.txt (post-write hook)"),
    "rebase-revision": ("rebase_revision", "move your revisions on top of theirs"),
    "squash": ("squash_history", "revisions up to REV become one proven baseline"),
    "rehearse": ("rehearsal", "apply new revisions under synthetic traffic"),
    "check-compat": ("check_compat", "the base's code against this schema"),
    "check-released": ("check_released", "released revisions left unchanged"),
    "report": ("report", "every check of the new revisions, in one report"),
    "stats-export": ("stats_export", "production's table sizes, no row values"),
    "drift": ("drift", "the live schema against what its history builds"),
    "plan": ("plan", "the SQL the next upgrade head would run, changing nothing"),
    "revision-log": ("show_revision_log", "the database's revision log"),
    "accept-revision": ("accept_revision", "accept an edited, applied revision"),
    "template-source": ("template_source", "can copier update find the template"),
}
PROGRAM = "alembic-rollout"
# Commands without options of their own: `COMMAND --help` shows their module's
# docstring instead of running them.
WITHOUT_OPTIONS = {"db", "check-history", "record-head", "rebase-revision", "template-source"}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROGRAM} COMMAND [ARGUMENTS]", "", "commands:"]
    for command, (_, summary) in COMMANDS.items():
        lines.append(f"  {command.ljust(width)}  {summary}")
    lines.append(f"\n`{PROGRAM} COMMAND --help` tells more of most of them.")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(usage())
        return
    if len(sys.argv) < 2:
        sys.exit(usage())
    if sys.argv[1] not in COMMANDS:
        sys.exit(f"{PROGRAM}: no command {sys.argv[1]!r}\n\n{usage()}")
    command, *arguments = sys.argv[1:]
    module = f"alembic_rollout.commands.{COMMANDS[command][0]}"
    if command in WITHOUT_OPTIONS and arguments in (["-h"], ["--help"]):
        print(importlib.import_module(module).__doc__)
        return
    # argparse names the program after argv[0], as `make help` shows it.
    sys.argv = [f"{PROGRAM} {command}", *arguments]
    try:
        runpy.run_module(module, run_name="__main__")
    except ServiceError as error:  # Run outside a service, or misconfigured.
        sys.exit(f"{PROGRAM} {command}: {error}")


if __name__ == "__main__":
    main()
