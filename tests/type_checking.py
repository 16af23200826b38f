"""mypy over rendered services, sharing only what can be shared: the libraries' types.

Services of different answers have modules of the same name (tests/conftest.py,
scripts/...), often of the same size and written in the same second, and mypy trusts
its cache on size and mtime. A cache shared between two services can therefore pass a
module it never checked: a `code_dir=app` service, checked after a `src` one, got 17
errors about `src.config` from the other's cache, and the reverse can hide errors.
So each service starts from a copy of a cache that holds the libraries alone, built
from a module that imports every library the template imports, and kept.
"""

import contextlib
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
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


# Kept between runs (and between .ci/run's two passes): it changes only with the
# libraries, mypy and Python, which its folder's name is a digest of.
KEPT_CACHES = TEMPLATE_ROOT / ".cache" / "mypy-libraries"


def library_cache() -> Path:
    """A mypy cache, under the services' own options (strict), of the libraries alone:
    the one kept for these libraries, else built now and kept."""
    imports = "".join(f"import {name}\n" for name in libraries_the_template_imports())
    key = "\n".join([imports, sys.version, (TEMPLATE_ROOT / "uv.lock").read_text()])
    kept = KEPT_CACHES / hashlib.sha256(key.encode()).hexdigest()[:16]
    if kept.exists():
        return kept
    KEPT_CACHES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=KEPT_CACHES) as folder:
        (Path(folder) / "third_party_imports.py").write_text(imports)
        (Path(folder) / "pyproject.toml").write_text("[tool.mypy]\nstrict = true\n")
        cache = Path(folder) / "cache"
        subprocess.run(
            [sys.executable, "-m", "mypy", "--cache-dir", str(cache), "third_party_imports.py"],
            cwd=folder,
            capture_output=True,
            timeout=300,
        )
        # Another test process may have kept one meanwhile: either will do.
        with contextlib.suppress(OSError):
            cache.rename(kept)
    # Those of other libraries (an older uv.lock) go.
    for other in KEPT_CACHES.iterdir():
        if other.name != kept.name and not other.name.startswith("tmp"):
            shutil.rmtree(other, ignore_errors=True)
    return kept


def fresh_cache(library_cache: Path, destination: Path) -> Path:
    """A service's own cache: the libraries' types, nothing of another service."""
    return Path(shutil.copytree(library_cache, destination))
