"""MobileNetV2 (Sandler et al., 2018) with batch norm folded away and TensorFlow 'SAME' padding.

This is the network of Google's ImageNet MobileNetV2 1.0/224 (the Coral TFLite files): every
convolution carries its own bias because TFLite folded batch norm into it, and stride-2
convolutions pad (0 top/left, 1 bottom/right) as TensorFlow does, so that imported weights see
the same pixels they were trained on. Blocks follow the paper's Table 2; block 0 is the t=1
block (depthwise + project, no expansion).

`forward_features` returns the maps the rest of stage 1 (and stage 2) reuse from ONE forward
pass; `forward_head` pools and classifies (ImageNet, for the import check only).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class MobileNetV2Config:
    # (expansion t, output channels c, repeats n, stride of the first repeat s): paper Table 2.
    stages: tuple[tuple[int, int, int, int], ...] = (
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
    stem_channels: int = 32
    last_channels: int = 1280
    num_classes: int = 1001  # ImageNet + background (index 0); 0 = no classifier
    image_size: int = 224
    # Block whose EXPANSION output (after ReLU6, before its stride-2 depthwise) is the stride-16
    # patch map: SSDLite's "C4" (block 13: 576 channels at 14x14 for 224 input).
    patch_block: int = 13


class ConvAct(nn.Module):
    """Conv (bias = folded batch norm) with TF 'SAME' padding, then ReLU6 unless linear."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=0, groups=groups, bias=True)
        self.k, self.stride, self.act = k, stride, act

    def forward(self, x):
        if self.k > 1:
            # TF SAME: total pad = max(k - s, 0) for even sizes (k - 1 for odd sizes at s=1);
            # the extra pixel goes bottom/right. For k=3: s=1 -> (1,1), s=2 on even H -> (0,1).
            h, w = x.shape[-2:]
            ph = max((-(-h // self.stride) - 1) * self.stride + self.k - h, 0)
            pw = max((-(-w // self.stride) - 1) * self.stride + self.k - w, 0)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        x = self.conv(x)
        return F.relu6(x) if self.act else x


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hidden = cin * t
        self.expand = ConvAct(cin, hidden, 1) if t != 1 else None
        self.dw = ConvAct(hidden, hidden, 3, stride, groups=hidden)
        self.project = ConvAct(hidden, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x, return_expanded: bool = False):
        e = self.expand(x) if self.expand is not None else x
        y = self.project(self.dw(e))
        if self.residual:
            y = y + x
        return (y, e) if return_expanded else y


class MobileNetV2(nn.Module):
    def __init__(self, config: MobileNetV2Config):
        super().__init__()
        self.config = config
        self.stem = ConvAct(3, config.stem_channels, 3, 2)
        blocks, cin = [], config.stem_channels
        for t, c, n, s in config.stages:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.blocks = nn.ModuleList(blocks)
        assert 0 <= config.patch_block < len(blocks) and blocks[config.patch_block].expand is not None
        self.conv_last = ConvAct(cin, config.last_channels, 1)
        self.classifier = nn.Linear(config.last_channels, config.num_classes) if config.num_classes else None

    @property
    def patch_channels(self) -> int:
        return self.blocks[self.config.patch_block].expand.conv.out_channels

    @property
    def cut_channels(self) -> int:
        """Channels entering the last block (the input of stage 1's fine-tuned head copies)."""
        b = self.blocks[-1]
        return (b.expand or b.dw).conv.in_channels

    def forward_features(self, x: torch.Tensor, upto_last_block: bool = False) -> dict[str, torch.Tensor]:
        """x: (B, 3, H, W) in [-1, 1] -> {"patch": (B, 576, H/16, W/16), "cut": (B, 160, H/32, W/32),
        "final": (B, 1280, H/32, W/32)}. `cut` is the input of the last block; with
        `upto_last_block` the last block and conv_last are skipped (no "final")."""
        out = {}
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            if i == len(self.blocks) - 1:
                out["cut"] = x
                if upto_last_block:
                    return out
            if i == self.config.patch_block:
                x, out["patch"] = block(x, return_expanded=True)
            else:
                x = block(x)
        out["final"] = self.conv_last(x)
        return out

    def forward_head(self, final: torch.Tensor) -> torch.Tensor:
        """final: (B, 1280, h, w) -> ImageNet logits (B, 1001)."""
        if self.classifier is None:
            raise ValueError("this MobileNetV2 was built with num_classes=0 (no classifier)")
        return self.classifier(final.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x)["final"])

    def conv_layers(self) -> list[ConvAct]:
        """Every convolution in graph order (the order of the TFLite file's conv ops)."""
        convs = [self.stem]
        for b in self.blocks:
            convs += [c for c in (b.expand, b.dw, b.project) if c is not None]
        return convs + [self.conv_last]
