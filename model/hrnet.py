"""Top-down HRNet heatmap regression: a timm HRNet trunk (stride-4 branch) + a 1×1 head to K heatmaps, and
optionally a person-box head (centre map + box side, see :class:`model.codec.BoxCodec`) for frames without a box."""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

BACKBONES = ("hrnet_w18_small", "hrnet_w18_small_v2", "hrnet_w32", "hrnet_w48")


class BoxHead(nn.Module):
    """All trunk branches, resized to the stride-4 grid and concatenated (HRNetV2's representation), → 1×1 conv,
    3×3 conv → two maps: the person-centre logit and the log box side. The lower-resolution branches see the
    whole person, which the stride-4 branch alone does not."""

    def __init__(self, channels: list[int], width: int = 64):
        super().__init__()
        self.reduce = nn.Conv2d(sum(channels), width, kernel_size=1)
        self.mix = nn.Conv2d(width, width, kernel_size=3, padding=1)
        self.out = nn.Conv2d(width, 2, kernel_size=1)
        # start near the answer's scale (RetinaNet's prior): centre probability 1 % everywhere, box side half the crop
        nn.init.normal_(self.out.weight, std=1e-3)
        with torch.no_grad():
            self.out.bias.copy_(torch.tensor([-4.6, -0.7]))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        x = torch.cat(
            [feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]], 1
        )
        return self.out(F.relu(self.mix(F.relu(self.reduce(x)))))


class PoseHRNet(nn.Module):
    """HRNet trunk from timm (``features_only=True, feature_location=''``, the official pose trunk's key
    names) taking the stride-4 branch, bilinearly resized when the heatmap size is not input/4, then a
    1×1 convolution to one heatmap per joint (``final_layer``, as in the official model).

    The head starts at zero (weight and bias): the net begins at the all-zero heatmap and learns peaks
    from there instead of first unlearning random noise, which is what lets a CPU recipe leave the
    all-zero plateau quickly.

    ``box_head=True`` adds :class:`BoxHead` (``box_head`` in the state dict), trained beside the heatmaps.
    """

    def __init__(
        self, backbone: str, num_joints: int, input_size: int = 256, heatmap_size: int = 64, box_head: bool = False
    ):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone '{backbone}' is not one of {', '.join(BACKBONES)}")
        self.backbone_name = backbone
        self.input_size = input_size
        self.heatmap_size = heatmap_size
        self.backbone = timm.create_model(backbone, pretrained=False, features_only=True, feature_location="")
        chans = self.backbone.feature_info.channels()
        red = self.backbone.feature_info.reduction()
        self._branch = red.index(4)
        self.embed_dim = sum(chans[self._branch :])
        self.final_layer = nn.Conv2d(chans[self._branch], num_joints, kernel_size=1)
        nn.init.zeros_(self.final_layer.weight)
        nn.init.zeros_(self.final_layer.bias)
        self.box_head = BoxHead(chans[self._branch :]) if box_head else None

    @property
    def num_joints(self) -> int:
        return self.final_layer.out_channels

    @property
    def box_map_size(self) -> int:
        """Side of the box head's maps: the stride-4 grid."""
        return self.input_size // 4

    def forward(self, x: torch.Tensor, with_embedding: bool = False, with_box: bool = False):
        """Heatmaps (B, K, H, W); with ``with_embedding`` and/or ``with_box`` a tuple that adds, in this order,
        the pooled embedding (B, D) and the box head's maps (B, 2, h, w) — ``None`` when the net has no box head."""
        feats = self.backbone(x)[self._branch :]
        f = feats[0]
        if f.shape[-1] != self.heatmap_size or f.shape[-2] != self.heatmap_size:
            f = F.interpolate(f, size=(self.heatmap_size, self.heatmap_size), mode="bilinear", align_corners=False)
        out = [self.final_layer(f)]
        if with_embedding:
            out.append(torch.cat([g.float().mean(dim=(2, 3)) for g in feats], dim=1))
        if with_box:
            out.append(self.box_head(feats) if self.box_head is not None else None)
        return out[0] if len(out) == 1 else tuple(out)

    def trunk_modules(self) -> dict[str, nn.Module]:
        return dict(self.backbone.named_children())


def build_model(
    backbone: str, num_joints: int, input_size: int, heatmap_size: int, box_head: bool = False
) -> PoseHRNet:
    return PoseHRNet(backbone, num_joints, input_size, heatmap_size, box_head)
