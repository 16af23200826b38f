"""Run several `alembic` command lines in one process; print what each wrote, as JSON.

Used by the template's tests inside a rendered project: importing SQLAlchemy and
Alembic costs about two seconds per process here, and each service is driven
through a dozen commands. Each command line goes through Alembic's own parser
and `CommandLine.run_cmd`, exactly as the `alembic` script runs it.

Usage: python alembic_batch.py '[["upgrade", "head"], ["current"]]'
"""

import contextlib
import io
import json
import sys

from alembic.config import CommandLine, Config


def run(arguments: list[str]) -> dict[str, object]:
    cli = CommandLine(prog="alembic")
    options = cli.parser.parse_args(arguments)
    stdout, stderr = io.StringIO(), io.StringIO()
    config = Config(file_="alembic.ini", cmd_opts=options, stdout=stdout)
    exit_code: object = 0
    # Alembic writes some of its output (`--sql` scripts, "Generating ...") to
    # sys.stdout rather than to the config's stream.
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            cli.run_cmd(config, options)
        except SystemExit as exit:
            exit_code = exit.code
    return {
        "arguments": arguments,
        "exit_code": exit_code,
        "stdout": stdout.getvalue(),
        "stderr": stderr.getvalue(),
    }


def main() -> None:
    results = []
    for arguments in json.loads(sys.argv[1]):
        results.append(run(arguments))
        if results[-1]["exit_code"]:
            break
    print(json.dumps(results))


if __name__ == "__main__":
    main()
