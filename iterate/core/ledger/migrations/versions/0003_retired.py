"""v3: frames.retired_at / retired_why (a frame retired by `iterate frames remove`: kept with its history, used no
more)."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("frames", sa.Column("retired_at", sa.Float))
    op.add_column("frames", sa.Column("retired_why", sa.Text))
