"""Stage 1's learned models (paper §3.3.1): the primary-image model and the non-compliant model,
as small heads on the shared backbone's features.

Input per image (`head_input`): the frozen MobileNetV2's final map (7x7x1280) and patch map
(14x14x576), each average- and max-pooled (the max keeps small local evidence such as a corner
logo or a thin border that averaging washes out), plus the explainable checks' raw measurements
(stage1.checks.CHECK_FEATURES), standardised with the training set's statistics.

Outputs (sigmoid, one logit each, `OUTPUTS`):
  primary       p_primary: acceptable as the primary image (paper eq. 1)
  noncompliant  p_noncompliant: breaks at least one single-image rule
  <rule id>     one per single-image rule (multi-label), so that a removal names its rule

Why heads on pooled features, not fine-tuned copies of the last blocks: the trunk runs as an
int8 ONNX graph that every consumer shares (stage 2 included); a fine-tuned copy of block 16 +
the last 1x1 conv would add ~43M float MACs per image per head (+30% of the trunk for two
heads) outside that graph, while the pooled-feature MLP costs ~1M MACs per image. The model
card records the measured comparison with a linear head and without the check features.

Training is in torch (stage1/train.py); inference is plain numpy (`NumpyHeads`), so serving
never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from stage1.checks import CHECK_FEATURES
from stage1.data import SINGLE_RULES

OUTPUTS: tuple[str, ...] = ("primary", "noncompliant", *SINGLE_RULES)


@dataclass
class HeadsConfig:
    final_channels: int = 1280
    patch_channels: int = 576
    n_checks: int = len(CHECK_FEATURES)
    use_checks: bool = True
    hidden: int = 256  # 0: linear heads
    dropout: float = 0.3
    outputs: tuple[str, ...] = OUTPUTS

    @property
    def in_dim(self) -> int:
        return 2 * (self.final_channels + self.patch_channels) + (self.n_checks if self.use_checks else 0)


def head_input(final: np.ndarray, patch: np.ndarray, checks: np.ndarray | None) -> np.ndarray:
    """final (B, 49, 1280), patch (B, 14, 14, 576), checks (B, n) or None -> (B, D) float32:
    [avg final, max final, avg patch, max patch, checks]."""
    b = final.shape[0]
    p = patch.reshape(b, -1, patch.shape[-1])
    parts = [final.mean(1), final.max(1), p.mean(1), p.max(1)]
    if checks is not None:
        parts.append(checks)
    return np.concatenate(parts, axis=1).astype(np.float32)


class Heads(nn.Module):
    def __init__(self, config: HeadsConfig):
        super().__init__()
        self.config = config
        d = config.in_dim
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("std", torch.ones(d))
        # Per-output logit offsets set after training so that the operating threshold chosen on
        # the validation split sits at p = 0.5 (the configuration's thresholds then mean "the
        # trained operating point" by default).
        self.register_buffer("offset", torch.zeros(len(config.outputs)))
        if config.hidden:
            self.net = nn.Sequential(nn.Linear(d, config.hidden), nn.ReLU(), nn.Dropout(config.dropout),
                                     nn.Linear(config.hidden, len(config.outputs)))
        else:
            self.net = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(d, len(config.outputs)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, D) raw head input -> logits (B, n_outputs), without the calibration offset."""
        return self.net((x - self.mean) / self.std)


@dataclass
class NumpyHeads:
    """The trained heads for serving: the same arithmetic as `Heads` in numpy (eval mode)."""
    config: HeadsConfig
    tensors: dict[str, np.ndarray] = field(repr=False)

    def __post_init__(self):
        t = self.tensors
        idx = sorted(int(k.split(".")[1]) for k in t if k.startswith("net.") and k.endswith(".weight"))
        self.layers = [(t[f"net.{i}.weight"].astype(np.float32).T.copy(), t[f"net.{i}.bias"].astype(np.float32))
                       for i in idx]
        expected = 2 if self.config.hidden else 1
        if len(self.layers) != expected:
            raise ValueError(f"heads: {len(self.layers)} linear layers, expected {expected} for hidden={self.config.hidden}")
        if self.layers[0][0].shape[0] != self.config.in_dim or self.layers[-1][0].shape[1] != len(self.config.outputs):
            raise ValueError(f"heads: weight shapes {[w.shape for w, _ in self.layers]} do not match {self.config}")
        self.mean = t["mean"].astype(np.float32)
        self.std = t["std"].astype(np.float32)
        self.offset = t["offset"].astype(np.float32)

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = (x - self.mean) / self.std
        for k, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if k < len(self.layers) - 1:
                np.maximum(h, 0, out=h)
        return h - self.offset

    def probs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        p = 1.0 / (1.0 + np.exp(-self.logits(x)))
        return {name: p[:, i] for i, name in enumerate(self.config.outputs)}
