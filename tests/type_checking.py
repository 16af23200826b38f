"""mypy over rendered services, sharing only what can be shared: the libraries' types.

Services of different answers have modules of the same name (tests/conftest.py,
scripts/...), often of the same size and written in the same second, and mypy trusts
its cache on size and mtime. A cache shared between two services can therefore pass a
module it never checked: a `code_dir=app` service, checked after a `src` one, got 17
errors about `src.config` from the other's cache, and the reverse can hide errors.
So each service starts from a copy of a cache that holds the libraries alone, built
once from a module that imports every library the template imports.
"""

import re
import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

from tests.rendering import TEMPLATE_ROOT

IMPORTED = re.compile(r"^[ \t]*(?:from|import) ([A-Za-z_]\w*)", re.MULTILINE)
# The service's own top-level packages, whatever the answers.
OWN_PACKAGES = {"app", "src", "scripts", "tests"}


def libraries_the_template_imports() -> list[str]:
    names = set()
    for path in (TEMPLATE_ROOT / "template").rglob("*"):
        # Conditional files too: `{% if ... %}test_api.py{% endif %}.jinja`.
        if ".py" in path.name and path.suffix in (".py", ".jinja"):
            names.update(IMPORTED.findall(path.read_text()))
    return sorted(
        name
        for name in names - OWN_PACKAGES - set(sys.stdlib_module_names)
        if find_spec(name) is not None
    )


def build_library_cache(folder: Path) -> Path:
    """A mypy cache, under the services' own options (strict), of the libraries alone."""
    imports = "".join(f"import {name}\n" for name in libraries_the_template_imports())
    (folder / "third_party_imports.py").write_text(imports)
    (folder / "pyproject.toml").write_text("[tool.mypy]\nstrict = true\n")
    cache = folder / "cache"
    subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache), "third_party_imports.py"],
        cwd=folder,
        capture_output=True,
        timeout=300,
    )
    return cache


def fresh_cache(library_cache: Path, destination: Path) -> Path:
    """A service's own cache: the libraries' types, nothing of another service."""
    return Path(shutil.copytree(library_cache, destination))
