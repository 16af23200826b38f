"""The service that the tools work on: its folder, and the few things of its
own code they call, named in its pyproject.toml:

    [tool.alembic-rollout]
    package = "src"          # the package with config.py and database.py
    readme-language = "en"   # the language of the README that refusals cite

The package provides:

- `config.get_settings()`: the settings (a functools cache, which
  `make check-compat` clears between databases), raising
  `config.SettingsError` with a one-line message when they are invalid;
- on the settings: `require_connection(direct=...)`, `rehearsal_url`,
  `rehearsal_rows` and `rehearsal_max_wait_ms`;
- `database.create_direct_engine(settings, database=None, url=None)`: one
  connection at a time to PostgreSQL itself;
- `migration_policy.LOCK_KEY`: the migration lock's key (`make drift` stops
  while a migration holds it);
- optionally `revision_writing`, imported for how autogenerate writes
  revisions (enum types), before `make squash` writes its baseline.

The folder is the nearest one, from the working directory up, that holds an
alembic.ini and a pyproject.toml: where `make` and pre-commit run, even when
the service lives in a subfolder of a monorepo.
"""

import importlib
import sys
import tomllib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, cast

from sqlalchemy import URL
from sqlalchemy.ext.asyncio import AsyncEngine

SECTION = "alembic-rollout"


class ServiceError(Exception):
    """The service's folder or its [tool.alembic-rollout] cannot be used."""


class Settings(Protocol):
    """What the tools read of the service's settings."""

    @property
    def rehearsal_url(self) -> URL | None: ...

    rehearsal_rows: int
    rehearsal_max_wait_ms: int

    def require_connection(self, direct: bool = False) -> None: ...


@cache
def project_root() -> Path:
    start = Path.cwd().resolve()
    for folder in (start, *start.parents):
        if (folder / "alembic.ini").is_file() and (folder / "pyproject.toml").is_file():
            return folder
    raise ServiceError(
        f"no alembic.ini with a pyproject.toml beside it in {start} or above: "
        "run this from the service's folder"
    )


@cache
def pyproject() -> dict[str, Any]:
    """The service's pyproject.toml, read once."""
    return tomllib.loads((project_root() / "pyproject.toml").read_text())


def options() -> dict[str, Any]:
    section: dict[str, Any] = pyproject().get("tool", {}).get(SECTION, {})
    return section


def readme_language() -> str:
    return str(options().get("readme-language", "en"))


def in_readme(english: str, russian: str) -> str:
    """A reference to a section of the service's README, in its language."""
    return russian if readme_language() == "ru" else english


def package_module(name: str) -> ModuleType:
    """`name` (config, database, ...) of the service's package, imported
    from the service's folder as Alembic's `prepend_sys_path` does."""
    package = options().get("package")
    if not isinstance(package, str):
        raise ServiceError(
            "pyproject.toml has no package in [tool.alembic-rollout] "
            '(package = "src", say): the tools need the service\'s settings'
        )
    root = str(project_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        return importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError as error:
        if error.name not in (package, f"{package}.{name}"):
            raise  # A module that the service's own code imports.
        raise ServiceError(
            f'package = "{package}" in [tool.alembic-rollout] (pyproject.toml): '
            f"{error}; name the folder that holds config.py and database.py"
        ) from None


def settings_error() -> type[Exception]:
    return cast(type[Exception], package_module("config").SettingsError)


def get_settings() -> Settings:
    return cast(Settings, package_module("config").get_settings())


def clear_settings() -> None:
    package_module("config").get_settings.cache_clear()


def create_direct_engine(
    settings: Settings,
    database: str | None = None,
    url: URL | None = None,
) -> AsyncEngine:
    create = cast(
        Callable[..., AsyncEngine],
        package_module("database").create_direct_engine,
    )
    return create(settings, database=database, url=url)


def lock_key() -> str:
    """The migration lock's key: `LOCK_KEY` of the package's migration_policy."""
    return str(package_module("migration_policy").LOCK_KEY)


def load_revision_writing() -> None:
    """How autogenerate writes revisions, where the service has it."""
    try:
        package_module("revision_writing")
    except ModuleNotFoundError as error:
        if not (error.name or "").endswith(".revision_writing"):
            raise
