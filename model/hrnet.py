"""Top-down HRNet heatmap regression: a timm HRNet trunk (stride-4 branch) + a 1×1 head to K heatmaps."""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

BACKBONES = ("hrnet_w18_small", "hrnet_w18_small_v2", "hrnet_w32", "hrnet_w48")


class PoseHRNet(nn.Module):
    """HRNet trunk from timm (``features_only=True, feature_location=''``, the official pose trunk's key
    names) taking the stride-4 branch, bilinearly resized when the heatmap size is not input/4, then a
    1×1 convolution to one heatmap per joint (``final_layer``, as in the official model).

    The head starts at zero (weight and bias): the net begins at the all-zero heatmap and learns peaks
    from there instead of first unlearning random noise, which is what lets a CPU recipe leave the
    all-zero plateau quickly.
    """

    def __init__(self, backbone: str, num_joints: int, input_size: int = 256, heatmap_size: int = 64):
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

    @property
    def num_joints(self) -> int:
        return self.final_layer.out_channels

    def forward(self, x: torch.Tensor, with_embedding: bool = False):
        feats = self.backbone(x)[self._branch :]
        f = feats[0]
        if f.shape[-1] != self.heatmap_size or f.shape[-2] != self.heatmap_size:
            f = F.interpolate(f, size=(self.heatmap_size, self.heatmap_size), mode="bilinear", align_corners=False)
        hm = self.final_layer(f)
        if not with_embedding:
            return hm
        emb = torch.cat([g.float().mean(dim=(2, 3)) for g in feats], dim=1)
        return hm, emb

    def trunk_modules(self) -> dict[str, nn.Module]:
        return dict(self.backbone.named_children())


def build_model(backbone: str, num_joints: int, input_size: int, heatmap_size: int) -> PoseHRNet:
    return PoseHRNet(backbone, num_joints, input_size, heatmap_size)
