"""submissions.file_removed_at: the retention setting removed the stored upload

Written by hand after ``server/models.py`` gained the column (server/retention.py sets it);
tests/server/test_migrations.py checks that the models and the migrations agree.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 19:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('submissions') as batch_op:
        batch_op.add_column(sa.Column('file_removed_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('submissions') as batch_op:
        batch_op.drop_column('file_removed_at')
