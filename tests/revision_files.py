"""Hand-written revisions, as a team writes them into the versions folder."""

from dataclasses import dataclass
from pathlib import Path

from tests.rendering import SHIPPED_HEAD

REVISION = '''"""{message}"""

import sqlalchemy as sa
from alembic import op
{imports}
revision = "{revision}"
down_revision = "{down_revision}"
branch_labels = None
depends_on = None
{contract_step}

def upgrade() -> None:
    {upgrade}


def downgrade() -> None:
    {downgrade}
'''


@dataclass
class Revision:
    """`upgrade` and `downgrade` hold one statement per item."""

    revision: str
    message: str
    upgrade: list[str]
    downgrade: list[str]
    down_revision: str = SHIPPED_HEAD
    imports: tuple[str, ...] = ()
    contract_step: dict[str, str] | None = None

    def source(self) -> str:
        imports = "".join(f"{line}\n" for line in self.imports)
        contract_step = f"contract_step = {self.contract_step!r}\n" if self.contract_step else ""
        return REVISION.format(
            message=self.message,
            revision=self.revision,
            down_revision=self.down_revision,
            imports=f"\n{imports}" if imports else "",
            contract_step=contract_step,
            upgrade="\n    ".join(self.upgrade),
            downgrade="\n    ".join(self.downgrade),
        )

    def write(self, project: Path, file_stem: str) -> Path:
        (versions,) = project.rglob("versions")
        path = versions / f"{self.revision}_{file_stem}.py"
        path.write_text(self.source())
        return path
