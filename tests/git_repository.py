"""Git as the tests drive it: a service or a template as a repository, edits, commits."""

import subprocess
from pathlib import Path


def git(cwd: Path, *arguments: str) -> str:
    result = subprocess.run(
        ["git", *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return result.stdout


def identity(name: str, email: str) -> dict[str, str]:
    """Who commits, as environment variables: for a git command run as a reader types
    it, on a machine whose git has no user configured."""
    return {
        f"GIT_{role}_{part}": value
        for role in ("AUTHOR", "COMMITTER")
        for part, value in (("NAME", name), ("EMAIL", email))
    }


def commit_all(repository: Path, message: str) -> None:
    git(repository, "add", "-A")
    git(repository, "commit", "-q", "-m", message)


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not exactly once in {path}"
    path.write_text(text.replace(old, new))


def init_repository(project: Path) -> None:
    git(project, "init", "-q", "-b", "main")
    git(project, "config", "user.email", "team@example.com")
    git(project, "config", "user.name", "Team")
    commit_all(project, "Render the service")


def init_monorepo(project: Path, release: str = "v1") -> None:
    """`project` as services/<name>/ of a larger repository, committed and tagged
    `release`: the tools must read the history from the repository's root."""
    assert project.parent.name == "services", project
    init_repository(project.parent.parent)
    git(project, "tag", release)
