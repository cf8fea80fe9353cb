"""Stage 2: MUIsC, the multimodal sequence classifier (paper §3.4).

`stage2.load(path, config)` returns the learned stage 2 of a model version directory; heavy
modules (torch, transformers) are imported only then, so `import stage2.types` stays cheap.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stage2.config import Stage2Config
    from stage2.types import Stage2


def load(path: Path, config: "Stage2Config | None" = None) -> "Stage2":
    """The MUIsC checkpoint directory at `path` (config.json + model.safetensors +
    tokenizer.json) as a `Stage2`; fails loudly on a missing, altered or mismatched file."""
    from stage2.scorer import MUIsCStage2

    return MUIsCStage2(path, config)
