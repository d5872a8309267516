"""v1: frames, labels (versioned), rounds, round_frames, tasks, models, reports, kv.

The same tables on SQLite and PostgreSQL: JSON is stored as text, times as seconds since the epoch, the 64-bit
perceptual hash as a signed BIGINT.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_AUTO = {"sqlite_autoincrement": True}  # ids are never reused on SQLite either


def upgrade() -> None:
    _frames()
    _models()
    _labels()
    _rounds()
    _round_frames()
    _tasks()
    _reports()
    _kv()


def _frames() -> None:
    op.create_table(
        "frames",
        sa.Column("id", sa.Text, primary_key=True),  # stable: hash of source + relative path + frame index
        sa.Column("path", sa.Text, nullable=False),  # absolute path of the image file
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("video", sa.Text),  # video path for frames cut from a video
        sa.Column("frame_index", sa.Integer),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.Text, nullable=False),  # sha1 of the file bytes
        sa.Column("phash", sa.BigInteger, nullable=False),  # 64-bit difference hash, stored signed
        sa.Column("split", sa.Text, nullable=False),
        sa.Column("added_at", sa.Float, nullable=False),
        sa.CheckConstraint("split IN ('pool','train','val','test')", name="frames_split_values"),
    )
    op.create_index("frames_split", "frames", ["split"])
    op.create_index("frames_content", "frames", ["content_hash", "source", "frame_index"], unique=True)


def _models() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("models.id")),
        sa.Column("n_train", sa.Integer, nullable=False, server_default="0"),
        sa.Column("config", sa.Text, nullable=False, server_default="{}"),
        sa.Column("metrics", sa.Text, nullable=False, server_default="{}"),
        **_AUTO,
    )


def _labels() -> None:
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("frame_id", sa.Text, sa.ForeignKey("frames.id"), nullable=False),
        sa.Column("instance", sa.Integer, nullable=False, server_default="0"),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("keypoints", sa.Text, nullable=False),  # JSON [[x, y, v], ...] in image pixels, v in {0, 1, 2}
        sa.Column("bbox", sa.Text),  # JSON [x, y, w, h] or null
        sa.Column("attributes", sa.Text, nullable=False, server_default="{}"),
        sa.Column("source", sa.Text, nullable=False),  # coco | labelstudio | oracle | ...
        sa.Column("annotator", sa.Text),
        sa.Column("ls_task_id", sa.Integer),
        sa.Column("ls_annotation_id", sa.Integer),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("frame_id", "instance", "version", name="labels_one_version"),
        **_AUTO,
    )
    op.create_index("labels_frame", "labels", ["frame_id"])


def _rounds() -> None:
    op.create_table(
        "rounds",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("chunk", sa.Integer, nullable=False),
        sa.Column("budget", sa.Integer, nullable=False),
        sa.Column("strategy", sa.Text, nullable=False),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id")),
        sa.Column("params", sa.Text, nullable=False, server_default="{}"),
        **_AUTO,
    )


def _round_frames() -> None:
    op.create_table(
        "round_frames",
        sa.Column("round_id", sa.Integer, sa.ForeignKey("rounds.id"), primary_key=True),
        sa.Column("frame_id", sa.Text, sa.ForeignKey("frames.id"), primary_key=True),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("scores", sa.Text, nullable=False, server_default="{}"),
    )


def _tasks() -> None:
    op.create_table(
        "tasks",
        sa.Column("frame_id", sa.Text, sa.ForeignKey("frames.id"), nullable=False),
        sa.Column("project_id", sa.Integer, primary_key=True),
        sa.Column("task_id", sa.Integer, primary_key=True),
        sa.Column("round_id", sa.Integer, sa.ForeignKey("rounds.id")),
        sa.Column(
            "status", sa.Text, nullable=False, server_default="pending"
        ),  # pending|labeled|skipped|invalid|retired
        sa.Column("note", sa.Text),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("project_id", "frame_id", name="tasks_one_per_frame"),
    )


def _reports() -> None:
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id")),
        sa.Column("summary", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.Float, nullable=False),
        **_AUTO,
    )


def _kv() -> None:
    op.create_table("kv", sa.Column("key", sa.Text, primary_key=True), sa.Column("value", sa.Text, nullable=False))
