"""v6: person boxes from a file (issue 30): a source's ``person_boxes`` (COCO detection results) give each of its
frames the most confident person box (``x, y, w, h`` in image pixels; NULL where none was found) and the number
of people the detector found there (``people``); the pose pass crops on the box instead of the whole frame."""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "person_boxes",
        sa.Column("frame_id", sa.Text, sa.ForeignKey("frames.id"), primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("x", sa.Float),
        sa.Column("y", sa.Float),
        sa.Column("w", sa.Float),
        sa.Column("h", sa.Float),
        sa.Column("score", sa.Float),
        sa.Column("people", sa.Integer, nullable=False),
    )
    op.create_index("ix_person_boxes_source", "person_boxes", ["source"])
