"""v2: labels.head_box, JSON [x, y, w, h] from COCO bbox_head / head_box, or null."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("labels", sa.Column("head_box", sa.Text))
