"""Fixtures shared by every test area: paths, ../shared, small JPEG products."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AGPIS_SHARED", ROOT.parent / "shared")).resolve()

# Tests share 2 cores with each other's threads; keep torch from oversubscribing them.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"../shared is not beside the checkout ({SHARED})")
    return SHARED


def jpeg_bytes(pixels: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="session")
def small_product() -> list[tuple[str, bytes]]:
    """Seven drawn candidate images (JPEG bytes), the first a product on white."""
    from agpis.samples import warmup_images

    return [(f"c{i}", jpeg_bytes(im.pixels)) for i, im in enumerate(warmup_images(7, size=400))]
