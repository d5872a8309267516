"""`iterate simulate`'s statistics and rendering, from the per-seed rows its engine (`iterate.loop.simulate`)
records: :mod:`.statistics` (paired bootstrap intervals over seeds, ratios to random, merging runs) and
:mod:`.render` (simulate.json, .md and the PNGs)."""

from reports.simulation.render import markdown, write_outputs
from reports.simulation.statistics import COLD, N_BOOT, merge, paired_difference, rename_arms, summarise

__all__ = ["COLD", "N_BOOT", "markdown", "merge", "paired_difference", "rename_arms", "summarise", "write_outputs"]
