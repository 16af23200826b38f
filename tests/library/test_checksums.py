"""alembic_rollout.revision_log.checksum: what a revision does, not how it is written."""

import pytest
from alembic_rollout.revision_log import checksum

REVISION = '''"""Add users"""

import sqlalchemy as sa
from alembic import op

revision = "9b4f7c1e0a62"
down_revision = "5e8d2a6b1f03"
contract_step = {"ban-drop-column": "gone from the code in the release before"}


def upgrade() -> None:
    op.add_column("users", sa.Column("nickname", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "nickname")
'''

SAME = {
    "reformatted": REVISION.replace(
        'op.add_column("users", sa.Column("nickname", sa.Text(), nullable=True))',
        'op.add_column(\n        "users",\n'
        '        sa.Column("nickname", sa.Text(), nullable=True),\n    )',
    ),
    "commented": "# Reviewed by the team.\n"
    + REVISION.replace("def downgrade", "# Put back as it was.\ndef downgrade"),
    "another docstring": REVISION.replace('"""Add users"""', '"""Add a nickname to users"""'),
    "a contract step declared later": REVISION.replace(
        "gone from the code in the release before", "see the README"
    ),
}
CHANGED = {
    "another argument": REVISION.replace("nullable=True", "nullable=False"),
    "another column": REVISION.replace('"nickname", sa.Text()', '"nick", sa.Text()'),
    "another downgrade": REVISION.replace(
        'op.drop_column("users", "nickname")', 'op.execute("SELECT 1")'
    ),
}


@pytest.mark.parametrize("variant", SAME)
def test_how_it_is_written_changes_nothing(variant: str) -> None:
    assert checksum(SAME[variant]) == checksum(REVISION)


@pytest.mark.parametrize("variant", CHANGED)
def test_what_it_does_changes_the_checksum(variant: str) -> None:
    assert checksum(CHANGED[variant]) != checksum(REVISION)
