"""v4: dataset versions (issue 32). A version is a set of label versions — (frame, instance, label version) rows of
``labels``, never overwritten — with a content hash; ``iterate export`` and ``iterate retrain`` record one, and
``models.dataset_version`` names the version a model was trained on.

* ``dataset_versions``: the version number (``id``, shown as vN), when and by which command it was recorded, its
  content hash (sha256 over the joint schema and every member's frame, split, image hash and label content) and
  counts; ``params`` holds the joint schema and strata the export writes, so that a version exports the same bytes
  after the manifest changed.
* ``dataset_version_labels``: the members, with the selection round of each label's Label Studio task as it was
  when the version was recorded (a task row can later be replaced).
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("made_by", sa.Text, nullable=False),  # export | retrain
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("n_frames", sa.Integer, nullable=False),
        sa.Column("n_labels", sa.Integer, nullable=False),
        sa.Column("params", sa.Text, nullable=False, server_default="{}"),
        sqlite_autoincrement=True,
    )
    op.create_index("dataset_versions_hash", "dataset_versions", ["content_hash"], unique=True)
    op.create_table(
        "dataset_version_labels",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("dataset_versions.id"), primary_key=True),
        sa.Column("label_id", sa.Integer, sa.ForeignKey("labels.id"), primary_key=True),
        sa.Column("round_id", sa.Integer),
    )
    op.add_column("models", sa.Column("dataset_version", sa.Integer))
