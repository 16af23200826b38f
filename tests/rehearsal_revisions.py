"""Four revisions on top of the shipped head that change `hotels` under traffic, for
the rehearsal's test and benchmark: a nullable column and its batched backfill (both
safe), a column with a volatile default (a table rewrite), and a column filled by one
UPDATE of every row (every row locked until it commits)."""

from tests.rendering import SHIPPED_HEAD

REVISION = '''\
"""{title}"""

import sqlalchemy as sa
from alembic import op

from src.revision_operations import backfill

revision = "{revision}"
down_revision = "{down_revision}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    {upgrade}


def downgrade() -> None:
    {downgrade}
'''

# (revision, title, upgrade, downgrade), oldest first.
STEPS = [
    (
        "a1a1a1a1a1a1",
        "Add rating to hotels",
        'op.add_column("hotels", sa.Column("rating", sa.BigInteger(), nullable=True))',
        'op.drop_column("hotels", "rating")',
    ),
    (
        "a2a2a2a2a2a2",
        "Fill hotel ratings in batches",
        'backfill("hotels", "rating = 3", pending="rating IS NULL")',
        "pass",
    ),
    (
        "a3a3a3a3a3a3",
        "Add a random token to hotels",
        'op.add_column("hotels", sa.Column("token", sa.Uuid(), '
        'server_default=sa.text("gen_random_uuid()"), nullable=False))',
        'op.drop_column("hotels", "token")',
    ),
    (
        "a4a4a4a4a4a4",
        "Add stars to hotels and fill them in one statement",
        'op.add_column("hotels", sa.Column("stars", sa.BigInteger(), nullable=True))\n'
        '    op.execute("UPDATE hotels SET stars = 3")',
        'op.drop_column("hotels", "stars")',
    ),
]
BATCHED_BACKFILL, ONE_STATEMENT_BACKFILL = "a2a2a2a2a2a2", "a4a4a4a4a4a4"
NULLABLE_COLUMN, VOLATILE_DEFAULT = "a1a1a1a1a1a1", "a3a3a3a3a3a3"


def revision_files() -> dict[str, str]:
    """File name -> text of each revision, each on top of the one before."""
    files = {}
    down_revision = SHIPPED_HEAD
    for revision, title, upgrade, downgrade in STEPS:
        name = f"{revision}_{title.lower().replace(' ', '_')}.py"
        files[name] = REVISION.format(
            title=title,
            revision=revision,
            down_revision=down_revision,
            upgrade=upgrade,
            downgrade=downgrade,
        )
        down_revision = revision
    return files
