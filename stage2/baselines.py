"""The paper's single-tower baselines (§4.3), on the same frozen backbone as the default MUIsC:
a visual backbone and an MLP classification head over the classes.

- late fusion: each image's backbone map is pooled on its own, the K pooled vectors are
  concatenated, then the MLP (the paper's strongest baseline, AUC 0.764 with ViT).
- early fusion: the K images are put into ONE image (stage2.data.mosaic: a 2x2 grid at the
  backbone's fixed 224 px input), the backbone runs once on it, its map is pooled, then the MLP.

Same forward signature as MUIsC so one training loop serves both (the text is ignored).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from agpis.rules import CLASSES
from stage2.model import MUIsCOutput


@dataclass
class SingleTowerConfig:
    fusion: str = "late"  # "late" | "early"
    classes: tuple[str, ...] = CLASSES
    n_images: int = 3  # images per sequence (late fusion's input width)
    feature_dim: int = 1280
    hidden: int = 512
    dropout: float = 0.1

    def __post_init__(self):
        self.classes = tuple(self.classes)
        if self.fusion not in ("late", "early"):
            raise ValueError(f"fusion must be 'late' or 'early', got {self.fusion!r}")

    @property
    def use_decoder(self) -> bool:
        return False

    @property
    def use_title(self) -> bool:
        return False

    def to_dict(self) -> dict:
        return asdict(self)


class SingleTower(nn.Module):
    def __init__(self, config: SingleTowerConfig):
        super().__init__()
        self.config = c = config
        width = c.feature_dim * (c.n_images if c.fusion == "late" else 1)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, c.hidden), nn.GELU(), nn.Dropout(c.dropout),
                                  nn.Linear(c.hidden, len(c.classes)))

    def forward(self, images: torch.Tensor, idx=None, sep_pos=None, lm_mask=None) -> MUIsCOutput:
        # late: (B, K, T, C) per-image tokens; early: (B, 1, T, C) tokens of the one mosaic image
        expected = self.config.n_images if self.config.fusion == "late" else 1
        assert images.shape[1] == expected, f"{self.config.fusion} fusion expects {expected} maps, got {images.shape[1]}"
        pooled = images.float().mean(2)  # (B, K, C) global average pool per map
        return MUIsCOutput(self.head(pooled.flatten(1)))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
