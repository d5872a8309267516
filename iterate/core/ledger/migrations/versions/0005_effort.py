"""v5: what labeling costs (issue 34).

* ``tasks.prediction``: the pre-annotation pushed with the task, as JSON ``[[x, y, v], …]`` in image pixels (v = 0:
  a joint left unplaced); ``[]`` for a task pushed without one; NULL for a task pushed before v5 (unknown).
* ``labels.lead_time``: Label Studio's ``lead_time`` of the annotation (seconds the annotator spent on it).
* ``labels.edits``: the per-joint accounting of the label against its task's pre-annotation (reports/cost.py:
  accepted / moved with the distance / added / deleted / visibility changed), JSON; NULL where none is known.
* ``labels.reviewed_at`` (issue 33): when a review task (`iterate audit --push`) came back with this label version
  unchanged — the label is confirmed and the audit does not flag it again. A corrected one is a new version with
  source ``review``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("prediction", sa.Text))
    op.add_column("labels", sa.Column("lead_time", sa.Float))
    op.add_column("labels", sa.Column("edits", sa.Text))
    op.add_column("labels", sa.Column("reviewed_at", sa.Float))
