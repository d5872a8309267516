"""The uncertainty scores a selection can weigh, in one registry: each score's name, where it comes from and
whether `iterate select` computes it. The manifest validates ``selection.weights`` against it, the per-model
score cache stores the :data:`PASS_SCORES` as its columns (:data:`CACHE_WIDTH`), the pool builder computes the
others, and the CLI help lists it. :mod:`iterate.selection.scores` holds the formulas.

A new score is one entry here and its formula there.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ScoreKind", "SCORES", "PASS_SCORES", "CACHE_WIDTH", "SELECT_SCORES", "describe"]


@dataclass(frozen=True)
class ScoreKind:
    name: str
    source: str  # "pass": one scoring pass of the model (cached per model, one column each);
    # "labels": the pass's keypoints against the labeled bodies; "history": against the previous round's predictions
    select: bool  # computed by `iterate select` (False: `iterate simulate` measures it as an arm only)
    help: str


SCORES: dict[str, ScoreKind] = {
    k.name: k
    for k in (
        ScoreKind("confidence", "pass", True, "1 − the mean heatmap maximum"),
        ScoreKind("flip", "pass", True, "flip-TTA disagreement over the person's size"),
        ScoreKind("entropy", "pass", True, "multiple-peak entropy of the heatmaps"),
        ScoreKind("snapshot", "history", False, "how far the prediction moved since the previous round's model"),
        ScoreKind("plausibility", "labels", True, "bone lengths unlike the project's labeled bodies"),
    )
}
PASS_SCORES: tuple[str, ...] = tuple(n for n, k in SCORES.items() if k.source == "pass")
CACHE_WIDTH = len(PASS_SCORES)  # columns of the score cache's scores.npy
SELECT_SCORES: tuple[str, ...] = tuple(n for n, k in SCORES.items() if k.select)


def describe() -> str:
    """One line for help texts: every score, with the ones only `iterate simulate` computes marked."""
    return ", ".join(n if k.select else f"{n} (simulate only)" for n, k in SCORES.items())
