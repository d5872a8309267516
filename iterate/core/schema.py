"""The keypoint schema as plain frozen settings: what the model, Label Studio and the reports need to know about
the joints, built once from the manifest (:meth:`iterate.core.manifest.KeypointSchema.spec`) and handed on.

Also the two name-based helpers every layer shares: left/right pairs guessed from joint names, and the flip
permutation they give.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NormalizerSpec:
    """PCKh normaliser ``l``: ``head_box`` (MPII head size), ``head_segment`` between two joints, or
    ``person_box``; frames without it fall back to the person box × a ratio (``fallback``)."""

    kind: str = "head_segment"
    joints: tuple[str, ...] = ()
    factor: float = 1.0
    fallback: str = "person_box_ratio"
    fallback_ratio: float | None = None


@dataclass(frozen=True)
class KeypointSpec:
    """Joint names in channel order, left/right pairs, loss weights, skeleton, the joints of MeanSmS and the
    height chains, the PCKh normaliser and the nearest-joint map for new joints."""

    names: tuple[str, ...]
    flip_pairs: tuple[tuple[str, str], ...] = ()
    skeleton: tuple[tuple[str, str], ...] = ()
    weights: tuple[float, ...] = ()
    height_joints: tuple[str, ...] = ()
    height_chain: tuple[tuple[str, ...], ...] = ()
    normalizer: NormalizerSpec = field(default_factory=NormalizerSpec)
    init_from: tuple[tuple[str, str | tuple[str, ...]], ...] = ()  # joint → the checkpoint joint(s) that start it

    @property
    def num_joints(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def flip_index(self) -> list[int]:
        """Permutation that swaps left/right joints (flip augmentation and flip TTA)."""
        return flip_index(self.names, self.flip_pairs)

    def joint_weights(self) -> list[float]:
        return list(self.weights) if self.weights else [1.0] * self.num_joints

    def height_indices(self) -> list[int]:
        return [self.index(j) for j in self.height_joints]

    def up_joints(self) -> tuple[list[int], list[int]] | None:
        """Body → head joints for head-up rotation: hips → (neck, head top, …) where the schema has them."""
        lo = [i for i, n in enumerate(self.names) if "hip" in n]
        hi = [i for i, n in enumerate(self.names) if n in ("neck", "head_top", "head", "nose", "upper_neck", "thorax")]
        return (lo, hi) if lo and hi else None

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...]) -> KeypointSpec:
        """A schema from joint names alone: pairs guessed from the names (older checkpoints, ``iterate predict``)."""
        return cls(tuple(names), tuple((a, b) for a, b in guess_flip_pairs(list(names))))


def guess_flip_pairs(names: list[str]) -> list[list[str]]:
    """Left/right joint pairs from their names (left_x/right_x, l_x/r_x)."""
    pairs = []
    for n in names:
        for a, b in (("left_", "right_"), ("l_", "r_"), ("left", "right")):
            if n.startswith(a) and (b + n[len(a) :]) in names:
                pairs.append([n, b + n[len(a) :]])
                break
    return pairs


def flip_index(names, pairs) -> list[int]:
    """The permutation that swaps each pair's joints."""
    names = list(names)
    idx = list(range(len(names)))
    for a, b in pairs:
        ia, ib = names.index(a), names.index(b)
        idx[ia], idx[ib] = ib, ia
    return idx
